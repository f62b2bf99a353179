"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

PostgreSQL comes from ONCEONLY_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/test). Each test run creates its own template
database (migrated once) and each test gets a copy, so runs and tests cannot collide.
With CI=true an unreachable PostgreSQL fails the run; elsewhere its tests skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.db import close_database, open_database
from app.main import create_app
from app.schema import apply_migrations
from app.services import Services, open_services
from app.settings import Settings
from tests.support import (
    PostgresServer,
    make_settings,
    postgres_url,
    reachable,
    run_sync,
    with_database,
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = postgres_url()
    problem = reachable(url)
    if problem:
        message = (
            f"PostgreSQL at {url} is not reachable ({problem}). Start PostgreSQL or set "
            "ONCEONLY_TEST_POSTGRES_URL to a server where this user may create databases."
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = PostgresServer(url)
    yield server

    async def cleanup() -> None:
        for name in server.created:
            await server.drop(name)

    run_sync(cleanup())


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    async def build() -> str:
        name = await postgres_server.create()
        await apply_migrations(make_settings(with_database(postgres_server.url, name)))
        return name

    return run_sync(build())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "onceonly.sqlite3"
    run_sync(apply_migrations(make_settings(f"sqlite://{path}")))
    return path


@dataclass
class Database:
    kind: str
    url: str


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh migrated database of each kind (the test runs once per kind)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "onceonly.sqlite3"
        shutil.copyfile(template, path)
        yield Database("sqlite", f"sqlite://{path}")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template_name: str = request.getfixturevalue("postgres_template")
    name = run_sync(server.create(template=template_name))
    yield Database("postgres", with_database(server.url, name))
    run_sync(server.drop(name))


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return make_settings(database.url, var_dir=tmp_path / "var")


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Settings]:
    """The database open for the ORM during the test."""
    await open_database(settings)
    try:
        yield settings
    finally:
        await close_database()


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The database and the ledger open, as the running application has them."""
    opened = await open_services(settings)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the application in-process."""
    app = create_app(services.settings, manage_services=False)
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=services.settings.base_url) as c:
        yield c


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty PostgreSQL database of its own (not migrated)."""
    name = run_sync(postgres_server.create())
    yield with_database(postgres_server.url, name)
    run_sync(postgres_server.drop(name))
