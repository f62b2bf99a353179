"""The ledger's PostgreSQL pool: released connections skip the default session reset,
but a transaction left open is still rolled back, and the ledger's lock is never kept.
SQLite's entry times are stored as the ORM stores them."""

from __future__ import annotations

import datetime as dt

from hypothesis import example, given
from hypothesis import strategies as st

from ledger.database import SEQUENCER_LOCK_KEY, PostgresLedgerDatabase, sqlite_time, sqlite_value
from ledger.entry import format_time
from ledger.log import TransparencyLog
from tests.factories import make_entry


@given(
    st.datetimes(  # years of four digits, as entry times have
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(9000, 1, 1),
        timezones=st.timezones(),
    )
)
@example(dt.datetime(2026, 11, 26, 3, 4, 5, tzinfo=dt.UTC))  # no fraction at all
@example(dt.datetime(2026, 11, 26, 3, 4, 5, 999, tzinfo=dt.UTC))  # under a millisecond
def test_sqlite_time_is_what_sqlite_value_makes_of_the_moment(moment: dt.datetime) -> None:
    text = format_time(moment)
    assert sqlite_time(text) == sqlite_value(dt.datetime.fromisoformat(text))


async def test_stored_times_compare_as_moments(ledger_log: TransparencyLog) -> None:
    """Entries written with sqlite_time are found by a time range given as a datetime,
    the way the portal and the auditor's filters ask (on PostgreSQL: a timestamp)."""
    moments = [dt.datetime(2026, 11, 26, 3, 4, 5, ms * 1000, tzinfo=dt.UTC) for ms in (0, 1, 999)]
    await ledger_log.append_all([(make_entry(time=format_time(m)), None) for m in moments])
    rows = await ledger_log.db.fetch(
        "SELECT idx FROM ledger_entry WHERE time >= ? AND time < ? ORDER BY idx",
        moments[1],
        moments[2] + dt.timedelta(microseconds=1),
    )
    assert [int(row[0]) for row in rows] == [1, 2]


async def test_a_released_connection_keeps_no_transaction_and_no_ledger_lock(
    postgres_database_url: str,
) -> None:
    db = PostgresLedgerDatabase(postgres_database_url, max_size=1)
    await db.connect()
    try:
        pool = db._require_pool()
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY)
            await conn.execute("CREATE TABLE left_open (x int)")
        # The same (only) connection again: the transaction was rolled back on release,
        # so the table is gone and the lock is free for anyone else.
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
        async with db.write() as tx:  # takes the ledger's lock at once
            assert await tx.fetch("SELECT 1") == [(1,)]
    finally:
        await db.close()
