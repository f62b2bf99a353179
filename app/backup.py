"""Backing up an installation, and restoring a backup with its ledger verified.

A backup is one tar file, written with mode 0600 because the database holds personal
data: ``manifest.json`` says what it holds; then the database, either
``database.sqlite3`` (a copy made with SQLite's online backup API, gzip-compressed) or
``database.pgdump`` (``pg_dump --format=custom`` of the configured schema, already
compressed); and, only when asked, the files of ``var/secrets`` under ``secrets/``.
Both copies are consistent while Onceonly keeps appending: SQLite's backup copies one
read transaction, and pg_dump runs in the snapshot of the transaction that reads the
manifest's facts, so the manifest describes exactly the rows dumped.

A restore goes into an empty database only. It runs the migrations a backup made by an
older Onceonly lacks, checks that every table holds the rows the manifest counted,
verifies the whole ledger (``ledger.verify.verify_database``) and compares it with a
cosigned checkpoint: a signed checkpoint note the operator kept (for instance from
``/ledger/checkpoint``), or what the configured witnesses hold. A restored ledger
smaller than that checkpoint lost the entries appended since the backup; appending to
it would give new entries the indices the witnesses have seen with other entries (a
fork), so the restore is refused.

On SQLite the restore is built beside the target and moved into place only once
everything checks; on PostgreSQL pg_restore writes into the target database, which
then keeps a refused restore for inspection.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg
import httpx

from app.db import DatabaseError, describe_connection_error, sqlite_path
from app.keys import LedgerKeys, ledger_keys
from app.schema import apply_migrations, migration_names
from app.settings import Settings, _redact
from ledger.checkpoint import Checkpoint, LogKeys, open_checkpoint, parse_checkpoint
from ledger.database import LedgerDatabase, open_ledger_database
from ledger.errors import CheckpointError, LedgerError, NoteError
from ledger.log import TransparencyLog
from ledger.merkle import EMPTY_ROOT, tree_nodes, tree_root
from ledger.note import open_note, parse_vkey
from ledger.tilestore import TileStore
from ledger.verify import VerifyReport, verify_database
from ledger.witness import SIZE_MEDIA_TYPE, format_request

FORMAT = "onceonly-backup/1"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
POSTGRES_FILE = "database.pgdump"
SECRETS = "secrets/"
#: The pseudonym key in use, wherever ONCEONLY_PSEUDONYM_KEY_FILE puts it.
PSEUDONYM_MEMBER = SECRETS + "pseudonym.key"
LEDGER_KEY_FILE = "ledger-signer.key"
RECEIPT_KEY_FILE = "receipt-signing.pem"

#: Says a line for a person (the command prints it).
Say = Callable[[str], None]

_CHUNK = 1 << 20
_WITNESS_TIMEOUT = 10.0
_TOOL_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")

_ENTRIES_SQL = "SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entry"
_NEWEST_CHECKPOINT_SQL = "SELECT size, root_hash FROM ledger_checkpoint ORDER BY size DESC LIMIT 1"
_MIGRATIONS_SQL = "SELECT name FROM tortoise_migrations WHERE app = 'onceonly'"


class BackupError(Exception):
    """A backup or restore cannot go on, or was refused; the message is one line."""


# --- What a backup holds ---------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseFacts:
    """What one consistent view of the database holds, as the manifest records it.

    ``tables`` counts the rows of every table; ``entries`` is the ledger's length and
    ``checkpoint`` the size and base64 root of its newest checkpoint (None if none).
    """

    migrations: tuple[str, ...]
    tables: dict[str, int]
    entries: int
    checkpoint: tuple[int, str] | None

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


@dataclass(frozen=True)
class Manifest:
    """The ``manifest.json`` of a backup.

    ``files`` maps each other member of the backup to its SHA-256 (hex) and byte count,
    which catch a damaged file (not a forged one: the ledger's verification does that).
    """

    created_at: str
    database: str  # "sqlite" or "postgres"
    schema: str | None  # PostgreSQL: the schema dumped
    origin: str
    facts: DatabaseFacts
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    postgres: dict[str, Any] | None = None  # server_version_num, pg_dump major version

    @property
    def secrets(self) -> list[str]:
        return sorted(name for name in self.files if name.startswith(SECRETS))

    @property
    def migration(self) -> str:
        return self.facts.migrations[-1] if self.facts.migrations else "none"

    def describe(self) -> str:
        """One line: when, which database, migration level, rows and ledger."""
        return (
            f"{self.database} database of {self.created_at} at migration {self.migration}: "
            f"{self.facts.rows:,} rows in {len(self.facts.tables)} tables; "
            f"{describe_ledger(self.facts)}"
        )

    def to_json(self) -> dict[str, Any]:
        checkpoint = self.facts.checkpoint
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "database": self.database,
            "schema": self.schema,
            "migration": self.migration,
            "migrations": list(self.facts.migrations),
            "ledger": {
                "origin": self.origin,
                "entries": self.facts.entries,
                "checkpoint": (
                    {"size": checkpoint[0], "root": checkpoint[1]} if checkpoint else None
                ),
            },
            "tables": self.facts.tables,
            "postgres": self.postgres,
            "files": self.files,
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Read a manifest. Raises BackupError when it is not one this Onceonly reads."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise BackupError(f"the manifest is not {FORMAT} (found {found!r})")
        try:
            ledger = data["ledger"]
            checkpoint = ledger["checkpoint"]
            facts = DatabaseFacts(
                migrations=tuple(str(name) for name in data["migrations"]),
                tables={str(k): int(v) for k, v in data["tables"].items()},
                entries=int(ledger["entries"]),
                checkpoint=(
                    (int(checkpoint["size"]), str(checkpoint["root"])) if checkpoint else None
                ),
            )
            manifest = cls(
                created_at=str(data["created_at"]),
                database=str(data["database"]),
                schema=data["schema"],
                origin=str(ledger["origin"]),
                facts=facts,
                files={str(k): dict(v) for k, v in data["files"].items()},
                postgres=data.get("postgres"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackupError(f"the manifest is incomplete ({type(exc).__name__}: {exc})") from None
        if manifest.database not in ("sqlite", "postgres"):
            raise BackupError(f"the manifest names an unknown database {manifest.database!r}")
        return manifest


def describe_ledger(facts: DatabaseFacts) -> str:
    if facts.checkpoint is None:
        return f"ledger of {facts.entries:,} entries without a checkpoint"
    size, root = facts.checkpoint
    return f"ledger of {facts.entries:,} entries, newest checkpoint size {size:,} root {root}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _facts(
    migrations: Sequence[Any], tables: dict[str, int], entries: Any, newest: Sequence[Any] | None
) -> DatabaseFacts:
    if "ledger_entry" not in tables or "tortoise_migrations" not in tables:
        raise BackupError("the database holds no Onceonly tables; run `onceonly migrate` first")
    return DatabaseFacts(
        migrations=tuple(sorted(str(row[0]) for row in migrations)),
        tables=tables,
        entries=int(entries),
        checkpoint=(int(newest[0]), _b64(bytes(newest[1]))) if newest else None,
    )


def sqlite_facts(conn: sqlite3.Connection) -> DatabaseFacts:
    """The facts of an SQLite database, read in one transaction of ``conn``."""
    conn.execute("BEGIN")
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        tables = {
            name: conn.execute(f"SELECT COUNT(*) FROM {_ident(name)}").fetchone()[0]  # noqa: S608
            for name in names
        }
        if "ledger_entry" not in tables or "tortoise_migrations" not in tables:
            return _facts([], tables, 0, None)
        return _facts(
            conn.execute(_MIGRATIONS_SQL).fetchall(),
            tables,
            conn.execute(_ENTRIES_SQL).fetchone()[0],
            conn.execute(_NEWEST_CHECKPOINT_SQL).fetchone(),
        )
    finally:
        conn.execute("ROLLBACK")


async def postgres_facts(conn: asyncpg.Connection, schema: str) -> DatabaseFacts:
    """The facts of the schema, read on ``conn`` (in its current transaction)."""
    names = [
        row[0]
        for row in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
        )
    ]
    tables = {}
    for name in names:
        sql = f"SELECT COUNT(*) FROM {_ident(schema)}.{_ident(name)}"  # noqa: S608
        tables[name] = int(await conn.fetchval(sql))
    if "ledger_entry" not in tables or "tortoise_migrations" not in tables:
        return _facts([], tables, 0, None)
    return _facts(
        await conn.fetch(_MIGRATIONS_SQL),
        tables,
        await conn.fetchval(_ENTRIES_SQL),
        await conn.fetchrow(_NEWEST_CHECKPOINT_SQL),
    )


# --- PostgreSQL and its client tools ---------------------------------------------------


@dataclass(frozen=True)
class PostgresTarget:
    """The configured PostgreSQL database, as asyncpg and the libpq tools reach it.

    The tools get the URL without its password, which travels in PGPASSWORD so that it
    never shows in a process listing.
    """

    url: str  # for asyncpg, password included
    tool_url: str  # for pg_dump and pg_restore, no password
    password: str | None
    schema: str
    display: str  # for messages

    @classmethod
    def from_url(cls, database_url: str) -> PostgresTarget:
        parts = urlsplit(database_url)
        schema = parse_qs(parts.query).get("schema", ["public"])[-1]
        userinfo, at, hostport = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        tool_netloc = f"{user}@{hostport}" if at else hostport
        return cls(
            url=urlunsplit(("postgresql", parts.netloc, parts.path, "", "")),
            tool_url=urlunsplit(("postgresql", tool_netloc, parts.path, "", "")),
            password=unquote(password) if colon else None,
            schema=schema,
            display=_redact(database_url),
        )

    def tool_environment(self) -> dict[str, str]:
        environment = dict(os.environ)  # the tools need PATH, HOME (.pgpass), locale...
        if self.password is not None:
            environment["PGPASSWORD"] = self.password
        return environment

    async def connect(self) -> asyncpg.Connection:
        """A connection whose search path is the schema. Raises DatabaseError."""
        try:
            return await asyncpg.connect(
                self.url, timeout=10, server_settings={"search_path": self.schema}
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise DatabaseError(describe_connection_error(exc, self.display)) from exc


@dataclass(frozen=True)
class Tool:
    """A PostgreSQL client program and its major version."""

    path: str
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def name(self) -> str:
        return Path(self.path).name


def find_tool(name: str, directory: Path | None) -> Tool:
    """Find ``pg_dump`` or ``pg_restore`` in ``directory`` or else on PATH, with its version.

    Raises BackupError naming what to install when it is missing or does not run.
    """
    if directory is not None:
        candidate = directory / name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            raise BackupError(f"there is no {name} program in {directory} (--pg-bin)")
        path = str(candidate)
    else:
        found = shutil.which(name)
        if found is None:
            raise BackupError(
                f"{name} was not found on PATH: install the PostgreSQL client programs of the "
                "server's major version or newer (Debian: postgresql-client), or give "
                "--pg-bin DIR"
            )
        path = found
    try:
        result = subprocess.run(  # noqa: S603 - a PostgreSQL tool found above, no shell
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"cannot run {path}: {exc}") from None
    match = _TOOL_VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise BackupError(f"{path} --version does not say which PostgreSQL it belongs to")
    return Tool(path, match[1] + (f".{match[2]}" if match[2] else ""))


async def _run_tool(tool: Tool, args: Sequence[str], target: PostgresTarget) -> str:
    """Run a PostgreSQL tool; return its output. Raises BackupError with its first error."""
    process = await asyncio.create_subprocess_exec(
        tool.path,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=target.tool_environment(),
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"{tool.name} failed: {_first_error(err.decode(errors='replace'))}")
    return out.decode(errors="replace")


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    chosen = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return (chosen or "no message")[:300]


# --- Backup ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    manifest: Manifest
    bytes: int


async def create_backup(
    settings: Settings, target: Path, *, with_secrets: bool = False, pg_bin: Path | None = None
) -> BackupSummary:
    """Write a backup of the configured database (and ``var/secrets`` if asked) to ``target``.

    Runs while Onceonly serves. Refuses an existing ``target``. Raises BackupError or
    DatabaseError with one line when the backup cannot be made; nothing is left behind.
    """
    _check_new_file(target)
    secret_files = collect_secrets(settings) if with_secrets else []
    # Beside the target: the copy may be as large as the database, and holds personal
    # data (mkdtemp makes the folder 0700).
    work = Path(tempfile.mkdtemp(prefix=".onceonly-backup-", dir=target.parent))
    try:
        postgres = None
        schema = None
        if settings.database_kind == "sqlite":
            database = work / SQLITE_FILE
            facts = await asyncio.to_thread(copy_sqlite, _sqlite_file(settings), database)
        else:
            database = work / POSTGRES_FILE
            pg = PostgresTarget.from_url(settings.database_url)
            schema = pg.schema
            facts, postgres = await dump_postgres(pg, database, find_tool("pg_dump", pg_bin))
        members = [(database.name, database), *secret_files]
        manifest = Manifest(
            created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            database=settings.database_kind,
            schema=schema,
            origin=settings.log_origin,
            facts=facts,
            files={name: _file_digest(path) for name, path in members},
            postgres=postgres,
        )
        compress = settings.database_kind == "sqlite"  # a pg_dump archive is compressed
        size = await asyncio.to_thread(write_package, target, manifest, members, compress=compress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupSummary(target, manifest, size)


def _check_new_file(target: Path) -> None:
    if target.exists() or target.is_symlink():
        raise BackupError(f"{target} already exists; choose a new file name")
    if not target.parent.is_dir():
        raise BackupError(f"there is no folder {target.parent}")


def _sqlite_file(settings: Settings) -> Path:
    path = sqlite_path(settings.database_url)
    if not path or path == ":memory:":
        raise BackupError("an in-memory database cannot be backed up or restored")
    return Path(path)


def copy_sqlite(source: Path, copy: Path) -> DatabaseFacts:
    """Copy the live database ``source`` to ``copy`` with SQLite's online backup API.

    One step, so the copy is one read transaction's view (WAL lets the writers go on).
    The copy is switched to a rollback journal, so it is one self-contained file.
    """
    if not source.is_file():
        raise BackupError(f"there is no database at {source}; run `onceonly migrate` first")
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(copy, isolation_level=None)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {source} fails SQLite's integrity check: {check}")
            return sqlite_facts(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the database at {source}: {exc}") from exc
    finally:
        src.close()


async def dump_postgres(
    target: PostgresTarget, out: Path, pg_dump: Tool
) -> tuple[DatabaseFacts, dict[str, Any]]:
    """``pg_dump --format=custom`` the schema into ``out``; return its facts.

    The facts are read in a repeatable-read transaction whose snapshot pg_dump uses.
    Raises BackupError when pg_dump is older than the server or fails.
    """
    conn = await target.connect()
    try:
        server = int(await conn.fetchval("SHOW server_version_num"))
        if pg_dump.major < server // 10000:
            raise BackupError(
                f"{pg_dump.path} is version {pg_dump.version}, older than the server "
                f"(PostgreSQL {server // 10000}); install the client programs of version "
                f"{server // 10000} or newer, or give --pg-bin DIR"
            )
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            facts = await postgres_facts(conn, target.schema)
            await _run_tool(
                pg_dump,
                [
                    "--format=custom",
                    "--no-password",
                    f"--snapshot={snapshot}",
                    f"--schema={_ident(target.schema)}",
                    f"--file={out}",
                    f"--dbname={target.tool_url}",
                ],
                target,
            )
    finally:
        await conn.close()
    return facts, {"server_version_num": server, "pg_dump_version": pg_dump.version}


def collect_secrets(settings: Settings) -> list[tuple[str, Path]]:
    """The secret files to back up: (member name, path). Raises BackupError if none."""
    found: list[tuple[str, Path]] = []
    pseudonym = pseudonym_key_path(settings)
    if pseudonym.is_file():
        found.append((PSEUDONYM_MEMBER, pseudonym))
    directory = settings.secrets_dir
    if directory.is_dir():
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory).as_posix()
            # Dot files are the key files' temporary copies; pseudonym.key is taken above
            # (or is not the one in use).
            if not path.is_file() or path.name.startswith(".") or relative == "pseudonym.key":
                continue
            found.append((SECRETS + relative, path))
    if not found:
        raise BackupError(f"--with-secrets: there are no secrets in {directory}")
    return found


def pseudonym_key_path(settings: Settings) -> Path:
    """Where the pseudonym key is (as ``app.keys.pseudonym_key`` finds it)."""
    return settings.pseudonym_key_file or settings.secrets_dir / "pseudonym.key"


def _file_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def write_package(
    target: Path, manifest: Manifest, members: Sequence[tuple[str, Path]], *, compress: bool
) -> int:
    """Write the backup file: the manifest first, then the members; mode 0600, durable.

    The file appears under its name only when complete, and never replaces another.
    Returns its size in bytes.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            options: dict[str, Any] = {"compresslevel": 6} if compress else {}
            with tarfile.open(fileobj=raw, mode="w:gz" if compress else "w", **options) as tar:
                data = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
                tar.addfile(_tar_info(MANIFEST, len(data)), _BytesReader(data))
                for name, path in members:
                    with path.open("rb") as f:
                        tar.addfile(_tar_info(name, path.stat().st_size), f)
            raw.flush()
            os.fsync(raw.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise BackupError(f"{target} already exists; choose a new file name") from None
        _fsync_folder(target.parent)
        return target.stat().st_size
    finally:
        tmp.unlink(missing_ok=True)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk = bytes(self._data[self._at : end])
        self._at += len(chunk)
        return chunk


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    return info


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Reading a backup -------------------------------------------------------------------


def open_package(path: Path, into: Path) -> Manifest:
    """Unpack the backup at ``path`` into the folder ``into``; check it is whole.

    Only the members a backup has are accepted, each written 0600 under ``into``, and
    each must match the SHA-256 the manifest gives it. Raises BackupError.
    """
    if not path.is_file():
        raise BackupError(f"there is no backup at {path}")
    digests: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or not _is_member_name(name) or name in digests:
                    raise BackupError(f"{path} holds {name!r}: it is not an Onceonly backup")
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                digests[name] = _unpack(source, into / name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BackupError(f"{path} is not a readable Onceonly backup: {exc}") from None
    if MANIFEST not in digests:
        raise BackupError(f"{path} has no {MANIFEST}: it is not an Onceonly backup")
    try:
        manifest = Manifest.from_json(json.loads((into / MANIFEST).read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackupError(f"the manifest of {path} is not JSON: {exc}") from None
    except BackupError as exc:
        raise BackupError(f"{path}: {exc}") from None
    del digests[MANIFEST]
    if set(digests) != set(manifest.files):
        raise BackupError(f"{path} does not hold the files its manifest lists: it is incomplete")
    for name, digest in digests.items():
        if digest != manifest.files[name]:
            raise BackupError(
                f"{name} in {path} does not match its checksum in the manifest: the backup "
                "is damaged"
            )
    database = SQLITE_FILE if manifest.database == "sqlite" else POSTGRES_FILE
    if database not in digests:
        raise BackupError(f"{path} holds no {database}: it is incomplete")
    return manifest


def _is_member_name(name: str) -> bool:
    if name in (MANIFEST, SQLITE_FILE, POSTGRES_FILE):
        return True
    if not name.startswith(SECRETS):
        return False
    parts = name[len(SECRETS) :].split("/")
    return all(part and part not in (".", "..") and "\\" not in part for part in parts)


def _unpack(source: Any, dest: Path) -> dict[str, Any]:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


# --- Restore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreOptions:
    """How to check the restored ledger beyond its own verification.

    ``checkpoint``: a signed checkpoint note the ledger must reach (None: none given);
    ``ask_witnesses``: have the configured witnesses check the restored tree;
    ``keep_secrets``: use the secrets in ``var/secrets``, not the backup's.
    """

    checkpoint: bytes | None = None
    checkpoint_name: str = "the checkpoint"
    ask_witnesses: bool = False
    keep_secrets: bool = False
    pg_bin: Path | None = None


async def restore_backup(
    settings: Settings, package: Path, options: RestoreOptions, say: Say
) -> None:
    """Restore the backup at ``package`` into the configured, empty database.

    Tells progress and findings through ``say``. Raises BackupError (or DatabaseError,
    KeyFileError) with one line when the restore cannot be made or is refused: an
    unusable backup, a non-empty or busy target, a missing key, a ledger that does not
    verify, is behind the cosigned checkpoint or disagrees with it. Everything that can
    be checked before writing anything is checked first.
    """
    with tempfile.TemporaryDirectory(
        prefix=".onceonly-restore-", dir=_work_folder(settings)
    ) as work_name:
        work = Path(work_name)
        manifest = open_package(package, work)
        say(f"backup: {manifest.describe()}")
        _check_fits(manifest, settings)
        secret_plan = {} if options.keep_secrets else _plan_secrets(settings, work, manifest)
        keys = _ledger_keys(settings, work, secret_plan)
        _check_other_keys(settings, secret_plan, say)
        expected = None
        if options.checkpoint is not None:
            expected = open_cosigned(
                options.checkpoint, options.checkpoint_name, keys.verifiers(), settings
            )
        if options.ask_witnesses and not settings.witnesses:
            raise BackupError(
                "--ask-witnesses: no witnesses are configured (ONCEONLY_WITNESSES); give "
                "--checkpoint FILE instead"
            )
        target = await _Target.check(settings, manifest, work, options.pg_bin)

        for name, (source, dest) in secret_plan.items():
            _write_secret(source, dest)
            say(f"restored secret {name[len(SECRETS) :]} to {dest}")
        await target.load(work)
        try:
            await _check_rows(target.url, manifest, target.schema)
            say(f"restored {manifest.facts.rows:,} rows in {len(manifest.facts.tables)} tables")
            migrating = dataclasses.replace(settings, database_url=target.url)
            for name in await apply_migrations(migrating):
                say(f"applied migration {name} (the backup is older than this Onceonly)")
            await _check_ledger(target.url, keys, settings, expected, options, say)
        except BackupError as exc:
            raise BackupError(f"{exc}; {target.refused}") from None
        say(f"restored into {target.finish()}")


@dataclass
class _Target:
    """Where a restore goes, checked empty: the URL the restored copy is checked at."""

    url: str
    schema: str | None  # PostgreSQL
    refused: str  # what a refusal after loading leaves behind
    sqlite: Path | None = None  # the SQLite file the checked copy replaces
    postgres: PostgresTarget | None = None
    pg_restore: Tool | None = None

    @classmethod
    async def check(
        cls, settings: Settings, manifest: Manifest, work: Path, pg_bin: Path | None
    ) -> _Target:
        """The configured database, once known to be empty and not in use."""
        if settings.database_kind == "sqlite":
            path = _sqlite_file(settings)
            check_sqlite_target(path)
            return cls(
                url=_sqlite_url(settings.database_url, work / SQLITE_FILE),
                schema=None,
                refused=f"nothing was put in place at {path}",
                sqlite=path,
            )
        pg = PostgresTarget.from_url(settings.database_url)
        tool = find_tool("pg_restore", pg_bin)
        await check_postgres_target(pg, manifest, tool)
        return cls(
            url=settings.database_url,
            schema=pg.schema,
            refused=f"the database {pg.display} now holds this restored copy: do not serve "
            "from it, drop and re-create it before restoring another backup",
            postgres=pg,
            pg_restore=tool,
        )

    async def load(self, work: Path) -> None:
        """PostgreSQL: pg_restore the dump (SQLite's copy is already at ``url``)."""
        if self.postgres is not None and self.pg_restore is not None:
            await restore_postgres(self.postgres, work / POSTGRES_FILE, self.pg_restore, work)

    def finish(self) -> str:
        """Put a checked SQLite copy in place; return where the restore now is."""
        if self.sqlite is not None:
            _put_in_place(Path(sqlite_path(self.url) or ""), self.sqlite)
            return str(self.sqlite)
        assert self.postgres is not None
        return self.postgres.display


def _work_folder(settings: Settings) -> Path | None:
    """SQLite: unpack beside the target, so the finished copy is renamed into place."""
    if settings.database_kind != "sqlite":
        return None
    folder = _sqlite_file(settings).parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_fits(manifest: Manifest, settings: Settings) -> None:
    kind = settings.database_kind
    if manifest.database != kind:
        raise BackupError(
            f"the backup holds a {manifest.database} database and the configured database is "
            f"{kind}; a restore does not convert between them"
        )
    if manifest.origin != settings.log_origin:
        raise BackupError(
            f"the backup is of the ledger {manifest.origin!r} and ONCEONLY_LOG_ORIGIN is "
            f"{settings.log_origin!r}"
        )
    unknown = sorted(set(manifest.facts.migrations) - set(migration_names()))
    if unknown:
        raise BackupError(
            f"the backup was made by a newer Onceonly (migration {unknown[0]} is unknown "
            "here); restore it with that version or a later one"
        )
    if kind == "postgres":
        schema = PostgresTarget.from_url(settings.database_url).schema
        if manifest.schema != schema:
            raise BackupError(
                f"the backup holds the schema {manifest.schema!r} and the configured database "
                f"uses {schema!r}; a restore keeps the schema's name"
            )


def _plan_secrets(
    settings: Settings, work: Path, manifest: Manifest
) -> dict[str, tuple[Path, Path]]:
    """Secrets of the backup to write: member -> (unpacked file, destination).

    A destination that exists with the same bytes is left alone; with other bytes the
    restore is refused rather than lose a key.
    """
    plan = {}
    for name in manifest.secrets:
        source = work / name
        if name == PSEUDONYM_MEMBER:
            dest = pseudonym_key_path(settings)
        else:
            dest = settings.secrets_dir / name[len(SECRETS) :]
        if dest.exists():
            if dest.read_bytes() != source.read_bytes():
                raise BackupError(
                    f"{dest} differs from the copy in the backup: move it away (and keep it) "
                    "to restore the backup's, or give --keep-secrets to keep the keys in "
                    f"{settings.secrets_dir} (they must be this ledger's, e.g. rotated since)"
                )
            continue
        plan[name] = (source, dest)
    return plan


def _ledger_keys(settings: Settings, work: Path, plan: dict[str, tuple[Path, Path]]) -> LedgerKeys:
    """The ledger's keys as they will be once the backup's secrets are in place.

    Read (as app.keys reads them: the current key and every rotated one) from a copy of
    ``var/secrets`` with the planned secrets added, so nothing is written yet. Raises
    BackupError when there is no ledger key at all, KeyFileError when one is unusable.
    """
    path = settings.secrets_dir / LEDGER_KEY_FILE
    staged = work / "keys"
    secrets_dir = staged / settings.secrets_dir.name
    secrets_dir.mkdir(mode=0o700, parents=True)
    files = {}
    if settings.secrets_dir.is_dir():
        for found in settings.secrets_dir.rglob("*"):
            if found.is_file() and not found.name.startswith("."):
                files[found.relative_to(settings.secrets_dir)] = found
    for source, dest in plan.values():
        if dest.is_relative_to(settings.secrets_dir):
            files[dest.relative_to(settings.secrets_dir)] = source
    if Path(LEDGER_KEY_FILE) not in files:
        raise BackupError(
            f"there is no ledger key at {path}: put var/secrets back from the key backup "
            "first (the backup holds no secrets), or the restored ledger can be neither "
            "verified nor continued"
        )
    for relative, source in files.items():
        copy = secrets_dir / relative
        copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(source.read_bytes())
    return ledger_keys(dataclasses.replace(settings, var_dir=staged), create=False)


def _check_other_keys(settings: Settings, plan: dict[str, tuple[Path, Path]], say: Say) -> None:
    """Refuse to restore without the pseudonym key; warn without the receipt key.

    Onceonly makes a missing key on start: a new pseudonym key would match nobody to
    their records again, a new receipt key cannot check the receipts already given.
    """
    coming = {dest for _, dest in plan.values()}
    pseudonym = pseudonym_key_path(settings)
    if not pseudonym.exists() and pseudonym not in coming:
        raise BackupError(
            f"there is no pseudonym key at {pseudonym}: put var/secrets back from the key "
            "backup first; with a new key nobody could be matched to their records again"
        )
    receipt = settings.secrets_dir / RECEIPT_KEY_FILE
    if not receipt.exists() and receipt not in coming:
        say(
            f"warning: there is no receipt signing key at {receipt}: Onceonly will make a new "
            "one, and the receipts signed before cannot be checked with its published key"
        )


def _write_secret(source: Path, dest: Path) -> None:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source.read_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def check_sqlite_target(path: Path) -> None:
    """Refuse an SQLite target in use or holding tables (an empty file is fine)."""
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            raise BackupError(
                f"{side} exists: the database at {path} is in use or was not closed cleanly; "
                f"stop Onceonly and move {path} and its {suffix} file away first"
            )
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} exists and is not an empty database ({exc})") from None
    if tables:
        raise BackupError(
            f"the database at {path} is not empty; a restore only goes into an empty database: "
            f"stop Onceonly and move {path} away first"
        )


def _sqlite_url(database_url: str, path: Path) -> str:
    query = urlsplit(database_url).query
    return f"sqlite://{path.resolve()}" + (f"?{query}" if query else "")


def _put_in_place(restored: Path, target: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        if restored.with_name(restored.name + suffix).exists():
            raise BackupError(f"the restored copy {restored} is still open")
    os.replace(restored, target)
    _fsync_folder(target.parent)


async def check_postgres_target(target: PostgresTarget, manifest: Manifest, tool: Tool) -> None:
    """Refuse a schema holding anything, and a pg_restore older than the dump's pg_dump."""
    dumped_by = str((manifest.postgres or {}).get("pg_dump_version", "0"))
    if tool.major < int(dumped_by.split(".")[0]):
        raise BackupError(
            f"{tool.path} is version {tool.version}, older than the pg_dump {dumped_by} that "
            "made the backup; use client programs of that version or newer (--pg-bin DIR)"
        )
    conn = await target.connect()
    try:
        objects = await conn.fetchval(
            "SELECT (SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = $1) + (SELECT COUNT(*) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1)",
            target.schema,
        )
    finally:
        await conn.close()
    if objects:
        raise BackupError(
            f"the database {target.display} is not empty (schema {target.schema} holds "
            f"{objects} tables, functions or other objects); a restore only goes into an empty "
            "database: create a new one and point ONCEONLY_DATABASE_URL at it"
        )


async def restore_postgres(target: PostgresTarget, dump: Path, tool: Tool, work: Path) -> None:
    """pg_restore the dump into the target schema, all in one transaction.

    The schema itself is created here if missing, and its own entries are left out of
    the restore, so that an existing empty schema (``public``) is used as it is.
    """
    conn = await target.connect()
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(target.schema)}")
    finally:
        await conn.close()
    listing = await _run_tool(tool, ["--list", str(dump)], target)
    schema_entry = re.compile(
        rf"^\d+; \d+ \d+ (SCHEMA - |COMMENT - SCHEMA ){re.escape(target.schema)} "
    )
    kept = [line for line in listing.splitlines() if not schema_entry.match(line)]
    use_list = work / "restore.list"
    use_list.write_text("\n".join(kept) + "\n")
    await _run_tool(
        tool,
        [
            "--no-owner",
            "--no-privileges",
            "--no-password",
            "--exit-on-error",
            "--single-transaction",
            f"--use-list={use_list}",
            f"--dbname={target.tool_url}",
            str(dump),
        ],
        target,
    )
    conn = await target.connect()
    try:
        await conn.execute("ANALYZE")  # pg_restore leaves the planner without statistics
    finally:
        await conn.close()


async def _check_rows(url: str, manifest: Manifest, schema: str | None) -> None:
    """Every table the backup counted holds that many rows now (before migrations)."""
    if schema is None:
        conn = sqlite3.connect(sqlite_path(url) or "", isolation_level=None)
        try:
            facts = sqlite_facts(conn)
        finally:
            conn.close()
    else:
        pg = PostgresTarget.from_url(url)
        pg_conn = await pg.connect()
        try:
            facts = await postgres_facts(pg_conn, schema)
        finally:
            await pg_conn.close()
    expected = manifest.facts.tables
    for table, count in expected.items():
        found = facts.tables.get(table)
        if found != count:
            raise BackupError(
                f"the restored table {table} holds {found} rows, the backup counted {count}"
            )


async def _check_ledger(
    url: str,
    keys: LedgerKeys,
    settings: Settings,
    expected: Checkpoint | None,
    options: RestoreOptions,
    say: Say,
) -> None:
    db = open_ledger_database(url)
    await db.connect()
    try:
        report = await verify_database(db, keys.verifiers(), settings.log_origin)
        say(report.summary())
        if not report.ok:
            hint = ""
            if report.failure_kind == "checkpoint" and report.checkpoints == 0:
                # Not even the first checkpoint opens: most likely the wrong key.
                hint = f" (are the keys in {settings.secrets_dir} this ledger's?)"
            raise BackupError(f"the restored ledger does NOT verify{hint}")
        if expected is not None and options.checkpoint is not None:
            line = await compare_with_checkpoint(db, report, expected, options.checkpoint_name)
            witnessed = cosigners(options.checkpoint, settings)
            if witnessed:
                line += f" It is cosigned by {', '.join(witnessed)}."
            else:
                line += (
                    " It carries no witness cosignature: only this log's own key vouches for it."
                )
            say(line)
        if options.ask_witnesses:
            log = TransparencyLog(db, keys.signer, settings.log_origin)
            async with httpx.AsyncClient() as http:
                for line in await ask_witnesses(log, settings, http):
                    say(line)
        if expected is None and not options.ask_witnesses:
            say(
                "NOT compared with a cosigned checkpoint (--no-checkpoint): entries appended "
                "after this backup may be missing without anyone noticing"
            )
    finally:
        await db.close()


def open_cosigned(note: bytes, name: str, verifier: LogKeys, settings: Settings) -> Checkpoint:
    """Open a checkpoint note signed by the log and cosigned as the witness policy asks.

    With witnesses configured, at least ONCEONLY_WITNESS_QUORUM of them must have
    cosigned it. Raises BackupError naming what is wrong.
    """
    witnesses = [parse_vkey(vkey) for vkey, _ in settings.witnesses]
    try:
        return open_checkpoint(
            note,
            verifier,
            origin=settings.log_origin,
            witnesses=witnesses,
            quorum=settings.witness_quorum,
        )
    except CheckpointError as exc:
        raise BackupError(f"{name} does not verify: {exc}") from None


def cosigners(note: bytes, settings: Settings) -> list[str]:
    """The names of the configured witnesses whose cosignature on ``note`` verifies."""
    witnesses = [parse_vkey(vkey) for vkey, _ in settings.witnesses]
    try:
        opened = open_note(note, witnesses)
    except NoteError:
        return []
    return sorted({signature.name for signature in opened.signatures})


async def root_at(db: LedgerDatabase, size: int) -> bytes:
    """The root of the stored tree at ``size`` (at most its size), from its tiles."""
    nodes = list(tree_nodes(size))
    if not nodes:
        return EMPTY_ROOT
    return tree_root(size, await TileStore(db).reader(nodes))


async def compare_with_checkpoint(
    db: LedgerDatabase, report: VerifyReport, checkpoint: Checkpoint, name: str
) -> str:
    """Check that the verified ledger in ``db`` reaches ``checkpoint`` with its root there.

    Returns a line saying so; raises BackupError when the ledger is behind (entries
    lost) or holds another tree at the checkpoint's size (a fork).
    """
    size = report.tree_size
    if checkpoint.size > size:
        missing = checkpoint.size - size
        raise BackupError(
            f"the restored ledger is BEHIND {name}: it holds {size:,} entries and the "
            f"cosigned checkpoint commits to {checkpoint.size:,}, so {missing:,} entries "
            f"appended after the backup are missing; appending to it would fork the log"
        )
    root = await root_at(db, checkpoint.size)
    if root != checkpoint.root_hash:
        raise BackupError(
            f"the restored ledger disagrees with {name}: at size {checkpoint.size:,} its root "
            f"is {_b64(root)}, the cosigned checkpoint's is {_b64(checkpoint.root_hash)} (a fork)"
        )
    more = ""
    if size > checkpoint.size:
        more = f"; it holds {size - checkpoint.size:,} entries more, appended before the backup"
    return (
        f"The restored ledger matches {name}: size {checkpoint.size:,}, root "
        f"{_b64(checkpoint.root_hash)}{more}."
    )


@dataclass(frozen=True)
class WitnessAnswer:
    """What one witness said about the restored tree: ``confirmed`` it (cosigned it),
    holds a ``larger`` size, refused it, or could not be asked."""

    name: str
    outcome: str  # confirmed | larger | refused | unreachable
    size: int | None
    message: str


async def ask_witnesses(
    log: TransparencyLog, settings: Settings, http: httpx.AsyncClient
) -> list[str]:
    """Have each configured witness check the restored tree; return a line per witness.

    A witness that cosigned a larger tree means the restore is behind; one that refuses
    the consistency proof means it holds another tree. Either raises BackupError, as
    does getting fewer confirmations than ONCEONLY_WITNESS_QUORUM (at least one).
    """
    latest = await log.latest_checkpoint()
    size = latest.size if latest else 0
    answers = [await ask_witness(log, vkey, url, http) for vkey, url in settings.witnesses]
    lines = [f"witness {a.name}: {a.message}" for a in answers]
    larger = [a for a in answers if a.outcome == "larger" and a.size is not None]
    if larger:
        held = max(a.size for a in larger if a.size is not None)
        names = ", ".join(a.name for a in larger)
        raise BackupError(
            f"the restored ledger is BEHIND what the witnesses hold: it holds {size:,} entries "
            f"and {names} cosigned size {held:,}, so {held - size:,} entries appended after "
            "the backup are missing; appending to it would fork the log"
        )
    refused = [a for a in answers if a.outcome == "refused"]
    if refused:
        raise BackupError("witness " + "; witness ".join(f"{a.name}: {a.message}" for a in refused))
    confirmed = sum(a.outcome == "confirmed" for a in answers)
    needed = max(settings.witness_quorum, 1)
    if confirmed < needed:
        raise BackupError(
            f"only {confirmed} of the {needed} witnesses needed confirmed the restored ledger "
            "(" + "; ".join(lines) + "); try again, or give --checkpoint FILE"
        )
    return lines


async def ask_witness(
    log: TransparencyLog, vkey: str, url: str, http: httpx.AsyncClient
) -> WitnessAnswer:
    """Submit the restored newest checkpoint to one witness, as the server would.

    C2SP tlog-witness: the first request (old size 0) learns the size the witness holds
    from its 409 answer; a size beyond ours is reported without submitting further, and
    otherwise the witness checks a consistency proof from its size to ours and cosigns.
    """
    verifier = parse_vkey(vkey)
    latest = await log.latest_checkpoint()
    if latest is None:
        return WitnessAnswer(
            verifier.name, "refused", None, "the restored ledger has no checkpoint"
        )
    old = 0
    for _ in range(2):
        proof = await log.consistency_proof(old, latest.size)
        try:
            response = await http.post(
                f"{url.rstrip('/')}/add-checkpoint",
                content=format_request(old, proof, latest.note),
                timeout=_WITNESS_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            return WitnessAnswer(verifier.name, "unreachable", None, f"unreachable ({exc})")
        if response.status_code == 409:
            held = _held_size(response)
            if held is None:
                return WitnessAnswer(verifier.name, "refused", None, "a malformed 409 answer")
            if held > latest.size:
                return WitnessAnswer(
                    verifier.name, "larger", held, f"holds size {held:,}, beyond the restored"
                )
            if held == old:
                return WitnessAnswer(
                    verifier.name,
                    "refused",
                    held,
                    f"holds another root hash for size {held:,} (a split view)",
                )
            old = held
            continue
        if response.status_code != 200:
            return WitnessAnswer(
                verifier.name,
                "refused",
                None,
                f"refused the restored checkpoint of size {latest.size:,} "
                f"({response.status_code}: {response.text.strip()[:200]})",
            )
        try:
            opened = open_note(latest.note + response.text.encode(), [verifier])
        except NoteError:
            opened = None
        if opened is None or not opened.signatures:
            return WitnessAnswer(verifier.name, "refused", None, "sent no valid cosignature")
        return WitnessAnswer(
            verifier.name,
            "confirmed",
            latest.size,
            f"cosigned the restored checkpoint of size {latest.size:,} (it held size {old:,})",
        )
    return WitnessAnswer(verifier.name, "refused", None, "keeps answering 409")


def _held_size(response: httpx.Response) -> int | None:
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    text = response.text
    if media_type != SIZE_MEDIA_TYPE or not text.endswith("\n") or not text[:-1].isdigit():
        return None
    return int(text[:-1])


def read_checkpoint_file(path: Path) -> bytes:
    """The bytes of a checkpoint note file. Raises BackupError when unreadable or not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    text, sep, _ = data.partition(b"\n\n")
    try:
        parse_checkpoint(text.decode() + "\n")
    except (UnicodeDecodeError, CheckpointError, LedgerError) as exc:
        raise BackupError(f"{path} is not a signed checkpoint: {exc}") from None
    if not sep:
        raise BackupError(f"{path} is not a signed checkpoint: it has no signature lines")
    return data
