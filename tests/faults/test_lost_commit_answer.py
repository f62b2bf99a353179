"""A commit whose answer is lost (the connection breaks after COMMIT reached the
database): the sequencer finds out whether the batch landed, so no decision is given
twice and none is written twice.

In-process and fast, so it runs in ``make test`` as well: not marked ``faults``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any

from ledger.database import LedgerDatabase, LedgerUnavailable, Restage, Restaged, Write
from ledger.log import TransparencyLog
from ledger.note import generate_signer
from ledger.verify import verify_database
from tests.conftest import Database
from tests.factories import make_entry, make_subject

ORIGIN = "onceonly.test/faults"


class AnswerLost:
    """The ledger database, but the ``lose``-th batch write commits and then raises
    LedgerUnavailable, as when the connection breaks between COMMIT and its answer."""

    def __init__(self, db: LedgerDatabase, lose: int) -> None:
        self.db = db
        self.lose = lose
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def write_if(
        self,
        check: str,
        args: Sequence[Any],
        expected: Sequence[Any],
        writes: Sequence[Write],
        restage: Restage | None = None,
    ) -> Awaitable[bool | Restaged]:
        self.writes += 1
        committed = self.db.write_if(check, args, expected, writes, restage)  # at once
        if self.writes != self.lose:
            return committed

        async def lost() -> bool | Restaged:
            assert await committed, "the batch was written"
            raise LedgerUnavailable("the connection broke after COMMIT")

        return asyncio.ensure_future(lost())


async def test_a_batch_whose_commit_answer_is_lost_is_answered_once(database: Database) -> None:
    """16 callers append in batches of 4, two batches in flight at a time; the third
    batch's commit answer is lost. Its callers still get their indices (the batch is
    stored), the batch written behind it is answered too and not written again: every
    entry once, contiguous, and the log verifies."""
    signer = generate_signer(ORIGIN)
    log = await TransparencyLog.open(database.url, signer, ORIGIN)
    flaky = AnswerLost(log.db, lose=3)
    log.sequencer.db = flaky  # type: ignore[assignment]
    log.sequencer.max_batch = 4  # several batches in flight, one written behind another
    given: dict[str, int] = {}
    refused: list[str] = []

    async def client(n: int) -> None:
        for _ in range(12):
            subject = make_subject()
            entry = make_entry(subject)
            try:
                given[entry.query_id] = (await log.append(entry, subject)).index
            except LedgerUnavailable:
                refused.append(entry.query_id)

    try:
        await asyncio.gather(*(client(n) for n in range(16)))
        rows = await log.db.fetch("SELECT idx, query_id FROM ledger_entry ORDER BY idx")
        report = await verify_database(log.db, signer.verifier(), ORIGIN)
    finally:
        await log.close()
    assert flaky.writes > 3, "the lost answer was in the middle of the run"
    stored = {query: idx for idx, query in rows}
    twice = [query for query, count in Counter(q for _, q in rows).items() if count > 1]
    assert not twice, f"entries written twice: {twice[:5]}"
    assert [idx for idx, _ in rows] == list(range(len(rows)))
    assert all(stored.get(query) == idx for query, idx in given.items()), "answers are stored"
    assert not refused, f"stored entries whose callers were told it failed: {refused[:5]}"
    assert len(rows) == len(given) == 16 * 12
    assert report.ok, report.first_failure
