"""Which errors mean "the database is unavailable", and the 503 the API answers for them.

Fast and in-process (no server is started), so these run in ``make test`` as well as
with the fault tests: not marked ``faults``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import httpx
import pytest
from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError

from app.db import database_unavailable
from app.oauth.clients import register_client
from app.seed import seed_reference
from app.services import Services
from ledger.database import LedgerUnavailable
from tests.faults.support import free_port


def raised(error: BaseException, wrapper: type[Exception]) -> Exception:
    """``wrapper`` raised from ``error``, as a driver's error reaches the application."""
    try:
        raise wrapper(str(error)) from error
    except wrapper as exc:
        return exc


def sqlite_error(tmp_path: Path, *, read_only: bool) -> sqlite3.Error:
    """A real SQLite error: a write to a read-only database, or a locked one."""
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    else:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        conn = sqlite3.connect(path, timeout=0)
    try:
        conn.execute("INSERT INTO t VALUES (1)")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the write succeeded")


async def refused() -> OSError:
    try:
        await asyncpg.connect(f"postgres://postgres@127.0.0.1:{free_port()}/x", timeout=5)
    except OSError as exc:
        return exc
    raise AssertionError("connected to a closed port")


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "locked"])
def test_sqlite_read_only_and_locked_are_unavailable(tmp_path: Path, read_only: bool) -> None:
    error = sqlite_error(tmp_path, read_only=read_only)
    assert database_unavailable(error)
    assert database_unavailable(raised(error, OperationalError))  # as Tortoise raises it


async def test_connection_errors_are_unavailable() -> None:
    error = await refused()
    assert database_unavailable(error)
    assert database_unavailable(raised(error, LedgerUnavailable))
    assert database_unavailable(asyncpg.CannotConnectNowError("the database is starting up"))
    assert database_unavailable(asyncpg.ReadOnlySQLTransactionError("read-only transaction"))
    assert database_unavailable(asyncpg.DiskFullError("could not extend file"))
    assert database_unavailable(DBConnectionError("no connection"))
    assert database_unavailable(TimeoutError())
    assert database_unavailable(
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )
    )


def test_mistakes_are_not_unavailable(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    with pytest.raises(sqlite3.OperationalError) as no_table:
        conn.execute("SELECT * FROM missing")
    conn.close()
    assert not database_unavailable(no_table.value)
    assert not database_unavailable(raised(no_table.value, OperationalError))
    assert not database_unavailable(asyncpg.UniqueViolationError("duplicate key"))
    assert not database_unavailable(IntegrityError("duplicate key"))
    assert not database_unavailable(FileNotFoundError(2, "No such file"))
    assert not database_unavailable(ValueError("a bug"))
    assert not database_unavailable(asyncpg.InternalClientError("unexpected message type"))


async def test_an_access_check_the_ledger_cannot_record_is_a_503_then_works_again(
    client: httpx.AsyncClient, services: Services
) -> None:
    await seed_reference()
    registered, secret = await register_client(
        "MPBSDP", "serviceontario", "faults", "client_secret_basic", ["access:check"]
    )
    token = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(registered.client_id, secret or ""),
    )
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    check = {
        "person_id": "fault-person-1",
        "recipient": "MTO",
        "categories": ["address"],
        "purpose": "licence-renewal",
    }

    await services.ledger.sequencer.stop()  # appends now raise LedgerUnavailable
    refused = await client.post(
        "/api/v1/access-checks", json={**check, "query_id": "q-1"}, headers=headers
    )
    await services.ledger.sequencer.start()
    answered = await client.post(
        "/api/v1/access-checks", json={**check, "query_id": "q-2"}, headers=headers
    )

    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "5"
    problem = refused.json()
    assert problem["type"].endswith("/unavailable") and problem["status"] == 503
    assert "ledger" not in problem
    assert answered.status_code == 200, answered.text
    assert answered.json()["ledger"]["index"] == 0, "the refused check left no entry"
