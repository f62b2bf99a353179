"""The sequencer's pipeline: batches staged ahead, handed over while earlier ones commit,
and staged again when the stored tree is not the one they were staged on."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ledger.database import LedgerUnavailable
from ledger.log import TransparencyLog
from ledger.merkle import EMPTY_ROOT, leaf_hash, root_from_leaves
from ledger.note import Signer
from ledger.verify import verify_database
from tests.factories import make_entry, make_subject
from tests.ledger.conftest import ORIGIN


async def stored_leaves(log: TransparencyLog) -> list[bytes]:
    rows = await log.db.fetch("SELECT idx, leaf FROM ledger_entry ORDER BY idx")
    assert [row[0] for row in rows] == list(range(len(rows))), "indices are contiguous"
    return [bytes(row[1]) for row in rows]


async def assert_consistent(log: TransparencyLog, signer: Signer) -> None:
    leaves = await stored_leaves(log)
    latest = await log.latest_checkpoint()
    assert latest is not None and latest.size == len(leaves)
    assert latest.root_hash == root_from_leaves([leaf_hash(leaf) for leaf in leaves])
    report = await verify_database(log.db, signer.verifier(), ORIGIN)
    assert report.ok, report.first_failure


def batch(count: int) -> list:
    subject = make_subject("f" * 64)
    return [(make_entry(subject), subject) for _ in range(count)]


async def test_batches_behind_a_committing_one_are_written_in_order(
    ledger_log: TransparencyLog, signer: Signer
) -> None:
    await ledger_log.append(make_entry())  # the tree is known from here on
    ledger_log.sequencer.max_batch = 7
    results = await asyncio.gather(*(ledger_log.append_all(batch(7)) for _ in range(20)))
    indices = [appended.index for chunk in results for appended in chunk]
    assert sorted(indices) == list(range(1, 141))
    for chunk in results:  # each append_all is contiguous and in the order given
        assert [a.index for a in chunk] == list(range(chunk[0].index, chunk[0].index + 7))
        assert {a.tree_size for a in chunk} == {chunk[-1].index + 1}
    assert ledger_log.sequencer.batches == 21
    await assert_consistent(ledger_log, signer)


async def test_a_refused_batch_fails_its_callers_and_the_ones_behind_it_are_restaged(
    ledger_log: TransparencyLog, signer: Signer
) -> None:
    await ledger_log.append(make_entry())
    # A stray checkpoint where the first batch would put its own: the database refuses
    # that batch, and the one staged behind it finds the tree is not what it expected.
    async with ledger_log.db.write() as tx:
        await tx.execute(
            "INSERT INTO ledger_checkpoint (size, root_hash, note, created_at) VALUES (?, ?, ?, ?)",
            6,
            EMPTY_ROOT,
            "stray",
            dt.datetime.now(dt.UTC),
        )
    ledger_log.sequencer.max_batch = 5
    first, second = await asyncio.gather(
        ledger_log.append_all(batch(5)), ledger_log.append_all(batch(3)), return_exceptions=True
    )
    assert isinstance(first, LedgerUnavailable)
    assert not isinstance(second, BaseException)
    assert [a.index for a in second] == [1, 2, 3]
    assert second[-1].tree_size == 4
    after = await ledger_log.append_all(batch(1))
    assert after[0].index == 4
    leaves = await stored_leaves(ledger_log)
    assert len(leaves) == 5
    stored = await ledger_log.checkpoint(5)
    assert stored.root_hash == root_from_leaves([leaf_hash(leaf) for leaf in leaves])


async def test_a_batch_staged_on_a_tree_another_writer_grew_is_restaged(
    ledger_log: TransparencyLog, signer: Signer, database
) -> None:
    await ledger_log.append_all(batch(300))
    other = await TransparencyLog.open(database.url, signer, ORIGIN)
    try:
        for _ in range(3):
            await other.append_all(batch(11))
            # Staged on the tree as this sequencer last wrote it, which is now stale:
            # the database stages it again in the same transaction.
            appended = await ledger_log.append_all(batch(2))
            assert appended[-1].tree_size == appended[-1].index + 1
            assert [a.index for a in appended] == [appended[0].index, appended[0].index + 1]
    finally:
        await other.close()
    assert ledger_log.sequencer.restaged == 3
    assert len(await stored_leaves(ledger_log)) == 300 + 3 * 13
    await assert_consistent(ledger_log, signer)


async def test_stop_commits_everything_queued(ledger_log: TransparencyLog, signer: Signer) -> None:
    ledger_log.sequencer.max_batch = 4
    pending = [asyncio.ensure_future(ledger_log.append_all(batch(4))) for _ in range(10)]
    await asyncio.sleep(0)
    await ledger_log.sequencer.stop()
    assert all(task.done() and not task.exception() for task in pending)
    with pytest.raises(LedgerUnavailable):
        await ledger_log.append(make_entry())
    await ledger_log.sequencer.start()
    await assert_consistent(ledger_log, signer)


async def test_a_fault_in_the_sequencer_fails_its_callers_instead_of_leaving_them_waiting(
    ledger_log: TransparencyLog,
) -> None:
    await ledger_log.append(make_entry())

    def broken(*args: object) -> None:
        raise TypeError("a bug in the sequencer's own code")

    ledger_log.sequencer.db.write_if = broken  # type: ignore[method-assign]
    waiting = [asyncio.ensure_future(ledger_log.append_all(batch(2))) for _ in range(3)]
    done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), timeout=10)
    assert all(isinstance(outcome, LedgerUnavailable) for outcome in done), done
    with pytest.raises(LedgerUnavailable, match="not running"):
        await ledger_log.append(make_entry())
