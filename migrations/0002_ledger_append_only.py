"""The ledger is append-only, enforced by the database itself.

SQLite: BEFORE UPDATE and BEFORE DELETE triggers that abort, and a BEFORE INSERT
trigger that requires the next contiguous index (which also defeats INSERT OR REPLACE,
whose replacement row would not be the next index). PostgreSQL: row triggers for UPDATE
and DELETE, the same contiguity trigger, and statement triggers for TRUNCATE.

Tiles may only grow: an update must keep the old hashes as a prefix. Openings may be
deleted (crypto-shredding) but never changed. Triggers are guardrails; the signed
checkpoints held outside the database are the evidence.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE = [
    """CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry
    BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only'); END""",
    """CREATE TRIGGER ledger_entry_no_delete BEFORE DELETE ON ledger_entry
    BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only'); END""",
    """CREATE TRIGGER ledger_entry_contiguous BEFORE INSERT ON ledger_entry
    WHEN NEW.idx IS NOT (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry)
    BEGIN SELECT RAISE(ABORT, 'ledger_entry index must be the next contiguous index'); END""",
    """CREATE TRIGGER ledger_checkpoint_no_update BEFORE UPDATE ON ledger_checkpoint
    BEGIN SELECT RAISE(ABORT, 'ledger_checkpoint is append-only'); END""",
    """CREATE TRIGGER ledger_checkpoint_no_delete BEFORE DELETE ON ledger_checkpoint
    BEGIN SELECT RAISE(ABORT, 'ledger_checkpoint is append-only'); END""",
    """CREATE TRIGGER ledger_tile_only_grows BEFORE UPDATE ON ledger_tile
    WHEN NEW.level IS NOT OLD.level OR NEW.number IS NOT OLD.number
      OR length(NEW.hashes) <= length(OLD.hashes)
      OR substr(NEW.hashes, 1, length(OLD.hashes)) IS NOT OLD.hashes
    BEGIN SELECT RAISE(ABORT, 'ledger_tile may only grow'); END""",
    """CREATE TRIGGER ledger_tile_no_delete BEFORE DELETE ON ledger_tile
    BEGIN SELECT RAISE(ABORT, 'ledger_tile is append-only'); END""",
    """CREATE TRIGGER ledger_opening_no_update BEFORE UPDATE ON ledger_opening
    BEGIN SELECT RAISE(ABORT, 'ledger_opening may be deleted, never changed'); END""",
]

SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "ledger_entry_no_update",
        "ledger_entry_no_delete",
        "ledger_entry_contiguous",
        "ledger_checkpoint_no_update",
        "ledger_checkpoint_no_delete",
        "ledger_tile_only_grows",
        "ledger_tile_no_delete",
        "ledger_opening_no_update",
    )
]

POSTGRES = [
    """CREATE FUNCTION onceonly_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE FUNCTION onceonly_ledger_contiguous() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.idx IS DISTINCT FROM (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry) THEN
        RAISE EXCEPTION 'ledger_entry index must be the next contiguous index'
          USING ERRCODE = 'integrity_constraint_violation';
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE FUNCTION onceonly_tile_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.level IS DISTINCT FROM OLD.level OR NEW.number IS DISTINCT FROM OLD.number
         OR length(NEW.hashes) <= length(OLD.hashes)
         OR substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) IS DISTINCT FROM OLD.hashes THEN
        RAISE EXCEPTION 'ledger_tile may only grow'
          USING ERRCODE = 'insufficient_privilege';
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER ledger_entry_no_change BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION onceonly_append_only()""",
    """CREATE TRIGGER ledger_entry_contiguous BEFORE INSERT ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION onceonly_ledger_contiguous()""",
    """CREATE TRIGGER ledger_checkpoint_no_change BEFORE UPDATE OR DELETE ON ledger_checkpoint
    FOR EACH ROW EXECUTE FUNCTION onceonly_append_only()""",
    """CREATE TRIGGER ledger_tile_only_grows BEFORE UPDATE ON ledger_tile
    FOR EACH ROW EXECUTE FUNCTION onceonly_tile_only_grows()""",
    """CREATE TRIGGER ledger_tile_no_delete BEFORE DELETE ON ledger_tile
    FOR EACH ROW EXECUTE FUNCTION onceonly_append_only()""",
    """CREATE TRIGGER ledger_opening_no_update BEFORE UPDATE ON ledger_opening
    FOR EACH ROW EXECUTE FUNCTION onceonly_append_only()""",
    *[
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION onceonly_append_only()"""
        for table in ("ledger_entry", "ledger_checkpoint", "ledger_tile", "ledger_opening")
    ],
]

POSTGRES_REVERSE = [
    *[
        f"DROP TRIGGER IF EXISTS {trigger} ON {table}"
        for trigger, table in (
            ("ledger_entry_no_change", "ledger_entry"),
            ("ledger_entry_contiguous", "ledger_entry"),
            ("ledger_checkpoint_no_change", "ledger_checkpoint"),
            ("ledger_tile_only_grows", "ledger_tile"),
            ("ledger_tile_no_delete", "ledger_tile"),
            ("ledger_opening_no_update", "ledger_opening"),
            ("ledger_entry_no_truncate", "ledger_entry"),
            ("ledger_checkpoint_no_truncate", "ledger_checkpoint"),
            ("ledger_tile_no_truncate", "ledger_tile"),
            ("ledger_opening_no_truncate", "ledger_opening"),
        )
    ],
    "DROP FUNCTION IF EXISTS onceonly_append_only()",
    "DROP FUNCTION IF EXISTS onceonly_ledger_contiguous()",
    "DROP FUNCTION IF EXISTS onceonly_tile_only_grows()",
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
    dependencies = [("onceonly", "0001_initial")]

    operations = [
        ops.RunPython(
            _runner({"sqlite": SQLITE, "postgres": POSTGRES}),
            reverse_code=_runner({"sqlite": SQLITE_REVERSE, "postgres": POSTGRES_REVERSE}),
        ),
    ]
