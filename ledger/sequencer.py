"""Appending to the log: one order for all processes, group commit, durable answers.

Callers in a process hand entries to the Sequencer; one task takes everything waiting
and writes it in one transaction that holds the database's write lock (so several
processes still make one contiguous log). Inside it: the next index is read from the
database, leaves are hashed into the tree frontier, entries, openings and the grown
tiles are written, and a signed checkpoint for the new size is stored. Only after the
commit does a caller learn its index and leaf hash: no answer without a durable entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.database import LedgerDatabase, LedgerUnavailable, Transaction
from ledger.entry import Entry, commitment, encode_entry, new_opening
from ledger.errors import EntryError, LedgerError
from ledger.merkle import TreeBuilder, leaf_hash, tree_nodes
from ledger.note import NoteSigner
from ledger.tilestore import TileKey, TileStore, grow_tiles, right_edge_tiles

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


@dataclass
class _TreeState:
    size: int
    builder: TreeBuilder
    edge: dict[TileKey, bytes]


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
    """Appends entries in batches; start() before use, stop() to drain and finish."""

    def __init__(
        self,
        db: LedgerDatabase,
        tiles: TileStore,
        signer: NoteSigner,
        origin: str,
        *,
        max_batch: int = 1024,
    ) -> None:
        self.db = db
        self.tiles = tiles
        self.signer = signer
        self.origin = origin
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._state: _TreeState | None = None
        self.batches = 0
        self.last_batch_size = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger-sequencer")

    async def stop(self) -> None:
        """Commit everything already queued, then stop the batching task."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def append(self, entry: Entry, subject: Subject | None = None) -> Appended:
        """Append one entry; return where it landed once it is durably committed.

        Raises EntryError for an invalid entry (nothing is written) and
        LedgerUnavailable when the database could not take it (nothing is written).
        """
        return (await self.append_all([(entry, subject)]))[0]

    async def append_all(self, entries: Sequence[tuple[Entry, Subject | None]]) -> list[Appended]:
        """Append several entries in one transaction, contiguously, in the given order.

        All or none are written. Raises as append() does.
        """
        if self._task is None:
            raise LedgerUnavailable("the ledger sequencer is not running")
        items = [prepare(entry, subject) for entry, subject in entries]
        if not items:
            return []
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(items, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].items)
            while count < self.max_batch and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                count += len(request.items)
            try:
                results = await self._commit(batch)
            except Exception as exc:
                self._state = None  # re-read the tree from the database next time
                if not isinstance(exc, LedgerError):
                    log.exception("ledger batch of %d entries failed", count)
                    exc = LedgerUnavailable(f"the ledger could not record the entry: {exc}")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
            else:
                for request, result in zip(batch, results, strict=True):
                    if not request.future.done():
                        request.future.set_result(result)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Request]) -> list[list[Appended]]:
        items = [item for request in batch for item in request.items]
        now = dt.datetime.now(dt.UTC)
        async with self.db.write() as tx:
            rows = await tx.fetch("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry")
            size = int(rows[0][0])
            state = self._state
            if state is None or state.size != size:
                state = await self._restore(tx, size)
            builder = TreeBuilder(size, [node.hash for node in state.builder.frontier])
            edge = dict(state.edge)
            hashes = [leaf_hash(item.leaf) for item in items]
            changed = grow_tiles(edge, builder.extend(hashes))
            await tx.execute_many(
                INSERT_ENTRY,
                [
                    _entry_row(size + i, item, h)
                    for i, (item, h) in enumerate(zip(items, hashes, strict=True))
                ],
            )
            openings = [
                (size + i, item.subject.pseudonym, item.subject.opening)
                for i, item in enumerate(items)
                if item.subject is not None
            ]
            if openings:
                await tx.execute_many(INSERT_OPENING, openings)
            await tx.execute_many(
                UPSERT_TILE, [(level, number, data) for (level, number), data in changed.items()]
            )
            new_size = builder.size
            root = builder.root()
            note = sign_checkpoint(Checkpoint(self.origin, new_size, root), self.signer)
            await tx.execute(INSERT_CHECKPOINT, new_size, root, note.decode(), now)
        self._state = _TreeState(new_size, builder, edge)
        self.batches += 1
        self.last_batch_size = len(items)
        results: list[list[Appended]] = []
        position = size
        for request in batch:
            results.append(
                [
                    Appended(position + i, hashes[position - size + i], new_size)
                    for i in range(len(request.items))
                ]
            )
            position += len(request.items)
        return results

    async def _restore(self, tx: Transaction, size: int) -> _TreeState:
        """Rebuild the frontier and the right-edge tiles of the stored tree of ``size``."""
        nodes = tree_nodes(size)
        read = await self.tiles.reader(nodes, tx)
        frontier = list(read(nodes)) if nodes else []
        edge_keys = right_edge_tiles(size)
        edge = await self.tiles.read_tiles(edge_keys, tx)
        missing = [key for key in edge_keys if key not in edge]
        if missing:
            raise LedgerError(f"the stored tree of size {size} lacks tiles {missing}")
        return _TreeState(size, TreeBuilder(size, frontier), {k: edge[k] for k in edge_keys})


def _entry_row(index: int, item: _Item, digest: bytes) -> tuple:
    entry = item.entry
    return (
        index,
        item.leaf,
        digest,
        entry.type,
        dt.datetime.strptime(entry.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC),
        entry.actor_org,
        entry.actor_system,
        entry.purpose,
        entry.basis.kind,
        entry.basis.ref,
        entry.query_id,
        entry.case_id,
        entry.bulk_job_id,
        dt.date.fromisoformat(entry.hidden_until) if entry.hidden_until else None,
    )
