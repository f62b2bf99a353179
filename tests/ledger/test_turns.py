"""Writers of one SQLite file take turns (ledger.turns): one at a time, and the one
that just wrote waits behind a writer already waiting."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ledger.turns import WriterTurns


def test_a_writer_that_just_wrote_lets_the_waiting_one_go_first(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    first, second = WriterTurns(path), WriterTurns(path)
    order: list[str] = []
    first.take()

    def wait_then_write() -> None:
        second.take()
        order.append("second")
        time.sleep(0.05)
        second.give_back()

    waiting = threading.Thread(target=wait_then_write)
    waiting.start()
    time.sleep(0.2)  # the second writer now waits for the turn, holding the gate
    assert order == []
    first.give_back()
    first.take()  # at once again: it must wait behind the second
    order.append("first")
    first.give_back()
    waiting.join(timeout=5)
    assert order == ["second", "first"]
    first.close()
    second.close()


def test_try_take_does_not_wait(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    first, second = WriterTurns(path), WriterTurns(path)
    assert first.try_take()
    assert not second.try_take()
    first.give_back()
    assert second.try_take()
    second.give_back()
    first.close()
    second.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only folder")
def test_without_lock_files_writers_go_without_turns(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        turns = WriterTurns(str(tmp_path / "ledger.sqlite3"))
        assert not turns.enabled
        turns.take()  # nothing to wait for: SQLite's own lock still applies
        assert turns.try_take()
        turns.give_back()
    finally:
        tmp_path.chmod(0o700)


def test_an_in_memory_database_has_no_turns() -> None:
    assert not WriterTurns(":memory:").enabled
