"""A person's ledger entries are found through sorted runs, not an index on openings.

The index on ``ledger_opening (pseudonym, idx)`` cost a random page write for nearly
every entry appended. It is replaced by ``ledger_person`` rows (the run, the first 16
hex digits of the pseudonym, the index) written in runs, each in key order, described
by ``ledger_person_run`` (see ledger/persons.py). On SQLite
``ledger_person`` is a WITHOUT ROWID table, so a run is written once, as the table's
own B-tree, not as a table and an index.

The openings already stored become one level-1 run, copied in pseudonym order while
the old index still exists (it gives that order), before the index is dropped.
Neither table has append-only triggers: both may be deleted from, like the openings,
to crypto-shred a person.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

_BACKFILL = [
    "INSERT INTO ledger_person_run (run, first_idx, end_idx, level) "
    "SELECT 1, 0, MAX(idx) + 1, 1 FROM ledger_entry HAVING COUNT(*) > 0",
    "INSERT INTO ledger_person (run, tag, idx) "
    "SELECT 1, substr(pseudonym, 1, 16), idx FROM ledger_opening ORDER BY pseudonym, idx",
]

FORWARD = {
    "sqlite": [
        """CREATE TABLE ledger_person_run (
            run INTEGER PRIMARY KEY NOT NULL,
            first_idx INTEGER NOT NULL,
            end_idx INTEGER NOT NULL,
            level INTEGER NOT NULL
        )""",
        """CREATE TABLE ledger_person (
            run INTEGER NOT NULL,
            tag VARCHAR(16) NOT NULL,
            idx INTEGER NOT NULL,
            PRIMARY KEY (run, tag, idx)
        ) WITHOUT ROWID""",
        *_BACKFILL,
    ],
    "postgres": [
        """CREATE TABLE ledger_person_run (
            run BIGINT PRIMARY KEY,
            first_idx BIGINT NOT NULL,
            end_idx BIGINT NOT NULL,
            level SMALLINT NOT NULL
        )""",
        """CREATE TABLE ledger_person (
            run BIGINT NOT NULL,
            tag VARCHAR(16) NOT NULL,
            idx BIGINT NOT NULL,
            PRIMARY KEY (run, tag, idx)
        )""",
        *_BACKFILL,
    ],
}

BACKWARD = {
    kind: ["DROP TABLE IF EXISTS ledger_person", "DROP TABLE IF EXISTS ledger_person_run"]
    for kind in FORWARD
}


def _runner(statements_by_dialect):
    async def run(apps, schema_editor) -> None:
        statements = statements_by_dialect.get(schema_editor.DIALECT)
        if statements is None:
            raise RuntimeError(f"no person index for database {schema_editor.DIALECT!r}")
        for statement in statements:
            await schema_editor.client.execute_script(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("onceonly", "0006_ledger_speed")]

    operations = [
        ops.RunPython(_runner(FORWARD), reverse_code=_runner(BACKWARD)),
        ops.RemoveIndex(model_name="LedgerOpening", name=None, fields=["pseudonym", "idx"]),
    ]
