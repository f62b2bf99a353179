"""One-line errors for the ``onceonly`` subcommands.

Each command module wraps its handlers with ``guarded`` so that an error a person can
act on ends in one ``onceonly: error: ...`` line on standard error and exit status 1,
never a traceback. (The modules cannot use ``app.cli.CommandError``: under
``python -m app.cli`` that module is ``__main__``, and an ``app.cli`` imported from a
command module would be a second module whose CommandError ``main`` does not catch.)
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

EXIT_FAILURE = 1

Handler = Callable[["Settings", argparse.Namespace], int]


def guarded(
    handler: Handler,
    user_errors: Callable[[], tuple[type[BaseException], ...]],
    *,
    database: str | None = None,
) -> Handler:
    """``handler``, answering the errors a person can act on with one line and exit 1.

    ``user_errors`` returns those error classes; it is called when the command runs, so
    a command module need not import them (and what they bring) at start-up. OSError is
    always answered. With ``database`` (a prefix such as ``"database error"``), SQLite
    and PostgreSQL errors are answered too, after that prefix; without it they propagate.
    """

    def run(settings: Settings, args: argparse.Namespace) -> int:
        import asyncpg

        database_errors = (sqlite3.Error, asyncpg.PostgresError) if database else ()
        try:
            return handler(settings, args)
        except user_errors() as exc:
            message = str(exc)
        except database_errors as exc:
            message = f"{database}: {exc}"
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            message = f"cannot use{where}: {exc.strerror or exc}"
        print(f"onceonly: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_FAILURE

    return run
