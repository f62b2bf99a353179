"""The database refuses to rewrite the ledger; going around it is caught by verification.

Every refusal is checked on SQLite and PostgreSQL, and after each one the table must be
unchanged. ``tamper`` is the deliberate way around the guards (drop the triggers, edit,
recreate them exactly as migration 0002 does); the other ledger tests use it too.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from ledger.database import LedgerDatabase
from ledger.log import TransparencyLog
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Signer
from ledger.sequencer import INSERT_ENTRY
from ledger.verify import verify_database
from tests.conftest import Database
from tests.factories import make_entry, make_subject
from tests.ledger.conftest import ORIGIN

guards = importlib.import_module("migrations.0002_ledger_append_only")

#: What a refused statement raises on either database.
REFUSED = (sqlite3.DatabaseError, asyncpg.PostgresError)

_CREATE_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) BEFORE [A-Z ]+? ON (\w+)")


def guard_statements(kind: str, table: str) -> list[tuple[str, str]]:
    """(trigger name, exact CREATE TRIGGER statement) of migration 0002 for ``table``."""
    statements = guards.SQLITE if kind == "sqlite" else guards.POSTGRES
    found = []
    for statement in statements:
        match = _CREATE_TRIGGER.match(statement)
        if match and match[2] == table:
            found.append((match[1], statement))
    assert found, f"migration 0002 guards {table}"
    return found


async def tamper(db: LedgerDatabase, table: str, sql: str, *args: Any) -> None:
    """Run ``sql`` against ``table`` with its guards dropped, then recreate them exactly.

    All in one transaction, so nobody ever sees the table unguarded.
    """
    triggers = guard_statements(db.kind, table)
    async with db.write() as tx:
        for name, _ in triggers:
            drop = (
                f"DROP TRIGGER {name}" if db.kind == "sqlite" else f"DROP TRIGGER {name} ON {table}"
            )
            await tx.execute(drop)
        await tx.execute(sql, *args)
        for _, statement in triggers:
            await tx.execute(statement)


async def trigger_definitions(db: LedgerDatabase) -> list[tuple[str, str]]:
    """Every trigger's name and definition as the database reports it."""
    if db.kind == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    else:
        sql = (
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY tgname"
        )
    return [(row[0], row[1]) for row in await db.fetch(sql)]


async def table_rows(db: LedgerDatabase, table: str) -> list[tuple[Any, ...]]:
    order = {"ledger_tile": "level, number", "ledger_checkpoint": "size"}.get(table, "idx")
    rows = await db.fetch(f"SELECT * FROM {table} ORDER BY {order}")  # noqa: S608
    return [tuple(row) for row in rows]


def flip(data: bytes, at: int = 0) -> bytes:
    """``data`` with one bit of byte ``at`` changed."""
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def entry_row(index: int) -> Sequence[Any]:
    """A complete ledger_entry row for ``index`` (valid columns, any leaf)."""
    leaf = b'{"v":1}'
    return (
        index,
        leaf,
        leaf_hash(leaf),
        "access.permitted",
        dt.datetime.now(dt.UTC),
        "MTO",
        "driver-licensing",
        "licence-renewal",
        "authority",
        "HTA-205",
        None,
        None,
        None,
        None,
    )


async def refused(db: LedgerDatabase, table: str, sql: str, *args: Any) -> None:
    """Assert the database refuses ``sql`` and ``table`` is exactly as before."""
    before = await table_rows(db, table)
    with pytest.raises(REFUSED):
        async with db.write() as tx:
            await tx.execute(sql, *args)
    assert await table_rows(db, table) == before


@pytest.fixture
async def filled(ledger_log: TransparencyLog) -> TransparencyLog:
    """A log of 300 entries in three batches (tiles 0/0 full, 0/1 and 1/0 partial)."""
    subject = make_subject("e" * 64)
    for count in (10, 250, 40):
        await ledger_log.append_all([(make_entry(subject), subject) for _ in range(count)])
    return ledger_log


async def test_entries_cannot_be_updated_or_deleted(filled: TransparencyLog) -> None:
    db = filled.db
    await refused(db, "ledger_entry", "UPDATE ledger_entry SET leaf = ? WHERE idx = 5", b"x")
    await refused(db, "ledger_entry", "UPDATE ledger_entry SET purpose = 'other'")
    await refused(db, "ledger_entry", "DELETE FROM ledger_entry WHERE idx = 299")
    await refused(db, "ledger_entry", "DELETE FROM ledger_entry")


async def test_checkpoints_cannot_be_updated_or_deleted(filled: TransparencyLog) -> None:
    db = filled.db
    await refused(
        db, "ledger_checkpoint", "UPDATE ledger_checkpoint SET root_hash = ? WHERE size = 10", b"0"
    )
    await refused(db, "ledger_checkpoint", "UPDATE ledger_checkpoint SET note = 'forged'")
    await refused(db, "ledger_checkpoint", "DELETE FROM ledger_checkpoint WHERE size = 300")
    await refused(db, "ledger_checkpoint", "DELETE FROM ledger_checkpoint")


async def test_an_existing_index_cannot_be_replaced(filled: TransparencyLog) -> None:
    db = filled.db
    if db.kind == "sqlite":
        replace = INSERT_ENTRY.replace("INSERT INTO", "INSERT OR REPLACE INTO")
    else:
        replace = INSERT_ENTRY + " ON CONFLICT (idx) DO UPDATE SET leaf = excluded.leaf"
    await refused(db, "ledger_entry", replace, *entry_row(0))
    await refused(db, "ledger_entry", replace, *entry_row(299))


async def test_only_the_next_index_can_be_inserted(filled: TransparencyLog) -> None:
    db = filled.db
    await refused(db, "ledger_entry", INSERT_ENTRY, *entry_row(301))
    await refused(db, "ledger_entry", INSERT_ENTRY, *entry_row(1_000_000))
    await refused(db, "ledger_entry", INSERT_ENTRY, *entry_row(-1))


async def test_truncate_is_refused(filled: TransparencyLog, database: Database) -> None:
    if database.kind != "postgres":
        pytest.skip("SQLite has no TRUNCATE; DELETE without WHERE is refused above")
    for table in ("ledger_entry", "ledger_checkpoint", "ledger_tile", "ledger_opening"):
        await refused(filled.db, table, f"TRUNCATE {table}")


async def test_tiles_may_only_grow(filled: TransparencyLog) -> None:
    db = filled.db
    rows = await db.fetch("SELECT hashes FROM ledger_tile WHERE level = 0 AND number = 1")
    partial = bytes(rows[0][0])  # 44 hashes
    update = "UPDATE ledger_tile SET hashes = ? WHERE level = 0 AND number = 1"
    await refused(db, "ledger_tile", update, flip(partial, 40))  # same length, changed
    await refused(db, "ledger_tile", update, partial[:-32])  # shorter
    await refused(db, "ledger_tile", update, flip(partial, 0) + b"\x00" * 32)  # not a prefix
    await refused(db, "ledger_tile", "UPDATE ledger_tile SET number = 7 WHERE level = 0")
    await refused(db, "ledger_tile", "DELETE FROM ledger_tile WHERE level = 0 AND number = 0")
    async with db.write() as tx:  # keeping the old hashes as a prefix is allowed
        await tx.execute(update, partial + b"\x00" * 32)
    grown = await db.fetch("SELECT hashes FROM ledger_tile WHERE level = 0 AND number = 1")
    assert bytes(grown[0][0]) == partial + b"\x00" * 32


async def test_openings_can_be_shredded_and_every_proof_still_holds(
    filled: TransparencyLog, signer: Signer
) -> None:
    db = filled.db
    await refused(db, "ledger_opening", "UPDATE ledger_opening SET opening = ?", b"new")
    async with db.write() as tx:
        await tx.execute("DELETE FROM ledger_opening WHERE idx < 150")
    assert len(await db.fetch("SELECT idx FROM ledger_opening")) == 150
    latest = await filled.latest_checkpoint()
    assert latest is not None
    for index in (0, 149, 150, 299):
        _, stored_hash = await filled.entry(index)
        proof = await filled.inclusion_proof(index, latest.size)
        verify_inclusion(stored_hash, index, latest.size, proof, latest.root_hash)
    report = await verify_database(db, signer.verifier(), ORIGIN)
    assert report.ok, report.first_failure
    assert report.entries == 300


async def test_going_around_the_guards_is_caught_and_they_come_back_exactly(
    filled: TransparencyLog, signer: Signer
) -> None:
    db = filled.db
    before = await trigger_definitions(db)
    assert len(before) >= len(guard_statements(db.kind, "ledger_entry"))
    leaf, _ = await filled.entry(123)
    await tamper(db, "ledger_entry", "UPDATE ledger_entry SET leaf = ? WHERE idx = 123", flip(leaf))
    assert await trigger_definitions(db) == before
    await refused(db, "ledger_entry", "DELETE FROM ledger_entry WHERE idx = 123")

    report = await verify_database(db, signer.verifier(), ORIGIN)
    assert not report.ok
    assert report.failure_kind == "entry"
    assert report.failure_index == 123
    assert report.first_failure == "entry 123: stored leaf hash does not match its bytes"
    assert report.entries == 123


async def test_a_batch_of_entries_must_continue_the_log(filled: TransparencyLog) -> None:
    """The sequencer's batch path (on PostgreSQL checked once per statement, migration
    0005) refuses what the row-by-row check refuses."""
    db = filled.db
    for indices in ([300, 302], [301, 302], [299, 300], [0, 1], [-1, 0]):
        before = await table_rows(db, "ledger_entry")
        with pytest.raises(REFUSED):
            rows = [entry_row(i) for i in indices]
            await db.write_if("SELECT 1", (), (1,), [(INSERT_ENTRY, rows)])
        assert await table_rows(db, "ledger_entry") == before
    assert await db.write_if(
        "SELECT 1", (), (1,), [(INSERT_ENTRY, [entry_row(i) for i in (300, 301, 302)])]
    )
    assert len(await table_rows(db, "ledger_entry")) == 303
