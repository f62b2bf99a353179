"""Database configuration for Tortoise ORM, on SQLite (embedded) or PostgreSQL."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext
from tortoise.exceptions import BaseORMException, DBConnectionError

from app.settings import Settings
from ledger.database import LedgerUnavailable

MODEL_MODULES = [
    "consent.models",
    "ledger.models",
    "app.oauth.models",
    "app.auth.models",
    "app.audit.models",
]
APP_LABEL = "onceonly"

# SQLite: WAL lets readers run beside the one writer; the busy timeout makes a second
# writer (another process) wait instead of failing; synchronous=FULL makes a commit
# durable before Onceonly answers (the ledger promises "no answer without an entry").
SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": "10000",
    "synchronous": "FULL",
    "foreign_keys": "ON",
}


# PostgreSQL (asyncpg): bounded waits, so that a database that does not answer turns
# a request into a 503 rather than leaving it hanging: seconds to connect and per
# statement (asyncpg's own defaults are 60 s to connect and no limit per statement).
POSTGRES_TIMEOUTS = {"timeout": "10", "command_timeout": "60"}


def connection_url(database_url: str) -> str:
    """The Tortoise connection URL for a settings database URL.

    SQLite gets the pragmas above, PostgreSQL the timeouts (an explicit query parameter
    wins, and an optional ``?schema=NAME`` passes through).
    """
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite":
        query = dict(POSTGRES_TIMEOUTS)
        query.update(parse_qsl(parts.query))
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    query = dict(SQLITE_PRAGMAS)
    query.update(parse_qsl(parts.query))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def sqlite_path(database_url: str) -> str | None:
    """The file path of an SQLite URL, or None for another database."""
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite":
        return None
    return (parts.netloc + parts.path) or None


def tortoise_config(settings: Settings) -> dict[str, Any]:
    """The Tortoise ORM configuration dictionary for these settings."""
    return {
        "connections": {"default": connection_url(settings.database_url)},
        "apps": {
            APP_LABEL: {
                "models": list(MODEL_MODULES),
                "default_connection": "default",
                "migrations": "migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


#: The exception classes that may say the database is unavailable (see
#: database_unavailable); the application answers them with a 503 when it is so.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    LedgerUnavailable,
    BaseORMException,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
    OSError,
)

# SQLite's primary result codes for a database that cannot be used right now: busy or
# locked (another writer held it past the busy timeout), read-only, an I/O error, full,
# cannot be opened.
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
}
# The same in the words of an error raised without its code.
_SQLITE_UNAVAILABLE_WORDS = ("locked", "disk I/O", "is full", "readonly", "unable to open")
# PostgreSQL's SQLSTATE classes (and codes) for the same: connection exception,
# insufficient resources (disk full, out of memory, too many connections), operator
# intervention (shutting down, starting up), system error (I/O), and a read-only
# transaction (a standby, or default_transaction_read_only).
_POSTGRES_UNAVAILABLE = ("08", "53", "57P", "58", "25006")
# File and network errors of the same kind (a full disk, a file system remounted
# read-only, an unreachable host).
_OS_UNAVAILABLE = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EIO,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
}


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the database cannot be
    reached or cannot take writes right now (a retry later may succeed), rather than a
    mistake in a query or in the code.

    Covers LedgerUnavailable, Tortoise's DBConnectionError, refused, reset and timed-out
    connections, asyncpg's connection and server-state errors (and a connection left out
    of step by a dropped exchange), SQLite's busy, locked,
    read-only, I/O and full errors, and a full or read-only disk.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable(current):
            return True
        suppressed = current.__suppress_context__  # raised "from None"
        current = current.__cause__ or (None if suppressed else current.__context__)
    return False


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, LedgerUnavailable | DBConnectionError):
        return True
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _OS_UNAVAILABLE
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_POSTGRES_UNAVAILABLE)
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc) or "closing" in str(exc)  # connection or pool closed
    if isinstance(exc, asyncpg.InternalClientError):
        # A connection the server dropped mid-exchange (seen while PostgreSQL shuts down)
        # is left out of step: "cannot switch to state N; another operation is in progress".
        return "another operation" in str(exc)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_UNAVAILABLE
        return any(words in str(exc) for words in _SQLITE_UNAVAILABLE_WORDS)
    return False


class DatabaseError(RuntimeError):
    """The database cannot be reached or used; the message is one line for a person."""


def prepare_sqlite_path(database_url: str) -> None:
    """Create the folder of an SQLite database file, or say in one line why it cannot be.

    Raises DatabaseError when the folder cannot be created or written.
    """
    path = sqlite_path(database_url)
    if not path or path == ":memory:":
        return
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the database folder {parent}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatabaseError(f"cannot write the database folder {parent}: permission denied")


def describe_connection_error(exc: BaseException, database_url: str) -> str:
    """One line saying why the database at ``database_url`` could not be used."""
    from app.settings import _redact

    target = _redact(database_url)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ConnectionRefusedError) or "refused" in text.lower():
        return f"cannot connect to the database at {target}: connection refused"
    if isinstance(exc, OSError) and "name" in text.lower() and "service" in text.lower():
        return f"cannot connect to the database at {target}: unknown host"
    return f"cannot use the database at {target}: {text}"


async def open_database(settings: Settings, *, global_fallback: bool = True) -> TortoiseContext:
    """Initialise Tortoise for these settings and check the database answers.

    ``global_fallback`` lets request tasks (which do not inherit the lifespan task's
    context) find this context. Raises DatabaseError with a one-line reason.
    """
    prepare_sqlite_path(settings.database_url)
    # Tortoise caches INSERT statements by connection name, not by dialect: after a
    # database of the other kind was open in this process (tests use both) the cache
    # would hand SQLite placeholders to PostgreSQL.
    EXECUTOR_CACHE.clear()
    try:
        ctx = await Tortoise.init(
            config=tortoise_config(settings), _enable_global_fallback=global_fallback
        )
        await ctx.db().execute_query("SELECT 1")
    except Exception as exc:
        await Tortoise.close_connections()
        raise DatabaseError(describe_connection_error(exc, settings.database_url)) from exc
    return ctx


async def close_database() -> None:
    """Close the connections opened by open_database."""
    await Tortoise.close_connections()
