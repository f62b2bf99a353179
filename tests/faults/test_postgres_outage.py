"""PostgreSQL stopped and started again under load: quick 503s while it is down, then
Onceonly recovers by itself, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.faults.cluster import Cluster
from tests.faults.support import (
    REQUEST_TIMEOUT,
    AccessChecks,
    Server,
    assert_nothing_lost,
    install,
)
from tests.support import with_database

pytestmark = pytest.mark.faults

_names = itertools.count()
#: A 503 takes well under this (a refused connection is noticed at once); far less
#: than the 10 s connect timeouts, so no request waited on a connection attempt.
QUICK = 5.0


async def fresh_database(cluster: Cluster) -> str:
    name = f"onceonly_faults_{next(_names)}"
    conn = await asyncpg.connect(cluster.url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(cluster.url, name)


async def readyz(server: Server) -> tuple[int, float]:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        answer = await http.get(server.base_url + "/readyz")
    return answer.status_code, time.monotonic() - started


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_stopped_and_started_under_load(
    cluster: Cluster, servers: Callable[..., Server], tmp_path: Path, mode: str
) -> None:
    """Stop the cluster (``pg_ctl stop -m fast``: connections closed; ``-m immediate``: as
    if it crashed) while 8 clients run access checks, keep them going for a while, start
    it again. While it is down every answer is a 503 problem document with Retry-After,
    none hangs, and /readyz says not ready; once it is back the same server process
    answers decisions again, and every decision a client received is in the ledger."""
    url = await fresh_database(cluster)
    inst = await asyncio.to_thread(install, "postgres", url, tmp_path / "var")
    server = servers(inst)
    load = AccessChecks([server.base_url], server.token(), f"pg{mode}", clients=8).start()
    await load.until(150)

    try:
        await asyncio.to_thread(cluster.stop, mode)
        down_at = len(load.failures)
        await load.until_failures(down_at + 20)
        ready_while_down = await readyz(server)
        await load.until_failures(down_at + 40)
        back_at = len(load.received)
    finally:
        await asyncio.to_thread(cluster.ensure_running)
    await load.until(back_at + 150)
    await load.stop()
    assert server.process is not None and server.process.poll() is None, "no restart"
    ready_after = await readyz(server)

    # Every request was answered (none timed out, none was refused a connection), and
    # every failure is a 503 problem a client may retry.
    assert {f.status for f in load.failures} == {503}, load.failures[:10]
    assert all(f.what.endswith("/unavailable") for f in load.failures), load.failures[:5]
    assert all(f.retry_after for f in load.failures), load.failures[:5]
    slowest = max(f.seconds for f in load.failures)
    assert slowest < QUICK, f"a request waited {slowest:.1f} s for its 503"
    assert ready_while_down[0] == 503
    assert ready_after[0] == 200
    tally = await assert_nothing_lost(inst, load.received, f"PostgreSQL stop -m {mode}")
    print(
        f"[faults] PostgreSQL down (-m {mode}): {len(load.failures)} answers 503, the slowest "
        f"in {slowest:.2f} s; /readyz {ready_while_down[0]} in {ready_while_down[1]:.2f} s; "
        f"{tally.acknowledged - back_at} decisions after it was back"
    )
