"""`onceonly ledger ...` through the real entry point, on an SQLite database.

The log is filled by this test process with the same settings (and so the same signer
key under ONCEONLY_VAR_DIR) the command uses.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from app.keys import ledger_signer
from app.settings import Settings
from ledger.database import open_ledger_database
from ledger.log import TransparencyLog
from ledger.note import generate_signer, parse_vkey
from tests.app.test_cli import assert_one_line_error, onceonly
from tests.factories import make_entry
from tests.ledger.test_tamper import flip, tamper
from tests.support import run_sync

NOWHERE = "postgres://nowhere.invalid/x"


def settings_for(var: Path) -> Settings:
    """The settings the `onceonly` subprocess builds from ONCEONLY_VAR_DIR=var."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    return Settings.from_env({**environ, "ONCEONLY_VAR_DIR": str(var)})


async def fill(settings: Settings, batches: tuple[int, ...]) -> None:
    log = await TransparencyLog.open(
        settings.database_url, ledger_signer(settings), settings.log_origin
    )
    try:
        for count in batches:
            await log.append_all([(make_entry(), None) for _ in range(count)])
    finally:
        await log.close()


async def change_leaf(settings: Settings, index: int) -> None:
    db = open_ledger_database(settings.database_url)
    await db.connect()
    try:
        rows = await db.fetch("SELECT leaf FROM ledger_entry WHERE idx = ?", index)
        sql = "UPDATE ledger_entry SET leaf = ? WHERE idx = ?"
        await tamper(db, "ledger_entry", sql, flip(bytes(rows[0][0]), 25), index)
    finally:
        await db.close()


@pytest.fixture
def var(tmp_path: Path) -> Path:
    """A migrated SQLite installation whose ledger holds 300 entries."""
    var = tmp_path / "var"
    migrated = onceonly("migrate", var=var)
    assert migrated.returncode == 0, migrated.stderr
    run_sync(fill(settings_for(var), (5, 260, 35)))
    return var


def test_verify_a_clean_ledger(var: Path) -> None:
    result = onceonly("ledger", "verify", var=var)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ledger verifies: 300 entries and ")
    assert result.stderr == "", "no progress bar when stderr is not a terminal"
    deep = onceonly("ledger", "verify", "--deep", var=var)
    assert deep.returncode == 0, deep.stdout


def test_verify_json(var: Path) -> None:
    result = onceonly("ledger", "verify", "--json", var=var)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["entries"] == report["tree_size"] == 300
    assert report["first_failure"] is None


def test_verify_names_a_changed_entry(var: Path) -> None:
    run_sync(change_leaf(settings_for(var), 42))
    result = onceonly("ledger", "verify", var=var)
    assert result.returncode == 1
    assert "entry 42: stored leaf hash does not match its bytes" in result.stdout
    as_json = json.loads(onceonly("ledger", "verify", "--json", var=var).stdout)
    assert as_json["ok"] is False
    assert as_json["failure_index"] == 42


def test_vkey_prints_the_verifier_key(var: Path) -> None:
    result = onceonly("ledger", "vkey", var=var)
    assert result.returncode == 0, result.stderr
    vkey = result.stdout.strip()
    assert result.stdout == vkey + "\n"
    assert vkey == ledger_signer(settings_for(var)).verifier().vkey
    assert parse_vkey(vkey).name == settings_for(var).log_origin


def verify_offline(bundle: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`onceonly ledger verify --bundle` with no var directory and no reachable database."""
    auditor = bundle.parent / "auditor"
    result = onceonly(
        "ledger",
        "verify",
        "--bundle",
        str(bundle),
        *options,
        var=auditor,
        ONCEONLY_DATABASE_URL=NOWHERE,
    )
    assert not auditor.exists(), "verifying a bundle creates nothing"
    return result


def test_export_then_verify_offline(var: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    exported = onceonly("ledger", "export", str(bundle), var=var)
    assert exported.returncode == 0, exported.stderr
    assert "exported 300 entries" in exported.stdout
    vkey = onceonly("ledger", "vkey", var=var).stdout.strip()

    offline = verify_offline(bundle, "--vkey", vkey)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert offline.stdout.startswith("The ledger verifies: 300 entries")
    assert json.loads(verify_offline(bundle, "--json").stdout)["ok"] is True

    other = generate_signer(settings_for(var).log_origin).verifier().vkey
    untrusted = verify_offline(bundle, "--vkey", other)
    assert untrusted.returncode == 1
    assert "is not the trusted key" in untrusted.stdout

    tile = bundle / "tile" / "0" / "000"
    tile.write_bytes(flip(tile.read_bytes(), 1000))
    changed = verify_offline(bundle)
    assert changed.returncode == 1
    assert "tile/0/000 does not match its SHA-256" in changed.stdout


def test_export_refuses_a_non_empty_directory(var: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = onceonly("ledger", "export", str(target), var=var)
    assert_one_line_error(result, "is not empty")
    assert [path.name for path in target.iterdir()] == ["notes.txt"]


def test_problems_are_one_line(tmp_path: Path) -> None:
    no_database = onceonly("ledger", "verify", var=tmp_path / "empty")
    assert_one_line_error(no_database, "run `onceonly migrate` first")
    no_bundle = onceonly("ledger", "verify", "--bundle", str(tmp_path / "nothing"), var=tmp_path)
    assert_one_line_error(no_bundle, "is not a bundle directory")
    bad_key = onceonly(
        "ledger", "verify", "--bundle", str(tmp_path), "--vkey", "not-a-key", var=tmp_path
    )
    assert_one_line_error(bad_key, "--vkey is not a verifier key")
    unreachable = onceonly("ledger", "verify", var=tmp_path, ONCEONLY_DATABASE_URL=NOWHERE)
    assert_one_line_error(unreachable, "cannot connect to the ledger database")
