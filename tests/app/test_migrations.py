"""Migrations apply cleanly to an empty database of each kind, and a second run is a no-op."""

from pathlib import Path

import pytest
from tortoise.connection import get_connection

from app.db import close_database, open_database
from app.schema import apply_migrations, migration_names, pending_migrations
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
