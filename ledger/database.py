"""Raw database access for the ledger, on SQLite or PostgreSQL (asyncpg).

The ledger writes in batches with hand-written SQL rather than through the ORM: one
``executemany`` per table per batch is what lets group commit keep up with load. SQL is
written once with ``?`` placeholders and translated for PostgreSQL.

Writes are serialised across processes by the database itself: SQLite's
``BEGIN IMMEDIATE`` takes the write lock; PostgreSQL takes a transaction-scoped advisory
lock. Whoever holds it is the one sequencer at that moment.

On SQLite, reads go through aiosqlite; writes go through one connection on a thread of
its own (``SqliteWriter``) that runs a whole ``write_if`` transaction per hand-over, so
that the sequencer's batches cost one thread crossing each and the next batch's
transaction is already under way while the event loop answers the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiosqlite
import asyncpg

from ledger.errors import LedgerError
from ledger.sqlite_writer import SqliteWriter
from ledger.turns import WriterTurns

#: The advisory lock key that makes one PostgreSQL transaction the sequencer.
SEQUENCER_LOCK_KEY = 0x6F6E63656F6E6C79  # "onceonly"

Row = Sequence[Any]

#: One statement and the rows to run it with, once per row.
Write = tuple[str, Sequence[Sequence[Any]]]


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be reached or refused the operation; retry later."""


class Transaction(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def execute_batch(self, writes: Sequence[Write]) -> None:
        """Run each statement once per row of its rows, in order.

        Raises the first error; the transaction is then rolled back as a whole.
        """
        ...


class Restage(Protocol):
    """What a conditional write does when its check finds the tree moved (see write_if):
    it stages the batch again on the stored tree, within the same transaction."""

    def tiles_query(self, size: int) -> tuple[str, Sequence[Any]] | None:
        """The read of the stored tiles the batch needs to carry on from a tree of
        ``size`` (None: none are needed)."""
        ...

    def build(self, size: int, rows: Sequence[Row]) -> tuple[Any, Sequence[Write]]:
        """From the tiles read, the writes to run instead and what to hand back."""
        ...


class Restaged:
    """write_if's answer when it wrote the restaged batch: ``value`` is what build gave."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


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

    def write_if(
        self,
        check: str,
        args: Sequence[Any],
        expected: Sequence[Any],
        writes: Sequence[Write],
        restage: Restage | None = None,
    ) -> Awaitable[bool | Restaged]:
        """In one transaction holding the write lock: when the one-row query ``check``
        answers ``expected``, run ``writes`` (see Transaction.execute_batch) and commit.

        The awaitable answers whether it committed: False, having written nothing, when
        the answer differs. With ``restage``, a differing answer (whose first column is
        the stored tree's size) is not the end: restage reads the tiles it asks for and
        builds other writes, which are run and committed in the same transaction, and
        the awaitable answers Restaged with what build handed back.

        Transactions asked for one after another run in that order, each after the
        ones before it have finished; where it can (SQLite) the call hands
        the transaction to the database at once, before anything is awaited. Raises
        LedgerUnavailable (nothing written) when the lock or the commit fails, and the
        database's own error when a statement is refused.
        """
        ...

    def expect_writes(self, coming: bool) -> None:
        """A hint from the sequencer: whether another write_if is about to be asked for
        without waiting for the ones before it. A database that hands results back late
        to overlap them with the next transaction (SQLite) holds one back only while it
        is told more is coming."""
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


def sqlite_time(text: str) -> str:
    """The text SQLite holds for an entry time (ledger.entry.format_time's form,
    ``YYYY-MM-DDTHH:MM:SS.mmmZ``): exactly what sqlite_value gives for the moment it
    names, made without parsing and formatting a datetime."""
    fraction = "" if text[20:23] == "000" else f".{text[20:23]}000"
    return f"{text[:10]} {text[11:19]}{fraction}+00:00"


_DATE_TYPES = (dt.datetime, dt.date)


def sqlite_rows(rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """``rows`` with every value adapted by sqlite_value, column by column.

    Only columns holding a date or time are touched, so rows of plain values pass
    through without a Python call per value. Raises ValueError for rows of unequal
    length.
    """
    if not rows:
        return rows
    columns = list(zip(*rows, strict=True))
    adapted = False
    for position, column in enumerate(columns):
        if any(issubclass(kind, _DATE_TYPES) for kind in set(map(type, column))):
            columns[position] = tuple(map(sqlite_value, column))
            adapted = True
    return list(zip(*columns, strict=True)) if adapted else rows


def _sqlite_args(args: Sequence[Any]) -> list[Any]:
    return [sqlite_value(arg) for arg in args]


def _begin(conn: sqlite3.Connection, turns: WriterTurns) -> None:
    """Take the writers' turn (ledger.turns), then BEGIN IMMEDIATE (SQLite's lock)."""
    turns.take()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        turns.give_back()
        raise LedgerUnavailable(f"cannot lock the ledger: {exc}") from exc
    except BaseException:
        turns.give_back()
        raise


def _commit(conn: sqlite3.Connection, turns: WriterTurns) -> None:
    try:
        conn.commit()
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise LedgerUnavailable(f"the ledger could not commit: {exc}") from exc
    finally:
        turns.give_back()


def _rollback(conn: sqlite3.Connection, turns: WriterTurns) -> None:
    try:
        conn.rollback()
    finally:
        turns.give_back()


def _execute_batch(conn: sqlite3.Connection, writes: Sequence[Write]) -> None:
    _run_statements(conn, _statements(writes))


#: ``INSERT INTO t (columns) VALUES (?, ...)``, optionally followed by an ON CONFLICT
#: clause: groups are the text up to VALUES, the table, the columns, the placeholders
#: and the rest.
_INSERT_VALUES = re.compile(r"(INSERT INTO (\w+) \(([\w, ]+)\) VALUES )(\([?, ]+\))(.*)", re.DOTALL)
_MAX_ROWS_PER_INSERT = 256
#: Prepared statements the writer's connection keeps: a multi-row INSERT of each row
#: count for each ledger table, and the rest.
WRITER_STATEMENT_CACHE = 2048

#: One statement to run: its text, and either its parameters (``many`` false) or a
#: sequence of parameter rows to run it with once each (``many`` true).
_Statement = tuple[str, Sequence[Any], bool]


def _statements(writes: Sequence[Write]) -> list[_Statement]:
    """The statements that write ``writes``, values adapted (sqlite_value); an INSERT
    of many rows becomes one multi-row INSERT per 256 rows.

    The same rows go in, in the same order, through the same triggers; but SQLite runs
    each multi-row statement in one step, so there is one step per table per batch
    rather than one per row. Each step hands the interpreter lock over and must get it
    back from the event loop's thread while the write lock is held, so fewer is better:
    the writer's connection keeps a statement of each row count prepared
    (WRITER_STATEMENT_CACHE). Built before the writer's thread takes them, where it can
    be, so that the thread, which holds the write lock, only runs them.
    """
    statements: list[_Statement] = []
    for sql, raw_rows in writes:
        rows = sqlite_rows(raw_rows)
        match = _INSERT_VALUES.fullmatch(sql) if len(rows) > 1 else None
        if match is None:
            statements.append((sql, rows, True))
            continue
        for position in range(0, len(rows), _MAX_ROWS_PER_INSERT):
            chunk = rows[position : position + _MAX_ROWS_PER_INSERT]
            values = list(itertools.chain.from_iterable(chunk))
            statements.append((_multi_row_sql(match, len(chunk)), values, False))
    return statements


def _run_statements(conn: sqlite3.Connection, statements: Sequence[_Statement]) -> None:
    for sql, values, many in statements:
        if many:
            conn.executemany(sql, values)
        else:
            conn.execute(sql, values)


@functools.lru_cache(maxsize=WRITER_STATEMENT_CACHE)
def _multi_row_sql_cached(head: str, values: str, tail: str, count: int) -> str:
    return head + ",".join([values] * count) + tail


def _multi_row_sql(match: re.Match[str], count: int) -> str:
    return _multi_row_sql_cached(match[1], match[4], match[5], count)


def _conditional_transaction(
    check: str,
    args: Sequence[Any],
    expected: Sequence[Any],
    writes: Sequence[Write],
    restage: Restage | None,
    turns: WriterTurns,
) -> Callable[[sqlite3.Connection], bool | Restaged]:
    statements = _statements(writes)  # built here, on the event loop's thread

    def run(conn: sqlite3.Connection) -> bool | Restaged:
        _begin(conn, turns)
        answer: bool | Restaged = True
        try:
            row = conn.execute(check, _sqlite_args(args)).fetchone()
            if row is None or tuple(row) != tuple(expected):
                if restage is None or row is None:
                    _rollback(conn, turns)
                    return False
                # Staged again here, on this thread, under the lock: no crossing back
                # to the event loop while the other writers wait.
                size = int(row[0])
                query = restage.tiles_query(size)
                rows = conn.execute(query[0], _sqlite_args(query[1])).fetchall() if query else []
                value, writes_now = restage.build(size, rows)
                answer = Restaged(value)
                _execute_batch(conn, writes_now)
            else:
                _run_statements(conn, statements)
        except BaseException:
            _rollback(conn, turns)
            raise
        return answer  # the writer commits it (_commit), which ends the turn

    return run


class _SqliteTransaction:
    def __init__(self, writer: SqliteWriter) -> None:
        self._writer = writer

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        values = _sqlite_args(args)
        return await self._writer.call(lambda conn: conn.execute(sql, values).fetchall())

    async def execute(self, sql: str, *args: Any) -> None:
        values = _sqlite_args(args)
        await self._writer.call(lambda conn: _execute_batch(conn, [(sql, [values])]))

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._writer.call(lambda conn: _execute_batch(conn, [(sql, rows)]))

    async def execute_batch(self, writes: Sequence[Write]) -> None:
        await self._writer.call(lambda conn: _execute_batch(conn, writes))


class SqliteLedgerDatabase:
    """A writer connection (on its own thread) and a reader connection to the SQLite file.

    WAL lets the reader run beside the writer; ``synchronous=FULL`` makes every commit
    durable before the ledger answers.
    """

    kind = "sqlite"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.netloc + parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.busy_timeout_ms = int(query.get("busy_timeout", "10000"))
        self._writer: SqliteWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._turns: WriterTurns | None = None

    @property
    def _pragmas(self) -> list[str]:
        return [
            "journal_mode=WAL",
            f"busy_timeout={self.busy_timeout_ms}",
            "synchronous=FULL",
            "foreign_keys=ON",
        ]

    async def connect(self) -> None:
        try:
            turns = self._turns = WriterTurns(self.path)
            writer = SqliteWriter(
                self.path,
                self._pragmas,
                lambda conn: _commit(conn, turns),
                cached_statements=WRITER_STATEMENT_CACHE,
                turns=turns,
            )
            await writer.start()
            self._writer = writer
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in self._pragmas:
                await self._reader.execute(f"PRAGMA {pragma}")
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise LedgerUnavailable(f"cannot open the ledger database: {exc}") from exc

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
        if self._reader is not None:
            await self._reader.close()
        if self._turns is not None:
            self._turns.close()
        self._writer = self._reader = None
        self._turns = None

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        if self._reader is None:
            raise LedgerUnavailable("the ledger database is not connected")
        try:
            return list(await self._reader.execute_fetchall(sql, _sqlite_args(args)))
        except sqlite3.OperationalError as exc:
            raise LedgerUnavailable(f"ledger database error: {exc}") from exc

    def _require_turns(self) -> WriterTurns:
        if self._turns is None:
            raise LedgerUnavailable("the ledger database is not connected")
        return self._turns

    def _require_writer(self) -> SqliteWriter:
        if self._writer is None:
            raise LedgerUnavailable("the ledger database is not connected")
        return self._writer

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        writer = self._require_writer()
        turns = self._require_turns()
        async with self._write_lock:
            await writer.call(lambda conn: _begin(conn, turns))
            try:
                yield _SqliteTransaction(writer)
            except BaseException:
                await writer.call(lambda conn: _rollback(conn, turns))
                raise
            await writer.call(lambda conn: _commit(conn, turns))

    def expect_writes(self, coming: bool) -> None:
        if self._writer is not None:
            self._writer.more_coming = coming

    def write_if(
        self,
        check: str,
        args: Sequence[Any],
        expected: Sequence[Any],
        writes: Sequence[Write],
        restage: Restage | None = None,
    ) -> Awaitable[bool | Restaged]:
        writer = self._require_writer()
        turns = self._require_turns()
        run = _conditional_transaction(check, args, expected, writes, restage, turns)
        if not self._write_lock.locked():  # no write() transaction is open on the writer
            return writer.transact(run)
        return asyncio.ensure_future(self._transact_after_write(writer, run))

    async def _transact_after_write(
        self, writer: SqliteWriter, run: Callable[[sqlite3.Connection], bool | Restaged]
    ) -> bool | Restaged:
        async with self._write_lock:
            committed = writer.transact(run)
        return await committed


_PLACEHOLDER = re.compile(r"\?")


def postgres_sql(sql: str) -> str:
    """Translate ``?`` placeholders to asyncpg's ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class _PostgresTransaction:
    def __init__(self, conn: asyncpg.Connection, column_types: dict[str, dict[str, str]]) -> None:
        self._conn = conn
        self._column_types = column_types

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(postgres_sql(sql), *args))

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(postgres_sql(sql), *args)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row; an INSERT of many rows as one INSERT ... SELECT from
        ``unnest`` of one array per column: one statement, so statement-level triggers
        see the rows together, and far fewer messages than a row at a time."""
        match = _INSERT_VALUES.fullmatch(sql) if len(rows) > 1 else None
        if match is None:
            await self._conn.executemany(postgres_sql(sql), rows)
            return
        table, columns, rest = match[2], match[3], match[5]
        types = await self._types(table)
        arrays = ", ".join(
            f"${number}::{types[column.strip()]}[]"
            for number, column in enumerate(columns.split(","), start=1)
        )
        # The table and columns are identifiers out of our own statement (see the pattern).
        statement = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}){rest}"  # noqa: S608
        await self._conn.execute(statement, *(list(values) for values in zip(*rows, strict=True)))

    async def execute_batch(self, writes: Sequence[Write]) -> None:
        """Run the writes in order; several INSERTs as one statement (below)."""
        statement = await self._combined(writes)
        if statement is None:
            for sql, rows in writes:
                await self.execute_many(sql, rows)
            return
        await self._conn.execute(*statement)

    async def _combined(self, writes: Sequence[Write]) -> tuple[Any, ...] | None:
        """Several INSERTs as one statement: each but the last in a WITH clause, every
        one an INSERT ... SELECT from unnest of one array per column, so a batch is one
        message to the server and one answer, not one of each per table. The INSERTs
        run together (none sees the others' rows; none needs to), and each table's
        statement-level trigger sees its rows at the end. None when a write is not
        such an INSERT, or there is only one."""
        inserts = [(sql, rows) for sql, rows in writes if rows]
        if len(inserts) < 2:
            return None
        parts: list[str] = []
        args: list[list[Any]] = []
        for sql, rows in inserts:
            match = _INSERT_VALUES.fullmatch(sql)
            if match is None:
                return None
            table, columns, rest = match[2], match[3], match[5]
            types = await self._types(table)
            arrays = ", ".join(
                f"${len(args) + number}::{types[column.strip()]}[]"
                for number, column in enumerate(columns.split(","), start=1)
            )
            args.extend(list(values) for values in zip(*rows, strict=True))
            # Identifiers out of our own statements (see the pattern), never data.
            part = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}){rest}"  # noqa: S608
            parts.append(part)
        ahead = ", ".join(f"w{number} AS ({part})" for number, part in enumerate(parts[:-1]))
        return (f"WITH {ahead} {parts[-1]}", *args)

    async def _types(self, table: str) -> dict[str, str]:
        types = self._column_types.get(table)
        if types is None:
            rows = await self._conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                table,
            )
            types = self._column_types[table] = {name: kind for name, kind in rows}
        return types


_PG_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing beyond what asyncpg always
    does (roll back an open transaction). The ledger leaves no state in a session: its
    lock and its setting are the transaction's own (pg_advisory_xact_lock,
    set_config(..., true)). The default reset (RESET ALL, UNLISTEN *, unlock every
    advisory lock) would cost a round trip to the server on every release."""


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
        self._write_if_lock = asyncio.Lock()
        self._column_types: dict[str, dict[str, str]] = {}  # by table, for execute_many

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
                reset=_nothing_to_reset,
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

    def write(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        return self._transaction(batch=False)

    @contextlib.asynccontextmanager
    async def _transaction(self, *, batch: bool) -> AsyncIterator[Transaction]:
        # ``batch`` sets onceonly.ledger_batch for the transaction: ledger entries it
        # inserts are checked for contiguity once per statement (migration 0005).
        # BEGIN, the lock and the setting go in one message (the simple query protocol
        # takes several statements when they have no parameters).
        begin = (
            f"BEGIN; SELECT pg_advisory_xact_lock({SEQUENCER_LOCK_KEY:d}); "
            f"SELECT set_config('onceonly.ledger_batch', '{'on' if batch else 'off'}', true)"
        )
        try:
            async with self._require_pool().acquire(timeout=10) as conn:
                await conn.execute(begin)
                try:
                    yield _PostgresTransaction(conn, self._column_types)
                except BaseException:
                    if not conn.is_closed():
                        with contextlib.suppress(*_PG_CONNECTION_ERRORS, asyncpg.PostgresError):
                            await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
        except _PG_CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(f"ledger database unavailable: {exc}") from exc

    def expect_writes(self, coming: bool) -> None:
        pass  # each transaction's result is handed back as soon as it commits

    async def write_if(
        self,
        check: str,
        args: Sequence[Any],
        expected: Sequence[Any],
        writes: Sequence[Write],
        restage: Restage | None = None,
    ) -> bool | Restaged:
        # One at a time, so that this process's transactions take the advisory lock in
        # the order they were made.
        async with self._write_if_lock, self._transaction(batch=True) as tx:
            rows = await tx.fetch(check, *args)
            if not rows or tuple(rows[0]) != tuple(expected):
                if restage is None or not rows:
                    return False
                size = int(rows[0][0])
                query = restage.tiles_query(size)
                tiles = await tx.fetch(query[0], *query[1]) if query else []
                value, writes_now = restage.build(size, tiles)
                await tx.execute_batch(writes_now)
                return Restaged(value)
            await tx.execute_batch(writes)
            return True
