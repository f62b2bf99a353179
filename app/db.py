"""Database configuration for Tortoise ORM, on SQLite (embedded) or PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext

from app.settings import Settings

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


def connection_url(database_url: str) -> str:
    """The Tortoise connection URL for a settings database URL.

    SQLite gets the pragmas above (an explicit query parameter wins); PostgreSQL URLs
    pass through, including an optional ``?schema=NAME``.
    """
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite":
        return database_url
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
