"""Fixtures of the fault tests: an installed Onceonly per database kind, and servers
that are always stopped at the end, whatever the test did to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Database
from tests.faults.cluster import Cluster, ClusterUnavailable, postgres_bin
from tests.faults.support import Installation, Server, install


@pytest.fixture
def installation(database: Database, tmp_path: Path) -> Installation:
    """Onceonly installed on a fresh database of each kind (the test runs once per kind)."""
    return install(database.kind, database.url, tmp_path / "var")


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """Start servers with ``servers(installation, workers=N)``; all are stopped at the end."""
    started: list[Server] = []

    def start(inst: Installation, **options: Any) -> Server:
        server = Server(inst, **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster (initdb, pg_ctl) that tests may stop and start."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (initdb, pg_ctl)")
    try:
        made = Cluster(bin_dir)
    except ClusterUnavailable as exc:
        pytest.skip(f"cannot make a throwaway PostgreSQL cluster: {exc}")
    try:
        made.create()
        made.start()
        yield made
    finally:
        made.destroy()
