"""SIGKILL in the middle of sustained access checks loses no decision a client received."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.faults.support import (
    AccessChecks,
    Installation,
    Server,
    assert_nothing_lost,
    stored_entries,
)

pytestmark = pytest.mark.faults


async def test_sigkill_under_load_loses_no_received_decision(
    installation: Installation, servers: Callable[..., Server]
) -> None:
    """Kill -9 the server while 16 clients run access checks, restart it, and check that
    every decision a client received is in the ledger as it was answered."""
    server = servers(installation)
    load = AccessChecks([server.base_url], server.token(), "kill", clients=16).start()
    await load.until(300)
    await asyncio.to_thread(server.kill)  # requests are in flight: no shutdown, no drain
    await load.stop()
    assert any(f.status is None for f in load.failures), "the kill cut requests off"
    assert all(f.status is None for f in load.failures), load.failures[:5]

    restarted = servers(installation)
    after = AccessChecks([restarted.base_url], restarted.token(), "after", clients=4).start()
    await after.until(20)
    await after.stop()
    assert not after.failures, after.failures[:5]

    tally = await assert_nothing_lost(
        installation, load.received | after.received, "SIGKILL under load"
    )
    stored = {entry.query_id for entry in await stored_entries(installation.url)}
    cut_off = sum(1 for f in load.failures if f.query_id in stored)
    assert tally.entries == tally.acknowledged + cut_off
    print(
        f"[faults] SIGKILL: {len(load.failures)} requests cut off, {cut_off} of them recorded "
        "before the kill (the client saw a dropped connection, not a decision)"
    )
