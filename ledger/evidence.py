"""Evidence bundles: a chosen slice of the ledger, every entry proven in one checkpoint.

Where ``ledger.bundle`` exports the whole log, an evidence bundle holds only the entries
an auditor selected (a period, a ministry, a system, a person), each with its RFC 9162
inclusion proof against ONE signed checkpoint: the newest published one, with the
witnesses' cosignature lines. Paths are relative to the bundle directory:

- ``vkey``: the log's verifier key line (``name+keyid+key``, then a newline);
- ``witnesses``: the witnesses' cosignature verifier keys, one a line (empty if none);
- ``checkpoint``: the checkpoint every proof is against, the exact signed note with its
  cosignature lines;
- ``entries/NNNNNN.jsonl``: the entries in index order, 1,000 a file; each line is the
  compact JSON (keys sorted) of ``index``, ``leaf`` (base64 of the exact entry bytes),
  ``leaf_hash`` (base64), ``proof`` (the inclusion proof's hashes in base64, the leaf's
  sibling first) and, in a person's slice, ``opening`` (base64 of the 16-byte opening
  of the entry's person commitment; absent when it was shredded);
- ``manifest.json``: format, origin, vkey, witnesses, quorum, the checkpoint's size and
  root, creation time, the slice, whether openings are included, counts, and the
  SHA-256 of every other file.

``verify_evidence`` needs only the directory: every leaf hash is recomputed from the
entry bytes, every proof checked against the checkpoint's root, the checkpoint's
signature against the log's vkey (or one given independently), the cosignatures
against the witness vkeys (at least the recorded quorum must verify), each entry
decoded and checked against the slice, each opening against its commitment
(``HMAC-SHA256(opening, pseudonym)``), and every file against the manifest.

An evidence bundle proves that each entry in it is in the log. It cannot prove that no
entry of the slice was left out: only the whole log (``ledger.bundle``) can.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ledger.bundle import (
    MANIFEST,
    check_export_directory,
    open_manifest,
    seal_manifest,
    verify_bundle,
)
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.entry import CODE, Entry, decode_entry, verify_commitment
from ledger.errors import CheckpointError, EntryError, LedgerError, NoteError, ProofError
from ledger.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from ledger.note import CosignatureVerifier, NoteVerifier, open_note, parse_vkey
from ledger.verify import Failure, Progress, VerificationFailed, VerifyReport, b64

FORMAT = "onceonly-evidence-bundle/1"
VKEY = "vkey"
WITNESSES = "witnesses"
CHECKPOINT = "checkpoint"
ENTRIES = "entries/"
#: Entries per ``entries/NNNNNN.jsonl`` file.
CHUNK_SIZE = 1000

_CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MANIFEST_KEYS = {
    "format",
    "origin",
    "vkey",
    "witnesses",
    "quorum",
    "size",
    "root",
    "created",
    "slice",
    "openings",
    "counts",
    "files",
    "manifest_sha256",
}
_COUNT_KEYS = {"entries", "openings", "chunks"}
_SLICE_KEYS = {"from", "to", "ministry", "system", "pseudonym"}
_LINE_KEYS = {"index", "leaf", "leaf_hash", "proof"}
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_CHUNK = re.compile(r"entries/([0-9]{6})\.jsonl")


class EvidenceError(LedgerError):
    """An evidence bundle cannot be written, or its manifest cannot be read."""


@dataclass(frozen=True)
class Selection:
    """Which entries a slice holds: a period (UTC dates, both included), a ministry
    (``actor_org``), a system (``actor_system``) and a person's pseudonym; each optional.

    Raises EvidenceError for a code that cannot be an entry's, a pseudonym that is not
    64 hex digits, or a period that ends before it starts.
    """

    since: dt.date | None = None
    until: dt.date | None = None
    ministry: str | None = None
    system: str | None = None
    pseudonym: str | None = None

    def __post_init__(self) -> None:
        for name in ("ministry", "system"):
            value = getattr(self, name)
            if value is not None and not CODE.fullmatch(value):
                raise EvidenceError(f"{name} {value!r} is not a valid code")
        if self.pseudonym is not None and not _PSEUDONYM.fullmatch(self.pseudonym):
            raise EvidenceError("pseudonym is not 64 lowercase hex digits")
        if self.since and self.until and self.until < self.since:
            raise EvidenceError(f"the period ends ({self.until}) before it starts ({self.since})")

    def to_json(self) -> dict[str, str | None]:
        """The selection as the manifest's ``slice`` object (absent criteria are null)."""
        return {
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "ministry": self.ministry,
            "system": self.system,
            "pseudonym": self.pseudonym,
        }

    @classmethod
    def from_json(cls, data: Any) -> Selection:
        """Parse a manifest's ``slice`` object. Raises EvidenceError."""
        if not isinstance(data, dict) or set(data) != _SLICE_KEYS:
            raise EvidenceError(f"slice must have exactly {', '.join(sorted(_SLICE_KEYS))}")
        if not all(value is None or isinstance(value, str) for value in data.values()):
            raise EvidenceError("slice values must be strings or null")
        try:
            since = dt.date.fromisoformat(data["from"]) if data["from"] else None
            until = dt.date.fromisoformat(data["to"]) if data["to"] else None
        except ValueError:
            raise EvidenceError("slice from and to must be dates (YYYY-MM-DD)") from None
        return cls(since, until, data["ministry"], data["system"], data["pseudonym"])

    def mismatch(self, entry: Entry) -> str | None:
        """Why ``entry`` is not in this selection, or None when it may be.

        The pseudonym cannot be checked here (the entry holds only a commitment); the
        opening, when the bundle has it, is checked separately.
        """
        day = entry.time[:10]
        if self.since and day < self.since.isoformat():
            return f"its time {entry.time} is before the slice's period ({self.since})"
        if self.until and day > self.until.isoformat():
            return f"its time {entry.time} is after the slice's period ({self.until})"
        if self.ministry is not None and entry.actor_org != self.ministry:
            return f"its ministry is {entry.actor_org}, the slice's is {self.ministry}"
        if self.system is not None and entry.actor_system != self.system:
            return f"its system is {entry.actor_system}, the slice's is {self.system}"
        return None

    def describe(self) -> str:
        """The selection in a few words, for a person (``the whole log`` when empty)."""
        parts = []
        if self.since or self.until:
            parts.append(f"from {self.since or 'the start'} to {self.until or 'the end'}")
        if self.ministry:
            parts.append(f"ministry {self.ministry}")
        if self.system:
            parts.append(f"system {self.system}")
        if self.pseudonym:
            parts.append(f"person {self.pseudonym}")
        return ", ".join(parts) or "the whole log"


class EvidenceEntry(NamedTuple):
    """One selected entry as stored: its index, exact bytes, stored leaf hash, inclusion
    proof in the bundle's checkpoint and, in a person's slice, its opening (None when
    it was shredded or openings are not exported)."""

    index: int
    leaf: bytes
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    opening: bytes | None = None


@dataclass(frozen=True)
class EvidenceHeader:
    """What a bundle is proven against: the log, its witnesses, and one checkpoint.

    ``checkpoint`` is the exact signed note with its cosignature lines; ``witnesses``
    are the witnesses' vkeys and ``quorum`` how many of them must have cosigned it (the
    log's witness policy when it was exported). ``openings`` says whether the bundle
    carries the openings of a person's slice (``selection.pseudonym`` must be set).
    """

    origin: str
    vkey: str
    checkpoint: bytes
    witnesses: tuple[str, ...] = ()
    quorum: int = 0
    selection: Selection = field(default_factory=Selection)
    openings: bool = False

    def opened(self) -> Checkpoint:
        """The checkpoint, verified with the log's key. Raises EvidenceError for it, for
        openings without a person, or a quorum larger than the witnesses."""
        if self.openings and self.selection.pseudonym is None:
            raise EvidenceError("openings can only be exported for a person's slice")
        if not 0 <= self.quorum <= len(self.witnesses):
            raise EvidenceError(f"a quorum of {self.quorum} of {len(self.witnesses)} witnesses")
        try:
            return open_checkpoint(self.checkpoint, parse_vkey(self.vkey), origin=self.origin)
        except (NoteError, CheckpointError) as error:
            raise EvidenceError(
                f"the checkpoint does not open with the log's key: {error}"
            ) from None


@dataclass(frozen=True)
class EvidenceManifest:
    """An evidence bundle's manifest (see the module docstring).

    ``root`` is base64; ``created`` is UTC ``YYYY-MM-DDTHH:MM:SSZ``; ``files`` maps each
    file's path to its hex SHA-256, ``manifest.json`` excepted.
    """

    origin: str
    vkey: str
    witnesses: tuple[str, ...]
    quorum: int
    size: int
    root: str
    created: str
    selection: Selection
    openings: bool
    counts: dict[str, int]
    files: dict[str, str]
    format: str = FORMAT

    def encode(self) -> bytes:
        """Canonical JSON carrying ``manifest_sha256``, the SHA-256 of the rest."""
        return seal_manifest(self._document())

    def _document(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "origin": self.origin,
            "vkey": self.vkey,
            "witnesses": list(self.witnesses),
            "quorum": self.quorum,
            "size": self.size,
            "root": self.root,
            "created": self.created,
            "slice": self.selection.to_json(),
            "openings": self.openings,
            "counts": dict(self.counts),
            "files": dict(self.files),
        }

    @classmethod
    def decode(cls, data: bytes) -> EvidenceManifest:
        """Parse a manifest, accepting only the exact bytes ``encode`` writes.

        Raises EvidenceError when it is not that JSON, a field is missing, unknown or of
        the wrong type, the format is not this one, or ``manifest_sha256`` is wrong.
        """
        document = open_manifest(data, _MANIFEST_KEYS, EvidenceError)
        if document["format"] != FORMAT:
            raise EvidenceError(f"format {document['format']!r} is not {FORMAT!r}")
        for name in ("origin", "vkey", "root", "created"):
            if not isinstance(document[name], str):
                raise EvidenceError(f"{name} is not a string")
        witnesses = document["witnesses"]
        if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
            raise EvidenceError("witnesses is not a list of verifier keys")
        for name in ("size", "quorum"):
            if type(document[name]) is not int or document[name] < 0:
                raise EvidenceError(f"{name} is not a whole number")
        if document["quorum"] > len(witnesses):
            raise EvidenceError("quorum is larger than the number of witnesses")
        if type(document["openings"]) is not bool:
            raise EvidenceError("openings is not true or false")
        counts, files = document["counts"], document["files"]
        if not isinstance(counts, dict) or set(counts) != _COUNT_KEYS:
            raise EvidenceError(f"counts must be exactly {', '.join(sorted(_COUNT_KEYS))}")
        if any(type(value) is not int or value < 0 for value in counts.values()):
            raise EvidenceError("counts are not whole numbers")
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise EvidenceError("files is not a map of paths to SHA-256 hashes")
        try:
            dt.datetime.strptime(document["created"], _CREATED_FORMAT)
        except ValueError:
            raise EvidenceError(f"created is not a UTC time like {_CREATED_FORMAT}") from None
        selection = Selection.from_json(document.pop("slice"))
        if document["openings"] and selection.pseudonym is None:
            raise EvidenceError("openings are included but the slice names no person")
        document["witnesses"] = tuple(witnesses)
        return cls(selection=selection, **document)


def entry_line(entry: EvidenceEntry, *, with_opening: bool) -> bytes:
    """One line of an ``entries/`` file (compact JSON, keys sorted, then a newline)."""
    document: dict[str, Any] = {
        "index": entry.index,
        "leaf": b64(entry.leaf),
        "leaf_hash": b64(entry.leaf_hash),
        "proof": [b64(node) for node in entry.proof],
    }
    if with_opening and entry.opening is not None:
        document["opening"] = b64(entry.opening)
    return _line(document)


def _line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def chunk_path(number: int) -> str:
    """The path of the ``number``-th entries file."""
    return f"{ENTRIES}{number:06d}.jsonl"


# Writing ------------------------------------------------------------------------------


async def bundle_files(
    header: EvidenceHeader,
    entries: AsyncIterable[EvidenceEntry],
    *,
    created: dt.datetime | None = None,
) -> AsyncIterator[tuple[str, bytes]]:
    """The bundle's files as (path, bytes), in order, ``manifest.json`` last.

    ``entries`` must come in increasing index order, all below the checkpoint's size.
    At most CHUNK_SIZE entries are held at a time. Raises EvidenceError when the header's
    checkpoint does not open with its vkey (before anything is yielded) or an entry is
    out of order or beyond the checkpoint.
    """
    checkpoint = header.opened()
    files: dict[str, str] = {}

    def keep(path: str, data: bytes) -> tuple[str, bytes]:
        files[path] = hashlib.sha256(data).hexdigest()
        return path, data

    yield keep(VKEY, f"{header.vkey}\n".encode())
    yield keep(WITNESSES, "".join(f"{w}\n" for w in header.witnesses).encode())
    yield keep(CHECKPOINT, header.checkpoint)
    counts = {"entries": 0, "openings": 0, "chunks": 0}
    lines: list[bytes] = []
    last = -1
    async for entry in entries:
        if not last < entry.index < checkpoint.size:
            raise EvidenceError(
                f"entry {entry.index} comes after entry {last} or is beyond the "
                f"checkpoint's size {checkpoint.size}"
            )
        last = entry.index
        lines.append(entry_line(entry, with_opening=header.openings))
        counts["entries"] += 1
        counts["openings"] += header.openings and entry.opening is not None
        if len(lines) == CHUNK_SIZE:
            yield keep(chunk_path(counts["chunks"]), b"".join(lines))
            counts["chunks"] += 1
            lines = []
    if lines:
        yield keep(chunk_path(counts["chunks"]), b"".join(lines))
        counts["chunks"] += 1
    manifest = EvidenceManifest(
        origin=header.origin,
        vkey=header.vkey,
        witnesses=header.witnesses,
        quorum=header.quorum,
        size=checkpoint.size,
        root=b64(checkpoint.root_hash),
        created=(created or dt.datetime.now(dt.UTC)).strftime(_CREATED_FORMAT),
        selection=header.selection,
        openings=header.openings,
        counts=counts,
        files=dict(sorted(files.items())),
    )
    yield MANIFEST, manifest.encode()


class _Sink:
    """A write-only file that keeps what tarfile writes until it is drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def tar_stream(
    files: AsyncIterable[tuple[str, bytes]],
    *,
    folder: str,
    compress: bool = True,
    mtime: float | None = None,
) -> AsyncIterator[bytes]:
    """The files as a tar archive (gzip-compressed unless ``compress`` is False), in
    pieces as they are written; every path is put under ``folder/``.

    Only one file is held at a time. Compression runs in a worker thread so the event
    loop stays free.
    """
    sink = _Sink()
    archive = tarfile.open(fileobj=sink, mode="w|gz" if compress else "w|")  # type: ignore[call-overload]
    stamp = int(time.time() if mtime is None else mtime)
    try:
        async for path, data in files:
            info = tarfile.TarInfo(f"{folder}/{path}")
            info.size, info.mtime, info.mode = len(data), stamp, 0o644
            await asyncio.to_thread(archive.addfile, info, io.BytesIO(data))
            piece = sink.drain()
            if piece:
                yield piece
    finally:
        archive.close()
    yield sink.drain()


async def write_directory(
    files: AsyncIterable[tuple[str, bytes]], directory: Path
) -> EvidenceManifest:
    """Write the files into ``directory`` (absent or empty) and return the manifest.

    The bundle is written beside ``directory`` and renamed into place, so it appears
    complete or not at all. Raises BundleError when the directory is not empty,
    OSError when the files cannot be written, and whatever ``files`` raises.
    """
    check_export_directory(directory)
    staging = directory.parent / f".{directory.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    manifest = b""
    try:
        async for path, data in files:
            await asyncio.to_thread(_write_file, staging / path, data)
            manifest = data if path == MANIFEST else manifest
        await asyncio.to_thread(_publish, staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return EvidenceManifest.decode(manifest)


def _write_file(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _publish(staging: Path, directory: Path) -> None:
    check_export_directory(directory)
    if directory.is_dir():
        directory.rmdir()
    os.replace(staging, directory)


# Verifying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceReport:
    """The outcome of verifying an evidence bundle.

    ``entries`` and ``openings`` count what verified before the first failure (all of
    them when ``ok``). ``tree_size`` and ``root`` (base64) are the checkpoint's, once
    it verified (0 and empty before). ``cosignatures`` is how many of the ``witnesses``
    cosigned it, against the ``quorum`` the bundle records. On failure
    ``first_failure`` names the first file, checkpoint, cosignature, entry or opening
    that does not match, ``failure_kind`` says which of those it is and
    ``failure_index`` is the entry's index (None otherwise).
    """

    ok: bool
    entries: int
    openings: int
    tree_size: int
    root: str
    cosignatures: int
    witnesses: int
    quorum: int
    selection: str = ""
    first_failure: str | None = None
    failure_kind: str | None = None
    failure_index: int | None = None
    seconds: float = 0.0
    format: str = FORMAT

    def to_json(self) -> str:
        """The report as one JSON object (the dataclass fields, seconds rounded to ms)."""
        data: dict[str, Any] = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return json.dumps(data)

    def summary(self) -> str:
        """One paragraph for a person: what was checked and, on failure, what is wrong."""
        if not self.ok:
            return (
                f"The evidence does NOT verify: {self.first_failure}. Checked "
                f"{self.entries:,} entries before this failure."
            )
        openings = (
            f" {self.openings:,} openings show that those entries are about the slice's person."
            if self.openings
            else ""
        )
        return (
            f"The evidence verifies: {self.entries:,} entries ({self.selection}) are in "
            f"the ledger's checkpoint of tree size {self.tree_size:,} with root "
            f"{self.root}. Every leaf hash matches its entry's bytes, every inclusion proof "
            f"leads to that root, the checkpoint is signed by the log's key and cosigned "
            f"by {self.cosignatures} of {self.witnesses} witnesses (quorum "
            f"{self.quorum}), and every file matches the manifest.{openings} This proves "
            "each entry is in the ledger, not that the slice is complete."
        )


@dataclass
class _Tally:
    entries: int = 0
    openings: int = 0
    tree_size: int = 0
    root: str = ""
    cosignatures: int = 0
    witnesses: int = 0
    quorum: int = 0
    selection: str = ""


def verify_evidence(
    directory: Path,
    *,
    vkey: str | None = None,
    witnesses: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> EvidenceReport:
    """Verify an evidence bundle with nothing but its files.

    ``vkey`` (the log's key obtained some other way; after key rotations, its keys
    separated by white space) must then name the bundle's key;
    ``witnesses`` (witness vkeys obtained some other way) replace the bundle's list for
    counting cosignatures against its quorum. ``progress(done, total)`` is called as
    entries are checked. Never raises for a bad bundle: returns an EvidenceReport
    naming the first thing that does not match.
    """
    started = time.perf_counter()
    state = _Tally()
    failure = None
    try:
        _EvidenceVerification(directory, state).run(vkey, witnesses, progress)
    except VerificationFailed as stop:
        failure = stop.failure
    return EvidenceReport(
        ok=failure is None,
        entries=state.entries,
        openings=state.openings,
        tree_size=state.tree_size,
        root=state.root,
        cosignatures=state.cosignatures,
        witnesses=state.witnesses,
        quorum=state.quorum,
        selection=state.selection,
        first_failure=failure.message if failure else None,
        failure_kind=failure.kind if failure else None,
        failure_index=failure.index if failure else None,
        seconds=time.perf_counter() - started,
    )


def _fail(message: str, kind: str = "file", index: int | None = None) -> VerificationFailed:
    return VerificationFailed(Failure(kind, index, message))


class _EvidenceVerification:
    def __init__(self, directory: Path, state: _Tally) -> None:
        self.directory = directory
        self.state = state
        self.checked: set[str] = set()

    def read(self, path: str) -> bytes:
        try:
            return (self.directory / path).read_bytes()
        except OSError as error:
            raise _fail(f"{path} cannot be read: {error.strerror or error}") from None

    def check_hash(self, manifest: EvidenceManifest, path: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != manifest.files.get(path):
            raise _fail(f"{path} does not match its SHA-256 in {MANIFEST}")
        self.checked.add(path)

    def run(
        self,
        trusted_vkey: str | None,
        trusted_witnesses: Sequence[str] | None,
        progress: Progress | None,
    ) -> None:
        if not self.directory.is_dir():
            raise _fail(f"{self.directory} is not a directory")
        manifest = self._manifest()
        self.state.selection = manifest.selection.describe()
        self._check_files(manifest)
        verifier = self._verifier(manifest, trusted_vkey)
        cosigners = self._witnesses(manifest, trusted_witnesses)
        checkpoint = self._checkpoint(manifest, verifier, cosigners)
        self._entries(manifest, checkpoint, progress)
        unchecked = sorted(set(manifest.files) - self.checked)
        for path in unchecked:  # none today; kept so that no listed file goes unchecked
            self.check_hash(manifest, path, self.read(path))

    def _manifest(self) -> EvidenceManifest:
        try:
            return EvidenceManifest.decode(self.read(MANIFEST))
        except EvidenceError as error:
            raise _fail(f"{MANIFEST}: {error}") from None

    def _check_files(self, manifest: EvidenceManifest) -> None:
        """The files present, listed and expected must be the same."""
        present = set(_walk(self.directory))
        listed = set(manifest.files)
        unlisted = sorted(present - listed)
        if unlisted:
            raise _fail(f"{unlisted[0]} is not listed in {MANIFEST}")
        absent = sorted(listed - present)
        if absent:
            raise _fail(f"{absent[0]} is listed in {MANIFEST} but missing")
        expected = {VKEY, WITNESSES, CHECKPOINT}
        expected.update(chunk_path(n) for n in range(manifest.counts["chunks"]))
        lacking = sorted(expected - listed)
        if lacking:
            raise _fail(f"{lacking[0]} is missing (the manifest's counts need it)")
        extra = sorted(listed - expected)
        if extra:
            raise _fail(f"{extra[0]} does not belong in this evidence bundle")

    def _verifier(self, manifest: EvidenceManifest, trusted: str | None) -> NoteVerifier:
        data = self.read(VKEY)
        try:
            line = data.decode("ascii")
        except UnicodeDecodeError:
            raise _fail(f"{VKEY} is not an ASCII verifier key line") from None
        if not line.endswith("\n") or line.count("\n") != 1:
            raise _fail(f"{VKEY} is not one line ending in a newline")
        line = line[:-1]
        if trusted is not None and line not in trusted.split():
            raise _fail(f"{VKEY}: the bundle's key {line!r} is not a trusted key ({trusted!r})")
        if line != manifest.vkey:
            raise _fail(f"{VKEY} is not the vkey {MANIFEST} names")
        try:
            verifier = parse_vkey(line)
        except NoteError as error:
            raise _fail(f"{VKEY}: not a verifier key: {error}") from None
        self.check_hash(manifest, VKEY, data)
        return verifier

    def _witnesses(
        self, manifest: EvidenceManifest, trusted: Sequence[str] | None
    ) -> list[CosignatureVerifier]:
        data = self.read(WITNESSES)
        listed = data.decode("ascii", errors="replace").splitlines()
        if data != "".join(f"{w}\n" for w in listed).encode():
            raise _fail(f"{WITNESSES} is not verifier key lines each ending in a newline")
        if tuple(listed) != manifest.witnesses:
            raise _fail(f"{WITNESSES} does not list the witnesses {MANIFEST} names")
        keys = [k.strip() for k in trusted] if trusted is not None else listed
        cosigners: list[CosignatureVerifier] = []
        for key in keys:
            where = "a given witness key" if trusted is not None else WITNESSES
            try:
                verifier = parse_vkey(key)
            except NoteError as error:
                raise _fail(f"{where}: {key!r} is not a verifier key: {error}") from None
            if not isinstance(verifier, CosignatureVerifier):
                raise _fail(f"{where}: {key!r} is not a witness cosignature key")
            cosigners.append(verifier)
        self.check_hash(manifest, WITNESSES, data)
        self.state.witnesses = len(cosigners)
        self.state.quorum = manifest.quorum
        return cosigners

    def _checkpoint(
        self,
        manifest: EvidenceManifest,
        verifier: NoteVerifier,
        cosigners: Sequence[CosignatureVerifier],
    ) -> Checkpoint:
        note = self.read(CHECKPOINT)
        try:
            checkpoint = open_checkpoint(note, verifier, origin=manifest.origin)
        except CheckpointError as error:
            raise _fail(f"{CHECKPOINT}: {error}", "checkpoint") from None
        if checkpoint.size != manifest.size or b64(checkpoint.root_hash) != manifest.root:
            raise _fail(
                f"{CHECKPOINT} is of tree size {checkpoint.size} with root "
                f"{b64(checkpoint.root_hash)}, {MANIFEST} says {manifest.size} with root "
                f"{manifest.root}",
                "checkpoint",
            )
        # The log's signature verified above; the other lines are the cosignatures.
        opened = open_note(note, [verifier])
        lines = {(s.name, s.key_id): s for s in opened.unverified}
        cosigned = 0
        for witness in cosigners:
            line = lines.get((witness.name, witness.key_id))
            if line is None:
                continue  # this witness did not cosign
            if not witness.verify(opened.text.encode(), line.signature):
                raise _fail(
                    f"{CHECKPOINT}: the cosignature of witness {witness.name} does not verify",
                    "cosignature",
                )
            cosigned += 1
        self.state.cosignatures = cosigned
        if cosigned < manifest.quorum:
            raise _fail(
                f"{CHECKPOINT}: {cosigned} of the {len(cosigners)} witnesses cosigned it, "
                f"the quorum is {manifest.quorum}",
                "cosignature",
            )
        self.check_hash(manifest, CHECKPOINT, note)
        self.state.tree_size = checkpoint.size
        self.state.root = b64(checkpoint.root_hash)
        return checkpoint

    def _entries(
        self, manifest: EvidenceManifest, checkpoint: Checkpoint, progress: Progress | None
    ) -> None:
        last = -1
        total = manifest.counts["entries"]
        for number in range(manifest.counts["chunks"]):
            path = chunk_path(number)
            data = self.read(path)
            if not data:
                raise _fail(f"{path} is empty")
            if not data.endswith(b"\n"):
                raise _fail(f"{path} does not end in a newline")
            for line_number, line in enumerate(data[:-1].split(b"\n"), start=1):
                where = f"{path} line {line_number}"
                last = self._entry(manifest, checkpoint, line, where, last)
                if self.state.entries > total:
                    raise _fail(f"{where}: {MANIFEST} counts only {total} entries")
            self.check_hash(manifest, path, data)
            if progress is not None:
                progress(self.state.entries, total)
        if self.state.entries != total:
            raise _fail(f"{MANIFEST} counts {total} entries, the bundle holds {self.state.entries}")
        if self.state.openings != manifest.counts["openings"]:
            raise _fail(
                f"{MANIFEST} counts {manifest.counts['openings']} openings, the bundle "
                f"holds {self.state.openings}"
            )

    def _entry(
        self,
        manifest: EvidenceManifest,
        checkpoint: Checkpoint,
        line: bytes,
        where: str,
        last: int,
    ) -> int:
        """Check one line; return its entry's index."""
        document = _parse_line(line, where)
        index = document["index"]
        if index <= last:
            raise _fail(f"{where}: entry {index} comes after entry {last}", "entry", index)
        leaf, stored_hash = document["leaf"], document["leaf_hash"]
        computed = leaf_hash(leaf)
        if computed != stored_hash:
            raise _fail(
                f"entry {index} ({where}): leaf_hash is not the hash of its bytes", "entry", index
            )
        try:
            verify_inclusion(
                computed, index, checkpoint.size, document["proof"], checkpoint.root_hash
            )
        except ProofError as error:
            raise _fail(
                f"entry {index} ({where}) is not proven in the checkpoint of tree size "
                f"{checkpoint.size}: {error}",
                "proof",
                index,
            ) from None
        try:
            entry = decode_entry(leaf)
        except EntryError as error:
            raise _fail(
                f"entry {index} ({where}) is not a canonical entry: {error}", "entry", index
            ) from None
        reason = manifest.selection.mismatch(entry)
        if reason is not None:
            raise _fail(f"entry {index} ({where}) is not in the slice: {reason}", "entry", index)
        opening = document.get("opening")
        if opening is not None:
            pseudonym = manifest.selection.pseudonym
            if not manifest.openings or pseudonym is None:
                raise _fail(
                    f"entry {index} ({where}) carries an opening, but {MANIFEST} says "
                    "openings are not included",
                    "opening",
                    index,
                )
            if not verify_commitment(entry.subject_commitment, opening, pseudonym):
                raise _fail(
                    f"entry {index} ({where}): the opening does not open its person "
                    "commitment to the slice's pseudonym",
                    "opening",
                    index,
                )
            self.state.openings += 1
        self.state.entries += 1
        return index


def _parse_line(line: bytes, where: str) -> dict[str, Any]:
    """An entries line, decoded: index int, leaf/leaf_hash/opening bytes, proof hashes."""
    try:
        document = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(f"{where} is not a JSON object") from None
    if not isinstance(document, dict) or set(document) - {"opening"} != _LINE_KEYS:
        raise _fail(f"{where} must have exactly index, leaf, leaf_hash, proof and maybe opening")
    if _line(document) != line + b"\n":
        raise _fail(f"{where} is not in canonical form (a byte was changed or added)")
    index = document["index"]
    if type(index) is not int or index < 0:
        raise _fail(f"{where}: index is not a whole number")
    proof = document["proof"]
    if not isinstance(proof, list):
        raise _fail(f"{where}: proof is not a list", "proof", index)
    decoded: dict[str, Any] = {"index": index}
    try:
        decoded["leaf"] = _base64(document["leaf"])
        decoded["leaf_hash"] = _base64(document["leaf_hash"], HASH_SIZE)
        decoded["proof"] = [_base64(node, HASH_SIZE) for node in proof]
        if "opening" in document:
            decoded["opening"] = _base64(document["opening"])
    except ValueError as error:
        raise _fail(f"entry {index} ({where}): {error}", "entry", index) from None
    return decoded


def _base64(value: object, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError("a value is not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{value[:16]!r}... is not base64") from None
    if base64.b64encode(raw).decode() != value:
        raise ValueError(f"{value[:16]!r}... is not canonical base64")
    if size is not None and len(raw) != size:
        raise ValueError(f"a hash is {len(raw)} bytes, not {size}")
    return raw


def _walk(directory: Path) -> Iterator[str]:
    """Every file under ``directory`` but the manifest, as a relative path."""
    for folder, dirs, files in os.walk(directory):
        dirs.sort()
        here = Path(folder)
        for name in [*dirs, *sorted(files)]:
            path = (here / name).relative_to(directory).as_posix()
            if (here / name).is_symlink():
                raise _fail(f"{path} is a symbolic link")
            if name in files and path != MANIFEST:
                yield path


# Either kind of bundle, as a directory or an archive ----------------------------------


def bundle_format(directory: Path) -> str | None:
    """The ``format`` a bundle directory's manifest names, or None when unreadable."""
    try:
        document = json.loads((directory / MANIFEST).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = document.get("format") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def verify_any(
    path: Path,
    *,
    vkey: str | None = None,
    witnesses: Sequence[str] | None = None,
    progress: Progress | None = None,
    deep: bool = False,
) -> VerifyReport | EvidenceReport:
    """Verify a whole-log bundle or an evidence bundle, as a directory or a .tar(.gz).

    The manifest's ``format`` decides which verification runs (``witnesses`` only
    matter to evidence bundles, ``deep`` only to whole-log ones, whose entries are
    otherwise not decoded; an evidence bundle's always are). An archive is unpacked
    into a temporary directory first (regular files only, no path outside it). Never
    raises for a bad bundle.
    """
    if path.is_dir():
        return _verify_directory(path, vkey, witnesses, progress, deep)
    with tempfile.TemporaryDirectory(prefix="onceonly-bundle-") as scratch:
        try:
            root = unpack(path, Path(scratch))
        except EvidenceError as error:
            return _file_failure(f"{path.name}: {error}")
        return _verify_directory(root, vkey, witnesses, progress, deep)


def _verify_directory(
    directory: Path,
    vkey: str | None,
    witnesses: Sequence[str] | None,
    progress: Progress | None,
    deep: bool,
) -> VerifyReport | EvidenceReport:
    if bundle_format(directory) == FORMAT:
        return verify_evidence(directory, vkey=vkey, witnesses=witnesses, progress=progress)
    return verify_bundle(directory, vkey=vkey, progress=progress, deep=deep)


def _file_failure(message: str) -> EvidenceReport:
    return EvidenceReport(
        ok=False,
        entries=0,
        openings=0,
        tree_size=0,
        root="",
        cosignatures=0,
        witnesses=0,
        quorum=0,
        first_failure=message,
        failure_kind="file",
    )


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a tar archive (plain or compressed) into ``into``; return the bundle's
    directory: ``into`` itself, or the one folder the archive holds.

    Only regular files and folders are accepted, with relative paths that stay inside
    ``into``. Raises EvidenceError for anything else, or a damaged archive.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts or not parts:
                    raise EvidenceError(f"the archive holds a path outside it: {name!r}")
                if not (member.isfile() or member.isdir()):
                    raise EvidenceError(f"{name} is not a regular file or folder")
                tar.extract(member, into, filter="data")
            # Read to the end, so that a compressed archive's checksum is checked too.
            while tar.fileobj is not None and tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as error:
        raise EvidenceError(f"not a readable tar archive: {error}") from None
    inside = list(into.iterdir())
    if not (into / MANIFEST).exists() and len(inside) == 1 and inside[0].is_dir():
        return inside[0]
    return into
