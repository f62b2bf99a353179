"""Delivering revocation notices: signed webhooks from the durable outbox, with retries.

Each notice is a Security Event Token (RFC 8417, ``typ: secevent+jwt``) signed with
Onceonly's ES256 records key (published at ``/api/v1/jwks``) and pushed as in RFC
8935: ``POST`` with ``Content-Type: application/secevent+jwt``. Any 2xx answer is the
acknowledgement and is recorded; anything else is retried with exponential backoff
until acknowledged. A ministry without a webhook polls ``/api/v1/notifications``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import httpx
import jwt

from app.keys import ReceiptKey
from app.oauth.models import ApiClient
from consent.models import Notification

log = logging.getLogger("onceonly.notifications")

EVENT_URI = "https://onceonly.example/events/"
MAX_BACKOFF = timedelta(hours=1)
LEASE = timedelta(seconds=60)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 2, 4, 8 ... s, at most 1 h."""
    return min(timedelta(seconds=2 ** min(attempts, 20)), MAX_BACKOFF)


def security_event_token(
    notification: Notification, audience: str, issuer: str, key: ReceiptKey
) -> str:
    """The notice as a signed RFC 8417 Security Event Token for one client."""
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": int(datetime.now(UTC).timestamp()),
        "jti": f"notification-{notification.id}",
        "events": {EVENT_URI + notification.event: notification.payload},
    }
    return jwt.encode(
        claims,
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid, "typ": "secevent+jwt"},
    )


class NotificationDelivery:
    """Pushes due notices to the webhooks of the ministries' API clients."""

    def __init__(self, issuer: str, key: ReceiptKey, http: httpx.AsyncClient) -> None:
        self.issuer = issuer
        self.key = key
        self.http = http

    async def deliver_due(self, now: datetime | None = None, limit: int = 50) -> int:
        """Try every notice whose time has come; return how many were acknowledged."""
        now = now or datetime.now(UTC)
        due = await Notification.filter(
            acknowledged_at__isnull=True, next_attempt_at__lte=now
        ).limit(limit)
        acknowledged = 0
        for notification in due:
            # Lease it, so that another process does not push the same notice meanwhile.
            leased = await Notification.filter(
                id=notification.id, next_attempt_at=notification.next_attempt_at
            ).update(next_attempt_at=now + LEASE)
            if leased == 1 and await self._deliver(notification, now):
                acknowledged += 1
        return acknowledged

    async def _deliver(self, notification: Notification, now: datetime) -> bool:
        clients = await ApiClient.filter(
            ministry_id=notification.ministry_id,  # type: ignore[attr-defined]
            webhook_url__isnull=False,
            disabled_at__isnull=True,
        ).order_by("id")
        if not clients:
            # Nobody to push to: the ministry polls. Stop retrying.
            notification.next_attempt_at = None
            await notification.save(update_fields=["next_attempt_at"])
            return False
        client = clients[0]
        token = security_event_token(notification, client.client_id, self.issuer, self.key)
        status: int | None = None
        error: str | None = None
        try:
            response = await self.http.post(
                client.webhook_url or "",
                content=token,
                headers={
                    "Content-Type": "application/secevent+jwt",
                    "Accept": "application/json",
                },
                timeout=10,
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        notification.attempts += 1
        notification.last_status = status
        notification.last_error = error
        if status is not None and 200 <= status < 300:
            notification.acknowledged_at = now
            notification.next_attempt_at = None
        else:
            notification.next_attempt_at = now + backoff(notification.attempts)
            log.info(
                "notification %s to %s not acknowledged (status %s); retry at %s",
                notification.id,
                client.client_id,
                status,
                notification.next_attempt_at.isoformat(),
            )
        await notification.save(
            update_fields=[
                "attempts",
                "last_status",
                "last_error",
                "acknowledged_at",
                "next_attempt_at",
            ]
        )
        return notification.acknowledged_at is not None


async def run_periodically(name: str, interval: float, step) -> None:
    """Call ``step()`` every ``interval`` seconds until cancelled; log and go on on errors."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; trying again in %s s", name, interval)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def background(tasks: dict[str, tuple[float, object]]):
    """Run named periodic steps for the lifetime of the block."""
    running = [
        asyncio.create_task(run_periodically(name, interval, step), name=name)
        for name, (interval, step) in tasks.items()
    ]
    try:
        yield
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
