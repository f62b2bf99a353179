"""Several server processes appending to one database at once make one log."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.support import AccessChecks, Installation, Server, assert_nothing_lost

pytestmark = pytest.mark.faults


@pytest.mark.parametrize(
    "workers",
    [(2,), (2, 2)],
    ids=["serve --workers 2", "two serve --workers 2 on two ports"],
)
async def test_server_processes_append_to_one_contiguous_log(
    installation: Installation, servers: Callable[..., Server], workers: tuple[int, ...]
) -> None:
    """Access checks spread over 2 and 4 processes (uvicorn workers, and separate
    `onceonly serve` processes on two ports sharing the database): every decision is
    in the one contiguous log at the index it was given, none twice, and it verifies."""
    started = [servers(installation, workers=n) for n in workers]
    processes = sum(workers)
    token = started[0].token()
    load = AccessChecks([s.base_url for s in started], token, "procs", clients=16).start()
    await load.until(400)
    await load.stop()
    assert not load.failures, load.failures[:5]
    await assert_nothing_lost(installation, load.received, f"{processes} processes")
    indices = sorted(decision.index for decision in load.received.values())
    assert len(set(indices)) == len(indices), "no index given twice"
