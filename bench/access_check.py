"""Access-check speed: POST /api/v1/access-checks on a running server, over HTTP.

    .venv/bin/python bench/access_check.py              # SQLite, under a minute
    .venv/bin/python bench/access_check.py --quick      # SQLite, well under 45 s
    .venv/bin/python bench/access_check.py --postgres   # the same on PostgreSQL
    .venv/bin/python bench/access_check.py --json       # the figures as JSON

It sets everything up itself in a temporary directory (``onceonly migrate``, ``seed
--demo`` and an API client for ServiceOntario with the access:check scope), serves the
application with ``onceonly serve`` on a free loopback port and drives it with wrk, or
without wrk with a Python asyncio client. It measures and prints; it asserts nothing.
Targets (see bench/README.md): on SQLite at least 3,000 decisions/s and a p99 of at
most 25 ms at 1,000 checks/s; on PostgreSQL at least 2,000 decisions/s.

PostgreSQL comes from ONCEONLY_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/test): the bench creates a database of its own on
that server and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from _support import (
    HOST,
    BenchError,
    ServedOnceonly,
    ServerFailed,
    cpu_model,
    finite,
    free_port,
    load_average,
    note,
    onceonly,
    package_version,
    percentile,
    table,
)

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
CHECK_PATH = "/api/v1/access-checks"
BASELINE_PATH = "/healthz"
CLIENT = ("MPBSDP", "serviceontario")  # ServiceOntario asks before it shares
#: One token serves a whole wrk phase; tokens live 300 s (app.oauth.tokens).
MAX_PHASE_SECONDS = 240

TARGET_RATE = {"sqlite": 3000.0, "postgres": 2000.0}  # decisions/s at 64 connections
TARGET_P99_MS = {"sqlite": 25.0}  # at 1,000 checks/s

# The checks sent, by ServiceOntario (MPBSDP): the demo residents have consents (Alex a
# one-time one for MTO from MPBSDP, Sam one for MCCSS from FIN), everyone else has none.
# With a statutory authority (OWA-74 lets MPBSDP give income to MCCSS) that makes permits
# on an authority, one permit on a consent and then one_time_consent_used, denies on
# consents that do not fit (recipient_mismatch, source_not_covered), and, most often,
# no_consent.
CONSENTING = ("demo-resident-alex", "demo-resident-sam")
CONSENTING_SHARE = 0.1
SYNTHETIC_PEOPLE = 100_000
CHECK_TERMS = (
    {"recipient": "MTO", "categories": ["address"], "purpose": "licence-renewal"},
    {"recipient": "MTO", "categories": ["address"], "purpose": "licence-renewal"},
    {"recipient": "MCCSS", "categories": ["income"], "purpose": "eligibility"},
    {
        "recipient": "MCCSS",
        "categories": ["income"],
        "purpose": "eligibility",
        "authority": "OWA-74",
    },
)
BODY_POOL = 4096  # distinct bodies (but for the query_id) both load generators cycle


# -- results ----------------------------------------------------------------------------


@dataclass
class Load:
    """What one load generator measured in one phase."""

    generator: str
    connections: int
    seconds: float
    offered_rate: float | None
    sent: int  # requests scheduled (open loop) or answered plus failed (closed loop)
    answered: int  # complete HTTP answers
    ok: int  # answers with status 200
    failed: int  # other statuses, socket errors and (open loop) requests never answered
    p50_ms: float
    p90_ms: float
    p99_ms: float
    lower_bound: bool  # the percentiles count unanswered requests at the time given up
    client_cpu_s: float
    decisions: dict[str, int] = field(default_factory=dict)


@dataclass
class Phase:
    name: str
    label: str
    load: Load
    rate: float  # 200 answers per second of the phase
    server_cpu_s: float
    server_cpu_percent: float  # of one CPU
    server_cpu_ms_per_answer: float
    client_cpu_percent: float


@dataclass
class LedgerCheck:
    entries_before: int
    entries_after: int
    recorded: int
    checkpoints: int
    mean_batch: float
    answered_ok: int
    every_answer_recorded: bool
    verifies: bool
    verify_seconds: float
    first_failure: str | None


@dataclass
class Target:
    what: str
    goal: str
    value: float
    met: bool


@dataclass
class Machine:
    cpus: int | None
    cpu_model: str
    platform: str
    load_average: str
    python: str
    uvicorn: str
    server_loop: str
    load_generator: str
    database: str


@dataclass
class Report:
    mode: str
    database: str
    workers_requested: int
    workers: int
    workers_note: str | None
    connections: int
    rate: float
    seconds: float
    machine: Machine
    phases: list[Phase]
    ledger: LedgerCheck
    targets: list[Target]
    profile: str | None
    total_seconds: float = 0.0


# -- the checks sent --------------------------------------------------------------------


class CheckMix:
    """Access-check bodies: a fixed pool, each completed with a distinct query_id.

    A body is its pool entry (JSON up to and including ``"query_id":"``) plus
    ``<tag>-<n>"}``, so both load generators send the same mix.
    """

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.prefixes = [self._prefix(rng) for _ in range(BODY_POOL)]

    @staticmethod
    def _prefix(rng: random.Random) -> str:
        if rng.random() < CONSENTING_SHARE:
            person = rng.choice(CONSENTING)
        else:
            person = f"bench-person-{rng.randrange(SYNTHETIC_PEOPLE):06d}"
        document = {"person_id": person, **rng.choice(CHECK_TERMS)}
        text = json.dumps(document, separators=(",", ":"))
        return text[:-1] + ',"query_id":"'

    def body(self, n: int, tag: str) -> bytes:
        """The ``n``-th body of a phase tagged ``tag`` (tag and n make the query_id)."""
        return f'{self.prefixes[n % len(self.prefixes)]}{tag}-{n}"}}'.encode()


# -- the installation and the server ----------------------------------------------------


@dataclass
class Installation:
    """A migrated, seeded Onceonly in a temporary directory, with an API client."""

    var_dir: Path
    env: dict[str, str]
    client_id: str = ""
    client_secret: str = ""


def installation_env(var_dir: Path, database_url: str) -> dict[str, str]:
    """This environment without any ONCEONLY_ setting, plus the bench's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_VAR_DIR"] = str(var_dir)
    env["ONCEONLY_DATABASE_URL"] = database_url
    return env


def install(var_dir: Path, database_url: str) -> Installation:
    """Migrate, load the demo and register the bench's API client."""
    inst = Installation(var_dir, installation_env(var_dir, database_url))
    note("onceonly migrate")
    onceonly(inst.env, "migrate")
    note("onceonly seed --demo")
    onceonly(inst.env, "seed", "--demo")
    note("onceonly clients add (ServiceOntario, access:check)")
    ministry, system = CLIENT
    out = onceonly(
        inst.env,
        *("clients", "add", "--ministry", ministry, "--system", system, "--name", "bench"),
        *("--scopes", "access:check", "--auth", "client_secret_basic"),
    )
    inst.client_id = _printed(out, "client_id")
    inst.client_secret = _printed(out, "client_secret")
    return inst


def _printed(output: str, label: str) -> str:
    """A value from ``onceonly clients add``'s ``  label:  value`` lines."""
    found = re.search(rf"^\s*{re.escape(label)}:\s+(\S+)\s*$", output, re.MULTILINE)
    if found is None:
        raise BenchError(f"onceonly clients add printed no {label}")
    return found.group(1)


class Server(ServedOnceonly):
    """The served installation, which also gets the bench client's tokens."""

    def __init__(self, inst: Installation, workers: int) -> None:
        port = free_port()
        super().__init__(inst.env, port, inst.var_dir / f"server-{port}.log", workers)
        self.inst = inst

    def token(self) -> str:
        """A fresh access token (client_secret_basic); each phase takes a new one."""
        answer = httpx.post(
            self.base_url + "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "access:check"},
            auth=(self.inst.client_id, self.inst.client_secret),
            timeout=10,
        )
        if answer.status_code != 200:
            raise BenchError(f"/oauth/token answered {answer.status_code}: {answer.text[:200]}")
        return str(answer.json()["access_token"])


def start_server(inst: Installation, workers: int) -> tuple[Server, str | None]:
    """Start the server with ``workers`` processes; fall back to one when that fails."""
    server = Server(inst, workers)
    note(f"onceonly serve --port {server.port} --workers {workers}")
    try:
        server.start()
        return server, None
    except ServerFailed as exc:
        server.stop()
        if workers == 1:
            raise
        problem = f"--workers {workers} failed: {exc}; measured with 1 worker"
        note(problem)
    server = Server(inst, 1)
    try:
        server.start()
    except ServerFailed:
        server.stop()
        raise
    return server, problem


# -- wrk --------------------------------------------------------------------------------


WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""

WRK_CHECKS = """
thread_no = 0
local started = 0
function setup(thread)
  started = started + 1
  thread:set("thread_no", started)
end

local counter = 0
local headers, tag

function init(args)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[1]}
  tag = args[2] .. "-" .. thread_no
end

function request()
  counter = counter + 1
  local prefix = bodies[(counter + thread_no * 7919) % #bodies + 1]
  return wrk.format("POST", nil, headers, prefix .. tag .. "-" .. counter .. '"}')
end
"""


def wrk_script(mix: CheckMix | None) -> str:
    """The Lua script: POSTs of the mix's bodies (or plain GETs) and a result line."""
    if mix is None:
        return WRK_DONE
    if any("]]" in prefix for prefix in mix.prefixes):
        raise BenchError("a body cannot be quoted as a Lua long string")
    bodies = ",\n".join(f"[[{prefix}]]" for prefix in mix.prefixes)
    return f"bodies = {{\n{bodies}\n}}\n{WRK_CHECKS}{WRK_DONE}"


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def wrk_description(wrk: str) -> str:
    threads = wrk_threads()
    plural = "s" if threads > 1 else ""
    return f"{wrk_version(wrk)} ({threads} thread{plural}), fixed rate: python asyncio"


def wrk_threads() -> int:
    # The server is one Python process; leave it the rest of the machine.
    return max(1, min(4, (os.cpu_count() or 2) // 4))


def run_wrk(
    wrk: str, script: Path, url: str, connections: int, seconds: int, args: Sequence[str]
) -> Load:
    """Run wrk closed-loop for ``seconds`` at ``connections``; its figures as a Load."""
    threads = min(wrk_threads(), connections)
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["--latency", "-s", str(script), url, "--", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 60} s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"^WRK-RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        words = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise BenchError(f"wrk failed: {words[-1]}")
    r = json.loads(found.group(1))
    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return Load(
        generator="wrk",
        connections=connections,
        seconds=r["duration_us"] / 1e6,
        offered_rate=None,
        sent=r["requests"] + socket_errors,
        answered=r["requests"],
        ok=r["requests"] - r["status"],  # wrk counts statuses >= 400; success here is 200
        failed=r["status"] + socket_errors,
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        lower_bound=False,
        client_cpu_s=_cpu(after) - _cpu(before),
    )


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


# -- the Python asyncio client ----------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough HTTP for Onceonly's answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request, read one answer: its status and body.

        Raises OSError, asyncio.IncompleteReadError or ValueError when the connection
        fails (it is closed and opened again on the next call).
        """
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_request(port: int, method: str, path: str, token: str | None, body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


def decision_kind(body: bytes) -> str:
    """``permit (authority)``, ``deny: no_consent`` and the like, from a decision."""
    try:
        document = json.loads(body)
        if document["decision"] == "permit":
            return f"permit ({document['basis']['kind']})"
        return "deny: " + ",".join(document["reasons"])
    except (ValueError, KeyError, TypeError):
        return "unreadable"


async def closed_loop(
    port: int, make: Callable[[int], bytes], connections: int, seconds: float, decisions: bool
) -> Load:
    """Each connection sends its next request as soon as the last is answered."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    errors = 0
    counter = itertools.count()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        conn = Connection(port)
        while time.perf_counter() < deadline:
            request = make(next(counter))
            started = time.perf_counter()
            try:
                status, body = await conn.exchange(request)
            except CONNECTION_ERRORS:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if decisions and status == 200:
                kinds[decision_kind(body)] += 1
        conn.close()

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    sent = sum(statuses.values()) + errors
    load = _python_load(connections, elapsed, None, sent, statuses, errors, latencies)
    load.client_cpu_s = _cpu(after) - _cpu(before)
    load.decisions = dict(kinds)
    return load


async def open_loop(
    port: int,
    make: Callable[[int], bytes],
    rate: float,
    seconds: float,
    connections: int,
    grace: float,
) -> Load:
    """Send at ``rate`` per second whatever the answers, over ``connections`` connections.

    A request's latency runs from the moment it was due, not from when a connection
    was free to send it, so a slow server is not hidden (no coordinated omission).
    Requests not answered ``grace`` seconds after the last was due are given up: they
    count as failed, and in the percentiles at the time given up (a lower bound).
    """
    total = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.05
    due = [start + i / rate for i in range(total)]
    answered_at: list[float | None] = [None] * total
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    errors = 0
    finished = 0
    all_done = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def client() -> None:
        nonlocal errors, finished
        conn = Connection(port)
        try:
            while True:
                i = await queue.get()
                try:
                    status, body = await conn.exchange(make(i))
                except CONNECTION_ERRORS:
                    errors += 1
                else:
                    answered_at[i] = time.perf_counter()
                    statuses[status] += 1
                    if status == 200:
                        kinds[decision_kind(body)] += 1
                finished += 1
                if finished == total:
                    all_done.set()
        finally:
            conn.close()

    before = resource.getrusage(resource.RUSAGE_SELF)
    clients = [asyncio.create_task(client()) for _ in range(connections)]
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and due[sent] <= now:
            queue.put_nowait(sent)
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, due[sent] - time.perf_counter()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), due[-1] + grace - time.perf_counter())
    stopped = time.perf_counter()
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    latencies = [
        (done if done is not None else stopped) - d
        for d, done in zip(due, answered_at, strict=True)
    ]
    unanswered = total - sum(statuses.values()) - errors
    load = _python_load(
        connections, stopped - start, rate, total, statuses, errors + unanswered, latencies
    )
    load.lower_bound = any(done is None for done in answered_at)
    load.client_cpu_s = _cpu(after) - _cpu(before)
    load.decisions = dict(kinds)
    return load


def _python_load(
    connections: int,
    seconds: float,
    rate: float | None,
    sent: int,
    statuses: Counter[int],
    errors: int,
    latencies: list[float],
) -> Load:
    ordered = sorted(latencies)
    ok = statuses.get(200, 0)
    answered = sum(statuses.values())
    return Load(
        generator="python asyncio" + (", open loop" if rate else ""),
        connections=connections,
        seconds=seconds,
        offered_rate=rate,
        sent=sent,
        answered=answered,
        ok=ok,
        failed=answered - ok + errors,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p90_ms=percentile(ordered, 0.90) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        lower_bound=False,
        client_cpu_s=0.0,
    )


def run_async(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (a cheaper client), else asyncio."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# -- the phases -------------------------------------------------------------------------


class Driver:
    """Puts load on one server: wrk when there is one, else the Python client."""

    def __init__(
        self, server: Server, mix: CheckMix, wrk: str | None, workdir: Path, connections: int
    ) -> None:
        self.server = server
        self.mix = mix
        self.wrk = wrk
        self.connections = connections
        self.check_script = workdir / "access_checks.lua"
        self.baseline_script = workdir / "baseline.lua"
        if wrk is not None:
            self.check_script.write_text(wrk_script(mix))
            self.baseline_script.write_text(wrk_script(None))
        self.answered_ok = 0  # 200 answers to access checks, every phase

    def measure(self, name: str, label: str, generate: Callable[[], Load]) -> Phase:
        """Run one phase; add the server's CPU time to what the generator measured."""
        note(label)
        cpu_before = self.server.cpu_seconds()
        load = generate()
        server_cpu = self.server.cpu_seconds() - cpu_before
        seconds = load.seconds or math.nan
        return Phase(
            name=name,
            label=label,
            load=load,
            rate=load.ok / seconds,
            server_cpu_s=server_cpu,
            server_cpu_percent=100 * server_cpu / seconds,
            server_cpu_ms_per_answer=1000 * server_cpu / load.answered
            if load.answered
            else math.nan,
            client_cpu_percent=100 * load.client_cpu_s / seconds,
        )

    def checks(self, name: str, label: str, seconds: int) -> Phase:
        """Access checks, closed loop, as fast as the server answers."""
        token, port = self.server.token(), self.server.port
        if self.wrk is not None:
            url = self.server.base_url + CHECK_PATH
            wrk = self.wrk

            def generate() -> Load:
                args = (token, f"bench-{name}")
                return run_wrk(wrk, self.check_script, url, self.connections, seconds, args)

        else:

            def make(n: int) -> bytes:
                return http_request(port, "POST", CHECK_PATH, token, self.mix.body(n, name))

            def generate() -> Load:
                return run_async(closed_loop(port, make, self.connections, seconds, True))

        phase = self.measure(name, label, generate)
        self.answered_ok += phase.load.ok
        return phase

    def baseline(self, seconds: int) -> Phase:
        """GET /healthz, closed loop: what the same server does without the application."""
        label = f"GET {BASELINE_PATH} (baseline)"
        port = self.server.port
        if self.wrk is not None:
            url = self.server.base_url + BASELINE_PATH
            wrk = self.wrk

            def generate() -> Load:
                return run_wrk(wrk, self.baseline_script, url, self.connections, seconds, ())

        else:
            request = http_request(port, "GET", BASELINE_PATH, None, b"")

            def generate() -> Load:
                job = closed_loop(port, lambda n: request, self.connections, seconds, False)
                return run_async(job)

        return self.measure("baseline", label, generate)

    def fixed_rate(self, rate: float, seconds: int, grace: float) -> Phase:
        """Access checks at a fixed rate, open loop (Python: wrk has no fixed rate)."""
        token, port = self.server.token(), self.server.port

        def make(n: int) -> bytes:
            return http_request(port, "POST", CHECK_PATH, token, self.mix.body(n, "rate"))

        def generate() -> Load:
            return run_async(open_loop(port, make, rate, seconds, self.connections, grace))

        label = f"POST {CHECK_PATH}, {rate:,.0f}/s"
        phase = self.measure("fixed-rate", label, generate)
        self.answered_ok += phase.load.ok
        return phase


@contextlib.contextmanager
def profiling(server: Server, path: Path | None, seconds: int) -> Iterator[None]:
    """Record the server with py-spy (when asked) while the body runs."""
    if path is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if server.process is None or not Path(py_spy).exists():
        note("py-spy not found (.venv/bin/pip install py-spy); not profiling")
        yield
        return
    formats = {".svg": "flamegraph", ".json": "speedscope"}
    command = [py_spy, "record", "--pid", str(server.process.pid), "--subprocesses"]
    command += ["--nonblocking", "--rate", "100", "--duration", str(seconds), "-o", str(path)]
    command += ["--format", formats.get(path.suffix, "raw")]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attach before the load starts
    try:
        yield
    finally:
        try:
            _, err = recorder.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate()
        if recorder.returncode != 0:
            note(f"py-spy failed: {err.decode(errors='replace').strip().splitlines()[-1:]}")
        else:
            note(f"profile written to {path}")


# -- the ledger -------------------------------------------------------------------------


def ledger_state(inst: Installation) -> dict[str, Any]:
    """``onceonly ledger verify --json``: entries, checkpoints, whether it verifies."""
    out = onceonly(inst.env, "ledger", "verify", "--json", check=False)
    lines = out.strip().splitlines()
    try:
        return dict(json.loads(lines[-1]))
    except (IndexError, ValueError):
        raise BenchError("onceonly ledger verify --json printed no result") from None


def ledger_check(before: dict[str, Any], after: dict[str, Any], answered_ok: int) -> LedgerCheck:
    recorded = int(after["entries"]) - int(before["entries"])
    checkpoints = int(after["checkpoints"]) - int(before["checkpoints"])
    return LedgerCheck(
        entries_before=int(before["entries"]),
        entries_after=int(after["entries"]),
        recorded=recorded,
        checkpoints=checkpoints,
        mean_batch=recorded / checkpoints if checkpoints else math.nan,
        answered_ok=answered_ok,
        every_answer_recorded=answered_ok <= recorded,
        verifies=bool(after["ok"]),
        verify_seconds=float(after["seconds"]),
        first_failure=after.get("first_failure"),
    )


# -- databases --------------------------------------------------------------------------


async def postgres_execute(url: str, sql: str) -> str:
    """Run one statement on the server of ``url``; the first value of its answer."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        value = await conn.fetchval(sql)
    finally:
        await conn.close()
    return "" if value is None else str(value)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def database(options: Options, var_dir: Path) -> Iterator[tuple[str, str]]:
    """The database URL to use and a line about it; a PostgreSQL one is dropped after."""
    if not options.postgres:
        detail = f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL)"
        yield f"sqlite://{var_dir}/onceonly.sqlite3", detail
        return
    server = options.postgres_url
    try:
        facts = [
            run_async(postgres_execute(server, f"SHOW {name}"))
            for name in ("server_version", "fsync", "synchronous_commit")
        ]
    except Exception as exc:
        raise BenchError(f"PostgreSQL at {server} cannot be used: {exc}") from None
    name = f"onceonly_bench_{uuid.uuid4().hex[:8]}"
    note(f"postgres: creating database {name}")
    run_async(postgres_execute(server, f'CREATE DATABASE "{name}"'))
    try:
        detail = f"PostgreSQL {facts[0]}, fsync {facts[1]}, synchronous_commit {facts[2]}"
        yield with_database(server, name), detail
    finally:
        note(f"postgres: dropping database {name}")
        run_async(postgres_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- machine facts ----------------------------------------------------------------------


def server_loop() -> str:
    """What uvicorn's "auto" picks: uvloop and httptools when they are installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    quick: bool
    as_json: bool
    postgres: bool
    postgres_url: str
    seconds: int
    warmup: int
    grace: float
    connections: int
    rate: float
    workers: int
    load_generator: str
    profile: Path | None
    seed: int


def parse_options(argv: Sequence[str], environ: dict[str, str]) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, well under 45 s")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run on PostgreSQL (a database of its own on ONCEONLY_TEST_POSTGRES_URL's server) "
        "instead of SQLite",
    )
    parser.add_argument("--seconds", type=int, help="duration of each phase (10, quick: 3)")
    parser.add_argument("--connections", type=int, default=64, help="connections (64)")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed rate, checks/s (1000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="onceonly serve --workers (default: one per CPU, as the README advises)",
    )
    parser.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="wrk, the Python asyncio client, or wrk when installed (auto)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the server with py-spy during the maximum-throughput phase "
        "(.svg flame graph, .json speedscope, else collapsed stacks)",
    )
    parser.add_argument("--seed", type=int, default=20250301, help="random seed of the bodies")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (3 if args.quick else 10)
    if not 1 <= seconds <= MAX_PHASE_SECONDS:
        parser.error(f"--seconds must be from 1 to {MAX_PHASE_SECONDS} (one token per phase)")
    if args.connections < 1 or args.rate <= 0 or args.workers < 1:
        parser.error("--connections, --rate and --workers must be positive")
    return Options(
        quick=args.quick,
        as_json=args.json,
        postgres=args.postgres,
        postgres_url=environ.get("ONCEONLY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        seconds=seconds,
        warmup=1 if args.quick else 3,
        grace=2.0 if args.quick else 5.0,
        connections=args.connections,
        rate=args.rate,
        workers=args.workers,
        load_generator=args.load_generator,
        profile=args.profile.resolve() if args.profile else None,
        seed=args.seed,
    )


def find_wrk(choice: str) -> str | None:
    """wrk's path, or None for the Python client (saying how to get wrk)."""
    if choice == "python":
        return None
    wrk = shutil.which("wrk")
    if wrk is None:
        if choice == "wrk":
            raise BenchError("wrk is not installed: apt-get install -y wrk (Debian, Ubuntu)")
        note(
            "wrk is not installed (apt-get install -y wrk, or brew install wrk); using the "
            "Python asyncio client, which may be the bottleneck itself: see its CPU column"
        )
    return wrk


def targets(kind: str, phases: dict[str, Phase]) -> list[Target]:
    out = []
    rate = phases["max"].rate
    out.append(
        Target(
            f"decisions/s at {phases['max'].load.connections} connections",
            f">= {TARGET_RATE[kind]:,.0f}",
            rate,
            rate >= TARGET_RATE[kind],
        )
    )
    if kind in TARGET_P99_MS:
        fixed = phases["fixed-rate"].load
        out.append(
            Target(
                f"p99 ms at {fixed.offered_rate:,.0f} checks/s",
                f"<= {TARGET_P99_MS[kind]:g}",
                fixed.p99_ms,
                fixed.p99_ms <= TARGET_P99_MS[kind] and not fixed.lower_bound,
            )
        )
    return out


def run(options: Options) -> Report:
    started = time.perf_counter()
    load_at_start = load_average()
    wrk = find_wrk(options.load_generator)
    mix = CheckMix(options.seed)
    kind = "postgres" if options.postgres else "sqlite"
    with tempfile.TemporaryDirectory(prefix="onceonly-access-") as tmp:
        workdir = Path(tmp)
        var_dir = workdir / "var"
        with database(options, var_dir) as (url, detail):
            inst = install(var_dir, url)
            before = ledger_state(inst)
            server, workers_note = start_server(inst, options.workers)
            workers = server.workers
            try:
                driver = Driver(server, mix, wrk, workdir, options.connections)
                seconds = options.seconds
                checks = f"POST {CHECK_PATH}, max"
                driver.checks("warm-up", f"POST {CHECK_PATH}, warm-up", options.warmup)
                phases = [driver.baseline(seconds)]
                with profiling(server, options.profile, seconds):
                    phases.append(driver.checks("max", checks, seconds))
                phases.append(driver.fixed_rate(options.rate, seconds, options.grace))
            except BenchError as exc:
                raise BenchError(f"{exc} (server: {server.last_words()})") from None
            finally:
                note("stopping the server")
                server.stop()
            note("onceonly ledger verify --json")
            ledger = ledger_check(before, ledger_state(inst), driver.answered_ok)
    machine = Machine(
        cpus=os.cpu_count(),
        cpu_model=cpu_model(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        load_average=load_at_start,
        python=platform.python_version(),
        uvicorn=package_version("uvicorn"),
        server_loop=server_loop(),
        load_generator=wrk_description(wrk) if wrk else "python asyncio",
        database=detail,
    )
    return Report(
        mode="quick" if options.quick else "default",
        database=kind,
        workers_requested=options.workers,
        workers=workers,
        workers_note=workers_note,
        connections=options.connections,
        rate=options.rate,
        seconds=options.seconds,
        machine=machine,
        phases=phases,
        ledger=ledger,
        targets=targets(kind, {p.name: p for p in phases}),
        profile=str(options.profile) if options.profile else None,
        total_seconds=time.perf_counter() - started,
    )


# -- output -----------------------------------------------------------------------------


def ms(value: float, lower_bound: bool = False) -> str:
    if not math.isfinite(value):
        return "-"
    text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return (">" if lower_bound else "") + text


def render(report: Report) -> str:
    m = report.machine
    database = "PostgreSQL" if report.database == "postgres" else "SQLite"
    workers = f"{report.workers} worker" + ("s" if report.workers > 1 else "")
    out = [
        f"Onceonly access-check benchmark ({report.mode} run on {database}, "
        f"{report.total_seconds:.0f} s)",
        f"machine   {m.cpus} CPUs, {m.cpu_model}, {m.platform}, load {m.load_average} at start",
        f"server    onceonly serve, {workers}, uvicorn {m.uvicorn} ({m.server_loop}), "
        f"Python {m.python}",
        f"database  {m.database}",
        f"load      {m.load_generator}; {report.connections} connections, "
        f"{report.seconds:g} s per phase",
    ]
    if report.workers_note:
        out.append(f"note      {report.workers_note}")
    out.append("")
    headers = ["phase", "sent", "200", "failed", "per s", "p50 ms", "p99 ms"]
    headers += ["server CPU", "CPU ms/answer", "client CPU"]
    rows = []
    for phase in report.phases:
        load = phase.load
        rows.append(
            [
                phase.label,
                f"{load.sent:,}",
                f"{load.ok:,}",
                f"{load.failed:,}",
                f"{phase.rate:,.0f}",
                ms(load.p50_ms, load.lower_bound),
                ms(load.p99_ms, load.lower_bound),
                f"{phase.server_cpu_percent:.0f}%",
                f"{phase.server_cpu_ms_per_answer:.2f}",
                f"{phase.client_cpu_percent:.0f}%",
            ]
        )
    out += table(headers, rows)
    fixed = next(p for p in report.phases if p.name == "fixed-rate").load
    if fixed.lower_bound:
        out.append(
            f"  at {fixed.offered_rate:,.0f}/s the server fell behind: requests still "
            f"unanswered when the bench gave up count at that time (> is a lower bound)"
        )
    out += ["", "Targets"]
    rows = [
        [t.what, t.goal, f"{t.value:,.1f}", "met" if t.met else "MISSED"] for t in report.targets
    ]
    out += table(["what", "target", "measured", ""], rows)
    out += ["", *render_ledger(report.ledger)]
    if fixed.decisions:
        mix = ", ".join(f"{kind} {n:,}" for kind, n in sorted(fixed.decisions.items()))
        out += ["", f"Decisions answered at {fixed.offered_rate:,.0f}/s: {mix}"]
    if report.profile:
        out += ["", f"py-spy profile of the maximum-throughput phase: {report.profile}"]
    return "\n".join(out)


def render_ledger(ledger: LedgerCheck) -> list[str]:
    verdict = (
        "every answered decision is in the ledger"
        if ledger.every_answer_recorded
        else "MORE ANSWERS THAN ENTRIES: an answered decision is missing from the ledger"
    )
    lines = [
        f"Ledger: {ledger.answered_ok:,} access checks answered 200, {ledger.recorded:,} entries "
        f"recorded during the run ({ledger.entries_before:,} -> {ledger.entries_after:,}): "
        f"{verdict}.",
        f"  {ledger.checkpoints:,} checkpoints, {ledger.mean_batch:.1f} entries per commit "
        "(group commit); entries recorded but not answered are checks cut off at the end "
        "of a phase.",
    ]
    if ledger.verifies:
        lines.append(
            f"  onceonly ledger verify: the ledger verifies ({ledger.verify_seconds:.1f} s)."
        )
    else:
        lines.append(f"  onceonly ledger verify: it does NOT verify: {ledger.first_failure}")
    return lines


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the server is stopped and the database dropped


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv, dict(os.environ))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        report = run(options)
    except BenchError as exc:
        print(f"access_check: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("access_check: interrupted", file=sys.stderr)
        return 130
    if options.as_json:
        print(json.dumps(finite(asdict(report)), indent=2, allow_nan=False))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
