"""Access alerts by e-mail, received by a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from app.alerts import SmtpServer, send_due_alerts
from app.auth.models import AlertSubscription
from app.services import Services
from consent.access import AccessCheck, CheckTerms, check_access
from consent.identity import Actor

ALEX = "demo-resident-alex"


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list = []

    def handle_message(self, message) -> None:
        self.messages.append(message)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, SmtpServer]]:
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, SmtpServer("127.0.0.1", port, "onceonly@example.org")
    finally:
        controller.stop()


async def access(services: Services, person: str, hidden_days: int | None = None) -> None:
    hidden = (datetime.now(UTC) + timedelta(days=hidden_days)).date() if hidden_days else None
    await check_access(
        services.ledger,
        services.people,
        Actor("MTO", "driver-licensing"),
        CheckTerms(
            recipient="SOLGEN",
            categories=frozenset({"driver-licence"}),
            purpose="law-enforcement",
            authority="HTA-205",
            hidden_until=hidden,
            hidden_reason="active-investigation" if hidden else None,
        ),
        [AccessCheck(person, f"q-{datetime.now(UTC).timestamp()}")],
    )


async def test_an_access_sends_one_discreet_email(
    demo: Services, smtp: tuple[Inbox, SmtpServer]
) -> None:
    inbox, server = smtp
    size = await demo.ledger.size()
    await AlertSubscription.create(
        pseudonym=demo.people.person(ALEX),
        email="alex@example.com",
        language="fr",
        last_notified_index=size - 1,
    )
    base = demo.settings.base_url
    assert await send_due_alerts(demo.ledger.db, server, base) == 0  # history is not mailed
    await access(demo, ALEX)
    await access(demo, "someone-else")
    await access(demo, ALEX, hidden_days=30)  # hidden: not announced before its date
    assert await send_due_alerts(demo.ledger.db, server, base) == 1
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["To"] == "alex@example.com"
    subject = str(make_header(decode_header(message["Subject"])))
    assert subject == "Onceonly : un ministère a consulté vos données"
    body = message.get_payload(decode=True).decode()
    assert "/activity" in body
    assert "SOLGEN" not in body and "licence" not in body.lower()
    assert await send_due_alerts(demo.ledger.db, server, base) == 0


async def test_an_unreachable_smtp_server_is_retried(demo: Services) -> None:
    await AlertSubscription.create(
        pseudonym=demo.people.person(ALEX), email="alex@example.com", last_notified_index=-1
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = SmtpServer("127.0.0.1", closed, "onceonly@example.org")
    assert await send_due_alerts(demo.ledger.db, down, demo.settings.base_url) == 0
    subscription = await AlertSubscription.get(pseudonym=demo.people.person(ALEX))
    assert subscription.last_notified_index == -1
