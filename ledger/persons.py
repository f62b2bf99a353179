"""Finding a person's entries: the person index, kept as sorted runs.

Every entry about a person has an opening row ``(idx, pseudonym, opening)`` in
``ledger_opening``. Finding a person's entries needs those rows in pseudonym order, but
an ordinary index on ``(pseudonym, idx)`` costs a write to a random page of the index for
nearly every entry appended, once pseudonyms are many: on SQLite that was more than half
the cost of an append (a batch of 128 entries wrote about 285 pages instead of about
150), so the index is kept differently.

``ledger_person`` holds ``(run, tag, idx)`` rows, ordered by that key, in runs: a run
copies the openings of a contiguous range of indices, ``first_idx`` to ``end_idx``
(exclusive), described by one row of ``ledger_person_run``. The tag is the first 16
hex digits (64 bits) of the pseudonym: short keys make runs about three times cheaper
to write than whole pseudonyms would, and the opening row, joined by index, says
exactly whose each entry is. Runs are written whole, in key order, by ``compact``, so
writing one fills pages one after another instead of touching a page per row:

- once the openings not yet in a run (the tail, from the largest ``end_idx`` on) are
  ``FLUSH_ROWS`` or more, they become a level-0 run;
- once there are ``MERGE_RUNS`` level-0 runs, they are merged into one level-1 run.

Each opening is so written three times, always in order, instead of once at random. A
person's entries are then one index search per run plus a scan of the tail, which is
never much longer than ``FLUSH_ROWS`` rows (person_entries). At 10 million entries that
is about 170 searches: a few milliseconds.

Runs are an index, derived from the openings: the opening row stays what says whether
an entry is the person's. person_entries therefore answers exactly what
``SELECT idx FROM ledger_opening WHERE pseudonym = ?`` answers, shredded openings
included (a run row whose opening was deleted is not an answer), and tags two people
share included. Crypto-shredding a person deletes their opening rows and the
``ledger_person`` rows of those indices; neither table has an append-only trigger.

This module only builds SQL and runs it in a transaction it is given; the sequencer
calls ``compact`` in a transaction of its own that holds the ledger's write lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.database import Transaction

#: Openings not yet in a run that make a new level-0 run.
FLUSH_ROWS = 4096
#: Level-0 runs that are merged into one level-1 run (of about 65,536 rows).
MERGE_RUNS = 16

#: The parameters of person_entries: the pseudonym, this many times (person_args).
_PARAMETERS = 3

_FROM_RUNS = (
    "SELECT pp.idx FROM ledger_person pp JOIN ledger_opening po ON po.idx = pp.idx "
    "WHERE pp.run {each_run} AND pp.tag = substr(CAST(? AS VARCHAR), 1, 16) "
    "AND po.pseudonym = ? "
    "UNION ALL "
    "SELECT pt.idx FROM ledger_opening pt "
    "WHERE pt.idx >= ({tail_start}) AND pt.pseudonym = ?"
)
#: How each database is told to search every run, once each: SQLite does so for
#: IN (subquery); PostgreSQL needs the runs as an array (= ANY), or it may scan the
#: whole table instead.
_EACH_RUN = {
    "sqlite": "IN (SELECT run FROM ledger_person_run)",
    "postgres": "= ANY(ARRAY(SELECT run FROM ledger_person_run))",
}


def person_entries(kind: str) -> str:
    """A query of the indices of a person's entries, on a database of ``kind``, whose
    parameters are person_args(pseudonym). It answers exactly what
    ``SELECT idx FROM ledger_opening WHERE pseudonym = ?`` answers."""
    return _FROM_RUNS.format(each_run=_EACH_RUN[kind], tail_start=TAIL_START)


def person_args(pseudonym: str) -> tuple[str, ...]:
    """The parameters of person_entries for ``pseudonym``."""
    return (pseudonym,) * _PARAMETERS


#: Where the tail begins: every opening below it is in a run.
TAIL_START = "SELECT COALESCE(MAX(end_idx), 0) FROM ledger_person_run"
_RUNS = "SELECT run, first_idx, end_idx, level FROM ledger_person_run ORDER BY first_idx"
_STORED_SIZE = "SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry"
_INSERT_RUN = "INSERT INTO ledger_person_run (run, first_idx, end_idx, level) VALUES (?, ?, ?, ?)"
# The run's number is a parameter: CAST gives it a type on PostgreSQL.
_FLUSH = (
    "INSERT INTO ledger_person (run, tag, idx) "
    "SELECT CAST(? AS BIGINT), substr(pseudonym, 1, 16), idx FROM ledger_opening "
    "WHERE idx >= ? AND idx < ? ORDER BY 2, idx"
)


@dataclass(frozen=True)
class Run:
    run: int
    first_idx: int
    end_idx: int
    level: int


def indexed_up_to(runs: list[Run]) -> int:
    """Where the tail begins: every opening below it is in a run."""
    return max((run.end_idx for run in runs), default=0)


async def read_runs(tx: Transaction) -> list[Run]:
    return [Run(*(int(value) for value in row)) for row in await tx.fetch(_RUNS)]


async def compact(
    tx: Transaction, *, flush_rows: int = FLUSH_ROWS, merge_runs: int = MERGE_RUNS
) -> int:
    """Make the tail a run when it is long enough, and merge level-0 runs when there
    are enough of them; in ``tx``, which must hold the ledger's write lock. Returns
    where the tail now begins. Does nothing (but read) when nothing is due.
    """
    runs = await read_runs(tx)
    upto = indexed_up_to(runs)
    size = int((await tx.fetch(_STORED_SIZE))[0][0])
    number = max((run.run for run in runs), default=0) + 1
    if size - upto >= flush_rows:
        await tx.execute(_FLUSH, number, upto, size)
        await tx.execute(_INSERT_RUN, number, upto, size, 0)
        runs.append(Run(number, upto, size, 0))
        number += 1
        upto = size
    small = [run for run in runs if run.level == 0]
    if len(small) >= merge_runs:
        await _merge(tx, small, number)
    return upto


async def _merge(tx: Transaction, runs: list[Run], number: int) -> None:
    """Merge ``runs`` (contiguous, in order) into one level-1 run numbered ``number``."""
    ids = [run.run for run in runs]
    marks = ", ".join("?" * len(ids))
    # Placeholders only: the statements hold no value.
    await tx.execute(
        "INSERT INTO ledger_person (run, tag, idx) "  # noqa: S608
        f"SELECT CAST(? AS BIGINT), tag, idx FROM ledger_person WHERE run IN ({marks}) "
        "ORDER BY tag, idx",
        number,
        *ids,
    )
    await tx.execute(f"DELETE FROM ledger_person WHERE run IN ({marks})", *ids)  # noqa: S608
    await tx.execute(f"DELETE FROM ledger_person_run WHERE run IN ({marks})", *ids)  # noqa: S608
    await tx.execute(_INSERT_RUN, number, runs[0].first_idx, runs[-1].end_idx, 1)
