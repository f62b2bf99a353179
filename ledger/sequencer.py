"""Appending to the log: one order for all processes, group commit, durable answers.

Callers in a process hand entries to the Sequencer, which gathers them in batches and
stages each batch ahead of its commit: the rows (entries, openings) are built as
requests arrive, and when the batch is sealed its leaves are hashed onto a copy of the
tree as it will be once every earlier batch is stored, giving the tiles it grows and a
signed checkpoint for its new size. One task hands staged batches to the database, a
second one while the first commits, each as one transaction that holds the database's
write lock (so several processes still make one contiguous log). That transaction
writes only if the stored tree is still the one the batch was staged on (same size,
same checkpointed root); otherwise (another process appended, or an earlier batch
failed) nothing is written and the batch is staged again on the stored tree, under the
lock. Only after the commit does a caller learn its index and leaf hash: no answer
without a durable entry.

After a batch, when a run's worth of openings has been appended since the person index
was last compacted, a transaction of its own compacts it (ledger.persons).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.database import (
    LedgerDatabase,
    LedgerUnavailable,
    Restaged,
    Row,
    Transaction,
    Write,
    sqlite_time,
)
from ledger.entry import Entry, commitment, encode_entry, new_opening
from ledger.errors import EntryError, LedgerError
from ledger.merkle import TreeBuilder, leaf_hash, tree_nodes
from ledger.note import NoteSigner
from ledger.persons import FLUSH_ROWS, MERGE_RUNS, TAIL_START, compact
from ledger.tilestore import (
    TileKey,
    TileStore,
    carry_on_tiles,
    frontier_from_tiles,
    grow_tiles,
    right_edge_tiles,
    tiles_query,
)

log = logging.getLogger("onceonly.ledger")

INSERT_ENTRY = (
    "INSERT INTO ledger_entry (idx, leaf, leaf_hash, entry_type, time, actor_org, "
    "actor_system, purpose, basis_kind, basis_ref, query_id, case_id, bulk_job_id, "
    "hidden_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_OPENING = "INSERT INTO ledger_opening (idx, pseudonym, opening) VALUES (?, ?, ?)"
UPSERT_TILE = (
    "INSERT INTO ledger_tile (level, number, hashes) VALUES (?, ?, ?) "
    "ON CONFLICT (level, number) DO UPDATE SET hashes = excluded.hashes"
)
NEXT_INDEX = "SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry"
#: The stored tree's size and the root of its checkpoint at a given size: a batch staged
#: on the tree (size, root) may be written only while this answers exactly that.
CHECK_TREE = (
    "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry), "
    "(SELECT root_hash FROM ledger_checkpoint WHERE size = ?)"
)

#: The root of the stored checkpoint of a size (none: no batch ended there).
LANDED = "SELECT root_hash FROM ledger_checkpoint WHERE size = ?"

#: Batches handed to the database at once: one written behind one committing.
PIPELINE_DEPTH = 2
INSERT_CHECKPOINT = (
    "INSERT INTO ledger_checkpoint (size, root_hash, note, created_at) VALUES (?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Subject:
    """The person an entry is about: their pseudonym and the entry's commitment opening."""

    pseudonym: str
    opening: bytes

    @classmethod
    def new(cls, pseudonym: str) -> Subject:
        """A subject with a fresh random opening."""
        return cls(pseudonym, new_opening())


@dataclass(frozen=True)
class Appended:
    """Where an entry landed: its index, its leaf hash and the checkpoint that covers it."""

    index: int
    leaf_hash: bytes
    tree_size: int


@dataclass
class _Item:
    leaf: bytes
    entry: Entry
    subject: Subject | None


@dataclass
class _Request:
    items: list[_Item]
    future: asyncio.Future[list[Appended]]


#: Makes the ledger_entry row of an item at an index with a leaf hash.
_RowMaker = Callable[[int, _Item, bytes], tuple]


@dataclass(frozen=True)
class _TreeState:
    """The tree at ``size``: its root, its frontier and its partial right-edge tiles.

    Never changed once made; a batch staged on it works on copies.
    """

    size: int
    root: bytes
    builder: TreeBuilder
    edge: dict[TileKey, bytes]


class _Batch:
    """Requests that are committed together, staged as rows on the tree ``base``.

    Each request's rows are built as it arrives; the tree and the tiles it grows are
    worked out once, when the batch is sealed. ``base`` is None when the tree the batch
    follows is not known in advance (at start, or after a failed commit); the batch is
    then staged under the write lock.
    """

    def __init__(self, base: _TreeState | None, row: _RowMaker) -> None:
        self.row = row  # makes an entry's ledger_entry row, for the database's kind
        self.requests: list[_Request] = []
        self.items: list[_Item] = []
        self.hashes: list[bytes] = []
        self.sealed = False
        self.stage_on(base)

    def stage_on(self, base: _TreeState | None) -> None:
        """Stage every request so far on ``base`` (None: leave the batch unstaged).

        Raises LedgerError when the batch is sealed and ``base``'s tiles do not match
        its frontier.
        """
        self.base = base
        self.end: _TreeState | None = None  # the tree after the batch, once sealed
        self.entry_rows: list[tuple] = []
        self.opening_rows: list[tuple] = []
        self.tiles: dict[TileKey, bytes] = {}  # every tile the batch grows, as it becomes
        if base is not None:
            self._add_rows(self.items, self.hashes, base.size)
            if self.sealed:
                self._grow(base)

    def add(self, request: _Request) -> None:
        hashes = [leaf_hash(item.leaf) for item in request.items]
        if self.base is not None:
            self._add_rows(request.items, hashes, self.base.size + len(self.items))
        self.requests.append(request)
        self.items.extend(request.items)
        self.hashes.extend(hashes)

    def _add_rows(self, items: Sequence[_Item], hashes: Sequence[bytes], start: int) -> None:
        for index, item, digest in zip(itertools.count(start), items, hashes, strict=False):
            self.entry_rows.append(self.row(index, item, digest))
            subject = item.subject
            if subject is not None:
                self.opening_rows.append((index, subject.pseudonym, subject.opening))

    def seal(self) -> None:
        """Take no more requests; work out the tree after the batch (when staged)."""
        self.sealed = True
        if self.base is not None and self.end is None:
            try:
                self._grow(self.base)
            except LedgerError:
                self.stage_on(None)  # the base does not hold up: stage under the lock

    def restaged(self, base: _TreeState) -> _Batch:
        """A copy of this sealed batch staged on ``base`` (this one is left as it is).

        Raises LedgerError when ``base``'s tiles do not match its frontier.
        """
        fresh = _Batch(None, self.row)
        fresh.requests, fresh.items, fresh.hashes = self.requests, self.items, self.hashes
        fresh.sealed = True
        fresh.stage_on(base)
        return fresh

    def adopt(self, other: _Batch) -> None:
        """Take the staging of ``other`` (a copy made by restaged)."""
        self.base, self.end = other.base, other.end
        self.entry_rows, self.opening_rows = other.entry_rows, other.opening_rows
        self.tiles = other.tiles

    def _grow(self, base: _TreeState) -> None:
        builder = TreeBuilder(base.size, [node.hash for node in base.builder.frontier])
        edge = dict(base.edge)
        self.tiles = grow_tiles(edge, builder.extend(self.hashes))
        self.end = _TreeState(builder.size, builder.root(), builder, edge)


def prepare(entry: Entry, subject: Subject | None) -> _Item:
    """Encode an entry and check its commitment matches the subject.

    Raises EntryError before anything is queued when the entry is invalid.
    """
    if subject is not None and commitment(subject.opening, subject.pseudonym) != (
        entry.subject_commitment
    ):
        raise EntryError("the entry's subject commitment does not open to this subject")
    return _Item(encode_entry(entry), entry, subject)


class Sequencer:
    """Appends entries in batches; start() before use, stop() to drain and finish.

    A batch takes requests until it holds ``max_batch`` entries (a single append_all
    is never split). The default, 128, splits a burst of a few hundred concurrent
    appends into batches that alternate: one commits while the callers of the other
    append again, which is faster than one large batch at a time.
    """

    def __init__(
        self,
        db: LedgerDatabase,
        tiles: TileStore,
        signer: NoteSigner | Sequence[NoteSigner],
        origin: str,
        *,
        max_batch: int = 128,
        person_flush_rows: int = FLUSH_ROWS,
        person_merge_runs: int = MERGE_RUNS,
    ) -> None:
        self.db = db
        self.tiles = tiles
        self.signer = signer
        self.origin = origin
        self.max_batch = max_batch
        self._entry_row = entry_row_maker(db.kind)
        self.person_flush_rows = person_flush_rows
        self.person_merge_runs = person_merge_runs
        self._waiting: deque[_Batch] = deque()  # not handed over yet, oldest first
        self._handed: deque[tuple[_Batch, asyncio.Future[bool]]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._state: _TreeState | None = None  # the stored tree, as last written or read
        self.batches = 0
        #: Batches the database staged again because another process had appended.
        self.restaged = 0
        self.last_batch_size = 0
        #: Where the person index's tail begins, as last seen (None: not read yet).
        self._indexed: int | None = None
        self._compacting: asyncio.Task[None] | None = None
        #: Called with the number of entries of each committed batch (e.g. for metrics),
        #: after its callers have their answers; it must not raise.
        self.on_batch: Callable[[int], None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger-sequencer")

    async def stop(self) -> None:
        """Commit everything already queued, then stop the batching task."""
        if self._task is None:
            return
        if not self._task.done():
            await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task  # cancelled, or the fault it stopped on (already logged)
        self._task = None
        if self._compacting is not None:
            await self._compacting  # a short transaction; it logs its own failure

    async def append(self, entry: Entry, subject: Subject | None = None) -> Appended:
        """Append one entry; return where it landed once it is durably committed.

        Raises EntryError for an invalid entry (nothing is written) and
        LedgerUnavailable when the database could not take it (nothing is written).
        """
        self._require_running()
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._enqueue(_Request([prepare(entry, subject)], future))
        return (await future)[0]

    async def append_all(self, entries: Sequence[tuple[Entry, Subject | None]]) -> list[Appended]:
        """Append several entries in one transaction, contiguously, in the given order.

        All or none are written. Raises as append() does.
        """
        self._require_running()
        items = [prepare(entry, subject) for entry, subject in entries]
        if not items:
            return []
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._enqueue(_Request(items, future))
        return await future

    def _enqueue(self, request: _Request) -> None:
        batch = self._waiting[-1] if self._waiting else None
        if batch is None or batch.sealed or len(batch.items) >= self.max_batch:
            if batch is not None:
                batch.seal()
            batch = _Batch(self._tree_after_all(), self._entry_row)
            self._waiting.append(batch)
            self._hint()
        batch.add(request)
        self._idle.clear()
        self._wakeup.set()

    def _hint(self) -> None:
        """Tell the database whether a staged batch is about to be handed over."""
        front = self._waiting[0] if self._waiting else None
        coming = front is not None and front.base is not None
        self.db.expect_writes(coming and len(self._handed) < PIPELINE_DEPTH)

    def _tree_after_all(self) -> _TreeState | None:
        """The tree as it will be once every batch so far is committed (None: unknown)."""
        if self._waiting:
            return self._waiting[-1].end
        if self._handed:
            return self._handed[-1][0].end
        return self._state

    async def _run(self) -> None:
        try:
            await self._batches()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # A fault in the sequencer itself: nobody waits for an answer that will
            # never come; later appends are refused (see _require_running).
            log.critical("the ledger sequencer stopped", exc_info=exc)
            stopped = LedgerUnavailable(f"the ledger sequencer stopped: {exc!r}")
            for batch in [*(b for b, _ in self._handed), *self._waiting]:
                self._fail(batch, stopped)
            self._handed.clear()
            self._waiting.clear()
            self._idle.set()
            raise

    def _require_running(self) -> None:
        if self._task is None or self._task.done():
            raise LedgerUnavailable("the ledger sequencer is not running")

    async def _batches(self) -> None:
        while True:
            self._wakeup.clear()
            self._hand_over()
            self._hint()
            if self._handed:
                await self._settle_oldest()
            elif self._waiting:  # unstaged: the pipeline is empty, so stage it under the lock
                batch = self._waiting.popleft()
                batch.seal()
                await self._commit_locked(batch)
            else:
                self._idle.set()
                await self._wakeup.wait()

    def _hand_over(self) -> None:
        """Hand staged batches to the database while the pipeline has room."""
        while self._waiting and len(self._handed) < PIPELINE_DEPTH:
            batch = self._waiting[0]
            batch.seal()
            if batch.end is None:
                return
            written = asyncio.ensure_future(self._write_staged(batch))
            self._waiting.popleft()
            self._handed.append((batch, written))

    async def _settle_oldest(self) -> None:
        """Wait for the oldest handed-over batch (or for a new one while there is room)."""
        batch, outcome = self._handed[0]
        if len(self._handed) < PIPELINE_DEPTH and not self._waiting:
            more = asyncio.ensure_future(self._wakeup.wait())
            await asyncio.wait((outcome, more), return_when=asyncio.FIRST_COMPLETED)
            more.cancel()
            if not outcome.done():
                return
        else:
            await asyncio.wait((outcome,))
        self._handed.popleft()
        error = outcome.exception()
        if error is None and isinstance(outcome.result(), Restaged):
            # Written, but on a tree another process had grown: staged again.
            self._answer_restaged(batch, outcome.result())
            if not self._handed:
                self._stage_waiting(batch.end)
            # else: the batches handed over behind it are staged again as they are
            # written, and the waiting ones once the last of those is settled.
            return
        if (error is None and outcome.result()) or (
            error is not None and await self._landed(batch)
        ):
            self._answer(batch)
            return
        # Every batch handed over after this one was staged on it, so none of them
        # could be written as staged: the database staged each again where it could
        # (Restaged); the others are collected and staged again under the lock.
        retry = []
        for later, later_outcome in self._handed:
            await asyncio.wait((later_outcome,))
            later_error = later_outcome.exception()
            if later_error is None and isinstance(later_outcome.result(), Restaged):
                # The database staged it again on the stored tree and wrote it.
                self._answer_restaged(later, later_outcome.result())
            elif later_error is None:
                retry.append(later)
            else:
                self._fail(later, later_error)
        self._handed.clear()
        if error is None:
            retry.insert(0, batch)
        else:
            self._fail(batch, error)
        self._state = None
        for waiting in self._waiting:
            waiting.stage_on(None)
        self._waiting.extendleft(reversed(retry))
        for again in retry:
            again.stage_on(None)

    def _write_staged(self, batch: _Batch) -> Awaitable[bool | Restaged]:
        # Called, not awaited, when handed over: SQLite queues it at once behind the
        # batch before it (see LedgerDatabase.write_if). When another process appended
        # in the meantime, the database stages the batch again under its lock.
        base, end = batch.base, batch.end
        assert base is not None and end is not None
        writes = self._writes(batch, end)
        expected = (base.size, base.root)
        restage = _Restage(self, batch)
        return self.db.write_if(CHECK_TREE, (base.size,), expected, writes, restage)

    async def _commit_locked(self, batch: _Batch) -> None:
        """Stage ``batch`` on the stored tree and commit it, all under the write lock."""
        try:
            async with self.db.write() as tx:
                rows = await tx.fetch(NEXT_INDEX)
                batch.stage_on(await self._restore(tx, int(rows[0][0])))
                assert batch.end is not None
                await tx.execute_batch(self._writes(batch, batch.end))
        except Exception as exc:
            self._state = None
            if not await self._landed(batch):
                self._fail(batch, exc)
                return
        self._answer(batch)
        # The batches behind it could not be staged before; now their tree is known.
        self._stage_waiting(batch.end)

    def _stage_waiting(self, base: _TreeState | None) -> None:
        """Stage the waiting batches, in order, on ``base`` (the stored tree)."""
        for waiting in self._waiting:
            try:
                waiting.stage_on(base)
            except LedgerError:
                waiting.stage_on(None)
            base = waiting.end

    def _writes(self, batch: _Batch, end: _TreeState) -> list[Write]:
        note = sign_checkpoint(Checkpoint(self.origin, end.size, end.root), self.signer)
        checkpoint = (end.size, end.root, note.decode(), dt.datetime.now(dt.UTC))
        writes: list[Write] = [(INSERT_ENTRY, batch.entry_rows)]
        if batch.opening_rows:
            writes.append((INSERT_OPENING, batch.opening_rows))
        writes.append((UPSERT_TILE, [(*key, data) for key, data in batch.tiles.items()]))
        writes.append((INSERT_CHECKPOINT, [checkpoint]))
        return writes

    def _answer_restaged(self, batch: _Batch, restaged: Restaged) -> None:
        """Answer ``batch``, which the database staged again (on a tree another process
        had grown) and wrote."""
        batch.adopt(restaged.value)
        self.restaged += 1
        self._answer(batch)

    def _answer(self, batch: _Batch) -> None:
        end = batch.end
        assert end is not None
        self._state = end
        for key, data in batch.tiles.items():
            self.tiles.remember(key, data)
        self.batches += 1
        self.last_batch_size = len(batch.items)
        position = start = end.size - len(batch.items)
        for request in batch.requests:
            count = len(request.items)
            result = [
                Appended(position + i, batch.hashes[position - start + i], end.size)
                for i in range(count)
            ]
            if not request.future.done():
                request.future.set_result(result)
            position += count
        if self.on_batch is not None:
            self.on_batch(len(batch.items))
        self._compact_when_due(end.size)

    def _compact_when_due(self, size: int) -> None:
        """Start compacting the person index (ledger.persons) when its tail has grown
        by a run's worth since it was last seen, unless that is under way."""
        if self._compacting is not None:
            return
        if self._indexed is not None and size - self._indexed < self.person_flush_rows:
            return
        self._compacting = asyncio.create_task(self._compact(size), name="ledger-persons")

    async def _compact(self, size: int) -> None:
        try:
            if self._indexed is None:  # first learn whether it is due, without the lock
                self._indexed = int((await self.db.fetch(TAIL_START))[0][0])
                if size - self._indexed < self.person_flush_rows:
                    return
            async with self.db.write() as tx:
                self._indexed = await compact(
                    tx, flush_rows=self.person_flush_rows, merge_runs=self.person_merge_runs
                )
        except Exception as exc:
            # Nothing is lost: the tail stays searchable, only longer. Try again once
            # another run's worth has been appended.
            log.warning("the ledger's person index was not compacted: %s", exc)
            self._indexed = size
        finally:
            self._compacting = None

    async def _landed(self, batch: _Batch) -> bool:
        """Whether ``batch`` is stored although writing it raised.

        A commit can succeed while its answer is lost (the connection breaks after
        COMMIT reached the database). Answering such a batch's callers with an error
        would deny decisions that are in the log, and staging the batches behind it
        again would write them twice. The checkpoint of the batch's tree is written in
        the same transaction as its entries, and its root fixes every leaf, so the
        batch is stored exactly when that checkpoint is; so is a batch that a later
        batch, staged on it, was written after. False when the database cannot say
        (the callers then learn that the ledger is unavailable).
        """
        end = batch.end
        if end is None:
            return False
        later = [outcome for _, outcome in self._handed]
        if later:
            await asyncio.wait(later)
            # A batch written as staged on this one (True, not Restaged: staged again on
            # whatever tree was stored) shows this one is stored.
            if any(o.exception() is None and o.result() is True for o in later):
                return True
        try:
            rows = await self.db.fetch(LANDED, end.size)
        except Exception:
            return False
        landed = bool(rows) and bytes(rows[0][0]) == end.root
        if landed:
            log.warning(
                "a ledger batch of %d entries was committed though its write failed",
                len(batch.items),
            )
        return landed

    def _fail(self, batch: _Batch, exc: BaseException) -> None:
        if not isinstance(exc, LedgerError):
            log.error("ledger batch of %d entries failed", len(batch.items), exc_info=exc)
            exc = LedgerUnavailable(f"the ledger could not record the entry: {exc}")
        for request in batch.requests:
            if not request.future.done():
                request.future.set_exception(exc)

    async def _restore(self, tx: Transaction, size: int) -> _TreeState:
        """Rebuild the frontier and the right-edge tiles of the stored tree of ``size``."""
        nodes = tree_nodes(size)
        read = await self.tiles.reader(nodes, tx)
        frontier = list(read(nodes)) if nodes else []
        edge = await self.tiles.read_tiles(right_edge_tiles(size), tx)
        return _stored_tree(size, frontier, edge)


def _stored_tree(
    size: int, frontier: Sequence[bytes], tiles: Mapping[TileKey, bytes]
) -> _TreeState:
    """The stored tree of ``size`` from its frontier hashes and, among ``tiles``, its
    right-edge tiles. Raises LedgerError when one of those tiles is missing."""
    edge_keys = right_edge_tiles(size)
    missing = [key for key in edge_keys if key not in tiles]
    if missing:
        raise LedgerError(f"the stored tree of size {size} lacks tiles {missing}")
    builder = TreeBuilder(size, frontier)
    return _TreeState(size, builder.root(), builder, {k: tiles[k] for k in edge_keys})


class _Restage:
    """Stages a handed-over batch again on the stored tree, for the database to do under
    its write lock when the tree moved (LedgerDatabase.write_if). On SQLite this runs on
    the writer's thread: it reads only ``batch`` (sealed, so no longer changed) and
    makes a new staging, which the event loop adopts once it is committed."""

    def __init__(self, sequencer: Sequencer, batch: _Batch) -> None:
        self.sequencer = sequencer
        self.batch = batch

    def tiles_query(self, size: int) -> tuple[str, list[int]] | None:
        keys = carry_on_tiles(size)
        return tiles_query(keys) if keys else None

    def build(self, size: int, rows: Sequence[Row]) -> tuple[_Batch, list[Write]]:
        tiles = {(int(level), int(number)): bytes(data) for level, number, data in rows}
        base = _stored_tree(size, frontier_from_tiles(size, tiles), tiles)
        fresh = self.batch.restaged(base)
        assert fresh.end is not None
        return fresh, self.sequencer._writes(fresh, fresh.end)


def entry_row_maker(kind: str) -> _RowMaker:
    """What makes an entry's ``ledger_entry`` row (INSERT_ENTRY's values) for a database
    of ``kind``: index, leaf, leaf hash, and the columns copied out of the entry. SQLite
    is given the time and the hidden-until date as the text it stores them as
    (sqlite_time), rather than a datetime parsed here to be formatted again there;
    PostgreSQL a datetime and a date."""
    if kind == "sqlite":
        time: Callable[[str], object] = sqlite_time
        day: Callable[[str], object] = str  # YYYY-MM-DD, as SQLite stores a date
    else:
        time, day = dt.datetime.fromisoformat, dt.date.fromisoformat  # "...Z" is UTC

    def row(index: int, item: _Item, digest: bytes) -> tuple:
        entry = item.entry
        hidden = entry.hidden_until
        return (
            index,
            item.leaf,
            digest,
            entry.type,
            time(entry.time),
            entry.actor_org,
            entry.actor_system,
            entry.purpose,
            entry.basis.kind,
            entry.basis.ref,
            entry.query_id,
            entry.case_id,
            entry.bulk_job_id,
            day(hidden) if hidden else None,
        )

    return row
