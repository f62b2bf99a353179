"""The one read on the access check's path: the consents of a few people, in raw SQL.

The access check asks for every consent of the people it is about, once per check.
Built through the ORM's query builder that one SELECT costs more than the rest of the
decision; written once here, with the recipient's code joined in, it costs a few
microseconds to prepare.

On a SQLite file the query runs on a read-only connection of its own, on the calling
thread: in WAL mode a reader never waits for the writer, and a point lookup on the
pseudonym index is quicker than handing it to aiosqlite's thread and back. On
PostgreSQL it goes to the ledger's asyncpg pool. Inside an ORM transaction (whose own
writes only its connection sees) and in an in-memory database it goes through the
ORM's connection, still as raw SQL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient

from consent.decision import ConsentState
from ledger.database import LedgerDatabase, postgres_sql

_COLUMNS = (
    "SELECT c.id, c.pseudonym, c.status, m.code, c.sources, c.categories, c.purpose_id, "
    "c.valid_from, c.valid_until, c.one_time, c.used_at "
    "FROM consent c JOIN ministry m ON m.id = c.recipient_id "
)
#: SQLite: one placeholder per person (the check names one, a bulk job up to 1,000).
_SQLITE_SQL = _COLUMNS + "WHERE c.pseudonym IN ({})"
#: PostgreSQL: the people as one array parameter, so one statement is ever prepared.
_POSTGRES_SQL = _COLUMNS + "WHERE c.pseudonym = ANY(?::varchar[])"

#: The read-only connection of each open SQLite client (gone with the client).
_readers: weakref.WeakKeyDictionary[SqliteClient, sqlite3.Connection] = weakref.WeakKeyDictionary()
#: How long the reader waits for a lock (a WAL reader only ever waits in recovery).
_BUSY_TIMEOUT_MS = 2000


async def consent_states(
    pseudonyms: Sequence[str], ledger_db: LedgerDatabase | None = None
) -> dict[str, list[ConsentState]]:
    """Every consent of each of ``pseudonyms``, by pseudonym (people without any absent).

    ``ledger_db`` is the ledger's own connection to the same database: on PostgreSQL
    the query goes straight to its asyncpg pool, which costs a third of the ORM's path.
    Raises the database's error when it cannot be read.
    """
    if not pseudonyms:
        return {}
    people = list(dict.fromkeys(pseudonyms))
    client = connections.get("default")
    in_transaction = isinstance(client, TransactionalDBClient)
    rows: list[Sequence[Any]]
    if client.capabilities.dialect == "postgres":
        if ledger_db is not None and ledger_db.kind == "postgres" and not in_transaction:
            rows = await _coalescer(ledger_db).rows(people)
        else:
            _, found = await client.execute_query(postgres_sql(_POSTGRES_SQL), [people])
            rows = [tuple(row.values()) for row in found]
    else:
        sql = _SQLITE_SQL.format(",".join("?" * len(people)))
        if (
            isinstance(client, SqliteClient)
            and not in_transaction
            and client.filename not in ("", ":memory:")
        ):
            rows = _sqlite_reader(client).execute(sql, people).fetchall()
        else:
            _, found = await client.execute_query(sql, people)
            rows = [tuple(row) for row in found]
    out: dict[str, list[ConsentState]] = {}
    for row in rows:
        out.setdefault(row[1], []).append(_state(row))
    return out


class _Coalescer:
    """The reads asked for in one turn of the event loop, as one query at its end.

    Concurrent access checks on PostgreSQL each need one small SELECT; asked for
    together they cost one round trip to the server, not one each. Each read is still
    made after its check arrived, so it sees every consent committed before.
    """

    def __init__(self, db: LedgerDatabase) -> None:
        self.db = db
        self._asked: list[tuple[list[str], asyncio.Future[list[Sequence[Any]]]]] = []
        self._reading: set[asyncio.Task[None]] = set()  # kept until done (not collected)

    async def rows(self, people: list[str]) -> list[Sequence[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Sequence[Any]]] = loop.create_future()
        if not self._asked:
            loop.call_soon(self._flush)
        self._asked.append((people, future))
        return await future

    def _flush(self) -> None:
        asked, self._asked = self._asked, []
        task = asyncio.ensure_future(self._read(asked))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _read(self, asked: list[tuple[list[str], asyncio.Future[Any]]]) -> None:
        everyone = list(dict.fromkeys(p for people, _ in asked for p in people))
        try:
            found = await self.db.fetch(_POSTGRES_SQL, everyone)
        except BaseException as exc:
            for _, future in asked:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        by_person: dict[str, list[Sequence[Any]]] = {}
        for row in found:
            by_person.setdefault(row[1], []).append(row)
        for people, future in asked:
            if not future.done():
                future.set_result([row for p in people for row in by_person.get(p, ())])


_coalescers: weakref.WeakKeyDictionary[LedgerDatabase, _Coalescer] = weakref.WeakKeyDictionary()


def _coalescer(db: LedgerDatabase) -> _Coalescer:
    found = _coalescers.get(db)
    if found is None:
        found = _coalescers[db] = _Coalescer(db)
    return found


def _sqlite_reader(client: SqliteClient) -> sqlite3.Connection:
    reader = _readers.get(client)
    if reader is None:
        # check_same_thread=False: a test client may run the loop on another thread;
        # the connection is still only used by one thread at a time.
        reader = sqlite3.connect(client.filename, isolation_level=None, check_same_thread=False)
        reader.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        reader.execute("PRAGMA query_only=ON")
        _readers[client] = reader
    return reader


def _state(row: Sequence[Any]) -> ConsentState:
    (id_, _, status, recipient, sources, categories, purpose) = row[:7]
    valid_from, valid_until, one_time, used_at = row[7:]
    return ConsentState(
        id=str(id_),
        status=str(status),
        recipient=recipient,
        sources=frozenset(_codes(sources)),
        categories=frozenset(_codes(categories)),
        purpose=purpose,
        valid_from=_moment(valid_from),
        valid_until=_moment(valid_until),
        one_time=bool(one_time),
        used=used_at is not None,
    )


def _codes(value: object) -> list[str]:
    # SQLite and asyncpg both hand JSON columns over as text.
    if isinstance(value, str | bytes):
        return list(json.loads(value))
    return list(value or [])  # type: ignore[call-overload]


def _moment(value: object) -> datetime:
    # SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff+00:00"; PostgreSQL gives a datetime.
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(f"not a stored date-time: {value!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
