"""Logs: JSON lines with request ids, and no personal data or secret in them.

The main test serves Onceonly for real (``onceonly serve`` in a process of its own,
at DEBUG), takes it through a resident's sign-in, portal pages, an API client's token
requests and access checks and a request that fails with an exception, then reads
everything the server and the commands wrote: every line is JSON, every request's
lines carry its id, and none of the demo residents' identifiers or pseudonyms, tokens,
secrets, cookies or keys is anywhere in it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from app.auth.oidc import client_secret
from app.auth.sessions import SESSION_COOKIE
from app.keys import pseudonym_key
from app.logs import (
    JsonFormatter,
    LogHandler,
    Redact,
    configure_logging,
    logging_config,
    request_id_var,
)
from app.request_context import RequestContext, accepted_request_id
from app.seed import DEMO_NAMESPACE, DEMO_RESIDENTS, demo_pseudonym
from app.settings import Settings, SettingsError
from consent.identity import Pseudonymizer
from tests.app.test_cli import free_port, onceonly
from tests.portal_support import hidden_fields
from tests.support import make_settings, run_sync

ALEX, SAM = (subject for subject, _ in DEMO_RESIDENTS)
METRICS_TOKEN = "metrics-" + "k" * 24 + "-0123456789"
WEBHOOK_SECRET = "hook-secret-5f0e8a1d"
MTO_ADDRESS_CONSENT = str(uuid.uuid5(DEMO_NAMESPACE, "alex-mto-address"))
GIVEN_ID = "journey-0123456789abcdef"
FAILING_ID = "failing-request-0123456789"


# --- units: redaction, formatting, the request-id middleware --------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", "eyJhbGciOi"),
        ("header authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("got token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.abcDEF_123-x", "eyJzdWIiOiJ4In0"),
        ("GET /auth/callback?code=abc123xyz&state=s1 failed", "abc123xyz"),
        ("fetch https://hooks.example/x?token=hook-1 failed", "hook-1"),
        ("cookie: onceonly_session=sess-value-1; onceonly_csrf=csrf-2", "sess-value-1"),
        ("cookie: onceonly_session=sess-value-1; onceonly_csrf=csrf-2", "csrf-2"),
        ("bad body {'person_id': 'resident-42', 'purpose': 'x'}", "resident-42"),
        ('bad body {"person_id": "resident-42"}', "resident-42"),
        ("claims {'sub': 'demo-resident-alex', 'nonce': 'n-1'}", "demo-resident-alex"),
        ("client_secret=s3cr3t-value&grant_type=client_credentials", "s3cr3t-value"),
        ("pseudonym " + "ab" * 32 + " has no holdings", "ab" * 32),
        ("health number 1234567890 not found", "1234567890"),
        ("connect postgres://app:pa55word@db.example/onceonly", "pa55word"),
        ("private_key: MC4CAQAwBQYDK2VwBCIEI", "MC4CAQAwBQYDK2VwBCIEI"),
    ],
)
def test_redact_removes_credentials_identifiers_and_secrets(text: str, secret: str) -> None:
    redacted = Redact().redact(text)
    assert secret not in redacted
    assert "[redacted]" in redacted


def test_redact_keeps_ordinary_messages_and_replaces_deployment_secrets() -> None:
    redact = Redact(secrets=["the-oidc-client-secret"])
    for text in (
        "GET /api/v1/consents/0b0f4c1e-2a4b-4d6e-8f10-123456789abc 404 3.1 ms",
        "ledger batch of 128 entries failed",
        "notification 12 to MTO-client not acknowledged (status 503); retry at 2026-01-01",
        "status code: 500, what?",
        "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
    ):
        assert redact.redact(text) == text
    assert redact.redact("sent the-oidc-client-secret!") == "sent [redacted]!"


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("onceonly.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_line_with_the_request_id_and_safe_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = LogHandler("json")
    token = request_id_var.set("req-0123456789abcdef")
    try:
        person = "resident-42"
        try:
            raise ValueError(f"no consent for person_id={person}")
        except ValueError:
            record = _record("check for %s\nfailed", "person_id=resident-42", status=500)
            record.exc_info = sys.exc_info()
        record.unlisted = "not written"
        handler.handle(record)
    finally:
        request_id_var.reset(token)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["level"] == "WARNING"
    assert document["logger"] == "onceonly.test"
    assert document["request_id"] == "req-0123456789abcdef"
    assert document["status"] == 500
    assert document["message"] == "check for person_id=[redacted]\nfailed"
    assert "Traceback" in document["exception"]
    # The message is redacted; the line of source code that raised is kept as it is.
    assert 'raise ValueError(f"no consent for person_id={person}")' in document["exception"]
    assert document["exception"].endswith("ValueError: no consent for person_id=[redacted]")
    assert "resident-42" not in lines[0]
    assert "unlisted" not in document
    assert datetime.fromisoformat(document["time"].replace("Z", "+00:00")).utcoffset() is not None
    assert document["time"].endswith("Z")


def test_text_lines_for_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    LogHandler("text").handle(_record("verified %d entries", 12, tree_size=12))
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"\S+Z WARNING onceonly\.test: verified 12 entries tree_size=12", line)


def test_log_format_setting() -> None:
    assert make_settings("sqlite:///x").log_format is None
    assert make_settings("sqlite:///x", ONCEONLY_LOG_FORMAT="TEXT").log_format == "text"
    with pytest.raises(SettingsError, match="ONCEONLY_LOG_FORMAT must be json or text"):
        make_settings("sqlite:///x", ONCEONLY_LOG_FORMAT="xml")


def test_server_config_keeps_libraries_quiet_at_debug() -> None:
    settings = make_settings("sqlite:///x", ONCEONLY_LOG_LEVEL="debug")
    config = logging_config(settings)
    assert config["handlers"]["onceonly"]["format"] == "json"
    assert config["loggers"]["onceonly"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.error"]["level"] == "INFO"
    assert config["loggers"]["tortoise.db_client"]["level"] == "WARNING"
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"]["propagate"] is False


def test_configure_logging_twice_installs_one_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", "onceonly", "tortoise")}
    try:
        configure_logging(make_settings("sqlite:///x"))
        configure_logging(make_settings("sqlite:///x", ONCEONLY_LOG_FORMAT="json"))
        ours = [h for h in root.handlers if isinstance(h, LogHandler)]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, JsonFormatter)
        others = [h for h in before if not isinstance(h, LogHandler)]
        assert all(h in root.handlers for h in others)  # others are left alone
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        for handler in [h for h in before if h not in root.handlers]:
            root.addHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name or None).setLevel(level)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("0b0f4c1e-2a4b-4d6e-8f10-123456789abc", True),
        ("abcdefABCDEF0123_-", True),
        ("short-id", False),
        ("has spaces in it 0123456789", False),
        ("x" * 65, False),
        ("line\nbreak-0123456789", False),
        (None, False),
    ],
)
def test_which_request_ids_are_kept(given: str | None, kept: bool) -> None:
    assert accepted_request_id(given) == (given if kept else None)


class Collecting(LogHandler):
    """Keeps the JSON documents it would write."""

    def __init__(self) -> None:
        super().__init__("json")
        self.documents: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.documents.append(json.loads(self.format(record)))


@pytest.fixture
def captured() -> Iterator[list[dict]]:
    """JSON documents of what Onceonly's loggers write during the test."""
    handler = Collecting()
    logger = logging.getLogger("onceonly")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.documents
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _tiny_app(observed: list[tuple]) -> Starlette:
    log = logging.getLogger("onceonly.tiny")

    async def hello(request: Request) -> Response:
        log.info("inside the handler")
        return PlainTextResponse("hello")

    async def stream(request: Request) -> Response:
        async def chunks():
            for part in ("one ", "two"):
                yield part

        return StreamingResponse(chunks(), media_type="text/plain")

    async def broken(request: Request) -> Response:
        raise RuntimeError("broken on purpose")

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return PlainTextResponse("internal error", status_code=500)

    return Starlette(
        routes=[
            Route("/hello/{name}", hello),
            Route("/stream", stream),
            Route("/broken", broken),
        ],
        middleware=[Middleware(RequestContext, observe=lambda *a: observed.append(a))],
        exception_handlers={Exception: on_error},
    )


async def test_middleware_sets_the_id_for_the_lines_of_its_request(
    captured: list[dict],
) -> None:
    observed: list[tuple] = []
    transport = httpx.ASGITransport(app=_tiny_app(observed), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        mine = await client.get(
            "/hello/x?person_id=resident-42", headers={"X-Request-ID": GIVEN_ID}
        )
        fresh = await client.get("/hello/y", headers={"X-Request-ID": "not safe!"})
        streamed = await client.get("/stream")
        broken = await client.get("/broken", headers={"X-Request-ID": FAILING_ID})
    assert mine.headers["x-request-id"] == GIVEN_ID
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert streamed.text == "one two"
    assert broken.status_code == 500

    inside = [r for r in captured if r["message"] == "inside the handler"]
    assert [r["request_id"] for r in inside] == [GIVEN_ID, fresh.headers["x-request-id"]]
    access = [r for r in captured if r["logger"] == "onceonly.access" and "status" in r]
    assert [(r["path"], r["route"], r["status"]) for r in access] == [
        ("/hello/x", "/hello/{name}", 200),
        ("/hello/y", "/hello/{name}", 200),
        ("/stream", "/stream", 200),
        ("/broken", "/broken", 500),
    ]
    assert all(r["duration_ms"] >= 0 and r["client_kind"] == "anonymous" for r in access)
    failure = next(r for r in captured if r["message"] == "unhandled error")
    assert failure["request_id"] == FAILING_ID
    assert "broken on purpose" in failure["exception"]
    assert not any("resident-42" in json.dumps(r) for r in captured)
    assert [(m, route, status) for m, route, status, _ in observed] == [
        ("GET", "/hello/{name}", 200),
        ("GET", "/hello/{name}", 200),
        ("GET", "/stream", 200),
        ("GET", "/broken", 500),
    ]


# --- the whole server: a journey at DEBUG, then grep everything it wrote ---------------


@dataclass
class Served:
    base: str
    env: dict[str, str]
    settings: Settings
    stdout: Path
    stderr: Path
    process: subprocess.Popen[bytes]
    command_output: list[str] = field(default_factory=list)  # what the commands wrote

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _command(served_env: dict[str, str], var: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in served_env.items() if k != "ONCEONLY_VAR_DIR"}
    result = onceonly(*args, var=var, **env)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """``onceonly serve`` at DEBUG in demo mode, migrated and seeded by the commands."""
    var = tmp_path / "var"
    env = {
        "ONCEONLY_DEMO": "true",
        "ONCEONLY_LOG_LEVEL": "debug",
        "ONCEONLY_METRICS_TOKEN": METRICS_TOKEN,
    }
    if request.param == "postgres":
        env["ONCEONLY_DATABASE_URL"] = request.getfixturevalue("postgres_database_url")
    port = free_port()
    env["ONCEONLY_PORT"] = str(port)
    outputs = [_command(env, var, "migrate"), _command(env, var, "seed", "--demo")]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    environ.update({**env, "ONCEONLY_VAR_DIR": str(var)})
    stdout, stderr = tmp_path / "serve.out", tmp_path / "serve.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=err,
            env=environ,
        )
    served = Served(
        f"http://127.0.0.1:{port}",
        env,
        Settings.from_env({**env, "ONCEONLY_VAR_DIR": str(var)}),
        stdout,
        stderr,
        process,
        [o.stderr for o in outputs],
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(served.base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start: {stderr.read_text()[-2000:]}")
            time.sleep(0.2)
        yield served
    finally:
        served.stop()


@dataclass
class Seen:
    """What the journey handled that must never reach a log."""

    secrets: set[str] = field(default_factory=set)

    def add(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v and len(v) >= 6)


def _sign_in(http: httpx.Client, subject: str, seen: Seen) -> None:
    """The resident signs in through the demo OpenID Connect provider, over HTTP."""
    start = http.get("/auth/sign-in", params={"next": "/consents"})
    assert start.status_code == 303, start.text
    page = http.get(start.headers["location"])
    assert page.status_code == 200, page.text
    form = hidden_fields(page.text)
    seen.add(*form.values())
    answer = http.post(
        "/dev-oidc/authorize", data={**form, "subject": subject, "action": "sign-in"}
    )
    assert answer.status_code == 303, answer.text
    callback = answer.headers["location"]
    query = parse_qs(urlsplit(callback).query)
    seen.add(query["code"][0], query["state"][0])
    done = http.get(callback)
    assert done.status_code == 303, done.text
    seen.add(*http.cookies.values())
    assert SESSION_COOKIE in http.cookies


def _add_client(served: Served, var: Path, seen: Seen, *args: str) -> tuple[str, str]:
    result = _command(served.env, var, "clients", "add", "--auth", "client_secret_basic", *args)
    served.command_output.append(result.stderr)
    client_id = re.search(r"client_id:\s+(\S+)", result.stdout)
    secret = re.search(r"client_secret:\s+(\S+)", result.stdout)
    assert client_id and secret, result.stdout
    seen.add(secret.group(1))
    return client_id.group(1), secret.group(1)


def _token(http: httpx.Client, client: tuple[str, str], seen: Seen) -> dict[str, str]:
    r = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=client)
    assert r.status_code == 200, r.text
    seen.add(r.json()["access_token"], r.request.headers["authorization"].split()[-1])
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _break_consent_table(served: Served) -> None:
    """Rename the consent table under the running server (sabotage the test undoes
    nothing of: the server is stopped right after)."""
    url = served.settings.database_url
    if served.settings.database_kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite://")) as db:
            db.execute("ALTER TABLE consent RENAME TO consent_gone")
        return

    async def rename() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER TABLE consent RENAME TO consent_gone")
        finally:
            await conn.close()

    run_sync(rename())


def _journey(served: Served, seen: Seen) -> dict[str, httpx.Response]:
    var = served.settings.var_dir
    answers: dict[str, httpx.Response] = {}
    with httpx.Client(base_url=served.base, timeout=30) as resident:
        _sign_in(resident, ALEX, seen)
        for path in ("/", "/consents", "/activity", f"/consents?lang=fr&q={ALEX}"):
            assert resident.get(path).status_code == 200, path
        answers["given"] = resident.get("/consents", headers={"X-Request-ID": GIVEN_ID})
        answers["unsafe"] = resident.get("/activity", headers={"X-Request-ID": f"id {SAM}"})

        mto = _add_client(
            served,
            var,
            seen,
            *("--ministry", "MTO", "--system", "driver-licensing", "--name", "MTO renewals"),
            "--scopes",
            "access:check,consent:request,consent:read,notifications:read",
            "--webhook-url",
            f"https://webhook.invalid/onceonly?token={WEBHOOK_SECRET}",
        )
        serviceontario = _add_client(
            served,
            var,
            seen,
            *("--ministry", "MPBSDP", "--system", "serviceontario", "--name", "SO checks"),
            *("--scopes", "access:check"),
        )
        with httpx.Client(base_url=served.base, timeout=30) as api:
            refused = api.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(serviceontario[0], "wrong-" + serviceontario[1]),
            )
            assert refused.status_code == 401
            as_mto = _token(api, mto, seen)
            as_so = _token(api, serviceontario, seen)
            check = {
                "person_id": ALEX,
                "recipient": "MTO",
                "categories": ["address"],
                "purpose": "licence-renewal",
                "query_id": "q-logs-1",
            }
            first = api.post("/api/v1/access-checks", json=check, headers=as_so)
            assert first.json()["decision"] == "permit", first.text
            r = api.post(
                "/api/v1/consent-requests",
                headers=as_mto,
                json={
                    "person_id": SAM,
                    "sources": ["MPBSDP"],
                    "categories": ["address"],
                    "purpose": "licence-renewal",
                    "valid_until": "2099-01-01T00:00:00Z",
                    "notice_text": "MTO asks for Sam's address.",
                    "return_url": f"https://mto.example/back?person={SAM}",
                },
            )
            assert r.status_code == 201, r.text
            assert api.get("/api/v1/consents?status=requested", headers=as_mto).status_code == 200

            # The resident withdraws; the notice to MTO's webhook cannot be delivered.
            page = resident.get(f"/consents/{MTO_ADDRESS_CONSENT}/withdraw")
            csrf = hidden_fields(page.text)["csrf_token"]
            seen.add(csrf)
            done = resident.post(
                f"/consents/{MTO_ADDRESS_CONSENT}/withdraw", data={"csrf_token": csrf}
            )
            assert done.status_code == 303, done.text
            again = api.post(
                "/api/v1/access-checks", json={**check, "query_id": "q-logs-2"}, headers=as_so
            )
            assert again.json()["decision"] == "deny", again.text
            scrape = api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert scrape.status_code == 200

            _break_consent_table(served)
            answers["failing"] = api.post(
                "/api/v1/access-checks",
                json={**check, "person_id": SAM, "query_id": "q-logs-3"},
                headers={**as_so, "X-Request-ID": FAILING_ID},
            )
    time.sleep(1.5)  # the delivery task tries the webhook (every second)
    return answers


def _secrets_of_the_deployment(served: Served, seen: Seen) -> None:
    settings = served.settings
    key = pseudonym_key(settings)
    seen.add(key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode())
    people = Pseudonymizer(key)
    for subject, name in DEMO_RESIDENTS:
        seen.add(subject, name, demo_pseudonym(settings, subject), people.person(subject))
    seen.add(client_secret(settings), METRICS_TOKEN, WEBHOOK_SECRET)
    for path in settings.secrets_dir.iterdir():  # every line of every key file
        text = path.read_bytes().decode("ascii", errors="ignore")
        seen.add(*(line.strip() for line in text.splitlines() if len(line.strip()) >= 16))


def test_logs_are_json_with_request_ids_and_hold_no_personal_data_or_secrets(
    served: Served,
) -> None:
    seen = Seen()
    answers = _journey(served, seen)
    _secrets_of_the_deployment(served, seen)
    served.stop()
    raw = served.stderr.read_bytes() + served.stdout.read_bytes()
    everything = raw.decode() + "".join(served.command_output)

    # Nothing personal or secret, anywhere (the key also as raw bytes).
    leaked = sorted(s for s in seen.secrets if s in everything)
    assert leaked == [], f"found in the logs: {leaked}"
    assert pseudonym_key(served.settings) not in raw
    assert "lang=fr" not in everything  # no query string

    # Every line the server wrote to standard error is one JSON object.
    lines = [json.loads(line) for line in served.stderr.read_text().splitlines() if line]
    for line in lines:
        assert {"time", "level", "logger", "message", "pid"} <= line.keys(), line
        assert line["time"].endswith("Z")
    assert any(line["level"] == "DEBUG" for line in lines)  # DEBUG was on
    access = [line for line in lines if line["logger"] == "onceonly.access" and "status" in line]
    assert len(access) >= 20
    for line in access:
        assert {"method", "path", "route", "status", "duration_ms", "client_kind"} <= line.keys()
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", line["request_id"])
        assert "?" not in line["path"]
    kinds = {line["client_kind"] for line in access}
    assert {"signed-in", "api-client", "anonymous", "probe"} <= kinds

    # A request's id: the client's when safe, answered back and on its lines.
    assert answers["given"].headers["x-request-id"] == GIVEN_ID
    given = [line for line in access if line.get("request_id") == GIVEN_ID]
    assert [line["path"] for line in given] == ["/consents"]
    unsafe = answers["unsafe"].headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe)
    assert any(line.get("request_id") == unsafe for line in access)

    # The failing request: a 500 problem, and its traceback logged under its id.
    failing = answers["failing"]
    assert failing.status_code == 500
    assert failing.headers["content-type"] == "application/problem+json"
    assert failing.headers["x-request-id"] == FAILING_ID
    mine = [line for line in lines if line.get("request_id") == FAILING_ID]
    errors = [line for line in mine if line["level"] == "ERROR" and "exception" in line]
    assert errors, mine
    assert any("Traceback" in line["exception"] for line in errors)
    assert any(line.get("status") == 500 for line in mine)
    # The undeliverable webhook was tried and logged without its URL's token.
    assert any(line["logger"] == "onceonly.notifications" for line in lines)
    # And the token endpoint said why it refused, without the secret that was wrong.
    assert any("token request refused" in line["message"] for line in lines)
