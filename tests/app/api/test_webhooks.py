"""Revocation notices pushed to a real local webhook receiver that fails, then succeeds."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.notifications import EVENT_URI, NotificationDelivery
from app.services import Services
from consent.lifecycle import answer_request, withdraw
from consent.models import Notification
from tests.app.api.conftest import TokenFactory
from tests.app.api.test_access_api import consent_request


class Receiver:
    """A ministry's webhook endpoint: answers 500 the first ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[str, bytes]] = []

    async def endpoint(self, request: Request) -> Response:
        self.received.append((request.headers.get("content-type", ""), await request.body()))
        if len(self.received) <= self.failures:
            return Response("try later", status_code=500)
        return Response(status_code=202)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver(failures=1)
    app = Starlette(routes=[Route("/hook", hook.endpoint, methods=["POST"])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no "started" event
            await asyncio.sleep(0.01)
    try:
        yield hook, f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await task


async def test_withdrawal_is_pushed_until_acknowledged(
    client: httpx.AsyncClient,
    seeded: Services,
    auth: TokenFactory,
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    mto = await auth("MTO", "driver-licensing", webhook_url=url)
    r = await client.post("/api/v1/consent-requests", json=consent_request(), headers=mto)
    consent_id = r.json()["id"]
    pseudonym = seeded.people.person("resident-42")
    await answer_request(seeded.ledger, pseudonym, consent_id, approve=True)
    await withdraw(seeded.ledger, pseudonym, consent_id)

    async with httpx.AsyncClient() as http:
        delivery = NotificationDelivery(seeded.settings.base_url, seeded.receipt_key, http)
        now = datetime.now(UTC)
        assert await delivery.deliver_due(now) == 0  # the receiver fails the first push
        notice = await Notification.get(ministry__code="MTO")
        assert (notice.attempts, notice.last_status, notice.acknowledged_at) == (1, 500, None)
        assert notice.next_attempt_at is not None and notice.next_attempt_at > now
        assert await delivery.deliver_due(now + timedelta(milliseconds=500)) == 0  # backing off
        assert len(hook.received) == 1
        assert await delivery.deliver_due(now + timedelta(seconds=3)) == 1
    notice = await Notification.get(ministry__code="MTO")
    assert notice.acknowledged_at is not None and notice.last_status == 202
    assert notice.attempts == 2

    content_type, body = hook.received[-1]
    assert content_type == "application/secevent+jwt"
    keys = (await client.get("/api/v1/jwks")).json()["keys"]
    assert jwt.get_unverified_header(body.decode())["typ"] == "secevent+jwt"
    claims = jwt.decode(
        body,
        jwt.algorithms.ECAlgorithm.from_jwk(keys[0]),
        algorithms=["ES256"],
        audience=await _client_id(seeded),
    )
    event = claims["events"][EVENT_URI + "consent.withdrawn"]
    assert event["consent_id"] == consent_id
    # MPBSDP (a source) has no webhook: its notice waits to be polled.
    source_notice = await Notification.get(ministry__code="MPBSDP")
    assert source_notice.acknowledged_at is None and source_notice.next_attempt_at is None


async def _client_id(services: Services) -> str:
    from app.oauth.models import ApiClient

    return (await ApiClient.get(ministry__code="MTO", webhook_url__isnull=False)).client_id
