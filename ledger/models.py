"""Tables of the ledger: entries, the openings of their person commitments, tree tiles,
and signed checkpoints.

Entries, tiles and checkpoints are append-only (the database enforces it with triggers
created by migrations); openings are the one deletable thing, so a person's link to
their entries can be crypto-shredded without touching the tree.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class LedgerEntry(Model):
    """One leaf of the log: the exact canonical bytes and a few columns copied out of
    them for searching. ``idx`` is the leaf index, contiguous from 0."""

    idx = fields.BigIntField(primary_key=True)
    leaf = fields.BinaryField()
    leaf_hash = fields.BinaryField()
    entry_type = fields.CharField(max_length=32)
    time = fields.DatetimeField()
    actor_org = fields.CharField(max_length=32)
    actor_system = fields.CharField(max_length=64)
    purpose = fields.CharField(max_length=64)
    basis_kind = fields.CharField(max_length=16)
    basis_ref = fields.CharField(max_length=64)
    query_id = fields.CharField(max_length=64, null=True)
    case_id = fields.CharField(max_length=64, null=True)
    bulk_job_id = fields.CharField(max_length=64, null=True)
    hidden_until = fields.DateField(null=True)

    class Meta:
        table = "ledger_entry"
        indexes = (
            ("actor_org", "idx"),
            ("time",),
            ("query_id",),
            ("case_id",),
            ("bulk_job_id",),
        )


class LedgerOpening(Model):
    """The secret that opens an entry's person commitment, and the person's pseudonym.

    Deleting a row (crypto-shredding) unlinks the person from the entry; the entry and
    every proof stay valid.
    """

    idx = fields.BigIntField(primary_key=True)
    pseudonym = fields.CharField(max_length=64)
    opening = fields.BinaryField()

    class Meta:
        table = "ledger_opening"


class LedgerTile(Model):
    """Stored hashes of the tree in C2SP tlog-tiles shape (height 8).

    One row per tile ``(level, number)`` (tlog-tiles' L and N); ``hashes`` is the
    concatenation of its 32-byte hashes. A partial tile grows in place as the tree
    grows, and a trigger allows an update only when the old hashes are a prefix of the
    new ones, so the partial tile of any earlier width is still a prefix of the stored
    one.
    """

    id = fields.BigIntField(primary_key=True)
    level = fields.SmallIntField()
    number = fields.BigIntField()
    hashes = fields.BinaryField()

    class Meta:
        table = "ledger_tile"
        unique_together = (("level", "number"),)


class LedgerCheckpoint(Model):
    """A signed checkpoint (C2SP signed note) of the tree at ``size``."""

    size = fields.BigIntField(primary_key=True)
    root_hash = fields.BinaryField()
    note = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ledger_checkpoint"


class LedgerCosignature(Model):
    """A witness's cosignature (C2SP tlog-cosignature) of the checkpoint of ``size``,
    kept as the exact signature line to attach to the published checkpoint."""

    id = fields.BigIntField(primary_key=True)
    size = fields.BigIntField(db_index=True)
    witness = fields.CharField(max_length=200)
    line = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ledger_cosignature"
        unique_together = (("size", "witness"),)
