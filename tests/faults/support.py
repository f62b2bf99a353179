"""What the fault tests share: an installed Onceonly, the real server in a process session
of its own, concurrent access checks over HTTP that remember every decision a client
received, and the ledger as it is stored.

The invariant every fault test checks (``assert_nothing_lost``): each decision a client
received is in the ledger at the index it was told, with the leaf hash it was told and
its query id; no query id is in the ledger twice; the indices are 0, 1, 2, ... without a
gap; and ``onceonly ledger verify`` passes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ledger.database import open_ledger_database

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CHECK_PATH = "/api/v1/access-checks"
#: Long enough for any answer the server owes; a request still unanswered after this is
#: a hanging request, which the tests count and refuse.
REQUEST_TIMEOUT = 15.0
READY_TIMEOUT = 60.0

# Access checks by ServiceOntario (MPBSDP): most for people without a consent (a deny,
# no_consent), some under a statutory authority (a permit). Both are ledger entries.
CLIENT_SYSTEM = ("MPBSDP", "serviceontario")
TERMS = (
    {"recipient": "MTO", "categories": ["address"], "purpose": "licence-renewal"},
    {
        "recipient": "MCCSS",
        "categories": ["income"],
        "purpose": "eligibility",
        "authority": "OWA-74",
    },
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def onceonly(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m app.cli ARGS`` as an operator would. Fails the test when ``check``
    and the command fails."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"onceonly {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done


@dataclass
class Installation:
    """A migrated, seeded Onceonly with an API client that may run access checks."""

    kind: str
    url: str
    env: dict[str, str]
    client_id: str = ""
    client_secret: str = field(default="", repr=False)


def install(kind: str, url: str, var_dir: Path, **settings: str) -> Installation:
    """Seed the reference data into the (migrated) database at ``url`` and register
    ServiceOntario's API client with ``onceonly clients add``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env.update(
        {
            "ONCEONLY_VAR_DIR": str(var_dir),
            "ONCEONLY_DATABASE_URL": url,
            "ONCEONLY_LOG_LEVEL": "warning",
            # One public address whichever process or port answers: it names the token
            # issuer and audience, so a token stays good across servers and restarts.
            "ONCEONLY_BASE_URL": "http://onceonly.internal",
            **settings,
        }
    )
    inst = Installation(kind, url, env)
    onceonly(env, "migrate")
    onceonly(env, "seed")
    ministry, system = CLIENT_SYSTEM
    out = onceonly(
        env,
        *("clients", "add", "--ministry", ministry, "--system", system, "--name", "faults"),
        *("--scopes", "access:check", "--auth", "client_secret_basic"),
    ).stdout
    inst.client_id = _printed(out, "client_id")
    inst.client_secret = _printed(out, "client_secret")
    return inst


def _printed(output: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}:\s+(\S+)\s*$", output, re.MULTILINE)
    assert found is not None, f"onceonly clients add printed no {label}"
    return found.group(1)


class Server:
    """``onceonly serve`` in a process session of its own (it and its workers stop together).

    Its output goes to a pipe that a thread drains (not to a file, so that a test that
    limits the size of the files the server may write does not also stop its logging).
    """

    def __init__(
        self,
        inst: Installation,
        *,
        workers: int = 1,
        port: int | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        self.inst = inst
        self.workers = workers
        self.wrap = list(wrap)  # a command that runs the server command given after it
        self.port = port or free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._lines: deque[str] = deque(maxlen=2000)

    def start(self) -> Server:
        command = [*self.wrap, sys.executable, "-m", "app.cli", "serve", "--host", HOST]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.inst.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stream = self.process.stdout
        assert stream is not None
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()
        self.wait_ready()
        return self

    def _drain(self, stream: Any) -> None:
        for line in iter(stream.readline, b""):
            self._lines.append(line.decode(errors="replace").rstrip())
        stream.close()

    def output(self) -> str:
        """The server's last lines of output, for a failure message."""
        return "\n".join(self._lines)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until /readyz answers 200. Fails the test with the server's output."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready after {timeout:.0f} s:\n{self.output()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the server and every process of its session: no shutdown at all."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM (a graceful stop); the exit status once the process has ended."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Whatever state it is in, stop it and anything left of its session."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def token(self) -> str:
        """A fresh access token for the installation's client (client_secret_basic)."""
        answer = httpx.post(
            self.base_url + "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "access:check"},
            auth=(self.inst.client_id, self.inst.client_secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


@dataclass(frozen=True)
class Received:
    """A decision as the client received it."""

    query_id: str
    index: int
    leaf_hash: bytes


@dataclass(frozen=True)
class Failure:
    """An access check answered otherwise than 200, or not answered at all."""

    query_id: str
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    what: str  # the problem type, or the transport error's name
    seconds: float
    retry_after: str | None = None


class AccessChecks:
    """Clients that each send one access check after another until told to stop.

    Every query id is new, so a query id in the ledger stands for exactly one request.
    ``received`` holds each decision a client was given (200); ``failures`` everything
    else. The clients go on after errors (a server that is down answers nothing), a
    little slower.
    """

    def __init__(self, base_urls: Sequence[str], token: str, tag: str, clients: int = 8) -> None:
        self.base_urls = list(base_urls)
        self.token = token
        self.tag = tag
        self.clients = clients
        self.received: dict[str, Received] = {}
        self.failures: list[Failure] = []
        self.sent = 0
        self.pending: set[str] = set()  # sent, not answered yet
        self._stop = asyncio.Event()
        self._answered = asyncio.Event()  # set at each answer or error
        self._numbers = itertools.count()
        self._task: asyncio.Task[None] | None = None

    @property
    def answered(self) -> Counter[int]:
        statuses: Counter[int] = Counter({200: len(self.received)})
        statuses.update(f.status for f in self.failures if f.status is not None)
        return statuses

    def start(self) -> AccessChecks:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        """Stop sending; return once every request sent has its answer (or error)."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def until(self, count: int, seconds: float = 60) -> None:
        """Wait until ``count`` decisions have been received in all."""
        await self._wait(lambda: len(self.received) >= count, f"{count} decisions", seconds)

    async def until_failures(self, count: int, seconds: float = 60) -> None:
        """Wait until ``count`` access checks have failed in all."""
        await self._wait(lambda: len(self.failures) >= count, f"{count} failures", seconds)

    async def _wait(self, done: Callable[[], bool], what: str, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not done():
                    assert self._task is not None and not self._task.done()
                    self._answered.clear()
                    await self._answered.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {what} after {seconds:.0f} s: {len(self.received)} decisions, "
                f"{len(self.failures)} failures, the last {self.failures[-3:]}"
            ) from None

    async def _run(self) -> None:
        await asyncio.gather(*(self._client(n) for n in range(self.clients)))

    async def _client(self, number: int) -> None:
        base_url = self.base_urls[number % len(self.base_urls)]
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT
        ) as http:
            while not self._stop.is_set():
                await self._check(http, f"{self.tag}-{next(self._numbers)}")

    async def _check(self, http: httpx.AsyncClient, query_id: str) -> None:
        n = int(query_id.rsplit("-", 1)[1])
        body = {"person_id": f"fault-person-{n % 5000}", **TERMS[n % len(TERMS)]}
        body["query_id"] = query_id
        self.sent += 1
        self.pending.add(query_id)
        started = time.monotonic()
        try:
            answer = await http.post(CHECK_PATH, json=body)
        except httpx.HTTPError as exc:
            self.pending.discard(query_id)
            self._answered.set()
            self.failures.append(
                Failure(query_id, None, type(exc).__name__, time.monotonic() - started)
            )
            await asyncio.sleep(0.05)  # the server is not there: do not spin
            return
        seconds = time.monotonic() - started
        self.pending.discard(query_id)
        self._answered.set()
        if answer.status_code == 200:
            document = answer.json()
            assert document["query_id"] == query_id
            ledger = document["ledger"]
            self.received[query_id] = Received(
                query_id, int(ledger["index"]), base64.b64decode(ledger["leaf_hash"])
            )
            return
        what = answer.headers.get("content-type", "")
        if "json" in what:
            what = str(answer.json().get("type", what))
        self.failures.append(
            Failure(query_id, answer.status_code, what, seconds, answer.headers.get("retry-after"))
        )
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class StoredEntry:
    index: int
    leaf_hash: bytes
    query_id: str | None


async def stored_entries(url: str) -> list[StoredEntry]:
    """Every ledger entry as stored, in index order (read with the ledger's own driver)."""
    db = open_ledger_database(url)
    await db.connect()
    try:
        rows = await db.fetch("SELECT idx, leaf_hash, query_id FROM ledger_entry ORDER BY idx")
    finally:
        await db.close()
    return [StoredEntry(int(r[0]), bytes(r[1]), r[2]) for r in rows]


def verify(inst: Installation) -> dict[str, Any]:
    """``onceonly ledger verify --json``: its answer (entries, checkpoints, ok)."""
    done = onceonly(inst.env, "ledger", "verify", "--json", check=False)
    lines = done.stdout.strip().splitlines()
    assert lines, f"onceonly ledger verify printed nothing: {done.stderr}"
    report = dict(json.loads(lines[-1]))
    report["exit_status"] = done.returncode
    return report


@dataclass
class Tally:
    """What a fault test reports: decisions acknowledged, found in the ledger, lost."""

    acknowledged: int
    found: int
    lost: int
    entries: int


async def assert_nothing_lost(
    inst: Installation, received: dict[str, Received], label: str
) -> Tally:
    """Check the ledger against what the clients received, and print the counts.

    Every received decision is stored at its index with its leaf hash and query id; no
    query id is stored twice; the indices have no gap; ``onceonly ledger verify`` passes.
    """
    entries = await stored_entries(inst.url)
    assert [e.index for e in entries] == list(range(len(entries))), "indices are contiguous"
    by_query = Counter(e.query_id for e in entries if e.query_id is not None)
    twice = [query for query, count in by_query.items() if count > 1]
    assert not twice, f"query ids stored twice: {twice[:5]}"
    found = 0
    for decision in received.values():
        stored = entries[decision.index] if decision.index < len(entries) else None
        if (
            stored is not None
            and stored.leaf_hash == decision.leaf_hash
            and stored.query_id == decision.query_id
        ):
            found += 1
    lost = len(received) - found
    report = verify(inst)
    tally = Tally(len(received), found, lost, len(entries))
    print(
        f"\n[faults] {label} ({inst.kind}): decisions acknowledged {tally.acknowledged}, "
        f"found in the ledger {tally.found}, lost {tally.lost}; ledger entries {tally.entries}, "
        f"onceonly ledger verify: {'ok' if report.get('ok') else 'FAILED'}"
    )
    assert lost == 0, f"{lost} acknowledged decisions are not in the ledger as answered"
    assert report.get("ok") is True and report["exit_status"] == 0, report
    assert report.get("entries") == len(entries), report
    return tally
