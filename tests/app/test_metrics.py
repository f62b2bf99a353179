"""``/metrics`` through HTTP: what a Prometheus scraper sees after real API calls, and
who may scrape. The application runs with its own lifespan (as ``onceonly serve``
runs it), so the ledger hook is wired as in production."""

from __future__ import annotations

import dataclasses
import os
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from tortoise import connections

from app.main import create_app
from app.metrics import clear_multiprocess_dir, status_class
from app.oauth.clients import register_client
from app.seed import seed_reference
from app.settings import Settings, SettingsError
from consent.models import Consent, Ministry, Notification
from tests.app.test_cli import assert_one_line_error, free_port, onceonly
from tests.serving import start_serve, wait_until_ready
from tests.support import make_settings

METRICS_TOKEN = "m" * 20 + "-scrape-token-0123456789"
SCOPES = ["access:check", "consent:request", "consent:read", "notifications:read"]
IN_30_DAYS = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) to value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The application with its lifespan running, and a client on loopback."""
    app = create_app(dataclasses.replace(settings, metrics_token=METRICS_TOKEN))
    async with app.router.lifespan_context(app):
        await seed_reference()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client:
            yield app, client


async def bearer(client: httpx.AsyncClient, ministry: str, system: str) -> dict[str, str]:
    """Authorization headers with a real token for a new client of ``system``."""
    row, secret = await register_client(
        ministry, system, f"{system} metrics test", "client_secret_basic", SCOPES
    )
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(row.client_id, secret or ""),
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def check(person: str, **overrides: str | list[str]) -> dict:
    body = {
        "person_id": person,
        "recipient": "MCCSS",
        "categories": ["address"],
        "purpose": "licence-renewal",
        "query_id": f"q-{uuid.uuid4().hex[:12]}",
    }
    body.update(overrides)
    return body


STATUTE = {
    "recipient": "SOLGEN",
    "categories": ["driver-licence"],
    "purpose": "law-enforcement",
    "authority": "HTA-205",
    "case_id": "case-7",
    "hidden_until": IN_30_DAYS,
    "hidden_reason": "active-investigation",
}


async def scrape(client: httpx.AsyncClient) -> str:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


async def test_requests_are_counted_by_route_template_and_status_class(
    served: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = served
    mto = await bearer(client, "MTO", "driver-licensing")
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    for _ in range(2):
        missing = await client.get(f"/api/v1/consents/{uuid.uuid4()}", headers=mto)
        assert missing.status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    assert (await client.delete("/healthz")).status_code == 405

    text = await scrape(client)
    requests = "onceonly_http_requests_total"
    assert value(text, requests, method="GET", route="/healthz", status="2xx") == 3
    consent = "/api/v1/consents/{consent_id}"
    assert value(text, requests, method="GET", route=consent, status="4xx") == 2
    assert value(text, requests, method="GET", route="other", status="4xx") == 1
    assert value(text, requests, method="DELETE", route="/healthz", status="4xx") == 1
    assert value(text, requests, method="POST", route="/oauth/token", status="2xx") == 1
    durations = "onceonly_http_request_duration_seconds_count"
    assert value(text, durations, method="GET", route=consent, status="4xx") == 2
    # No raw path (with its consent id) ever becomes a label.
    assert "/api/v1/consents/" + "0" not in text
    assert all("/no/such/page" not in line for line in text.splitlines())


async def test_decisions_by_outcome_after_real_access_checks(
    served: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, client = served
    mto = await bearer(client, "MTO", "driver-licensing")
    size_before = await app.state.services.ledger.size()

    denied = [check(f"resident-{n}") for n in range(3)]
    for body in denied:
        r = await client.post("/api/v1/access-checks", json=body, headers=mto)
        assert r.json()["reasons"] == ["no_consent"], r.text
    r = await client.post("/api/v1/access-checks", json=check("resident-9", **STATUTE), headers=mto)
    assert r.json()["decision"] == "permit", r.text
    batch = {
        "recipient": "MCCSS",
        "categories": ["address"],
        "purpose": "licence-renewal",
        "persons": [{"person_id": f"p-{n}", "query_id": f"bq-{n}"} for n in range(5)],
    }
    r = await client.post("/api/v1/access-checks/batch", json=batch, headers=mto)
    assert r.status_code == 200, r.text
    # A retry with the same Idempotency-Key is answered again, not decided again.
    retry = {**mto, "Idempotency-Key": "metrics-retry-1"}
    body = check("resident-10")
    for _ in range(2):
        r = await client.post("/api/v1/access-checks", json=body, headers=retry)
        assert r.status_code == 200, r.text

    text = await scrape(client)
    decisions = "onceonly_access_decisions_total"
    assert value(text, decisions, decision="deny", basis="consent", reason="no_consent") == 9
    assert value(text, decisions, decision="permit", basis="authority", reason="none") == 1

    # Ledger size is the newest checkpoint's; the batches this process committed hold
    # exactly the entries the checks added.
    size = await app.state.services.ledger.size()
    assert size == size_before + 10
    assert value(text, "onceonly_ledger_size") == size
    assert value(text, "onceonly_ledger_batch_size_sum") == size - size_before
    assert 1 <= value(text, "onceonly_ledger_batch_size_count") <= 10
    age = value(text, "onceonly_ledger_checkpoint_age_seconds")
    assert ("onceonly_ledger_checkpoint_age_seconds", frozenset()) in samples(text)
    assert 0 <= age < 24 * 3600
    assert value(text, "onceonly_metrics_database_up") == 1


async def test_webhook_backlog_counts_notices_still_to_push(
    served: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = served
    mto = await bearer(client, "MTO", "driver-licensing")
    text = await scrape(client)
    assert value(text, "onceonly_webhook_backlog") == 0

    r = await client.post(
        "/api/v1/consent-requests",
        headers=mto,
        json={
            "person_id": "resident-42",
            "sources": ["MPBSDP"],
            "categories": ["address"],
            "purpose": "licence-renewal",
            "valid_until": (datetime.now(UTC) + timedelta(days=60)).isoformat(),
            "notice_text": "MTO asks for your address.",
            "return_url": "https://mto.example/back",
        },
    )
    assert r.status_code == 201, r.text
    consent = await Consent.get(id=r.json()["id"])
    # A notice whose next push is later (as after a failed delivery), and one for a
    # ministry that polls (no next attempt): only the first is webhook backlog.
    later = datetime.now(UTC) + timedelta(hours=1)
    ministry = await Ministry.get(code="MTO")
    pending = await Notification.create(
        ministry=ministry, event="withdrawn", consent=consent, payload={}, next_attempt_at=later
    )
    await Notification.create(ministry=ministry, event="withdrawn", consent=consent, payload={})
    assert value(await scrape(client), "onceonly_webhook_backlog") == 1

    ack = await client.post(f"/api/v1/notifications/{pending.id}/ack", headers=mto)
    assert ack.status_code == 200, ack.text
    assert value(await scrape(client), "onceonly_webhook_backlog") == 0


async def test_a_scrape_still_answers_when_the_database_does_not(
    served: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = served
    assert (await client.get("/healthz")).status_code == 200
    # The outbox table disappears under the running application.
    await connections.get("default").execute_script(
        "ALTER TABLE notification RENAME TO notification_gone"
    )
    text = await scrape(client)
    assert value(text, "onceonly_metrics_database_up") == 0
    assert ("onceonly_webhook_backlog", frozenset()) not in samples(text)
    assert value(text, "onceonly_http_requests_total", method="GET", route="/healthz", status="2xx")


async def refused(app: Starlette, headers: dict[str, str], client: tuple[str, int]) -> int:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://onceonly.test") as c:
        r = await c.get("/metrics", headers=headers)
    if r.status_code == 403:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/forbidden")
        assert "onceonly_" not in r.text
    return r.status_code


async def test_only_loopback_or_the_token_may_scrape(
    served: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, _ = served
    outside = ("203.0.113.7", 40000)
    assert await refused(app, {}, outside) == 403
    assert await refused(app, {"Authorization": "Bearer wrong-token"}, outside) == 403
    assert await refused(app, {"Authorization": f"Basic {METRICS_TOKEN}"}, outside) == 403
    assert await refused(app, {"Authorization": f"Bearer {METRICS_TOKEN}"}, outside) == 200
    # Loopback, but through a reverse proxy: the request comes from outside.
    proxied = {"X-Forwarded-For": "203.0.113.7"}
    assert await refused(app, proxied, ("127.0.0.1", 40000)) == 403
    assert await refused(app, {}, ("::1", 40000)) == 200


async def test_without_a_token_only_loopback_may_scrape(settings: Settings) -> None:
    app = create_app(settings)
    assert settings.metrics_token is None
    assert await refused(app, {"Authorization": "Bearer "}, ("10.1.2.3", 5000)) == 403
    assert await refused(app, {}, ("127.0.0.1", 5000)) == 200  # no database: no gauges


def test_metrics_token_setting_is_checked() -> None:
    with pytest.raises(SettingsError, match="ONCEONLY_METRICS_TOKEN must be at least 32"):
        make_settings("sqlite:///tmp/x.sqlite3", ONCEONLY_METRICS_TOKEN="short")
    assert make_settings("sqlite:///tmp/x.sqlite3", ONCEONLY_METRICS_TOKEN=METRICS_TOKEN)


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 303, 404, 503, 0)] == [
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "other",
    ]


def test_clearing_the_multiprocess_folder_keeps_other_files(tmp_path: Path) -> None:
    for name in ("counter_12.db", "histogram_12.db", "gauge_livesum_3.db", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert clear_multiprocess_dir(tmp_path) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_serve_needs_the_multiprocess_folder_to_exist(tmp_path: Path) -> None:
    assert onceonly("migrate", var=tmp_path).returncode == 0
    missing = str(tmp_path / "no-such-folder")
    result = onceonly(
        "serve", "--port", str(free_port()), var=tmp_path, PROMETHEUS_MULTIPROC_DIR=missing
    )
    assert_one_line_error(result, "PROMETHEUS_MULTIPROC_DIR must be an existing folder")


def test_two_workers_sum_their_counters_in_multiprocess_mode(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, whichever worker answers a scrape reports the
    requests of both: every scrape counts all of them."""
    var = tmp_path / "var"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_text("stale counters of an earlier run")
    assert onceonly("migrate", var=var).returncode == 0
    port = free_port()
    proc = start_serve(var, port, "--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, proc, timeout=60)
        for _ in range(20):  # a new connection each: either worker may take it
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        for _ in range(4):
            text = httpx.get(f"{base}/metrics", timeout=5).text
            healthz = value(
                text, "onceonly_http_requests_total", method="GET", route="/healthz", status="2xx"
            )
            assert healthz == 20
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    pids = {name.rsplit("_", 1)[-1] for name in os.listdir(metrics_dir)}
    assert len(pids) >= 2, sorted(os.listdir(metrics_dir))  # both workers wrote
    assert "1.db" not in pids  # the stale file was removed at start
