"""Several processes appending to one database make one contiguous log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.log import TransparencyLog
from ledger.merkle import leaf_hash, root_from_leaves
from ledger.note import Signer, encode_signer_key
from tests.conftest import Database
from tests.ledger.conftest import ORIGIN


@pytest.mark.parametrize("processes", [2, 4])
async def test_processes_append_to_one_contiguous_log(
    database: Database, signer: Signer, tmp_path: Path, processes: int
) -> None:
    key_file = tmp_path / "signer.key"
    key_file.write_text(encode_signer_key(signer))
    key_file.chmod(0o600)
    # Open once first so that the empty tree's checkpoint exists before the race.
    log = await TransparencyLog.open(database.url, signer, ORIGIN)
    await log.close()
    command = [sys.executable, "-m", "tests.ledger.appender", database.url, str(key_file)]
    running = [
        await asyncio.create_subprocess_exec(
            *command, "120", "12", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(processes)
    ]
    given: list[int] = []
    for proc in running:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
        given.extend(int(line) for line in out.split())
    assert sorted(given) == list(range(120 * processes)), "no index given twice, none lost"

    log = await TransparencyLog.open(database.url, signer, ORIGIN)
    try:
        rows = await log.db.fetch("SELECT idx, leaf FROM ledger_entry ORDER BY idx")
        assert [row[0] for row in rows] == list(range(120 * processes))
        latest = await log.latest_checkpoint()
        assert latest is not None and latest.size == len(rows)
        assert latest.root_hash == root_from_leaves([leaf_hash(bytes(row[1])) for row in rows])
        openings = await log.db.fetch("SELECT COUNT(*) FROM ledger_opening")
        assert openings[0][0] == len(rows)
    finally:
        await log.close()
