"""Migrations apply cleanly to an empty database of each kind, and a second run is a no-op."""

from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as tortoise_migrate

from app.db import close_database, open_database, prepare_sqlite_path, tortoise_config
from app.schema import apply_migrations, migration_names, pending_migrations
from ledger.database import open_ledger_database
from ledger.log import TransparencyLog
from ledger.note import generate_signer
from ledger.persons import person_args, person_entries
from ledger.sequencer import Subject
from tests.factories import make_entry
from tests.support import PostgresServer, make_settings, run_sync, with_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/empty.sqlite3"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = run_sync(server.create())
    yield with_database(server.url, name)
    run_sync(server.drop(name))


async def test_apply_to_empty_database_then_no_op(empty_database_url: str, tmp_path: Path) -> None:
    settings = make_settings(empty_database_url, var_dir=tmp_path)
    assert await apply_migrations(settings) == migration_names()
    assert await apply_migrations(settings) == []

    await open_database(settings)
    try:
        assert await pending_migrations() == []
        _, rows = await get_connection("default").execute_query(
            "SELECT COUNT(*) AS n FROM ministry"
        )
        assert rows[0]["n"] == 0
    finally:
        await close_database()


async def test_pending_until_migrated(empty_database_url: str, tmp_path: Path) -> None:
    settings = make_settings(empty_database_url, var_dir=tmp_path)
    await open_database(settings)
    try:
        assert await pending_migrations() == migration_names()
    finally:
        await close_database()


async def test_person_index_migration_keeps_every_persons_entries(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Migration 0007 replaces the openings' person index by runs: the entries already
    stored become one run, and each person still finds exactly their own."""
    settings = make_settings(empty_database_url, var_dir=tmp_path)
    prepare_sqlite_path(settings.database_url)
    try:
        await tortoise_migrate(
            config=tortoise_config(settings), target="onceonly.0006_ledger_speed"
        )
    finally:
        await Tortoise.close_connections()
    people = [f"{n:064x}" for n in range(1, 4)]
    signer = generate_signer("onceonly.test/ledger")
    log = await TransparencyLog.open(settings.database_url, signer, "onceonly.test/ledger")
    try:
        items = []
        for n in range(35):
            subject = Subject.new(people[n % 3]) if n % 7 else None
            items.append((make_entry(subject), subject))
        await log.append_all(items)
    finally:
        await log.close()

    assert await apply_migrations(settings) == ["0007_person_index"]

    db = open_ledger_database(settings.database_url)
    await db.connect()
    try:
        runs = await db.fetch("SELECT first_idx, end_idx, level FROM ledger_person_run")
        assert [tuple(int(v) for v in row) for row in runs] == [(0, 35, 1)]
        for n, pseudonym in enumerate(people):
            rows = await db.fetch(person_entries(db.kind), *person_args(pseudonym))
            assert sorted(int(row[0]) for row in rows) == [
                i for i in range(35) if i % 7 and i % 3 == n
            ]
    finally:
        await db.close()
