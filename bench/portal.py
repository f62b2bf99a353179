"""Citizen portal speed: the activity and home pages of a person with a long history,
over HTTP, against a static file of the same server.

    .venv/bin/python bench/portal.py            # about two minutes, at most about three
    .venv/bin/python bench/portal.py --quick    # a smoke run, well under a minute
    .venv/bin/python bench/portal.py --json     # the same figures as JSON

It sets everything up itself in a temporary directory (``onceonly migrate``, ``seed
--demo``, then 10,000 ledger entries about the demo resident Alex among 50,000 about
other people, appended directly through the ledger), serves the application with
``onceonly serve`` on a free loopback port, signs Alex in through the built-in
development OpenID Connect provider over HTTP, and times the pages with an httpx client
on keep-alive connections, one client and then several at once. It measures and prints;
it asserts nothing. Target (see bench/README.md): the activity page's p95 at most 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import html
import json
import math
import os
import platform
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from _support import (
    HOST,
    BenchError,
    ServedOnceonly,
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

from app.reference_data import DATA_CATEGORIES, LEGAL_AUTHORITIES, MINISTRIES, PURPOSES
from app.seed import DEMO_CONSENTS, DEMO_NAMESPACE, demo_pseudonym
from app.services import open_services
from app.settings import Settings
from ledger.entry import Basis, Entry, commitment, format_time
from ledger.sequencer import Subject

PERSON = "demo-resident-alex"
SESSION_COOKIE = "onceonly_session"
STATIC_PATH = "/static/app/onceonly.css"
FILL_BATCH = 1_000
TARGET_ACTIVITY_P95_MS = 50.0  # every activity page, one client

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')
_ENTRY_ARTICLE = '<article class="entry"'


# -- results ----------------------------------------------------------------------------


@dataclass
class Run:
    """One page at one concurrency: what was answered, how fast, at what cost."""

    page: str
    path: str
    clients: int
    requests: int
    ok: int  # status 200
    failed: int  # any other status, or a transport error
    capped: bool  # stopped by --phase-seconds before all requests were sent
    seconds: float
    per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    p95_over_static_ms: float  # p95 minus the static page's p95 at the same concurrency
    server_cpu_ms_per_request: float
    client_cpu_percent: float  # of one CPU


@dataclass
class Page:
    """A page measured: its path, what one answer looked like, its runs."""

    name: str
    path: str
    status: int
    body_bytes: int
    entries_shown: int | None  # activity pages: the <article class="entry"> count
    runs: list[Run] = field(default_factory=list)


@dataclass
class LedgerFill:
    entries: int  # the whole log after the fill
    person_entries: int  # about Alex, the seed's included
    person_hidden: int  # of those, still hidden (hidden_until in the future)
    appended: int  # by the bench: person_entries less the seed's, plus other_entries
    seconds: float  # appending them
    deep_before: int  # the ``before`` of the deep page


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
    httpx: str
    sqlite: str


@dataclass
class Report:
    mode: str
    requests: int
    warmup: int
    clients: int
    phase_seconds: float
    machine: Machine
    ledger: LedgerFill
    pages: list[Page]
    targets: list[Target]
    profile: str | None
    total_seconds: float = 0.0


# -- ledger entries ---------------------------------------------------------------------


MINISTRY_CODES = [code for code, _, _, _ in MINISTRIES]
SYSTEMS = [(code, system) for code, _, _, systems in MINISTRIES for system, _, _ in systems]
CATEGORY_CODES = [code for code, _, _, _ in DATA_CATEGORIES]
PURPOSE_CODES = [code for code, _, _, _ in PURPOSES]
AUTHORITY_CODES = [code for code, *_ in LEGAL_AUTHORITIES]
DENIAL_REASONS = (
    "no_consent",
    "consent_withdrawn",
    "consent_expired",
    "purpose_mismatch",
    "category_not_covered",
    "recipient_mismatch",
    "authority_not_applicable",
)
CONSENT_EVENTS = (
    "consent.requested",
    "consent.given",
    "consent.refused",
    "consent.withdrawn",
    "consent.expired",
)


class Activity:
    """Entries shaped like the platform's own (cf. app/seed.py demo_activity): accesses
    permitted by consent or by law, denials with reasons, and consent events, by every
    ministry and system, for every purpose, about one or a few categories.

    Alex's consent-based entries name Alex's demo consents, so the page can date them;
    one in a hundred of Alex's entries is still hidden and one in a hundred was hidden
    until a past date.
    """

    def __init__(self, seed: int, person: str, consent_ids: Sequence[str], now: dt.datetime):
        self._random = random.Random(seed)
        self.person = person
        self._person_consents = list(consent_ids)
        self._others = [f"{self._random.getrandbits(256):064x}" for _ in range(20_000)]
        self._now = now
        self.hidden = 0

    def _id(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def make(self, about_person: bool, when: dt.datetime) -> tuple[Entry, Subject]:
        rng = self._random
        pseudonym = self.person if about_person else rng.choice(self._others)
        subject = Subject.new(pseudonym)
        actor, system = rng.choice(SYSTEMS)
        consent_ref = rng.choice(self._person_consents) if about_person else self._id()
        roll = rng.random()
        if roll < 0.85:
            kind, reasons = "access.permitted", ()
            by_law = rng.random() < 0.4
        elif roll < 0.95:
            kind, reasons = "access.denied", tuple(rng.sample(DENIAL_REASONS, rng.randint(1, 2)))
            by_law = "authority_not_applicable" in reasons
        else:
            kind, reasons, by_law = rng.choice(CONSENT_EVENTS), (), False
        if by_law:
            basis = Basis("authority", rng.choice(AUTHORITY_CODES))
        else:
            basis = Basis("consent", consent_ref)
        hidden_until = hidden_reason = None
        if about_person and rng.random() < 0.02:
            days = rng.choice((-10, 60))  # revealed already, or still hidden
            hidden_until = (self._now + dt.timedelta(days=days)).date().isoformat()
            hidden_reason = "active-investigation"
            self.hidden += days > 0
        entry = Entry(
            type=kind,
            time=format_time(when),
            actor_org=actor,
            actor_system=system,
            purpose=rng.choice(PURPOSE_CODES),
            basis=basis,
            categories=tuple(rng.sample(CATEGORY_CODES, rng.randint(1, 3))),
            query_id=self._id(),
            subject_commitment=commitment(subject.opening, subject.pseudonym),
            case_id=f"case-{rng.randrange(1_000_000):06d}" if rng.random() < 0.2 else None,
            hidden_until=hidden_until,
            hidden_reason=hidden_reason,
            recipient_org=rng.choice(MINISTRY_CODES),
            source_orgs=(actor,),
            reasons=reasons,
        )
        return entry, subject


async def fill_ledger(
    env: dict[str, str], person_entries: int, other_entries: int, seed: int
) -> LedgerFill:
    """Append ``person_entries`` about Alex scattered among ``other_entries`` about
    other people, oldest first over the past year, in append_all batches of 1,000,
    through the same services the server opens."""
    settings = Settings.from_env(env)
    services = await open_services(settings)
    try:
        person = demo_pseudonym(settings, PERSON)
        consent_ids = [
            str(uuid.uuid5(DEMO_NAMESPACE, label))
            for label, resident, *_ in DEMO_CONSENTS
            if resident == PERSON
        ]
        now = dt.datetime.now(dt.UTC)
        activity = Activity(seed, person, consent_ids, now)
        total = person_entries + other_entries
        positions = set(random.Random(seed + 1).sample(range(total), person_entries))
        start, step = now - dt.timedelta(days=365), dt.timedelta(days=364) / max(total, 1)
        person_indices: list[int] = []
        started = time.perf_counter()
        for first in range(0, total, FILL_BATCH):
            batch = [
                activity.make(n in positions, start + n * step)
                for n in range(first, min(first + FILL_BATCH, total))
            ]
            appended = await services.ledger.append_all(batch)
            person_indices += [
                done.index
                for done, (_, subject) in zip(appended, batch, strict=True)
                if subject.pseudonym == person
            ]
            if (first // FILL_BATCH) % 10 == 9:
                note(f"appended {first + len(batch):,} of {total:,} entries")
        seconds = time.perf_counter() - started
        size = await services.ledger.size()
        rows = await services.ledger.db.fetch(
            "SELECT count(*) FROM ledger_opening WHERE pseudonym = ?", person
        )
    finally:
        await services.close()
    return LedgerFill(
        entries=size,
        person_entries=int(rows[0][0]),
        person_hidden=activity.hidden,
        appended=total,
        seconds=seconds,
        deep_before=person_indices[len(person_indices) // 2] if person_indices else 0,
    )


# -- the installation and the server ----------------------------------------------------


def installation_env(var_dir: Path, port: int) -> dict[str, str]:
    """This environment without any ONCEONLY_ setting, plus the bench's own: demo mode
    (the built-in sign-in provider) at the address the server will listen on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_VAR_DIR"] = str(var_dir)
    env["ONCEONLY_DATABASE_URL"] = f"sqlite://{var_dir}/onceonly.sqlite3"
    env["ONCEONLY_DEMO"] = "true"
    env["ONCEONLY_BASE_URL"] = f"http://{HOST}:{port}"
    env["ONCEONLY_LOG_LEVEL"] = "warning"
    return env


# -- signing in -------------------------------------------------------------------------


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of an HTML page (name to value)."""
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def expect_redirect(response: httpx.Response, step: str) -> httpx.URL:
    if response.status_code != 303 or "location" not in response.headers:
        raise BenchError(f"{step}: expected a 303, got {response.status_code}")
    return response.url.join(response.headers["location"])


def sign_in(base_url: str, subject: str) -> str:
    """Sign ``subject`` in through the real OpenID Connect flow of the built-in provider,
    over HTTP as a browser would (cf. tests/portal_support.py); return the session
    cookie's value. Raises BenchError when a step answers otherwise than expected."""
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=30) as browser:
        authorize = expect_redirect(browser.get("/auth/sign-in", params={"next": "/"}), "sign-in")
        if not authorize.path.endswith("/dev-oidc/authorize"):
            raise BenchError(f"sign-in sent the browser to {authorize}, not the dev provider")
        page = browser.get(authorize)
        if page.status_code != 200:
            raise BenchError(f"the provider's page answered {page.status_code}")
        form = {**hidden_fields(page.text), "subject": subject, "action": "sign-in"}
        answer = browser.post(authorize.copy_with(query=None), data=form)
        callback = expect_redirect(answer, "the provider's form")
        if callback.path != "/auth/callback" or "code=" not in str(callback.query):
            raise BenchError(f"the provider sent the browser to {callback}, not the callback")
        expect_redirect(browser.get(callback), "the callback")
        cookie = browser.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise BenchError("the callback set no session cookie")
        return cookie


# -- measuring --------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    capped: bool = False

    def count(self, status: int | None, seconds: float) -> None:
        self.latencies.append(seconds)
        if status == 200:
            self.ok += 1
        else:
            self.failed += 1


class Client:
    """Requests as the signed-in person, on keep-alive connections."""

    def __init__(self, server: ServedOnceonly, cookie: str, requests: int, phase_seconds: float):
        self.server = server
        self.requests = requests
        self.phase_seconds = phase_seconds
        self.headers = {"Accept-Language": "en", "Cookie": f"{SESSION_COOKIE}={cookie}"}

    def sync_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url,
            headers=self.headers,
            follow_redirects=False,
            timeout=60,
        )

    def look(self, path: str) -> tuple[int, str]:
        """One request, answered as is: the status and the text of the page."""
        with self.sync_client() as client:
            response = client.get(path)
            return response.status_code, response.text

    def warm_up(self, path: str, count: int) -> None:
        with self.sync_client() as client:
            for _ in range(count):
                client.get(path)

    def sequential(self, path: str) -> tuple[Tally, float]:
        """``requests`` GETs one after another; the tally and the wall time."""
        tally = Tally()
        with self.sync_client() as client:
            started = time.perf_counter()
            deadline = started + self.phase_seconds
            for _ in range(self.requests):
                if time.perf_counter() > deadline:
                    tally.capped = True
                    break
                sent = time.perf_counter()
                try:
                    status: int | None = client.get(path).status_code
                except httpx.HTTPError:
                    status = None
                tally.count(status, time.perf_counter() - sent)
            return tally, time.perf_counter() - started

    def concurrent(self, path: str, clients: int) -> tuple[Tally, float]:
        """``requests`` GETs from ``clients`` connections at once, each sending its next
        request when its last was answered; the tally and the wall time."""
        return asyncio.run(self._concurrent(path, clients))

    async def _concurrent(self, path: str, clients: int) -> tuple[Tally, float]:
        tally = Tally()
        remaining = self.requests
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=self.server.base_url,
            headers=self.headers,
            follow_redirects=False,
            timeout=60,
            limits=limits,
        ) as client:
            started = time.perf_counter()
            deadline = started + self.phase_seconds

            async def one_connection() -> None:
                nonlocal remaining
                while remaining > 0:
                    if time.perf_counter() > deadline:
                        tally.capped = True
                        return
                    remaining -= 1
                    sent = time.perf_counter()
                    try:
                        status: int | None = (await client.get(path)).status_code
                    except httpx.HTTPError:
                        status = None
                    tally.count(status, time.perf_counter() - sent)

            await asyncio.gather(*(one_connection() for _ in range(clients)))
            return tally, time.perf_counter() - started

    def measure(self, page: str, path: str, clients: int) -> Run:
        server_cpu, client_cpu = self.server.cpu_seconds(), time.process_time()
        if clients == 1:
            tally, seconds = self.sequential(path)
        else:
            tally, seconds = self.concurrent(path, clients)
        server_cpu = self.server.cpu_seconds() - server_cpu
        client_cpu = time.process_time() - client_cpu
        ordered = sorted(tally.latencies)
        n = len(ordered)
        return Run(
            page=page,
            path=path,
            clients=clients,
            requests=n,
            ok=tally.ok,
            failed=tally.failed,
            capped=tally.capped,
            seconds=seconds,
            per_s=tally.ok / seconds if seconds else math.nan,
            p50_ms=percentile(ordered, 0.50) * 1e3,
            p95_ms=percentile(ordered, 0.95) * 1e3,
            p99_ms=percentile(ordered, 0.99) * 1e3,
            mean_ms=sum(ordered) / n * 1e3 if n else math.nan,
            p95_over_static_ms=math.nan,
            server_cpu_ms_per_request=server_cpu / n * 1e3 if n else math.nan,
            client_cpu_percent=client_cpu / seconds * 100 if seconds else math.nan,
        )


@contextlib.contextmanager
def profiling(server: ServedOnceonly, path: Path | None) -> Iterator[None]:
    """Record the server with py-spy (when asked) while the body runs."""
    if path is None or server.process is None:
        yield
        return
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        note("py-spy not found (.venv/bin/pip install py-spy); not profiling")
        yield
        return
    formats = {".svg": "flamegraph", ".json": "speedscope"}
    command = [str(py_spy), "record", "--pid", str(server.process.pid), "--nonblocking"]
    command += ["--rate", "200", "-o", str(path), "--format", formats.get(path.suffix, "raw")]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attach before the load starts
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes the profile on Ctrl-C
        try:
            _, err = recorder.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate()
        if not path.exists():
            words = err.decode(errors="replace").strip().splitlines()[-1:]
            note(f"py-spy wrote no profile: {words}")
        else:
            note(f"profile written to {path}")


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    quick: bool
    as_json: bool
    person_entries: int
    other_entries: int
    requests: int
    warmup: int
    clients: int
    phase_seconds: float
    profile: Path | None
    seed: int


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, well under a minute")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--person-entries", type=int, help="ledger entries about Alex (10000, quick: 1000)"
    )
    parser.add_argument(
        "--other-entries", type=int, help="entries about other people (50000, quick: 5000)"
    )
    parser.add_argument("--requests", type=int, help="requests per page and phase (300, quick: 60)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per page (30, quick: 10)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument(
        "--phase-seconds",
        type=float,
        help="stop a phase after this long, whatever is left (15, quick: 5)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the server with py-spy while the activity pages are timed "
        "(.svg flame graph, .json speedscope, else collapsed stacks)",
    )
    parser.add_argument("--seed", type=int, default=20250301, help="random seed of the entries")
    args = parser.parse_args(argv)

    def pick(value: Any, default: Any, quick: Any) -> Any:
        return value if value is not None else (quick if args.quick else default)

    options = Options(
        quick=args.quick,
        as_json=args.json,
        person_entries=pick(args.person_entries, 10_000, 1_000),
        other_entries=pick(args.other_entries, 50_000, 5_000),
        requests=pick(args.requests, 300, 60),
        warmup=pick(args.warmup, 30, 10),
        clients=args.clients,
        phase_seconds=pick(args.phase_seconds, 15.0, 5.0),
        profile=args.profile.resolve() if args.profile else None,
        seed=args.seed,
    )
    if options.person_entries < 1 or options.other_entries < 0:
        parser.error("--person-entries must be positive and --other-entries not negative")
    if options.requests < 1 or options.warmup < 0 or options.clients < 2:
        parser.error("--requests must be positive, --warmup not negative, --clients at least 2")
    return options


def pages_to_measure(fill: LedgerFill) -> list[tuple[str, str]]:
    return [
        ("static file (baseline)", STATIC_PATH),
        ("home page", "/"),
        ("activity, first page", "/activity"),
        ("activity, deep page", f"/activity?before={fill.deep_before}"),
        ("activity, basis=authority", "/activity?basis=authority"),
    ]


def measure_page(
    client: Client, name: str, path: str, options: Options, server: ServedOnceonly
) -> Page:
    status, text = client.look(path)
    if status != 200:
        raise BenchError(f"GET {path} answered {status}, not 200")
    shown = text.count(_ENTRY_ARTICLE) if urlsplit(path).path == "/activity" else None
    page = Page(name, path, status, len(text.encode()), shown)
    note(f"GET {path}: {options.warmup} warm-up, then {options.requests} requests, 1 client")
    client.warm_up(path, options.warmup)
    profile = options.profile if path == "/activity" else None
    with profiling(server, profile):
        page.runs.append(client.measure(name, path, 1))
    note(f"GET {path}: {options.requests} requests, {options.clients} clients")
    page.runs.append(client.measure(name, path, options.clients))
    return page


def compare_to_static(pages: list[Page]) -> None:
    """Fill in every run's p95 over the static page's p95 at the same concurrency."""
    static = {run.clients: run.p95_ms for run in pages[0].runs}
    for page in pages:
        for run in page.runs:
            run.p95_over_static_ms = run.p95_ms - static.get(run.clients, math.nan)


def targets(pages: list[Page]) -> list[Target]:
    out = []
    for page in pages:
        if not page.path.startswith("/activity"):
            continue
        run = page.runs[0]
        out.append(
            Target(
                f"{page.name} p95 ms, 1 client",
                f"<= {TARGET_ACTIVITY_P95_MS:g}",
                run.p95_ms,
                run.p95_ms <= TARGET_ACTIVITY_P95_MS and run.failed == 0,
            )
        )
    return out


def run(options: Options) -> Report:
    started = time.perf_counter()
    load_at_start = load_average()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="onceonly-portal-") as tmp:
        var_dir = Path(tmp) / "var"
        env = installation_env(var_dir, port)
        note("onceonly migrate")
        onceonly(env, "migrate")
        note("onceonly seed --demo")
        onceonly(env, "seed", "--demo")
        total = options.person_entries + options.other_entries
        note(f"appending {options.person_entries:,} entries about Alex among {total:,}")
        fill = asyncio.run(
            fill_ledger(env, options.person_entries, options.other_entries, options.seed)
        )
        server = ServedOnceonly(env, port, Path(tmp) / "server.log")
        note(f"onceonly serve --port {port}")
        try:
            server.start()
            note(f"signing in as {PERSON} through the development provider")
            cookie = sign_in(server.base_url, PERSON)
            client = Client(server, cookie, options.requests, options.phase_seconds)
            pages = [
                measure_page(client, name, path, options, server)
                for name, path in pages_to_measure(fill)
            ]
        except (BenchError, httpx.HTTPError) as exc:
            raise BenchError(f"{exc} (server: {server.last_words()})") from None
        finally:
            note("stopping the server")
            server.stop()
    compare_to_static(pages)
    machine = Machine(
        cpus=os.cpu_count(),
        cpu_model=cpu_model(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        load_average=load_at_start,
        python=platform.python_version(),
        uvicorn=package_version("uvicorn"),
        httpx=package_version("httpx"),
        sqlite=sqlite3.sqlite_version,
    )
    return Report(
        mode="quick" if options.quick else "default",
        requests=options.requests,
        warmup=options.warmup,
        clients=options.clients,
        phase_seconds=options.phase_seconds,
        machine=machine,
        ledger=fill,
        pages=pages,
        targets=targets(pages),
        profile=str(options.profile) if options.profile else None,
        total_seconds=time.perf_counter() - started,
    )


# -- machine facts ----------------------------------------------------------------------


# -- output -----------------------------------------------------------------------------


def ms(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"


def render(report: Report) -> str:
    m, fill = report.machine, report.ledger
    share = fill.person_entries / fill.entries * 100 if fill.entries else math.nan
    out = [
        f"Onceonly citizen portal benchmark ({report.mode} run, {report.total_seconds:.0f} s)",
        f"machine   {m.cpus} CPUs, {m.cpu_model}, {m.platform}, load {m.load_average} at start",
        f"server    onceonly serve, 1 worker, uvicorn {m.uvicorn}, Python {m.python}, "
        f"SQLite {m.sqlite}",
        f"ledger    {fill.entries:,} entries, {fill.person_entries:,} about {PERSON} "
        f"({share:.0f}%; {fill.person_hidden:,} of them still hidden), "
        f"{fill.appended:,} of them appended by the bench in {fill.seconds:.1f} s",
        f"client    httpx {m.httpx}, keep-alive, signed in as {PERSON}; per page "
        f"{report.warmup} warm-up, then {report.requests} requests with 1 client and with "
        f"{report.clients}; a phase stops after {report.phase_seconds:g} s",
        "",
    ]
    headers = ["page", "clients", "requests", "failed", "per s", "p50 ms", "p95 ms", "p99 ms"]
    headers += ["p95 - static", "server CPU ms/req", "client CPU"]
    rows = []
    for page in report.pages:
        for r in page.runs:
            rows.append(
                [
                    page.name,
                    str(r.clients),
                    f"{r.requests:,}" + ("*" if r.capped else ""),
                    f"{r.failed:,}",
                    f"{r.per_s:,.0f}",
                    ms(r.p50_ms),
                    ms(r.p95_ms),
                    ms(r.p99_ms),
                    "-" if page is report.pages[0] else ms(r.p95_over_static_ms),
                    f"{r.server_cpu_ms_per_request:.2f}",
                    f"{r.client_cpu_percent:.0f}%",
                ]
            )
    out += table(headers, rows)
    if any(r.capped for page in report.pages for r in page.runs):
        out.append(f"  * stopped after {report.phase_seconds:g} s (--phase-seconds)")
    out += ["", "Pages"]
    rows = [
        [
            page.name,
            page.path,
            f"{page.body_bytes / 1024:,.1f} KiB",
            "-" if page.entries_shown is None else str(page.entries_shown),
        ]
        for page in report.pages
    ]
    out += table(["page", "path", "body", "entries shown"], rows)
    out += ["", "Targets"]
    rows = [[t.what, t.goal, ms(t.value), "met" if t.met else "MISSED"] for t in report.targets]
    out += table(["what", "target", "measured", ""], rows)
    if report.profile:
        out += ["", f"py-spy profile of the first activity page, 1 client: {report.profile}"]
    return "\n".join(out)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the server is stopped


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        report = run(options)
    except BenchError as exc:
        print(f"portal: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("portal: interrupted", file=sys.stderr)
        return 130
    if options.as_json:
        print(json.dumps(finite(asdict(report)), indent=2, allow_nan=False))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
