"""The transparency log as a service: append, checkpoints, tiles, proofs, receipts.

``TransparencyLog`` ties the database, the tile store and the sequencer together. It
answers only for what a signed checkpoint covers; the HTTP layer in ``app/`` and the
verifier call into it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.database import LedgerDatabase, open_ledger_database
from ledger.entry import Entry
from ledger.errors import LedgerError, ProofError, TileError
from ledger.merkle import (
    EMPTY_ROOT,
    NodeId,
    ProofPlan,
    consistency_proof_nodes,
    inclusion_proof_nodes,
    read_plan,
)
from ledger.note import Signer, Verifier
from ledger.proof import LogProof, format_proof
from ledger.sequencer import Appended, Sequencer, Subject
from ledger.tiles import TILE_WIDTH, encode_bundle
from ledger.tilestore import FULL_TILE_BYTES, HASH_SIZE, TileStore

#: No log reaches 2**63 entries (the databases' integer limit), so no tile number
#: reaches this; larger ones are not looked up (they would overflow the query).
_NO_SUCH_TILE = 2**63 // TILE_WIDTH


class NotFound(LedgerError):
    """The asked-for entry, tile, checkpoint or size is not (yet) in the log."""


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root_hash: bytes
    note: bytes


class TransparencyLog:
    """One append-only log in one database. ``open()`` it, ``close()`` it.

    After a key rotation the log has one current ``signer``, may have ``cosigners``
    (the previous key, which still signs every new checkpoint during a transition) and
    ``retired`` keys whose old checkpoints still verify; the origin never changes.
    """

    def __init__(
        self,
        db: LedgerDatabase,
        signer: Signer,
        origin: str,
        *,
        cosigners: Sequence[Signer] = (),
        retired: Sequence[Verifier] = (),
    ) -> None:
        self.db = db
        self.signer = signer
        self.origin = origin
        current = (signer.name, signer.key_id)
        self.cosigners = tuple(c for c in cosigners if (c.name, c.key_id) != current)
        self.retired = tuple(retired)
        self.tiles = TileStore(db)
        self.sequencer = Sequencer(db, self.tiles, self._signers, origin)
        # Checkpoints are never deleted, so a size once seen stays available.
        self._largest_size = 0

    @classmethod
    async def open(
        cls,
        database_url: str,
        signer: Signer,
        origin: str,
        *,
        cosigners: Sequence[Signer] = (),
        retired: Sequence[Verifier] = (),
    ) -> TransparencyLog:
        """Connect to the database and start the sequencer.

        Raises LedgerUnavailable when the database cannot be reached.
        """
        db = open_ledger_database(database_url)
        log = cls(db, signer, origin, cosigners=cosigners, retired=retired)
        await log.db.connect()
        try:
            await log._sign_empty_tree()
        except BaseException:
            await log.db.close()
            raise
        await log.sequencer.start()
        return log

    async def _sign_empty_tree(self) -> None:
        # So that /ledger/checkpoint answers from the start: a signed size-0 checkpoint,
        # written once (a second process finds it there).
        if await self.latest_checkpoint() is not None:
            return
        note = sign_checkpoint(Checkpoint(self.origin, 0, EMPTY_ROOT), self._signers)
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO ledger_checkpoint (size, root_hash, note, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING",
                0,
                EMPTY_ROOT,
                note.decode(),
                datetime.now(UTC),
            )

    async def close(self) -> None:
        """Commit what is queued, stop appending and close the connections."""
        await self.sequencer.stop()
        await self.db.close()

    @property
    def _signers(self) -> tuple[Signer, ...]:
        return (self.signer, *self.cosigners)

    @property
    def verifier(self) -> Verifier:
        """The current key's verifier (it signs every new checkpoint)."""
        return self.signer.verifier()

    @property
    def vkey(self) -> str:
        """The log's current verifier key: ``name+hex(keyid)+base64(0x01||key)``."""
        return self.signer.verifier().vkey

    @property
    def verifiers(self) -> tuple[Verifier, ...]:
        """Every key whose checkpoints are the log's, newest first: the current key, the
        co-signing previous key, then the retired ones (each once)."""
        unique: dict[tuple[str, int], Verifier] = {}
        for key in [s.verifier() for s in self._signers] + list(self.retired):
            unique.setdefault((key.name, key.key_id), key)
        return tuple(unique.values())

    async def append(self, entry: Entry, subject: Subject | None = None) -> Appended:
        """Append one entry durably (see Sequencer.append)."""
        appended = await self.sequencer.append(entry, subject)
        self._largest_size = max(self._largest_size, appended.tree_size)
        return appended

    async def append_all(self, entries: Sequence[tuple[Entry, Subject | None]]) -> list[Appended]:
        """Append entries in one transaction (see Sequencer.append_all)."""
        appended = await self.sequencer.append_all(entries)
        if appended:
            self._largest_size = max(self._largest_size, appended[-1].tree_size)
        return appended

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest stored checkpoint, or None while the log is empty."""
        rows = await self.db.fetch(
            "SELECT size, root_hash, note FROM ledger_checkpoint ORDER BY size DESC LIMIT 1"
        )
        if not rows:
            return None
        latest = _checkpoint(rows[0])
        self._largest_size = max(self._largest_size, latest.size)
        return latest

    async def checkpoint(self, size: int) -> StoredCheckpoint:
        """The stored checkpoint of exactly ``size``. Raises NotFound."""
        rows = await self.db.fetch(
            "SELECT size, root_hash, note FROM ledger_checkpoint WHERE size = ?", size
        )
        if not rows:
            raise NotFound(f"no checkpoint of size {size}")
        return _checkpoint(rows[0])

    async def size(self) -> int:
        """The size of the newest checkpoint (0 for an empty log)."""
        latest = await self.latest_checkpoint()
        return latest.size if latest else 0

    async def entry(self, index: int) -> tuple[bytes, bytes]:
        """The exact leaf bytes and leaf hash of entry ``index``. Raises NotFound."""
        rows = await self.db.fetch("SELECT leaf, leaf_hash FROM ledger_entry WHERE idx = ?", index)
        if not rows:
            raise NotFound(f"no entry {index}")
        return bytes(rows[0][0]), bytes(rows[0][1])

    async def tile(self, level: int, number: int, width: int) -> bytes:
        """The hash tile ``level/number`` at ``width`` hashes. Raises NotFound."""
        if number >= _NO_SUCH_TILE:
            raise NotFound(f"tile {level}/{number} is beyond any log")
        data = (await self.tiles.read_tiles([(level, number)])).get((level, number))
        if data is None or len(data) < width * HASH_SIZE:
            raise NotFound(f"tile {level}/{number} has no {width} hashes yet")
        if width == TILE_WIDTH and len(data) != FULL_TILE_BYTES:
            raise NotFound(f"tile {level}/{number} is not full yet")
        return data[: width * HASH_SIZE]

    async def entry_bundle(self, number: int, width: int) -> bytes:
        """Entry bundle ``number`` with ``width`` entries (tlog-tiles). Raises NotFound."""
        if number >= _NO_SUCH_TILE:
            raise NotFound(f"entry bundle {number} is beyond any log")
        start = number * TILE_WIDTH
        rows = await self.db.fetch(
            "SELECT leaf FROM ledger_entry WHERE idx >= ? AND idx < ? ORDER BY idx",
            start,
            start + width,
        )
        if len(rows) != width:
            raise NotFound(f"entry bundle {number} has no {width} entries yet")
        try:
            return encode_bundle([bytes(row[0]) for row in rows])
        except TileError as exc:
            raise LedgerError(f"entry bundle {number}: {exc}") from exc

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``.

        Raises ProofError for an index outside the tree and NotFound for a size beyond
        the newest checkpoint.
        """
        return await self._prove(size, lambda: inclusion_proof_nodes(index, size))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof from ``old_size`` to ``new_size``.

        Raises ProofError unless ``0 <= old_size <= new_size``, NotFound for a size
        beyond the newest checkpoint.
        """
        if not 0 <= old_size <= new_size:
            raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
        return await self._prove(new_size, lambda: consistency_proof_nodes(old_size, new_size))

    async def _prove(self, size: int, plan_for: Callable[[], ProofPlan]) -> list[bytes]:
        """Fold the proof ``plan_for()`` plans in the tree of ``size``, once ``size`` is
        known to be checkpointed (NotFound before ProofError, as the callers promise)."""
        if size > self._largest_size:
            try:
                plan = plan_for()
            except ProofError:
                await self._require_size(size)
                raise
            # Ask for the newest size and the tiles together: one wait, not two.
            _, read = await asyncio.gather(
                self._require_size(size), self.tiles.reader(_plan_nodes(plan))
            )
        else:
            plan = plan_for()
            read = await self.tiles.reader(_plan_nodes(plan))
        return read_plan(plan, read)

    async def receipt(self, index: int, extra: bytes = b"") -> bytes:
        """A C2SP tlog-proof that entry ``index`` is in the newest checkpoint.

        ``extra`` is carried on the proof's extra line. Raises NotFound.
        """
        latest = await self.latest_checkpoint()
        if latest is None or index >= latest.size or index < 0:
            raise NotFound(f"entry {index} is not covered by a checkpoint yet")
        plan = inclusion_proof_nodes(index, latest.size)
        hashes = read_plan(plan, await self.tiles.reader(_plan_nodes(plan)))
        return format_proof(LogProof(index, tuple(hashes), latest.note, extra))

    async def _require_size(self, size: int) -> None:
        if size <= self._largest_size:
            return
        latest = await self.size()
        if size > latest:
            raise NotFound(f"the log has {latest} entries, not {size}")


def _plan_nodes(plan: ProofPlan) -> list[NodeId]:
    return [node for group in plan for node in group]


def _checkpoint(row: Sequence) -> StoredCheckpoint:
    return StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]).encode())
