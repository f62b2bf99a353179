"""Verifying a stored log end to end: every entry, checkpoint and tile against one tree.

``verify_database`` streams the entries in index order, recomputes every leaf hash from
the stored bytes, rebuilds the RFC 9162 tree and checks, as the stream passes them, that
every stored checkpoint is signed by the log and commits to the rebuilt tree at its
size, and that every stored tile holds the rebuilt tree's hashes. All checkpoints
committing to one rebuilt tree is what makes them consistent with each other.

The first failure in stream order is reported: a failure is placed at the last entry it
depends on (an entry at its index, a checkpoint of size ``n`` at ``n - 1``, a tile at
the entry that completed its first wrong hash), so the report names the earliest thing
that is wrong rather than everything that follows from it.

The rebuilt tree (``RebuiltTree``) keeps only the right edge of each tile level, so
memory stays flat however long the log is; ``ledger.bundle`` verifies exported bundles
with the same pieces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from ledger.checkpoint import LogKeys, open_checkpoint
from ledger.database import LedgerDatabase
from ledger.entry import decode_entry
from ledger.errors import CheckpointError, EntryError
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, fold, tree_nodes
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileRef

#: Called with (entries done, entries in total) as verification advances.
Progress = Callable[[int, int], None]

_sha256 = hashlib.sha256


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying a log (in a database or an exported bundle).

    ``ok`` is True when nothing failed. ``entries`` and ``checkpoints`` count what was
    checked before the first failure (all of them when ``ok``). ``tree_size`` and
    ``root`` (base64) are those of the newest checkpoint that verified (0 and the empty
    tree's root when none did). On failure, ``first_failure`` is a sentence naming the
    first entry, checkpoint, tile or file that does not match, ``failure_kind`` says
    which of those it is (``entry``, ``checkpoint``, ``tile`` or ``file``) and
    ``failure_index`` is the entry's index, the checkpoint's size or the tile's number
    (None for a file). ``seconds`` is the wall-clock time taken.
    """

    ok: bool
    entries: int
    checkpoints: int
    tree_size: int
    root: str
    first_failure: str | None = None
    failure_kind: str | None = None
    failure_index: int | None = None
    seconds: float = 0.0

    def to_json(self) -> str:
        """The report as one JSON object (the dataclass fields, seconds rounded to ms)."""
        data: dict[str, Any] = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return json.dumps(data)

    def summary(self) -> str:
        """One paragraph for a person: what was checked and, on failure, what is wrong."""
        checked = (
            f"{self.entries:,} entries and {self.checkpoints:,} checkpoints in {self.seconds:.1f} s"
        )
        if self.ok:
            return (
                f"The ledger verifies: {checked}. Every leaf hash, checkpoint signature, "
                f"root hash and tile matches the tree rebuilt from the entries; the newest "
                f"checkpoint is tree size {self.tree_size:,} with root {self.root}."
            )
        verified = (
            f"the last checkpoint that verified is tree size {self.tree_size:,} with root "
            f"{self.root}"
            if self.checkpoints
            else "no checkpoint verified"
        )
        return (
            f"The ledger does NOT verify: {self.first_failure}. Checked {checked} before "
            f"this failure; {verified}."
        )


class Failure(NamedTuple):
    """The first thing found not to match: what kind, which one, and why."""

    kind: str
    index: int | None
    message: str


class VerificationFailed(Exception):
    """Raised inside a verification to stop at its first failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class HashTile(NamedTuple):
    """A hash tile of the rebuilt tree: tile level, number, and concatenated hashes."""

    level: int
    number: int
    data: bytes

    @property
    def width(self) -> int:
        return len(self.data) // HASH_SIZE

    def ref(self) -> TileRef:
        return TileRef(self.level, self.number, self.width)


class RebuiltTree:
    """An RFC 9162 tree rebuilt from leaf hashes in order, in tlog-tiles shape.

    For each tile level it holds only the hashes of the current partial tile (at most
    255), which is all the root at the current size needs: every perfect subtree of the
    size's decomposition lies in the right-edge tile of its tile level. Leaves are
    hashed 256 at a time, so the cost per leaf is about one SHA-256 call.
    """

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[list[bytes]] = [[]]  # per tile level: hashes of the partial tile
        self._number: list[int] = [0]  # per tile level: the partial tile's number

    def extend(self, leaf_hashes: Sequence[bytes]) -> list[HashTile]:
        """Append leaf hashes; return the full hash tiles they completed, in order.

        A level-``k`` tile completes after the level-``k - 1`` tile it ends, so the
        order is the order in which the tiles' last leaves arrive.
        """
        completed: list[HashTile] = []
        position, count = 0, len(leaf_hashes)
        while position < count:
            edge = self._edge[0]
            take = min(TILE_WIDTH - len(edge), count - position)
            edge.extend(leaf_hashes[position : position + take])
            position += take
            if len(edge) == TILE_WIDTH:
                self._complete(0, completed)
        self.size += count
        return completed

    def _complete(self, level: int, completed: list[HashTile]) -> None:
        hashes = self._edge[level]
        completed.append(HashTile(level, self._number[level], b"".join(hashes)))
        self._edge[level] = []
        self._number[level] += 1
        if level + 1 == len(self._edge):
            self._edge.append([])
            self._number.append(0)
        self._edge[level + 1].append(subtree_root(hashes))
        if len(self._edge[level + 1]) == TILE_WIDTH:
            self._complete(level + 1, completed)

    def root(self) -> bytes:
        """The root hash of the tree at the current size (MTH of RFC 9162)."""
        hashes = []
        for level, index in tree_nodes(self.size):
            tile_level, rest = divmod(level, TILE_HEIGHT)
            start = (index << rest) % TILE_WIDTH
            hashes.append(subtree_root(self._edge[tile_level][start : start + (1 << rest)]))
        return fold(hashes) if hashes else EMPTY_ROOT

    def partial_tiles(self) -> list[HashTile]:
        """The partial hash tiles of the tree at the current size, lowest level first."""
        return [
            HashTile(level, self._number[level], b"".join(edge))
            for level, edge in enumerate(self._edge)
            if edge
        ]


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree over ``hashes`` (a power of two of them, at least 1)."""
    level = list(hashes)
    while len(level) > 1:
        level = [
            _sha256(b"\x01" + left + right).digest()
            for left, right in zip(level[0::2], level[1::2], strict=True)
        ]
    return level[0]


def leaf_hashes(leaves: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 leaf hash of each leaf, in one tight loop."""
    return [_sha256(b"\x00" + leaf).digest() for leaf in leaves]


def first_difference(left: Sequence[bytes], right: Sequence[bytes]) -> int:
    """The first position where two equally long sequences differ (call only if they do)."""
    return next(i for i, (a, b) in enumerate(zip(left, right, strict=True)) if a != b)


def tile_position(level: int, number: int, hash_index: int) -> int:
    """The index of the last entry under hash ``hash_index`` of tile ``level/number``."""
    return ((number * TILE_WIDTH + hash_index + 1) << (TILE_HEIGHT * level)) - 1


def check_tile(expected: HashTile, stored: bytes | None, *, where: str) -> Failure | None:
    """Compare a stored tile with the rebuilt one; say how they differ, or None.

    ``stored`` must be exactly ``expected.data``; ``where`` names the stored tile for a
    person (a tile coordinate or a file path).
    """
    if stored is None:
        return Failure("tile", expected.number, f"{where} is missing")
    if hmac.compare_digest(stored, expected.data):
        return None
    if len(stored) != len(expected.data):
        return Failure(
            "tile",
            expected.number,
            f"{where} holds {len(stored)} bytes, the rebuilt tree has "
            f"{expected.width} hashes ({len(expected.data)} bytes) there",
        )
    got = [stored[i : i + HASH_SIZE] for i in range(0, len(stored), HASH_SIZE)]
    want = [expected.data[i : i + HASH_SIZE] for i in range(0, len(stored), HASH_SIZE)]
    at = first_difference(got, want)
    first = tile_position(expected.level, expected.number, at - 1) + 1
    last = tile_position(expected.level, expected.number, at)
    covers = f"entry {first}" if first == last else f"entries {first} to {last}"
    return Failure(
        "tile",
        expected.number,
        f"{where}: hash {at} (over {covers}) does not match the tree rebuilt from the entries",
    )


def check_checkpoint(
    size: int,
    note: bytes,
    verifier: LogKeys,
    origin: str,
    rebuilt_root: bytes,
    *,
    where: str,
    stored_root: bytes | None = None,
) -> Failure | None:
    """Check one checkpoint of ``size`` against the tree rebuilt to that size, or None.

    The note must open with the log's ``verifier`` (its key, or its keys across
    rotations: see ledger.checkpoint.open_checkpoint) and ``origin``, be for ``size``, and
    commit to ``rebuilt_root``; ``stored_root`` (a database column beside the note), when
    given, must equal the note's root.
    """
    try:
        checkpoint = open_checkpoint(note, verifier, origin=origin)
    except CheckpointError as error:
        return Failure("checkpoint", size, f"{where}: {error}")
    if checkpoint.size != size:
        return Failure(
            "checkpoint", size, f"{where} holds a signed checkpoint of size {checkpoint.size}"
        )
    if stored_root is not None and not hmac.compare_digest(stored_root, checkpoint.root_hash):
        return Failure(
            "checkpoint", size, f"{where}: stored root_hash column does not match its signed note"
        )
    if not hmac.compare_digest(checkpoint.root_hash, rebuilt_root):
        return Failure(
            "checkpoint",
            size,
            f"{where}: signed root hash does not match the tree rebuilt from entries 0 to "
            f"{size - 1}",
        )
    return None


def check_entries_decode(leaves: Sequence[bytes], start: int) -> Failure | None:
    """Decode each leaf as a canonical entry; name the first that is not one, or None."""
    for offset, leaf in enumerate(leaves):
        try:
            decode_entry(leaf)
        except EntryError as error:
            index = start + offset
            return Failure("entry", index, f"entry {index} is not a canonical entry: {error}")
    return None


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@dataclass
class Tally:
    """What a verification has established so far: the report's counts and newest tree."""

    entries: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root: bytes = EMPTY_ROOT


def make_report(state: Tally, failure: Failure | None, started: float) -> VerifyReport:
    """Build the report from the verification's progress and its first failure, if any."""
    return VerifyReport(
        ok=failure is None,
        entries=state.entries,
        checkpoints=state.checkpoints,
        tree_size=state.tree_size,
        root=b64(state.root),
        first_failure=failure.message if failure else None,
        failure_kind=failure.kind if failure else None,
        failure_index=failure.index if failure else None,
        seconds=time.perf_counter() - started,
    )


# The sizes of the log, taken in one statement so they describe one moment even while
# the log grows: entries, checkpoints, and per tile level how many tiles (and bytes).
_SNAPSHOT = (
    "SELECT 'entry', MAX(idx), COUNT(*), 0 FROM ledger_entry "
    "UNION ALL SELECT 'checkpoint', MAX(size), COUNT(*), 0 FROM ledger_checkpoint "
    "UNION ALL SELECT 'tile', level, COUNT(*), SUM(length(hashes)) FROM ledger_tile "
    "GROUP BY level"
)


@dataclass
class _Snapshot:
    entries_end: int  # MAX(idx) + 1
    newest_checkpoint: int | None
    tiles: dict[int, tuple[int, int]]  # level -> (tile count, total bytes)


async def _snapshot(db: LedgerDatabase) -> _Snapshot:
    rows = await db.fetch(_SNAPSHOT)
    entries_end, newest, tiles = 0, None, {}
    for kind, value, count, total in rows:
        if kind == "entry" and value is not None:
            entries_end = int(value) + 1
        elif kind == "checkpoint" and value is not None:
            newest = int(value)
        elif kind == "tile":
            tiles[int(value)] = (int(count), int(total or 0))
    return _Snapshot(entries_end, newest, tiles)


async def verify_database(
    db: LedgerDatabase,
    verifier: LogKeys,
    origin: str,
    *,
    progress: Progress | None = None,
    batch: int = 10000,
    deep: bool = False,
) -> VerifyReport:
    """Verify the whole stored log in ``db`` against the log's key and origin.

    Checks, in one pass in index order: indices are contiguous from 0; each stored leaf
    hash is the hash of the stored leaf bytes; every entry is covered by a checkpoint;
    every checkpoint is signed by ``verifier`` for ``origin`` (after a key rotation,
    give every key the log has had: each checkpoint must be signed by one of them), is
    the checkpoint of its row's size, has the root its ``root_hash`` column says and
    that root is the rebuilt tree's at its size; every stored tile equals the rebuilt
    tree's tile and no other tile is stored. With ``deep`` each leaf must also decode
    as a canonical entry (``ledger.entry.decode_entry``), which is much slower.

    Entries are read ``batch`` at a time; ``progress(done, total)`` is called after each
    batch. Rows appended while verifying are ignored: the log is verified as it was
    when verification started. Returns a VerifyReport naming the first failure; raises
    LedgerUnavailable (or the driver's error) only when the database cannot be read.
    """
    started = time.perf_counter()
    state = Tally()
    verification = _DatabaseVerification(db, verifier, origin, state, batch=batch, deep=deep)
    try:
        await verification.run(progress)
    except VerificationFailed as stop:
        return make_report(state, stop.failure, started)
    return make_report(state, None, started)


class _DatabaseVerification:
    def __init__(
        self,
        db: LedgerDatabase,
        verifier: LogKeys,
        origin: str,
        state: Tally,
        *,
        batch: int,
        deep: bool,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be positive, not {batch}")
        self.db = db
        self.verifier = verifier
        self.origin = origin
        self.state = state
        self.batch = batch
        self.deep = deep
        self.tree = RebuiltTree()

    async def run(self, progress: Progress | None) -> None:
        snapshot = await _snapshot(self.db)
        end = snapshot.entries_end
        newest = snapshot.newest_checkpoint or 0
        await self._check_empty_checkpoint()
        start = 0
        while start < end:
            rows = await self.db.fetch(
                "SELECT idx, leaf, leaf_hash FROM ledger_entry "
                "WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                start,
                end,
                self.batch,
            )
            await self._check_chunk(start, rows, newest)
            start += len(rows)
            if progress is not None:
                progress(start, end)
        if newest > end:
            raise VerificationFailed(
                Failure(
                    "checkpoint",
                    newest,
                    f"checkpoint {newest} covers {newest} entries but the log holds {end}: "
                    f"entry {end} is missing",
                )
            )
        await self._check_right_edge(snapshot)

    async def _check_empty_checkpoint(self) -> None:
        rows = await self.db.fetch(
            "SELECT size, root_hash, note FROM ledger_checkpoint WHERE size = 0"
        )
        for _, root, note in rows:
            self._check_checkpoint(_CheckpointAt(0, bytes(root), str(note).encode(), EMPTY_ROOT))

    async def _check_chunk(self, start: int, rows: Sequence[Any], newest: int) -> None:
        """Check entries [start, start + len(rows)) and the tiles and checkpoints they end.

        Everything before the chunk's first failing entry is still fed to the tree: a
        tile or checkpoint that ends before that entry is the earlier failure.
        """
        if not rows:  # the last entry of the snapshot went away while verifying
            raise VerificationFailed(Failure("entry", start, f"entry {start} is missing"))
        indices, leaves, stored = zip(*rows, strict=True)
        failures: list[Failure] = []
        count = len(rows)
        if indices[-1] != start + count - 1:  # ordered and unique, so a gap shows here
            count = next(i for i, index in enumerate(indices) if index != start + i)
            missing = start + count
            failures.append(
                Failure("entry", missing, f"entry {missing} is missing (the log skips it)")
            )
        leaves = leaves[:count]
        hashes = leaf_hashes(leaves)
        stored = list(stored[:count])
        if hashes != stored:
            index = start + first_difference(hashes, stored)
            failures.append(
                Failure("entry", index, f"entry {index}: stored leaf hash does not match its bytes")
            )
        if self.deep:
            failures.extend(filter(None, [check_entries_decode(leaves, start)]))
        if start + count > newest:
            index = max(start, newest)
            message = f"entry {index} is not covered by a checkpoint"
            failures.append(Failure("entry", index, message))
        failure = min(failures, key=lambda f: f.index or 0, default=None)  # all have one
        if failure is not None and failure.index is not None:
            count = failure.index - start
        await self._grow(hashes[:count])
        self.state.entries = start + count
        if failure is not None:
            raise VerificationFailed(failure)

    async def _grow(self, hashes: list[bytes]) -> None:
        """Feed leaf hashes to the tree, checking the tiles and checkpoints they complete."""
        first = self.tree.size
        rows = await self.db.fetch(
            "SELECT size, root_hash, note FROM ledger_checkpoint "
            "WHERE size > ? AND size <= ? ORDER BY size",
            first,
            first + len(hashes),
        )
        # Tiles and checkpoints in the order their last entries arrive.
        events: list[HashTile | _CheckpointAt] = []
        position = 0
        for size, root, note in rows:
            events.extend(self.tree.extend(hashes[position : size - first]))
            position = size - first
            events.append(_CheckpointAt(size, bytes(root), str(note).encode(), self.tree.root()))
        events.extend(self.tree.extend(hashes[position:]))
        stored = await self._stored_tiles([e for e in events if isinstance(e, HashTile)])
        for event in events:
            if isinstance(event, HashTile):
                self._check_tile(event, stored.get((event.level, event.number)))
            else:
                self._check_checkpoint(event)

    async def _stored_tiles(self, tiles: Sequence[HashTile]) -> dict[tuple[int, int], bytes]:
        """The stored bytes of ``tiles`` (contiguous numbers per level), in one query."""
        ranges: dict[int, tuple[int, int]] = {}
        for tile in tiles:
            low, high = ranges.get(tile.level, (tile.number, tile.number))
            ranges[tile.level] = (min(low, tile.number), max(high, tile.number))
        if not ranges:
            return {}
        where = " OR ".join("(level = ? AND number >= ? AND number <= ?)" for _ in ranges)
        args = [value for level, (low, high) in ranges.items() for value in (level, low, high)]
        rows = await self.db.fetch(
            f"SELECT level, number, hashes FROM ledger_tile WHERE {where}",  # noqa: S608
            *args,
        )
        return {(int(level), int(number)): bytes(data) for level, number, data in rows}

    def _check_tile(self, tile: HashTile, stored: bytes | None) -> None:
        failure = check_tile(tile, stored, where=f"tile {tile.level}/{tile.number}")
        if failure is not None:
            raise VerificationFailed(failure)

    def _check_checkpoint(self, checkpoint: _CheckpointAt) -> None:
        size = checkpoint.size
        failure = check_checkpoint(
            size,
            checkpoint.note,
            self.verifier,
            self.origin,
            checkpoint.rebuilt_root,
            where=f"checkpoint {size}",
            stored_root=checkpoint.root_column,
        )
        if failure is not None:
            raise VerificationFailed(failure)
        self.state.checkpoints += 1
        self.state.tree_size = size
        self.state.root = checkpoint.rebuilt_root

    async def _check_right_edge(self, snapshot: _Snapshot) -> None:
        """Check the partial tiles, then that the snapshot stored no other tile or hash.

        A partial tile may have grown since the snapshot (the log is live), so only its
        prefix is compared here; the snapshot's per-level totals catch a tile that was
        longer, or a tile that should not exist, at the moment verification started.
        """
        partial = self.tree.partial_tiles()
        stored = await self._stored_tiles(partial)
        for tile in partial:
            data = stored.get((tile.level, tile.number))
            self._check_tile(tile, None if data is None else data[: len(tile.data)])
        size = self.tree.size
        expected: dict[int, tuple[int, int]] = {}
        level = 0
        while nodes := size >> (TILE_HEIGHT * level):
            expected[level] = (-(-nodes // TILE_WIDTH), nodes * HASH_SIZE)
            level += 1
        for level in sorted(set(expected) | set(snapshot.tiles)):
            tiles, total = expected.get(level, (0, 0))
            stored_tiles, stored_total = snapshot.tiles.get(level, (0, 0))
            if stored_tiles != tiles:
                message = (
                    f"tile level {level} holds {stored_tiles} tiles, the tree of {size} "
                    f"entries has {tiles}: tile {level}/{tiles} and later should not exist"
                )
                raise VerificationFailed(Failure("tile", tiles, message))
            if stored_total != total:
                number = tiles - 1
                message = (
                    f"tile {level}/{number} holds more hashes than the tree of {size} "
                    f"entries has ({(total // HASH_SIZE) % TILE_WIDTH or TILE_WIDTH})"
                )
                raise VerificationFailed(Failure("tile", number, message))


class _CheckpointAt(NamedTuple):
    """A stored checkpoint and the rebuilt tree's root at its size."""

    size: int
    root_column: bytes
    note: bytes
    rebuilt_root: bytes
