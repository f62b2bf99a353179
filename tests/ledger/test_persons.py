"""The person index (ledger.persons): a person's entries found through sorted runs
answer exactly what a scan of the openings answers, as runs are made and merged, after
shredding, and when compacting fails; on both databases."""

from __future__ import annotations

import logging
import random

import pytest

import ledger.sequencer
from ledger.database import LedgerDatabase
from ledger.log import TransparencyLog
from ledger.note import Signer
from ledger.persons import compact, indexed_up_to, person_args, person_entries, read_runs
from ledger.sequencer import Subject
from tests.conftest import Database
from tests.factories import make_entry
from tests.ledger.conftest import ORIGIN

# Runs keep the first 16 hex digits of a pseudonym (its tag): the last person shares
# the first one's tag, and must still find only their own entries.
PEOPLE = [f"{n:016x}{n:048x}" for n in range(1, 5)] + [f"{1:016x}{99:048x}"]


async def found(db: LedgerDatabase, pseudonym: str) -> list[int]:
    rows = await db.fetch(f"{person_entries(db.kind)} ORDER BY 1", *person_args(pseudonym))
    return [int(row[0]) for row in rows]


async def scanned(db: LedgerDatabase, pseudonym: str) -> list[int]:
    rows = await db.fetch(
        "SELECT idx FROM ledger_opening WHERE pseudonym = ? ORDER BY idx", pseudonym
    )
    return [int(row[0]) for row in rows]


async def runs_of(db: LedgerDatabase) -> list[tuple[int, int, int]]:
    rows = await db.fetch(
        "SELECT first_idx, end_idx, level FROM ledger_person_run ORDER BY first_idx"
    )
    return [(int(a), int(b), int(c)) for a, b, c in rows]


def assert_contiguous(runs: list[tuple[int, int, int]]) -> None:
    """The runs cover 0 up to the start of the tail, one after another."""
    assert [first for first, _, _ in runs] == [0, *(end for _, end, _ in runs[:-1])][: len(runs)]


async def append_for(log: TransparencyLog, people: list[str | None]) -> None:
    """One entry per item, about that person (None: about nobody), in one batch."""
    items = []
    for pseudonym in people:
        subject = Subject.new(pseudonym) if pseudonym else None
        items.append((make_entry(subject), subject))
    await log.append_all(items)


async def settled(log: TransparencyLog) -> None:
    """Wait for a compaction the last batch started."""
    task = log.sequencer._compacting
    if task is not None:
        await task


async def test_runs_answer_what_the_openings_answer(ledger_log: TransparencyLog) -> None:
    sequencer = ledger_log.sequencer
    sequencer.person_flush_rows, sequencer.person_merge_runs = 10, 3
    rng = random.Random(7)  # noqa: S311 - a repeatable test, not a secret
    levels_seen = set()
    for _ in range(30):
        people = [rng.choice([*PEOPLE, None]) for _ in range(rng.randint(1, 9))]
        await append_for(ledger_log, people)
        await settled(ledger_log)
        for pseudonym in PEOPLE:
            assert await found(ledger_log.db, pseudonym) == await scanned(ledger_log.db, pseudonym)
        runs = await runs_of(ledger_log.db)
        levels_seen |= {level for _, _, level in runs}
        assert_contiguous(runs)
        size = await ledger_log.size()
        tail = size - (runs[-1][1] if runs else 0)
        assert tail < sequencer.person_flush_rows
    assert levels_seen == {0, 1}
    assert await found(ledger_log.db, "f" * 64) == []


async def test_a_run_holds_each_opening_once_in_key_order(ledger_log: TransparencyLog) -> None:
    await append_for(ledger_log, [PEOPLE[i % 3] for i in range(40)])
    async with ledger_log.db.write() as tx:
        assert await compact(tx, flush_rows=16, merge_runs=99) == 40
    async with ledger_log.db.write() as tx:
        assert await compact(tx, flush_rows=16, merge_runs=99) == 40  # nothing due
        runs = await read_runs(tx)
    assert [(r.first_idx, r.end_idx, r.level) for r in runs] == [(0, 40, 0)]
    assert indexed_up_to(runs) == 40
    rows = await ledger_log.db.fetch("SELECT tag, idx FROM ledger_person")
    stored = [(row[0], int(row[1])) for row in rows]
    assert sorted(stored) == sorted((PEOPLE[i % 3][:16], i) for i in range(40))


async def test_shredded_openings_are_not_found(ledger_log: TransparencyLog) -> None:
    ledger_log.sequencer.person_flush_rows = 8
    alex, sam, alex_twin = PEOPLE[0], PEOPLE[1], PEOPLE[4]  # alex_twin: alex's tag
    await append_for(ledger_log, [(alex, sam, alex_twin)[i % 3] for i in range(21)])
    await settled(ledger_log)
    assert (await runs_of(ledger_log.db))[-1][1] == 21
    mine = await found(ledger_log.db, alex)
    assert mine == list(range(0, 21, 3))

    # Shredding only the openings already hides the entries from the person index.
    async with ledger_log.db.write() as tx:
        await tx.execute("DELETE FROM ledger_opening WHERE pseudonym = ?", alex)
    assert await found(ledger_log.db, alex) == []
    assert await found(ledger_log.db, sam) == list(range(1, 21, 3))
    assert await found(ledger_log.db, alex_twin) == list(range(2, 21, 3))
    # And the index rows themselves can be deleted (no append-only trigger).
    marks = ", ".join("?" * len(mine))
    async with ledger_log.db.write() as tx:
        await tx.execute(f"DELETE FROM ledger_person WHERE idx IN ({marks})", *mine)  # noqa: S608
    rows = await ledger_log.db.fetch("SELECT COUNT(*) FROM ledger_person")
    assert rows[0][0] == 21 - len(mine)
    assert await found(ledger_log.db, alex_twin) == list(range(2, 21, 3))


async def test_a_failed_compaction_loses_nothing(
    ledger_log: TransparencyLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger.sequencer, "compact", broken)
    ledger_log.sequencer.person_flush_rows = 4
    with caplog.at_level(logging.WARNING, logger="onceonly.ledger"):
        for _ in range(3):
            await append_for(ledger_log, [PEOPLE[0]] * 5)
            await settled(ledger_log)
    assert "person index was not compacted: disk full" in caplog.text
    assert await runs_of(ledger_log.db) == []
    assert await found(ledger_log.db, PEOPLE[0]) == list(range(15))

    monkeypatch.undo()
    await append_for(ledger_log, [PEOPLE[0]] * 5)  # due again: 5 more since the failure
    await settled(ledger_log)
    assert await runs_of(ledger_log.db) == [(0, 20, 0)]
    assert await found(ledger_log.db, PEOPLE[0]) == list(range(20))


async def test_two_processes_compact_one_index(database: Database, signer: Signer) -> None:
    first = await TransparencyLog.open(database.url, signer, ORIGIN)
    second = await TransparencyLog.open(database.url, signer, ORIGIN)
    try:
        for log in (first, second):
            log.sequencer.person_flush_rows, log.sequencer.person_merge_runs = 6, 2
        for round_ in range(8):
            log = (first, second)[round_ % 2]
            await append_for(log, [PEOPLE[(round_ + i) % 4] for i in range(7)])
            await settled(log)
        for pseudonym in PEOPLE:
            assert await found(first.db, pseudonym) == await scanned(first.db, pseudonym)
        runs = await runs_of(first.db)
        assert runs
        assert_contiguous(runs)
    finally:
        await first.close()
        await second.close()
