"""`onceonly backup` and `onceonly restore` through the real entry point, on each database.

The source installation is the `database` fixture's migrated database, seeded with
`onceonly seed --demo` and a ledger whose checkpoints a witness (kept in this process,
deciding with ledger.witness.add_checkpoint as `onceonly witness serve` does) cosigns.
Restores go into fresh, empty databases: a new SQLite path, or a new PostgreSQL
database created like tests.support.PostgresServer creates every test database.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from app import witness_cli
from app.db import tortoise_config
from app.keys import ledger_signer, pseudonym_key
from app.schema import migration_names
from app.settings import Settings
from app.witnessing import published_checkpoint
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.database import open_ledger_database
from ledger.log import TransparencyLog
from ledger.note import Cosigner, encode_signer_key, generate_signer
from ledger.witness import (
    WitnessState,
    add_checkpoint,
    add_log,
    encode_cosigner_key,
    format_request,
)
from ledger.witness import cosign as cosign_text
from tests.app.test_cli import assert_one_line_error, free_port, onceonly
from tests.conftest import Database
from tests.factories import make_entry
from tests.ledger.test_tamper import flip, tamper
from tests.support import PostgresServer, run_sync, with_database

#: Rows that only grow while the log is appended to: compared up to the backup's size.
GROWING = {
    "ledger_entry": "idx < {n}",
    "ledger_opening": "idx < {n}",
    "ledger_checkpoint": "size <= {n}",
    "ledger_cosignature": "size <= {n}",
}


@dataclass
class Witness:
    """A witness kept in this process: its key and its state, as `witness serve` keeps."""

    cosigner: Cosigner = field(
        default_factory=lambda: Cosigner("ipc.test/w1", Ed25519PrivateKey.generate())
    )
    state: WitnessState = field(default_factory=WitnessState)

    @property
    def vkey(self) -> str:
        return self.cosigner.verifier().vkey


@dataclass
class Installation:
    """An ONCEONLY_VAR_DIR and database, configured with the witness (quorum 1)."""

    var: Path
    url: str
    witness: Witness
    witness_url: str = "http://127.0.0.1:9"  # only contacted by --ask-witnesses

    def env(self) -> dict[str, str]:
        return {
            "ONCEONLY_DATABASE_URL": self.url,
            "ONCEONLY_WITNESSES": f"{self.witness.vkey}={self.witness_url}",
            "ONCEONLY_WITNESS_QUORUM": "1",
        }

    @property
    def settings(self) -> Settings:
        return Settings.from_env({"ONCEONLY_VAR_DIR": str(self.var), **self.env()})

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return onceonly(*args, var=self.var, **{**self.env(), **env})


@pytest.fixture
def source(database: Database, tmp_path: Path) -> Installation:
    """The demo installation, its ledger's newest checkpoint cosigned."""
    installation = Installation(tmp_path / "var", database.url, Witness())
    seeded = installation.run("seed", "--demo")
    assert seeded.returncode == 0, seeded.stderr
    settings = installation.settings
    installation.witness.state = add_log(
        WitnessState(), ledger_signer(settings).verifier().vkey, settings.log_origin
    )
    return installation


@pytest.fixture
def empty_url(
    database: Database, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Make a new, empty database of the kind under test; return its URL."""
    made: list[str] = []
    count = iter(range(1000))

    def make() -> str:
        if database.kind == "sqlite":
            folder = tmp_path / f"restored-{next(count)}"
            folder.mkdir()
            return f"sqlite://{folder}/onceonly.sqlite3"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = run_sync(server.create())
        made.append(name)
        return with_database(server.url, name)

    yield make
    if made:
        server = request.getfixturevalue("postgres_server")
        for name in made:
            run_sync(server.drop(name))


def target(source: Installation, url: str, var: Path) -> Installation:
    return Installation(var, url, source.witness)


async def append(settings: Settings, count: int) -> int:
    """Append ``count`` entries (5 a transaction); return the ledger's size after."""
    log = await open_log(settings)
    try:
        for _ in range(0, count, 5):
            await log.append_all([(make_entry(), None) for _ in range(5)])
        return await log.size()
    finally:
        await log.close()


async def open_log(settings: Settings) -> TransparencyLog:
    return await TransparencyLog.open(
        settings.database_url, ledger_signer(settings), settings.log_origin
    )


async def cosign(settings: Settings, witness: Witness) -> bytes:
    """Have the witness cosign the newest checkpoint; return it as /ledger/checkpoint does."""
    log = await open_log(settings)
    try:
        latest = await log.latest_checkpoint()
        assert latest is not None
        held = witness.state.logs[settings.log_origin].size
        proof = await log.consistency_proof(held, latest.size)
        request = format_request(held, proof, latest.note)
        witness.state, line = add_checkpoint(
            witness.state, request, witness.cosigner, int(time.time())
        )
        async with log.db.write() as tx:
            await tx.execute(
                "INSERT INTO ledger_cosignature (size, witness, line, created_at) "
                "VALUES (?, ?, ?, ?)",
                latest.size,
                witness.vkey,
                line,
                datetime.now(UTC),
            )
        published = await published_checkpoint(log, [witness.vkey], 1)
        assert published == latest.note + line.encode()
        return published
    finally:
        await log.close()


async def rows(url: str, upto: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (the ledger's up to size ``upto``), in a stable order."""
    db = open_ledger_database(url)
    await db.connect()
    try:
        if db.kind == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        else:
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        found = {}
        for (table,) in await db.fetch(sql):
            if table in ("ledger_tile", "tortoise_migrations"):
                continue  # tiles grow in place (verified instead); migration times differ
            where = GROWING.get(table, "1 = 1").format(n=upto)
            result = await db.fetch(f"SELECT * FROM {table} WHERE {where}")  # noqa: S608
            found[table] = sorted((tuple(row) for row in result), key=repr)
        return found
    finally:
        await db.close()


def manifest_of(backup: Path) -> dict[str, Any]:
    with tarfile.open(backup) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())


def restore(
    into: Installation, backup: Path, *options: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return into.run("restore", str(backup), *options, **env)


async def test_backup_while_appending_then_restore_verifies_against_the_cosigned_checkpoint(
    source: Installation, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    settings = source.settings
    await append(settings, 300)
    cosigned = tmp_path / "checkpoint"
    cosigned.write_bytes(await cosign(settings, source.witness))
    backup = tmp_path / "onceonly.backup"

    # The backup runs in its own process while this one keeps appending, as a server would.
    log = await open_log(settings)
    try:
        before = await log.size()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
        environ.update({"ONCEONLY_VAR_DIR": str(source.var), **source.env()})
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "backup",
            str(backup),
            "--with-secrets",
            env=environ,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        communicate = asyncio.ensure_future(process.communicate())
        while not communicate.done():
            await log.append_all([(make_entry(), None) for _ in range(3)])
            await asyncio.sleep(0.01)
        out, err = communicate.result()
        after = await log.size()
    finally:
        await log.close()
    assert process.returncode == 0, err.decode()
    assert after > before, "entries were appended while the backup ran"
    assert "backed up the" in out.decode()
    assert "secret key files of" in err.decode() and "Keep it encrypted" in err.decode()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    manifest = manifest_of(backup)
    size = manifest["ledger"]["entries"]
    assert before <= size <= after
    assert manifest["database"] == source.settings.database_kind
    assert manifest["migration"] == migration_names()[-1]
    assert manifest["ledger"]["checkpoint"]["size"] == size
    assert set(manifest["files"]) >= {
        "secrets/ledger-signer.key",
        "secrets/pseudonym.key",
        "secrets/receipt-signing.pem",
    }

    # Into a fresh installation: an empty database and no var/secrets at all.
    restored = target(source, empty_url(), tmp_path / "restored-var")
    result = await asyncio.to_thread(restore, restored, backup, "--checkpoint", str(cosigned))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The ledger verifies" in result.stdout
    assert f"matches the checkpoint in {cosigned}" in result.stdout
    assert "It is cosigned by ipc.test/w1." in result.stdout
    assert "Restore complete" in result.stdout

    assert await rows(restored.url, size) == await rows(source.url, size)
    for name in ("ledger-signer.key", "pseudonym.key", "receipt-signing.pem"):
        kept = restored.var / "secrets" / name
        assert kept.read_bytes() == (source.var / "secrets" / name).read_bytes()
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    verified = await asyncio.to_thread(restored.run, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"The ledger verifies: {size:,} entries")


def test_a_backup_behind_the_cosigned_checkpoint_is_refused(
    source: Installation, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    settings = source.settings
    old_size = run_sync(append(settings, 20))
    run_sync(cosign(settings, source.witness))
    backup = tmp_path / "old.backup"
    made = source.run("backup", str(backup))
    assert made.returncode == 0, made.stderr
    assert "not in this backup: back them up separately" in made.stdout

    new_size = run_sync(append(settings, 40))
    newer = tmp_path / "checkpoint"
    newer.write_bytes(run_sync(cosign(settings, source.witness)))

    url = empty_url()
    var = tmp_path / "restored-var"
    (var / "secrets").mkdir(parents=True)
    for name in ("ledger-signer.key", "pseudonym.key"):  # as from the key backup
        key = var / "secrets" / name
        key.write_bytes((source.var / "secrets" / name).read_bytes())
        key.chmod(0o600)
    result = restore(target(source, url, var), backup, "--checkpoint", str(newer))
    missing = new_size - old_size
    assert_one_line_error(result, "BEHIND")
    assert f"{missing} entries appended after the backup are missing" in result.stderr
    assert "The ledger verifies" in result.stdout  # behind, not damaged
    if source.settings.database_kind == "sqlite":
        assert "nothing was put in place" in result.stderr
        assert not Path(url.removeprefix("sqlite://")).exists()
    else:
        assert "now holds this restored copy" in result.stderr

    # A checkpoint the witness did not cosign is no evidence under quorum 1.
    uncosigned = tmp_path / "uncosigned"
    uncosigned.write_bytes(newer.read_bytes().split(b"\n\n")[0] + b"\n\n" + log_signature(newer))
    refused = restore(target(source, empty_url(), var), backup, "--checkpoint", str(uncosigned))
    assert_one_line_error(refused, "has 0 witness cosignatures, needs 1")

    # The log's key and the witness signed another tree of a size the backup holds: a fork.
    forged_note = sign_checkpoint(
        Checkpoint(settings.log_origin, 5, bytes(32)), ledger_signer(settings)
    )
    text = forged_note.decode().split("\n\n")[0] + "\n"
    forged = tmp_path / "forged"
    forged.write_bytes(forged_note + cosign_text(text, source.witness.cosigner, 0).encode())
    fork = restore(target(source, empty_url(), var), backup, "--checkpoint", str(forged))
    assert_one_line_error(fork, f"disagrees with the checkpoint in {forged}")
    assert "at size 5 its root is" in fork.stderr


def log_signature(note: Path) -> bytes:
    """The first signature line of a checkpoint note: the log's own."""
    return note.read_bytes().split(b"\n\n")[1].splitlines(keepends=True)[0]


def test_a_tampered_backup_does_not_verify(
    source: Installation, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    settings = source.settings
    run_sync(append(settings, 30))
    backup = tmp_path / "onceonly.backup"
    assert source.run("backup", str(backup), "--with-secrets").returncode == 0
    tampered = tmp_path / "tampered.backup"

    if settings.database_kind == "sqlite":
        # One byte of entry 7's leaf, changed in the database file inside the backup, with
        # the manifest's checksum updated as a forger would.
        with tarfile.open(backup) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
        leaf = run_sync(leaf_of(source.url, 7))
        database = files["database.sqlite3"]
        at = database.index(leaf) + len(leaf) // 2
        files["database.sqlite3"] = flip(database, at)
        write_tar(tmp_path / "damaged.backup", files)
        damaged = restore(
            target(source, empty_url(), tmp_path / "v1"),
            tmp_path / "damaged.backup",
            "--no-checkpoint",
        )
        assert_one_line_error(damaged, "does not match its checksum in the manifest")

        manifest = json.loads(files["manifest.json"])
        manifest["files"]["database.sqlite3"]["sha256"] = sha256(files["database.sqlite3"])
        files["manifest.json"] = json.dumps(manifest).encode()
        write_tar(tampered, files)
    else:
        # Restore, change one byte of entry 7's leaf behind the database's guards, back
        # that up.
        scratch = target(source, empty_url(), tmp_path / "scratch-var")
        assert restore(scratch, backup, "--no-checkpoint").returncode == 0
        run_sync(change_leaf(scratch.url, 7))
        assert scratch.run("backup", str(tampered), "--with-secrets").returncode == 0

    url = empty_url()
    result = restore(target(source, url, tmp_path / "restored-var"), tampered, "--no-checkpoint")
    assert_one_line_error(result, "the restored ledger does NOT verify")
    assert "entry 7: stored leaf hash does not match its bytes" in result.stdout
    if settings.database_kind == "sqlite":
        assert not Path(url.removeprefix("sqlite://")).exists()


async def leaf_of(url: str, index: int) -> bytes:
    db = open_ledger_database(url)
    await db.connect()
    try:
        found = await db.fetch("SELECT leaf FROM ledger_entry WHERE idx = ?", index)
        return bytes(found[0][0])
    finally:
        await db.close()


async def change_leaf(url: str, index: int) -> None:
    db = open_ledger_database(url)
    await db.connect()
    try:
        leaf = (await db.fetch("SELECT leaf FROM ledger_entry WHERE idx = ?", index))[0][0]
        sql = "UPDATE ledger_entry SET leaf = ? WHERE idx = ?"
        await tamper(db, "ledger_entry", sql, flip(bytes(leaf), 25), index)
    finally:
        await db.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_restore_refuses_a_database_that_is_not_empty(source: Installation, tmp_path: Path) -> None:
    backup = tmp_path / "onceonly.backup"
    assert source.run("backup", str(backup)).returncode == 0
    before = run_sync(rows(source.url, 10**9))
    result = restore(source, backup, "--no-checkpoint")
    assert_one_line_error(result, "is not empty")
    assert run_sync(rows(source.url, 10**9)) == before

    if source.settings.database_kind == "sqlite":
        # An empty database file that something holds open (its WAL is there).
        busy = tmp_path / "busy" / "onceonly.sqlite3"
        busy.parent.mkdir()
        busy.touch()
        busy.with_name("onceonly.sqlite3-wal").touch()
        in_use = restore(target(source, f"sqlite://{busy}", source.var), backup, "--no-checkpoint")
        assert_one_line_error(in_use, "is in use or was not closed cleanly")


def test_restore_needs_the_ledger_key_and_a_way_to_check(
    source: Installation, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    backup = tmp_path / "onceonly.backup"
    assert source.run("backup", str(backup)).returncode == 0
    into = target(source, empty_url(), tmp_path / "restored-var")
    no_key = restore(into, backup, "--no-checkpoint")
    assert_one_line_error(no_key, "there is no ledger key at")
    (into.var / "secrets").mkdir(parents=True)
    key = into.var / "secrets" / "ledger-signer.key"
    key.write_bytes((source.var / "secrets" / "ledger-signer.key").read_bytes())
    key.chmod(0o600)
    no_pseudonyms = restore(into, backup, "--no-checkpoint")
    assert_one_line_error(no_pseudonyms, "there is no pseudonym key at")

    # The backup's keys, and the installation's own other keys, do not mix silently.
    with_keys = tmp_path / "with-keys.backup"
    assert source.run("backup", str(with_keys), "--with-secrets").returncode == 0
    key.write_text(encode_signer_key(generate_signer(source.settings.log_origin)) + "\n")
    clash = restore(into, with_keys, "--no-checkpoint")
    assert_one_line_error(clash, f"{key} differs from the copy in the backup")
    pseudonym_key(into.settings)  # a new one: only --keep-secrets lets it pass
    kept = restore(into, with_keys, "--no-checkpoint", "--keep-secrets")
    assert_one_line_error(kept, "the restored ledger does NOT verify (are the keys in")
    assert "The ledger does NOT verify: checkpoint 0: " in kept.stdout
    unsaid = restore(into, backup)
    assert unsaid.returncode == 2
    assert "--checkpoint NOTE and/or --ask-witnesses, or --no-checkpoint" in unsaid.stderr
    again = source.run("backup", str(backup))
    assert_one_line_error(again, "already exists")


def test_restore_refuses_a_backup_it_cannot_use(source: Installation, tmp_path: Path) -> None:
    backup = tmp_path / "onceonly.backup"
    assert source.run("backup", str(backup)).returncode == 0
    with tarfile.open(backup) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    manifest = json.loads(files["manifest.json"])
    manifest["migrations"].append("0999_future")
    files["manifest.json"] = json.dumps(manifest).encode()
    newer = tmp_path / "newer.backup"
    write_tar(newer, files)
    fresh = tmp_path / "fresh-var"
    kind = source.settings.database_kind
    other_url = "postgres://nowhere.invalid/x" if kind == "sqlite" else f"sqlite://{fresh}/x.db"
    assert_one_line_error(
        restore(target(source, other_url, fresh), backup, "--no-checkpoint"),
        "a restore does not convert between them",
    )
    assert_one_line_error(
        restore(target(source, source.url, fresh), newer, "--no-checkpoint"),
        "made by a newer Onceonly (migration 0999_future",
    )
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    assert_one_line_error(
        restore(source, not_a_backup, "--no-checkpoint"), "is not a readable Onceonly backup"
    )


def test_restore_migrates_an_older_backup(
    database: Database, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    older = Installation(tmp_path / "old-var", empty_url(), Witness())
    penultimate = migration_names()[-2]

    async def migrate_to_penultimate() -> None:
        await tortoise_migrate(
            config=tortoise_config(older.settings), target=f"onceonly.{penultimate}"
        )
        await Tortoise.close_connections()

    run_sync(migrate_to_penultimate())
    backup = tmp_path / "older.backup"
    made = older.run("backup", str(backup), "--with-secrets")
    assert_one_line_error(made, "there are no secrets")
    ledger_signer(older.settings)  # the installation's keys, generated on first use
    pseudonym_key(older.settings)
    made = older.run("backup", str(backup), "--with-secrets")
    assert made.returncode == 0, made.stderr
    assert manifest_of(backup)["migration"] == penultimate

    into = target(older, empty_url(), tmp_path / "restored-var")
    result = restore(into, backup, "--no-checkpoint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"applied migration {migration_names()[-1]}" in result.stdout
    assert "NOT compared with a cosigned checkpoint" in result.stdout
    assert into.run("migrate").stdout.strip() == "database is up to date"


def test_restore_asks_the_witnesses(
    source: Installation, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    settings = source.settings
    run_sync(append(settings, 20))
    run_sync(cosign(settings, source.witness))
    old = tmp_path / "old.backup"
    assert source.run("backup", str(old), "--with-secrets").returncode == 0
    run_sync(append(settings, 40))
    run_sync(cosign(settings, source.witness))
    new = tmp_path / "new.backup"
    assert source.run("backup", str(new), "--with-secrets").returncode == 0
    held = manifest_of(new)["ledger"]["entries"]
    missing = held - manifest_of(old)["ledger"]["entries"]

    # The witness, served by `onceonly witness serve` from the state it has now.
    state = tmp_path / "witness"
    state.mkdir(mode=0o700)
    key = state / witness_cli.KEY_FILE
    key.write_text(encode_cosigner_key(source.witness.cosigner) + "\n")
    key.chmod(0o600)
    witness_cli.save_state(state, source.witness.state)
    port = free_port()
    command = ["witness", "serve", "--state", str(state), "--port", str(port)]
    served = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *command],
        env={k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        behind = restore(
            Installation(tmp_path / "v-old", empty_url(), source.witness, url),
            old,
            "--ask-witnesses",
        )
        assert_one_line_error(behind, "BEHIND what the witnesses hold")
        assert f"{missing} entries appended after the backup are missing" in behind.stderr

        current = Installation(tmp_path / "v-new", empty_url(), source.witness, url)
        result = restore(current, new, "--ask-witnesses")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"witness ipc.test/w1: cosigned the restored checkpoint of size {held}" in (
            result.stdout
        )
    finally:
        served.terminate()
        served.wait(timeout=10)


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_missing_or_old_postgres_tools_are_a_clear_error(
    source: Installation, empty_url: Callable[[], str], tmp_path: Path
) -> None:
    backup = tmp_path / "onceonly.backup"
    assert source.run("backup", str(backup), "--with-secrets").returncode == 0
    bare = tmp_path / "bin"
    bare.mkdir()
    missing = source.run("backup", str(tmp_path / "b2"), PATH=str(bare))
    assert_one_line_error(missing, "pg_dump was not found on PATH")
    into = target(source, empty_url(), tmp_path / "restored-var")
    no_restore = restore(into, backup, "--no-checkpoint", PATH=str(bare))
    assert_one_line_error(no_restore, "pg_restore was not found on PATH")

    old = bare / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o755)
    too_old = source.run("backup", str(tmp_path / "b3"), "--pg-bin", str(bare))
    assert_one_line_error(too_old, "older than the server")
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
