"""A full disk or a read-only database: a clear 503 problem, no partial entry, and
appends work again once the storage takes writes."""

from __future__ import annotations

import asyncio
import resource
import shutil
import subprocess
from collections.abc import Callable

import asyncpg
import pytest

from tests.faults.support import (
    AccessChecks,
    Installation,
    Server,
    assert_nothing_lost,
    stored_entries,
)
from tests.support import postgres_url

pytestmark = pytest.mark.faults


def assert_unavailable_answers(load: AccessChecks) -> None:
    """Every failure is a 503 problem document with Retry-After (answered, not hanging)."""
    assert load.failures, "the fault was noticed"
    assert {f.status for f in load.failures} == {503}, load.failures[:5]
    assert all(f.what.endswith("/unavailable") for f in load.failures), load.failures[:5]
    assert all(f.retry_after for f in load.failures), load.failures[:5]


async def assert_no_partial_entry(inst: Installation, load: AccessChecks) -> None:
    """No access check answered 503 left an entry (the ledger verifies entries whole)."""
    stored = {entry.query_id for entry in await stored_entries(inst.url)}
    written = [f.query_id for f in load.failures if f.query_id in stored]
    assert not written, f"access checks answered 503 but in the ledger: {written[:5]}"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_disk_full_answers_503_then_appends_again(
    installation: Installation, servers: Callable[..., Server]
) -> None:
    """A disk that fills under load, simulated with the kernel's own limit: the running
    server's RLIMIT_FSIZE is set to 0 (``prlimit``), so none of its files may grow by a
    byte, which is how a full disk looks to SQLite (EFBIG is reported as a disk I/O
    error, ENOSPC as "database or disk is full"; both must answer 503). Lifting the
    limit "frees the space", and the same process appends again.

    (A real full file system needs a mount, which a test cannot count on.)
    """
    server = servers(installation)
    load = AccessChecks([server.base_url], server.token(), "full", clients=8).start()
    await load.until(100)
    soft, hard = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        await load.until_failures(30)
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (soft, hard))
    freed_at = len(load.received)
    await load.until(freed_at + 100)
    await load.stop()
    assert server.process is not None and server.process.poll() is None, "no restart"

    assert_unavailable_answers(load)
    await assert_no_partial_entry(installation, load)
    tally = await assert_nothing_lost(installation, load.received, "disk full")
    print(
        f"[faults] disk full: {len(load.failures)} answers 503; "
        f"{tally.acknowledged - freed_at} decisions once space was freed"
    )


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_read_only_postgres_answers_503_then_appends_again(
    installation: Installation, servers: Callable[..., Server]
) -> None:
    """The database turns read-only, as after a fail-over to a standby or when an
    operator sets ``default_transaction_read_only``: here on the test's own database,
    whose sessions are ended so that the server reconnects to a read-only database.
    Access checks answer 503 and write nothing; once it is writable again (sessions
    ended again) the same server process appends, and nothing acknowledged is lost."""
    server = servers(installation)
    token = server.token()
    name = installation.url.rsplit("/", 1)[1]

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(postgres_url(), timeout=10)
        try:
            await conn.execute(statement)
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await conn.close()

    before = AccessChecks([server.base_url], token, "rw", clients=8).start()
    await before.until(50)
    await before.stop()
    await admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    during = AccessChecks([server.base_url], token, "ro", clients=8).start()
    await during.until_failures(30)
    await during.stop()
    await admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    after = AccessChecks([server.base_url], token, "again", clients=8).start()
    await after.until(50)
    await after.stop()

    assert not before.failures, before.failures[:5]
    assert not during.received, "no decision while the database is read-only"
    assert_unavailable_answers(during)
    await assert_no_partial_entry(installation, during)
    assert {f.status for f in after.failures} <= {503}, after.failures[:5]
    received = before.received | after.received
    await assert_nothing_lost(installation, received, "read-only PostgreSQL")
    print(f"[faults] read-only PostgreSQL: {len(during.failures)} answers 503")


def read_only_bind(path: str) -> list[str] | None:
    """A command prefix that runs a command with ``path`` bind-mounted read-only in a
    mount namespace of its own (the rest of the machine does not see the mount), or
    None where that is not allowed."""
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, path]
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_read_only_sqlite_answers_503_and_writes_nothing(
    installation: Installation, servers: Callable[..., Server]
) -> None:
    """The SQLite file is on a read-only mount (a file system remounted read-only, a
    restored snapshot mounted read-only): the server still answers reads, every access
    check is a 503 problem and nothing is written; served from a writable file again,
    it appends, and nothing acknowledged is lost.

    Root ignores file permissions, so a read-only bind mount of the database file in a
    mount namespace of the server's own is used (``unshare --mount``, which needs
    CAP_SYS_ADMIN; skipped without it). A file already open for writing cannot be made
    read-only, so the server is started on the read-only file.
    """
    wrap = await asyncio.to_thread(read_only_bind, installation.url.removeprefix("sqlite://"))
    if wrap is None:
        pytest.skip("cannot bind-mount the database read-only here (unshare --mount needs root)")
    first = servers(installation)
    token = first.token()
    before = AccessChecks([first.base_url], token, "rw", clients=8).start()
    await before.until(50)
    await before.stop()
    assert first.terminate() in (0, -15)

    read_only = servers(installation, wrap=wrap)
    during = AccessChecks([read_only.base_url], token, "ro", clients=8).start()
    await during.until_failures(30)
    await during.stop()
    assert read_only.terminate() in (0, -15)

    again = servers(installation)
    after = AccessChecks([again.base_url], token, "again", clients=8).start()
    await after.until(50)
    await after.stop()

    assert not during.received, "no decision while the database is read-only"
    assert_unavailable_answers(during)
    await assert_no_partial_entry(installation, during)
    assert not before.failures and not after.failures, (before.failures + after.failures)[:5]
    received = before.received | after.received
    await assert_nothing_lost(installation, received, "read-only SQLite file")
    print(f"[faults] read-only SQLite file: {len(during.failures)} answers 503")
