"""Helpers for tests: databases on the test PostgreSQL server, settings, running
coroutines from sync fixtures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.settings import Settings

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/test"
T = TypeVar("T")
RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion in a thread of its own.

    Sync fixtures use this so they never touch the event loop pytest-asyncio runs
    the tests in.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def postgres_url() -> str:
    return os.environ.get("ONCEONLY_TEST_POSTGRES_URL", DEFAULT_PG)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


class PostgresServer:
    """Creates and drops this run's databases on the test PostgreSQL server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template: str | None = None
        self.created: list[str] = []

    async def execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self, template: str | None = None) -> str:
        name = f"onceonly_t{RUN_ID}_{next(_counter)}"
        tpl = f" TEMPLATE {template}" if template else ""
        await self.execute(f'CREATE DATABASE "{name}"{tpl}')
        self.created.append(name)
        return name

    async def drop(self, name: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reachable(url: str) -> str | None:
    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        run_sync(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def make_settings(database_url: str, var_dir: Path | None = None, **overrides: str) -> Settings:
    env = {"ONCEONLY_DATABASE_URL": database_url, "ONCEONLY_DEMO": "true"}
    if var_dir is not None:
        env["ONCEONLY_VAR_DIR"] = str(var_dir)
    env.update(overrides)
    return Settings.from_env(env)
