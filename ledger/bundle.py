"""Ledger bundles: the whole log exported as files an auditor verifies offline.

A bundle is a static C2SP tlog-tiles mirror of the newest checkpoint, plus every older
checkpoint and a manifest. Paths are relative to the bundle directory:

- ``vkey``: the log's verifier key line (``name+keyid+key``, then a newline); after
  a key rotation one line per key the log has had, the current key first;
- ``checkpoint``: the newest signed checkpoint, exact bytes;
- ``checkpoints/<size>``: every signed checkpoint up to the newest, exact bytes;
- ``tile/entries/<N>[.p/<W>]``: the entry bundles of the newest tree;
- ``tile/<L>/<N>[.p/<W>]``: the hash tiles of the newest tree;
- ``manifest.json``: format, origin, vkey, size, root, creation time, counts, and the
  SHA-256 of every other file.

``verify_bundle`` needs only the directory (and, ideally, the log's vkey obtained some
other way): it rebuilds the tree from the entry bundles and checks every checkpoint
signature and root and every tile against it. The manifest's hashes catch a damaged
file early and by name; the evidence is still the signed checkpoints, so a bundle whose
manifest was rewritten to match altered files fails on the checkpoints and tiles.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.checkpoint import LogKeys
from ledger.database import LedgerDatabase
from ledger.errors import LedgerError, NoteError, TileError
from ledger.merkle import EMPTY_ROOT, HASH_SIZE
from ledger.note import parse_vkey
from ledger.tiles import TILE_WIDTH, TileRef, decode_bundle, encode_bundle, tiles_for_size
from ledger.verify import (
    Failure,
    HashTile,
    Progress,
    RebuiltTree,
    Tally,
    VerificationFailed,
    VerifyReport,
    b64,
    check_checkpoint,
    check_entries_decode,
    check_tile,
    leaf_hashes,
    make_report,
)

FORMAT = "onceonly-ledger-bundle/1"
MANIFEST = "manifest.json"
VKEY = "vkey"
CHECKPOINT = "checkpoint"
CHECKPOINTS = "checkpoints/"

_CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MANIFEST_KEYS = {
    "format",
    "origin",
    "vkey",
    "size",
    "root",
    "created",
    "counts",
    "files",
    "manifest_sha256",
}
_COUNT_KEYS = {"entries", "checkpoints", "entry_bundles", "tiles"}


class BundleError(LedgerError):
    """A bundle cannot be exported (or its manifest cannot be read)."""


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: the newest tree, counts, and the SHA-256 of every file.

    ``root`` is base64; ``created`` is UTC ``YYYY-MM-DDTHH:MM:SSZ``; ``files`` maps each
    file's path (relative, with ``/``) to its hex SHA-256, ``manifest.json`` excepted.
    """

    origin: str
    vkey: str
    size: int
    root: str
    created: str
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT

    def encode(self) -> bytes:
        """The manifest file's bytes: canonical JSON carrying its own SHA-256.

        ``manifest_sha256`` is the SHA-256 of the canonical JSON of every other field.
        It is no signature; it makes any damaged byte, even in a field no other file
        vouches for (such as ``created``), detectable.
        """
        return seal_manifest(self._document())

    def _document(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "origin": self.origin,
            "vkey": self.vkey,
            "size": self.size,
            "root": self.root,
            "created": self.created,
            "counts": dict(self.counts),
            "files": dict(self.files),
        }

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse a manifest file, accepting only the exact bytes ``encode`` writes.

        Raises BundleError when it is not that JSON, a field is missing, unknown or of
        the wrong type, the format is not this one, or ``manifest_sha256`` is wrong.
        """
        document = open_manifest(data, _MANIFEST_KEYS, BundleError)
        if document["format"] != FORMAT:
            raise BundleError(f"format {document['format']!r} is not {FORMAT!r}")
        for name in ("origin", "vkey", "root", "created"):
            if not isinstance(document[name], str):
                raise BundleError(f"{name} is not a string")
        size, counts, files = document["size"], document["counts"], document["files"]
        if type(size) is not int or size < 0:
            raise BundleError("size is not a whole number")
        if not isinstance(counts, dict) or set(counts) != _COUNT_KEYS:
            raise BundleError(f"counts must be exactly {', '.join(sorted(_COUNT_KEYS))}")
        if any(type(value) is not int for value in counts.values()):
            raise BundleError("counts are not integers")
        if not isinstance(files, dict) or not all(
            isinstance(value, str) for value in files.values()
        ):
            raise BundleError("files is not a map of paths to SHA-256 hashes")
        try:
            dt.datetime.strptime(document["created"], _CREATED_FORMAT)
        except ValueError:
            raise BundleError(f"created is not a UTC time like {_CREATED_FORMAT}") from None
        return cls(**document)


def _canonical(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()


def seal_manifest(document: dict[str, Any]) -> bytes:
    """Canonical JSON of ``document`` plus ``manifest_sha256``, the SHA-256 of the rest.

    The digest is no signature; it makes any damaged byte, even in a field no other file
    vouches for, detectable.
    """
    sealed = dict(document)
    sealed["manifest_sha256"] = hashlib.sha256(_canonical(document)).hexdigest()
    return _canonical(sealed)


def open_manifest(
    data: bytes, keys: frozenset[str] | set[str], error: type[LedgerError]
) -> dict[str, Any]:
    """The fields of a manifest ``seal_manifest`` wrote, without ``manifest_sha256``.

    Raises ``error`` when ``data`` is not JSON (also a number past int()'s digit limit or
    nesting deeper than the recursion limit), its fields are not exactly ``keys``, it is
    not in canonical form, or ``manifest_sha256`` does not match.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise error(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or set(document) != keys:
        raise error(f"fields must be exactly {', '.join(sorted(keys))}")
    if _canonical(document) != data:
        raise error("not in canonical form (a byte was changed or added)")
    digest = document.pop("manifest_sha256")
    if digest != hashlib.sha256(_canonical(document)).hexdigest():
        raise error("manifest_sha256 does not match the manifest")
    return document


class _Writer:
    """Writes a bundle's files under a directory, remembering each file's SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, str] = {}

    def write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
        for path, data in files:
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self.files[path] = hashlib.sha256(data).hexdigest()


def check_export_directory(directory: Path) -> None:
    """Raise BundleError unless ``directory`` is absent or an empty directory."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise BundleError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        raise BundleError(f"{directory} is not empty; export into a new or empty directory")


async def export_bundle(
    db: LedgerDatabase,
    verifier_vkey: str | Sequence[str],
    origin: str,
    directory: Path,
    *,
    progress: Progress | None = None,
    batch: int = 10240,
) -> Manifest:
    """Export the log as of its newest checkpoint into ``directory`` as a bundle.

    ``directory`` must not exist or be empty. The bundle is written beside it and
    renamed into place, so it appears complete or not at all; appends while exporting
    are not in it. Stored bytes are copied as they are (verify the bundle to judge
    them). ``verifier_vkey`` is the log's key, or every key it has had (the current one
    first) when its key was rotated. ``progress(done, total)`` is called as entries
    are written. Returns the manifest. Raises BundleError when the directory is not
    empty, a vkey is malformed, the log has no checkpoint yet, or the stored log lacks
    an entry or a tile the newest checkpoint needs; OSError when the files cannot be
    written; LedgerUnavailable when the database cannot be read.
    """
    check_export_directory(directory)
    vkeys = [verifier_vkey] if isinstance(verifier_vkey, str) else list(verifier_vkey)
    try:
        if not vkeys:
            raise NoteError("no key given")
        for vkey in vkeys:
            parse_vkey(vkey)
    except NoteError as error:
        raise BundleError(f"not a verifier key: {error}") from None
    rows = await db.fetch(
        "SELECT size, root_hash, note FROM ledger_checkpoint ORDER BY size DESC LIMIT 1"
    )
    if not rows:
        raise BundleError("the log has no checkpoint yet; there is nothing to export")
    size, root, note = int(rows[0][0]), bytes(rows[0][1]), str(rows[0][2]).encode()
    staging = directory.parent / f".{directory.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        writer = _Writer(staging)
        counts = {
            "checkpoints": await _export_checkpoints(db, writer, size, batch),
            "entry_bundles": await _export_entries(db, writer, size, batch, progress),
            "tiles": await _export_tiles(db, writer, size),
            "entries": size,
        }
        await asyncio.to_thread(
            writer.write_all,
            [(VKEY, "".join(f"{k}\n" for k in vkeys).encode()), (CHECKPOINT, note)],
        )
        manifest = Manifest(
            origin=origin,
            vkey=vkeys[0],
            size=size,
            root=b64(root),
            created=dt.datetime.now(dt.UTC).strftime(_CREATED_FORMAT),
            counts=counts,
            files=dict(sorted(writer.files.items())),
        )
        await asyncio.to_thread((staging / MANIFEST).write_bytes, manifest.encode())
        await asyncio.to_thread(_publish, staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _publish(staging: Path, directory: Path) -> None:
    """Move the finished bundle into place (onto an empty directory, if there is one)."""
    check_export_directory(directory)
    if directory.is_dir():
        directory.rmdir()
    os.replace(staging, directory)


async def _export_checkpoints(db: LedgerDatabase, writer: _Writer, size: int, batch: int) -> int:
    count, after = 0, -1
    while True:
        rows = await db.fetch(
            "SELECT size, note FROM ledger_checkpoint WHERE size > ? AND size <= ? "
            "ORDER BY size LIMIT ?",
            after,
            size,
            batch,
        )
        if not rows:
            return count
        files = [(f"{CHECKPOINTS}{int(s)}", str(note).encode()) for s, note in rows]
        await asyncio.to_thread(writer.write_all, files)
        count += len(rows)
        after = int(rows[-1][0])


async def _export_entries(
    db: LedgerDatabase, writer: _Writer, size: int, batch: int, progress: Progress | None
) -> int:
    batch = max(TILE_WIDTH, batch - batch % TILE_WIDTH)  # whole bundles per query
    bundles, start = 0, 0
    while start < size:
        rows = await db.fetch(
            "SELECT idx, leaf FROM ledger_entry WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
            start,
            size,
            batch,
        )
        for offset, row in enumerate(rows):
            if row[0] != start + offset:
                raise BundleError(f"entry {start + offset} is missing from the stored log")
        if not rows:
            raise BundleError(f"entry {start} is missing from the stored log")
        files = []
        for first in range(0, len(rows), TILE_WIDTH):
            leaves = [bytes(row[1]) for row in rows[first : first + TILE_WIDTH]]
            ref = TileRef(0, (start + first) // TILE_WIDTH, len(leaves), is_entries=True)
            try:
                files.append((ref.path(), encode_bundle(leaves)))
            except TileError as error:
                raise BundleError(f"entry bundle {ref.path()}: {error}") from None
        await asyncio.to_thread(writer.write_all, files)
        bundles += len(files)
        start += len(rows)
        if progress is not None:
            progress(start, size)
    return bundles


async def _export_tiles(db: LedgerDatabase, writer: _Writer, size: int) -> int:
    wanted = tiles_for_size(size)
    by_level: dict[int, list[TileRef]] = {}
    for ref in wanted:
        by_level.setdefault(ref.level, []).append(ref)
    for level, refs in by_level.items():
        for first in range(0, len(refs), 1024):
            chunk = refs[first : first + 1024]
            rows = await db.fetch(
                "SELECT number, hashes FROM ledger_tile WHERE level = ? AND number >= ? "
                "AND number <= ?",
                level,
                chunk[0].index,
                chunk[-1].index,
            )
            stored = {int(number): bytes(data) for number, data in rows}
            files = []
            for ref in chunk:
                data = stored.get(ref.index, b"")
                if len(data) < ref.width * HASH_SIZE:
                    raise BundleError(
                        f"tile {level}/{ref.index} of tree size {size} is missing from the "
                        "stored log or too short"
                    )
                files.append((ref.path(), data[: ref.width * HASH_SIZE]))
            await asyncio.to_thread(writer.write_all, files)
    return len(wanted)


def verify_bundle(
    directory: Path,
    *,
    vkey: str | Sequence[str] | None = None,
    progress: Progress | None = None,
    deep: bool = False,
) -> VerifyReport:
    """Verify an exported bundle with nothing but its files.

    Checks the manifest (its own digest, then that it lists exactly the files present
    and their SHA-256), that the bundle holds exactly the files of its tree size, then
    rebuilds the tree from the entry bundles and checks every checkpoint (signed by the
    bundle's vkey for the manifest's origin, root equal to the rebuilt tree's at its
    size, so all are consistent), that ``checkpoint`` is the newest of them, and every
    hash tile. When ``vkey`` (the log's key, obtained some other way) is given, the
    bundle's vkey must be that key. After a key rotation ``vkey`` may be several keys
    (a sequence, or one string of keys separated by white space): that trusted set
    checks the checkpoints, and every key the bundle lists must be in it. With ``deep``
    every entry must also decode as a canonical entry. ``progress(done, total)`` is
    called as entries are checked.

    Never raises for a bad bundle: returns a VerifyReport naming the first file,
    checkpoint, tile or entry that does not match.
    """
    started = time.perf_counter()
    state = Tally()
    try:
        _BundleVerification(directory, state, deep=deep).run(vkey, progress)
    except VerificationFailed as stop:
        return make_report(state, stop.failure, started)
    return make_report(state, None, started)


def _fail(message: str, kind: str = "file", index: int | None = None) -> VerificationFailed:
    return VerificationFailed(Failure(kind, index, message))


class _BundleVerification:
    def __init__(self, directory: Path, state: Tally, *, deep: bool) -> None:
        self.directory = directory
        self.state = state
        self.deep = deep
        self.tree = RebuiltTree()

    def read(self, path: str) -> bytes:
        try:
            return (self.directory / path).read_bytes()
        except OSError as error:
            raise _fail(f"{path} cannot be read: {error.strerror or error}") from None

    def run(self, trusted_vkey: str | Sequence[str] | None, progress: Progress | None) -> None:
        if not self.directory.is_dir():
            raise _fail(f"{self.directory} is not a directory")
        manifest = self._manifest()
        verifier = self._verifier(manifest, trusted_vkey)
        sizes = self._check_files(manifest)
        self._check_hashes(manifest)
        newest = self.read(f"{CHECKPOINTS}{manifest.size}")
        if self.read(CHECKPOINT) != newest:
            raise _fail(f"{CHECKPOINT} is not the same note as {CHECKPOINTS}{manifest.size}")
        self._check_counts(manifest, len(sizes))
        self._rebuild(manifest, verifier, sizes, progress)
        if b64(self.state.root) != manifest.root:
            raise _fail(f"{MANIFEST}: root does not match the tree rebuilt from the entries")

    def _manifest(self) -> Manifest:
        try:
            return Manifest.decode(self.read(MANIFEST))
        except BundleError as error:
            raise _fail(f"{MANIFEST}: {error}") from None

    def _verifier(self, manifest: Manifest, trusted: str | Sequence[str] | None) -> LogKeys:
        text = self.read(VKEY)
        try:
            lines = text.decode("ascii")
        except UnicodeDecodeError:
            raise _fail(f"{VKEY} is not an ASCII verifier key line") from None
        if not lines.endswith("\n") or "\n\n" in lines or lines.startswith("\n"):
            raise _fail(f"{VKEY} is not one key per line, each ending in a newline")
        keys = lines[:-1].split("\n")
        trusted_keys = None if trusted is None else _key_list(trusted)
        for line in keys:
            if trusted_keys is not None and line not in trusted_keys:
                shown = trusted_keys[0] if len(trusted_keys) == 1 else trusted_keys
                what = "the trusted key" if len(trusted_keys) == 1 else "one of the trusted keys"
                raise _fail(f"{VKEY}: the bundle's key {line!r} is not {what} {shown!r}")
        if keys[0] != manifest.vkey:
            raise _fail(f"{VKEY} is not the vkey {MANIFEST} names")
        try:
            return tuple(parse_vkey(line) for line in trusted_keys or keys)
        except NoteError as error:
            raise _fail(f"{VKEY}: not a verifier key: {error}") from None

    def _check_files(self, manifest: Manifest) -> list[int]:
        """Check the files present, listed and needed agree; return the checkpoint sizes."""
        present = set(self._walk())
        listed = set(manifest.files)
        unlisted = sorted(present - listed, key=_path_order)
        if unlisted:
            raise _fail(f"{unlisted[0]} is not listed in {MANIFEST}")
        absent = sorted(listed - present, key=_path_order)
        if absent:
            raise _fail(f"{absent[0]} is listed in {MANIFEST} but missing")
        needed = {VKEY, CHECKPOINT, f"{CHECKPOINTS}{manifest.size}"}
        needed.update(ref.path() for ref in tiles_for_size(manifest.size))
        needed.update(ref.path() for ref in _entry_bundles(manifest.size))
        lacking = sorted(needed - listed, key=_path_order)
        if lacking:
            raise _fail(f"{lacking[0]} is missing (a bundle of tree size {manifest.size} needs it)")
        sizes = []
        for path in sorted(listed - needed, key=_path_order):
            name = path.removeprefix(CHECKPOINTS)
            if name == path or not name.isdigit() or name != str(int(name)):
                raise _fail(f"{path} does not belong in a bundle of tree size {manifest.size}")
            if int(name) > manifest.size:
                raise _fail(f"{path} is newer than the bundle's tree size {manifest.size}")
            sizes.append(int(name))
        return sorted([*sizes, manifest.size])

    def _walk(self) -> Iterator[str]:
        """Every file under the bundle directory but the manifest, as a relative path."""
        for folder, dirs, files in os.walk(self.directory):
            dirs.sort()
            here = Path(folder)
            for name in [*dirs, *sorted(files)]:
                path = (here / name).relative_to(self.directory).as_posix()
                if (here / name).is_symlink():
                    raise _fail(f"{path} is a symbolic link")
                if name in files and path != MANIFEST:
                    yield path

    def _check_hashes(self, manifest: Manifest) -> None:
        for path, digest in sorted(manifest.files.items(), key=lambda item: _path_order(item[0])):
            if hashlib.sha256(self.read(path)).hexdigest() != digest:
                raise _fail(f"{path} does not match its SHA-256 in {MANIFEST}")

    def _check_counts(self, manifest: Manifest, checkpoints: int) -> None:
        actual = {
            "entries": manifest.size,
            "checkpoints": checkpoints,
            "entry_bundles": len(_entry_bundles(manifest.size)),
            "tiles": len(tiles_for_size(manifest.size)),
        }
        if manifest.counts != actual:
            raise _fail(f"{MANIFEST}: counts {manifest.counts} do not match the bundle {actual}")

    def _rebuild(
        self,
        manifest: Manifest,
        verifier: LogKeys,
        sizes: list[int],
        progress: Progress | None,
    ) -> None:
        """Feed every entry bundle to the tree, checking checkpoints and tiles in order."""
        pending = iter(sizes)
        next_size = next(pending)
        if next_size == 0:
            self._check_checkpoint(0, manifest, verifier)
            next_size = next(pending, manifest.size + 1)
        for ref in _entry_bundles(manifest.size):
            data = self.read(ref.path())
            try:
                leaves = decode_bundle(data, ref.width)
            except TileError as error:
                raise _fail(f"{ref.path()}: {error}") from None
            start = ref.index * TILE_WIDTH
            failure = check_entries_decode(leaves, start) if self.deep else None
            if failure is not None and failure.index is not None:
                leaves = leaves[: failure.index - start]  # what precedes it is checked first
            hashes = leaf_hashes(leaves)
            position = 0
            while next_size <= start + len(hashes):
                self._grow(hashes[position : next_size - start])
                position = next_size - start
                self._check_checkpoint(next_size, manifest, verifier)
                next_size = next(pending, manifest.size + 1)
            self._grow(hashes[position:])
            self.state.entries = self.tree.size
            if failure is not None:
                raise VerificationFailed(failure)
            if progress is not None:
                progress(self.tree.size, manifest.size)
        for tile in self.tree.partial_tiles():
            self._check_tile(tile)

    def _grow(self, hashes: Sequence[bytes]) -> None:
        for tile in self.tree.extend(hashes):
            self._check_tile(tile)

    def _check_tile(self, tile: HashTile) -> None:
        path = tile.ref().path()
        failure = check_tile(tile, self.read(path), where=path)
        if failure is not None:
            raise VerificationFailed(failure)

    def _check_checkpoint(self, size: int, manifest: Manifest, verifier: LogKeys) -> None:
        path = f"{CHECKPOINTS}{size}"
        root = self.tree.root() if size else EMPTY_ROOT
        failure = check_checkpoint(
            size, self.read(path), verifier, manifest.origin, root, where=path
        )
        if failure is not None:
            raise VerificationFailed(failure)
        self.state.checkpoints += 1
        self.state.tree_size = size
        self.state.root = root


def _key_list(keys: str | Sequence[str]) -> list[str]:
    """Verifier keys given as one string (separated by white space) or a sequence."""
    return keys.split() if isinstance(keys, str) else [key.strip() for key in keys]


def _entry_bundles(size: int) -> list[TileRef]:
    return [
        TileRef(0, ref.index, ref.width, is_entries=True)
        for ref in tiles_for_size(size)
        if ref.level == 0
    ]


def _path_order(path: str) -> tuple[int, ...] | tuple[str, ...]:
    """Sort key putting checkpoints by size and everything else by name."""
    name = path.removeprefix(CHECKPOINTS)
    if name != path and name.isdigit():
        return (0, int(name))
    return (1, *map(ord, path))
