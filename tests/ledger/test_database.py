"""The ledger's PostgreSQL pool: released connections skip the default session reset,
but a transaction left open is still rolled back, and the ledger's lock is never kept."""

from __future__ import annotations

from ledger.database import SEQUENCER_LOCK_KEY, PostgresLedgerDatabase


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
