"""PostgreSQL checks a batch of ledger entries for contiguity once, not row by row.

Migration 0002's row trigger ``ledger_entry_contiguous`` looks up ``MAX(idx)`` for every
inserted row. The sequencer inserts a whole batch in one statement inside a transaction
that sets the transaction-local flag ``onceonly.ledger_batch``; for such rows the row
function now skips that lookup, and a statement-level AFTER INSERT trigger checks the
statement's rows at once: consecutive indices that directly follow the entries before
them, with none after them. Without the flag (any other insert) the row check runs
exactly as before, so a non-contiguous single row and INSERT ... ON CONFLICT are refused
by it as before; with the flag the statement check still refuses anything that is not
contiguous, so setting the flag loosens nothing. The triggers of migration 0002 are
unchanged (only the function body is), and SQLite, which has no statement-level
triggers, keeps its row trigger.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

POSTGRES = [
    """CREATE OR REPLACE FUNCTION onceonly_ledger_contiguous() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('onceonly.ledger_batch', true) IS DISTINCT FROM 'on' THEN
        IF NEW.idx IS DISTINCT FROM (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry) THEN
          RAISE EXCEPTION 'ledger_entry index must be the next contiguous index'
            USING ERRCODE = 'integrity_constraint_violation';
        END IF;
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE FUNCTION onceonly_ledger_contiguous_rows() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
      first_idx bigint;
      last_idx bigint;
      added bigint;
    BEGIN
      SELECT MIN(idx), MAX(idx), COUNT(*) INTO first_idx, last_idx, added FROM added_rows;
      IF added > 0 AND (
           last_idx - first_idx + 1 <> added
           OR last_idx IS DISTINCT FROM (SELECT MAX(idx) FROM ledger_entry)
           OR first_idx - 1 IS DISTINCT FROM
              (SELECT COALESCE(MAX(idx), -1) FROM ledger_entry WHERE idx < first_idx)) THEN
        RAISE EXCEPTION 'ledger_entry index must be the next contiguous index'
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER ledger_entry_contiguous_rows AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION onceonly_ledger_contiguous_rows()""",
]

POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS ledger_entry_contiguous_rows ON ledger_entry",
    "DROP FUNCTION IF EXISTS onceonly_ledger_contiguous_rows()",
    # Migration 0002's function, as it was.
    """CREATE OR REPLACE FUNCTION onceonly_ledger_contiguous() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.idx IS DISTINCT FROM (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry) THEN
        RAISE EXCEPTION 'ledger_entry index must be the next contiguous index'
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NEW;
    END $$""",
]


def _runner(statements_by_dialect):
    async def run(apps, schema_editor) -> None:
        statements = statements_by_dialect.get(schema_editor.DIALECT)
        if statements is None:
            raise RuntimeError(f"no ledger guards for database {schema_editor.DIALECT!r}")
        for statement in statements:
            await schema_editor.client.execute_script(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("onceonly", "0005_audit")]

    operations = [
        ops.RunPython(
            _runner({"sqlite": [], "postgres": POSTGRES}),
            reverse_code=_runner({"sqlite": [], "postgres": POSTGRES_REVERSE}),
        ),
    ]
