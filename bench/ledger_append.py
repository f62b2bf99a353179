"""Ledger speed: appends through the TransparencyLog against the raw INSERT rate of the
same database, and proof and verification times on a log of a million entries.

    .venv/bin/python bench/ledger_append.py            # a few minutes, at most about ten
    .venv/bin/python bench/ledger_append.py --quick    # well under a minute
    .venv/bin/python bench/ledger_append.py --json     # the same figures as JSON

It measures and prints; it asserts nothing. Targets (see bench/README.md): on SQLite,
256 concurrent appenders reach at least half the raw batched INSERT rate; an inclusion
proof at 1,000,000 entries takes at most 1 ms; verifying the whole 1,000,000-entry log
takes at most 10 s.

PostgreSQL comes from ONCEONLY_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/test): the bench creates a database of its own there
and drops it at the end; when the server cannot be reached that part is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import inspect
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from _support import (
    cpu_model,
    finite,
    load_average,
    note,
    package_version,
    percentile,
    table,
)

from app.schema import apply_migrations
from app.settings import Settings
from ledger.database import LedgerDatabase, open_ledger_database
from ledger.entry import Basis, Entry, commitment, format_time
from ledger.log import TransparencyLog
from ledger.merkle import leaf_hash
from ledger.note import Signer, generate_signer
from ledger.sequencer import INSERT_ENTRY, Subject, entry_row_maker, prepare

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
ORIGIN = "bench.onceonly.test/ledger"
CONCURRENCY = (1, 16, 256)
POOL_SIZE = 4096  # distinct pre-built entries the appenders cycle through
MAX_APPENDS_PER_LEVEL = 500_000  # a bound on top of the duration
FILL_BATCH = 10_000
PROOF_SAMPLES = 1000
CONSISTENCY_SAMPLES = 200

TARGET_RATIO = 0.5  # ledger@256 / raw, SQLite
TARGET_PROOF_MS = 1.0  # inclusion proof at 1,000,000 entries
TARGET_VERIFY_S = 10.0  # full verification of 1,000,000 entries

RAW_TABLE = "bench_raw"
INSERT_RAW = INSERT_ENTRY.replace("INSERT INTO ledger_entry", f"INSERT INTO {RAW_TABLE}", 1)


# -- results ----------------------------------------------------------------------------


@dataclass
class Machine:
    cpus: int | None
    cpu_model: str
    platform: str
    load_average: str
    python: str
    sqlite: str
    aiosqlite: str
    asyncpg: str
    postgres: str


@dataclass
class AppendRun:
    """One concurrency level: how many appends landed, how fast, in what batches."""

    appenders: int
    appends: int
    seconds: float
    appends_per_s: float
    batches: int
    mean_batch: float
    p50_ms: float
    p99_ms: float


@dataclass
class RawRun:
    """Batched INSERTs into a trigger-free copy of ledger_entry, one writer."""

    batch_size: int
    rows: int
    seconds: float
    rows_per_s: float


@dataclass
class DatabaseResult:
    kind: str
    skipped: str | None = None
    appends: list[AppendRun] = field(default_factory=list)
    raw: RawRun | None = None
    ratio_256_raw: float | None = None


@dataclass
class Timing:
    samples: int
    mean_ms: float
    p50_ms: float
    p99_ms: float


@dataclass
class ProofResult:
    entries: int
    fill_entries: int
    fill_seconds: float
    fill_entries_per_s: float
    inclusion_cold: Timing
    inclusion_warm: Timing
    consistency_cold: Timing
    consistency_warm: Timing


@dataclass
class VerifyResult:
    available: bool
    entries: int = 0
    seconds: float | None = None
    entries_per_s: float | None = None
    verified: bool | None = None  # the report's ``ok``, when it has one
    first_failure: str | None = None
    error: str | None = None


@dataclass
class Report:
    mode: str
    seconds_per_level: float
    proof_entries: int
    machine: Machine
    databases: list[DatabaseResult]
    proofs: ProofResult | None
    verify: VerifyResult
    total_seconds: float = 0.0


# -- entries ----------------------------------------------------------------------------


class EntryMaker:
    """Valid entries shaped like those the platform writes (cf. tests/factories.py).

    A mix of permitted and denied accesses and consent events, about a population of
    10,000 pseudonymous people, each entry with a fresh commitment opening.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._people = [f"{self._random.getrandbits(256):064x}" for _ in range(10_000)]
        self._serial = itertools.count()

    def make(self) -> tuple[Entry, Subject]:
        n = next(self._serial)
        subject = Subject.new(self._random.choice(self._people))
        common: dict[str, Any] = {
            "time": format_time(dt.datetime.now(dt.UTC)),
            "query_id": f"q-{n:08d}",
            "subject_commitment": commitment(subject.opening, subject.pseudonym),
        }
        roll = self._random.random()
        if roll < 0.7:
            fields: dict[str, Any] = {
                "type": "access.permitted",
                "actor_org": "MTO",
                "actor_system": "driver-licensing",
                "purpose": "licence-renewal",
                "basis": Basis("authority", "HTA-205"),
                "categories": ("address",),
                "recipient_org": "MTO",
                "source_orgs": ("MPBSDP",),
            }
        elif roll < 0.8:
            fields = {
                "type": "access.denied",
                "actor_org": "MOH",
                "actor_system": "ohip-eligibility",
                "purpose": "benefit-eligibility",
                "basis": Basis("consent", f"c-{n:08d}"),
                "categories": ("address", "health-card"),
                "recipient_org": "MOH",
                "source_orgs": ("MPBSDP", "MTO"),
                "reasons": ("no-consent",),
                "case_id": f"case-{n // 3:08d}",
            }
        else:
            fields = {
                "type": "consent.given",
                "actor_org": "MCCSS",
                "actor_system": "ontario-works",
                "purpose": "income-support",
                "basis": Basis("consent", f"c-{n:08d}"),
                "categories": ("income", "address"),
                "recipient_org": "MCCSS",
                "source_orgs": ("CRA",),
            }
        return Entry(**common, **fields), subject


# -- databases --------------------------------------------------------------------------


async def migrate(url: str, var_dir: Path) -> None:
    env = {"ONCEONLY_DATABASE_URL": url, "ONCEONLY_VAR_DIR": str(var_dir)}
    await apply_migrations(Settings.from_env(env))


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


async def postgres_execute(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def postgres_facts(server_url: str) -> str:
    """The server's version and durability settings; raises when it cannot be reached."""
    conn = await asyncpg.connect(server_url, timeout=5)
    try:
        version = await conn.fetchval("SHOW server_version")
        fsync = await conn.fetchval("SHOW fsync")
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"{version} (fsync={fsync}, synchronous_commit={sync_commit})"


async def create_raw_table(db: LedgerDatabase) -> None:
    """Create ``bench_raw``: ledger_entry's columns and indexes, none of its triggers."""
    if db.kind == "postgres":
        statements = [f"CREATE TABLE {RAW_TABLE} (LIKE ledger_entry INCLUDING ALL)"]
    else:
        rows = await db.fetch(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = 'ledger_entry' "
            "AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type DESC"
        )
        statements = [_sqlite_raw_ddl(kind, sql) for kind, sql in rows]
    async with db.write() as tx:
        for statement in statements:
            await tx.execute(statement)


def _sqlite_raw_ddl(kind: str, sql: str) -> str:
    if kind == "index":
        sql = re.sub(r'INDEX\s+"?(\w+)"?', rf'INDEX "{RAW_TABLE}_\1"', sql, count=1)
    return re.sub(r'\bON\s+"?ledger_entry"?|TABLE\s+"?ledger_entry"?', _rename_table, sql)


def _rename_table(match: re.Match[str]) -> str:
    return match.group(0).split()[0] + f' "{RAW_TABLE}"'


# -- measurements -----------------------------------------------------------------------


def timing(seconds: list[float]) -> Timing:
    ordered = sorted(seconds)
    mean = sum(ordered) / len(ordered) if ordered else math.nan
    return Timing(
        len(ordered), mean * 1e3, percentile(ordered, 0.50) * 1e3, percentile(ordered, 0.99) * 1e3
    )


async def run_appenders(
    log: TransparencyLog, pool: Sequence[tuple[Entry, Subject]], appenders: int, seconds: float
) -> AppendRun:
    """``appenders`` tasks each appending one entry at a time until ``seconds`` pass."""
    latencies: list[float] = []
    serial = itertools.count()
    deadline = time.perf_counter() + seconds

    async def appender() -> None:
        while time.perf_counter() < deadline:
            n = next(serial)
            if n >= MAX_APPENDS_PER_LEVEL:
                return
            entry, subject = pool[n % len(pool)]
            started = time.perf_counter()
            await log.append(entry, subject)
            latencies.append(time.perf_counter() - started)

    batches_before = log.sequencer.batches
    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - started
    batches = log.sequencer.batches - batches_before
    latencies.sort()
    return AppendRun(
        appenders=appenders,
        appends=len(latencies),
        seconds=elapsed,
        appends_per_s=len(latencies) / elapsed,
        batches=batches,
        mean_batch=len(latencies) / batches if batches else math.nan,
        p50_ms=percentile(latencies, 0.50) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
    )


async def raw_insert_rate(
    url: str, pool: Sequence[tuple[Entry, Subject]], batch_size: int, seconds: float
) -> RawRun:
    """Batched INSERTs of entry rows into ``bench_raw`` through the ledger's own driver
    and transactions (same pragmas, same locking), one transaction per batch."""
    db = open_ledger_database(url)
    await db.connect()
    try:
        await create_raw_table(db)
        make_row = entry_row_maker(db.kind)  # as the sequencer makes them
        items = [prepare(entry, subject) for entry, subject in pool]
        rows = [make_row(0, item, leaf_hash(item.leaf))[1:] for item in items]
        index = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline and index < MAX_APPENDS_PER_LEVEL:
            batch = [(index + i, *rows[(index + i) % len(rows)]) for i in range(batch_size)]
            async with db.write() as tx:
                await tx.execute_many(INSERT_RAW, batch)
            index += batch_size
        elapsed = time.perf_counter() - started
        async with db.write() as tx:
            await tx.execute(f"DROP TABLE {RAW_TABLE}")
    finally:
        await db.close()
    return RawRun(batch_size, index, elapsed, index / elapsed)


async def bench_database(
    kind: str, url: str, signer: Signer, pool: Sequence[tuple[Entry, Subject]], seconds: float
) -> DatabaseResult:
    """Append rates at each concurrency level, then the raw baseline at the mean batch
    size of the busiest level."""
    result = DatabaseResult(kind)
    log = await TransparencyLog.open(url, signer, ORIGIN)
    try:
        await log.append(*pool[0])  # restores the tree state outside the timed runs
        for appenders in CONCURRENCY:
            note(f"{kind}: {appenders} appenders for {seconds:g} s")
            result.appends.append(await run_appenders(log, pool, appenders, seconds))
    finally:
        await log.close()
    busiest = result.appends[-1]
    batch_size = max(1, round(busiest.mean_batch)) if busiest.batches else 1
    note(f"{kind}: raw INSERTs in batches of {batch_size} for {seconds:g} s")
    result.raw = await raw_insert_rate(url, pool, batch_size, seconds)
    result.ratio_256_raw = busiest.appends_per_s / result.raw.rows_per_s
    return result


async def build_batch(maker: EntryMaker, count: int) -> list[tuple[Entry, Subject]]:
    """``count`` new entries, yielding to the loop now and then so that the previous
    batch's commit proceeds meanwhile."""
    batch: list[tuple[Entry, Subject]] = []
    while len(batch) < count:
        batch.extend(maker.make() for _ in range(min(500, count - len(batch))))
        await asyncio.sleep(0)
    return batch


async def fill_log(url: str, signer: Signer, maker: EntryMaker, target: int) -> tuple[int, float]:
    """Append until the log holds ``target`` entries, in append_all batches of 10,000,
    building each batch while the one before it commits. Returns (appended, seconds)."""
    log = await TransparencyLog.open(url, signer, ORIGIN)
    try:
        size = await log.size()
        todo = max(0, target - size)
        step = max(FILL_BATCH, todo // 10)
        next_note = size + step
        pending: asyncio.Task[Any] | None = None
        started = time.perf_counter()
        while size < target:
            batch = await build_batch(maker, min(FILL_BATCH, target - size))
            if pending is not None:
                await pending
            pending = asyncio.create_task(log.append_all(batch))
            size += len(batch)
            if size >= next_note and size < target:
                rate = (size - target + todo) / (time.perf_counter() - started)
                note(f"queued {size:,} of {target:,} ({rate:,.0f} entries/s)")
                next_note += step
        if pending is not None:
            await pending
        elapsed = time.perf_counter() - started
    finally:
        await log.close()
    return todo, elapsed


async def time_calls(
    samples: Sequence[tuple[int, int]],
    call: Callable[[TransparencyLog, int, int], Any],
    fresh_log: Callable[[], TransparencyLog] | None,
    log: TransparencyLog,
) -> Timing:
    """Time ``call(log, a, b)`` for each sample; with ``fresh_log``, each call gets a
    new TransparencyLog (an empty tile cache) over the same open database."""
    seconds = []
    for a, b in samples:
        target = fresh_log() if fresh_log else log
        started = time.perf_counter()
        await call(target, a, b)
        seconds.append(time.perf_counter() - started)
    return timing(seconds)


async def bench_proofs(
    url: str, signer: Signer, maker: EntryMaker, target: int, seed: int
) -> ProofResult:
    """Fill the SQLite log to ``target`` entries, then time inclusion and consistency
    proofs with a cold and with a warm tile cache."""
    note(f"sqlite: filling the log to {target:,} entries")
    filled, fill_seconds = await fill_log(url, signer, maker, target)
    db = open_ledger_database(url)
    await db.connect()
    try:
        warm = TransparencyLog(db, signer, ORIGIN)
        size = await warm.size()
        rng = random.Random(seed)
        inclusion = [(rng.randrange(size), size) for _ in range(PROOF_SAMPLES)]
        consistency = [(rng.randrange(1, size + 1), size) for _ in range(CONSISTENCY_SAMPLES)]

        def fresh() -> TransparencyLog:
            return TransparencyLog(db, signer, ORIGIN)

        async def prove_inclusion(log: TransparencyLog, index: int, size: int) -> None:
            await log.inclusion_proof(index, size)

        async def prove_consistency(log: TransparencyLog, old: int, new: int) -> None:
            await log.consistency_proof(old, new)

        note(f"sqlite: timing proofs at {size:,} entries")
        inclusion_cold = await time_calls(inclusion, prove_inclusion, fresh, warm)
        consistency_cold = await time_calls(consistency, prove_consistency, fresh, warm)
        await time_calls(inclusion, prove_inclusion, None, warm)  # fills the tile cache
        await time_calls(consistency, prove_consistency, None, warm)
        inclusion_warm = await time_calls(inclusion, prove_inclusion, None, warm)
        consistency_warm = await time_calls(consistency, prove_consistency, None, warm)
    finally:
        await db.close()
    return ProofResult(
        entries=size,
        fill_entries=filled,
        fill_seconds=fill_seconds,
        fill_entries_per_s=filled / fill_seconds if fill_seconds else math.nan,
        inclusion_cold=inclusion_cold,
        inclusion_warm=inclusion_warm,
        consistency_cold=consistency_cold,
        consistency_warm=consistency_warm,
    )


async def bench_verify(url: str, signer: Signer) -> VerifyResult:
    """Time ledger.verify.verify_database over the whole log, when it exists."""
    try:
        from ledger.verify import verify_database
    except ImportError as exc:
        return VerifyResult(available=False, error=f"ledger.verify.verify_database: {exc}")
    db = open_ledger_database(url)
    await db.connect()
    try:
        size = await TransparencyLog(db, signer, ORIGIN).size()
        note(f"sqlite: verifying {size:,} entries")
        started = time.perf_counter()
        try:
            outcome = verify_database(db, signer.verifier(), ORIGIN)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:
            return VerifyResult(True, size, error=f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
    ok = getattr(outcome, "ok", None)
    return VerifyResult(
        available=True,
        entries=size,
        seconds=elapsed,
        entries_per_s=size / elapsed,
        verified=ok if isinstance(ok, bool) else None,
        first_failure=getattr(outcome, "first_failure", None),
    )


# -- machine facts ----------------------------------------------------------------------


def machine_facts(postgres: str) -> Machine:
    return Machine(
        cpus=os.cpu_count(),
        cpu_model=cpu_model(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        load_average=load_average(),
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        aiosqlite=package_version("aiosqlite"),
        asyncpg=package_version("asyncpg"),
        postgres=postgres,
    )


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    quick: bool
    as_json: bool
    seconds: float
    proof_entries: int
    postgres_url: str
    seed: int


def parse_options(argv: Sequence[str], environ: dict[str, str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--seconds", type=float, help="duration of each concurrency level (5, quick: 1)"
    )
    parser.add_argument(
        "--proof-entries",
        type=int,
        help="fill the SQLite log to N entries for the proof figures "
        "(1000000, quick: 20000; 0 skips proofs and verification)",
    )
    parser.add_argument("--seed", type=int, default=20250301, help="random seed")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    entries = args.proof_entries
    if entries is None:
        entries = 20_000 if args.quick else 1_000_000
    return Options(
        quick=args.quick,
        as_json=args.json,
        seconds=seconds,
        proof_entries=entries,
        postgres_url=environ.get("ONCEONLY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        seed=args.seed,
    )


async def run(options: Options) -> Report:
    started = time.perf_counter()
    signer = generate_signer(ORIGIN)
    maker = EntryMaker(options.seed)
    pool = [maker.make() for _ in range(POOL_SIZE)]
    try:
        postgres: str | None = await postgres_facts(options.postgres_url)
        postgres_problem = None
    except Exception as exc:
        postgres, postgres_problem = None, f"{type(exc).__name__}: {exc}"
    machine = machine_facts(postgres or f"unreachable ({postgres_problem})")
    databases: list[DatabaseResult] = []
    proofs: ProofResult | None = None
    verify = VerifyResult(available=False, error="skipped (--proof-entries 0)")

    with tempfile.TemporaryDirectory(prefix="onceonly-bench-") as tmp:
        var_dir = Path(tmp) / "var"
        template = Path(tmp) / "template.sqlite3"
        note("sqlite: migrating a fresh database")
        await migrate(f"sqlite://{template}", var_dir)
        appends_path, proofs_path = Path(tmp) / "appends.sqlite3", Path(tmp) / "proofs.sqlite3"
        shutil.copyfile(template, appends_path)
        shutil.copyfile(template, proofs_path)
        sqlite_url = f"sqlite://{appends_path}"
        databases.append(await bench_database("sqlite", sqlite_url, signer, pool, options.seconds))

        if postgres_problem:
            note(f"postgres: skipped, {options.postgres_url} unreachable")
            databases.append(DatabaseResult("postgres", skipped=postgres_problem))
        else:
            databases.append(await bench_postgres(options, signer, pool, var_dir))

        if options.proof_entries > 0:
            # A log of its own, so that the fill figure covers every entry in it.
            proofs_url = f"sqlite://{proofs_path}"
            proofs = await bench_proofs(
                proofs_url, signer, maker, options.proof_entries, options.seed
            )
            verify = await bench_verify(proofs_url, signer)

    return Report(
        mode="quick" if options.quick else "default",
        seconds_per_level=options.seconds,
        proof_entries=options.proof_entries,
        machine=machine,
        databases=databases,
        proofs=proofs,
        verify=verify,
        total_seconds=time.perf_counter() - started,
    )


async def bench_postgres(
    options: Options, signer: Signer, pool: Sequence[tuple[Entry, Subject]], var_dir: Path
) -> DatabaseResult:
    """The append figures on a database of our own on the server, dropped afterwards."""
    name = f"onceonly_bench_{uuid.uuid4().hex[:8]}"
    try:
        await postgres_execute(options.postgres_url, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        return DatabaseResult("postgres", skipped=f"cannot create a database: {exc}")
    try:
        url = with_database(options.postgres_url, name)
        note(f"postgres: migrating database {name}")
        await migrate(url, var_dir)
        return await bench_database("postgres", url, signer, pool, options.seconds)
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        await postgres_execute(options.postgres_url, drop)


# -- output -----------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def render(report: Report) -> str:
    m = report.machine
    out = [
        f"Onceonly ledger benchmark ({report.mode} run, {report.total_seconds:.0f} s)",
        f"machine   {m.cpus} CPUs, {m.cpu_model}, {m.platform}, load {m.load_average}",
        f"software  Python {m.python}, SQLite {m.sqlite}, aiosqlite {m.aiosqlite}, "
        f"asyncpg {m.asyncpg}",
        f"postgres  {m.postgres}",
        "",
        f"Appends through TransparencyLog.append, {report.seconds_per_level:g} s per level",
    ]
    rows = []
    for db in report.databases:
        if db.skipped:
            continue
        for a in db.appends:
            rows.append(
                [
                    db.kind,
                    str(a.appenders),
                    f"{a.appends:,}",
                    f"{a.appends_per_s:,.0f}",
                    f"{a.mean_batch:.1f}",
                    f"{a.p50_ms:.2f}",
                    f"{a.p99_ms:.2f}",
                ]
            )
    headers = ["database", "appenders", "appends", "appends/s", "mean batch", "p50 ms", "p99 ms"]
    out += table(headers, rows)
    out += ["", f"Raw batched INSERT baseline ({RAW_TABLE}: ledger_entry's shape, no triggers)"]
    rows = []
    for db in report.databases:
        if db.skipped or db.raw is None or db.ratio_256_raw is None:
            continue
        target = (
            f">= {TARGET_RATIO} {verdict(db.ratio_256_raw >= TARGET_RATIO)}"
            if db.kind == "sqlite"
            else "-"
        )
        rows.append(
            [
                db.kind,
                str(db.raw.batch_size),
                f"{db.raw.rows:,}",
                f"{db.raw.rows_per_s:,.0f}",
                f"{db.ratio_256_raw:.2f}",
                target,
            ]
        )
    out += table(["database", "batch", "rows", "rows/s", "ledger@256 / raw", "target"], rows)
    for db in report.databases:
        if db.skipped:
            out.append(f"{db.kind}: skipped ({db.skipped})")
    out.append("")
    out += render_proofs(report)
    return "\n".join(out)


def render_proofs(report: Report) -> list[str]:
    p = report.proofs
    if p is None:
        return ["Proofs and verification: skipped (--proof-entries 0)"]
    out = [
        f"Proofs on SQLite at {p.entries:,} entries (filling {p.fill_entries:,} took "
        f"{p.fill_seconds:.1f} s, {p.fill_entries_per_s:,.0f} entries/s via append_all "
        f"batches of {FILL_BATCH:,})"
    ]
    rows = []
    for label, t, target in (
        ("inclusion, cold tiles", p.inclusion_cold, True),
        ("inclusion, warm tiles", p.inclusion_warm, True),
        ("consistency, cold tiles", p.consistency_cold, False),
        ("consistency, warm tiles", p.consistency_warm, False),
    ):
        goal = "-"
        if target:
            goal = f"<= {TARGET_PROOF_MS:g} ms mean {verdict(t.mean_ms <= TARGET_PROOF_MS)}"
            goal += f", p99 {verdict(t.p99_ms <= TARGET_PROOF_MS)}"
        rows.append(
            [label, str(t.samples), f"{t.mean_ms:.3f}", f"{t.p50_ms:.3f}", f"{t.p99_ms:.3f}", goal]
        )
    out += table(["proof", "samples", "mean ms", "p50 ms", "p99 ms", "target"], rows)
    v = report.verify
    out.append("")
    if not v.available:
        out.append(f"Verification: not available ({v.error})")
    elif v.error:
        out.append(f"Verification of {v.entries:,} entries failed: {v.error}")
    elif v.seconds is not None and v.entries_per_s is not None:
        target = f"target <= {TARGET_VERIFY_S:g} s at 1,000,000: "
        target += verdict(v.seconds * 1_000_000 / max(v.entries, 1) <= TARGET_VERIFY_S)
        out.append(
            f"Verification of {v.entries:,} entries: {v.seconds:.2f} s, "
            f"{v.entries_per_s:,.0f} entries/s ({target})"
        )
        if v.verified is not None:
            out.append(
                "  the log verified"
                if v.verified
                else f"  the log did NOT verify: {v.first_failure}"
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv, dict(os.environ))
    report = asyncio.run(run(options))
    if options.as_json:
        print(json.dumps(finite(asdict(report)), indent=2, allow_nan=False))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
