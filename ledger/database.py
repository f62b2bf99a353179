"""Raw database access for the ledger, on SQLite (aiosqlite) or PostgreSQL (asyncpg).

The ledger writes in batches with hand-written SQL rather than through the ORM: one
``executemany`` per table per batch is what lets group commit keep up with load. SQL is
written once with ``?`` placeholders and translated for PostgreSQL.

Writes are serialised across processes by the database itself: SQLite's
``BEGIN IMMEDIATE`` takes the write lock; PostgreSQL takes a transaction-scoped advisory
lock. Whoever holds it is the one sequencer at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiosqlite
import asyncpg

from ledger.errors import LedgerError

#: The advisory lock key that makes one PostgreSQL transaction the sequencer.
SEQUENCER_LOCK_KEY = 0x6F6E63656F6E6C79  # "onceonly"

Row = Sequence[Any]


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be reached or refused the operation; retry later."""


class Transaction(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class LedgerDatabase(Protocol):
    """What the ledger needs of a database."""

    kind: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Run a read query outside any write transaction."""
        ...

    def write(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A transaction holding the ledger's write lock; commits on normal exit."""
        ...


def open_ledger_database(url: str) -> LedgerDatabase:
    """Return the ledger database for a ``sqlite://`` or ``postgres(ql)://`` URL.

    Raises LedgerError for any other scheme. Call ``connect()`` before use.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteLedgerDatabase(url)
    if scheme in ("postgres", "postgresql"):
        return PostgresLedgerDatabase(url)
    raise LedgerError(f"unsupported database URL scheme {scheme!r}")


def sqlite_value(value: Any) -> Any:
    """Adapt a Python value the way Tortoise stores it in SQLite."""
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class _SqliteTransaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._conn.execute(sql, [sqlite_value(a) for a in args]) as cursor:
            return list(await cursor.fetchall())

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, [sqlite_value(a) for a in args])

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [[sqlite_value(v) for v in row] for row in rows])


class SqliteLedgerDatabase:
    """One writer connection and one reader connection to the SQLite file.

    WAL lets the reader run beside the writer; ``synchronous=FULL`` makes every commit
    durable before the ledger answers.
    """

    kind = "sqlite"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.netloc + parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.busy_timeout_ms = int(query.get("busy_timeout", "10000"))
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={self.busy_timeout_ms}",
            "synchronous=FULL",
            "foreign_keys=ON",
        ):
            await conn.execute(f"PRAGMA {pragma}")
        return conn

    async def connect(self) -> None:
        try:
            self._writer = await self._open()
            self._reader = await self._open()
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise LedgerUnavailable(f"cannot open the ledger database: {exc}") from exc

    async def close(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.close()
        self._writer = self._reader = None

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        if self._reader is None:
            raise LedgerUnavailable("the ledger database is not connected")
        try:
            return await _SqliteTransaction(self._reader).fetch(sql, *args)
        except sqlite3.OperationalError as exc:
            raise LedgerUnavailable(f"ledger database error: {exc}") from exc

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        if self._writer is None:
            raise LedgerUnavailable("the ledger database is not connected")
        conn = self._writer
        async with self._write_lock:
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise LedgerUnavailable(f"cannot lock the ledger: {exc}") from exc
            try:
                yield _SqliteTransaction(conn)
            except BaseException:
                await conn.rollback()
                raise
            try:
                await conn.commit()
            except sqlite3.Error as exc:
                await conn.rollback()
                raise LedgerUnavailable(f"the ledger could not commit: {exc}") from exc


_PLACEHOLDER = re.compile(r"\?")


def postgres_sql(sql: str) -> str:
    """Translate ``?`` placeholders to asyncpg's ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class _PostgresTransaction:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(postgres_sql(sql), *args))

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(postgres_sql(sql), *args)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(postgres_sql(sql), rows)


_PG_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)


class PostgresLedgerDatabase:
    """A small asyncpg pool; ``?schema=NAME`` in the URL sets the search path."""

    kind = "postgres"

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.schema = query.get("schema")
        self.dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.max_size,
                server_settings=settings,
                timeout=10,
                command_timeout=30,
            )
        except _PG_CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(f"cannot connect to the ledger database: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise LedgerUnavailable("the ledger database is not connected")
        return self._pool

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            async with self._require_pool().acquire(timeout=10) as conn:
                return list(await conn.fetch(postgres_sql(sql), *args))
        except _PG_CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(f"ledger database unavailable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        try:
            async with self._require_pool().acquire(timeout=10) as conn:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY)
                    yield _PostgresTransaction(conn)
        except _PG_CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(f"ledger database unavailable: {exc}") from exc
