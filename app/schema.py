"""Applying the migration history in ``migrations/`` and telling whether it is applied."""

from __future__ import annotations

import pkgutil
from collections.abc import Callable

from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.migrations.recorder import MigrationRecorder

import migrations
from app.db import (
    APP_LABEL,
    DatabaseError,
    describe_connection_error,
    prepare_sqlite_path,
    tortoise_config,
)
from app.settings import Settings


def migration_names() -> list[str]:
    """Names of the migrations on disk, in file order."""
    return sorted(
        name
        for _, name, is_pkg in pkgutil.iter_modules(migrations.__path__)
        if not is_pkg and name[0] not in "_~"
    )


async def apply_migrations(
    settings: Settings, progress: Callable[[str], object] | None = None
) -> list[str]:
    """Apply every migration not yet applied; return the names applied (empty: no-op).

    Raises DatabaseError with a one-line reason when the database cannot be used.
    """
    prepare_sqlite_path(settings.database_url)
    config = tortoise_config(settings)
    try:
        before = await _applied(config)
        await tortoise_migrate(config=config)
        after = await _applied(config)
    except DatabaseError:
        raise
    except Exception as exc:
        raise DatabaseError(describe_connection_error(exc, settings.database_url)) from exc
    finally:
        await Tortoise.close_connections()
    done = [name for name in migration_names() if name in after and name not in before]
    if progress:
        for name in done:
            progress(name)
    return done


async def pending_migrations() -> list[str]:
    """Migrations on disk not applied to the connected database (needs an open database)."""
    applied = await _applied_on(get_connection("default"))
    return [name for name in migration_names() if name not in applied]


async def _applied(config: dict) -> set[str]:
    await Tortoise.init(config=config)
    try:
        return await _applied_on(get_connection("default"))
    finally:
        await Tortoise.close_connections()


async def _applied_on(connection) -> set[str]:
    # The recorder answers [] for any error, so first make sure the database answers.
    await connection.execute_query("SELECT 1")
    keys = await MigrationRecorder(connection).applied_migrations()
    return {key.name for key in keys if key.app_label == APP_LABEL}
