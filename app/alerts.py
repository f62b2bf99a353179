"""E-mail alerts: tell a person who opted in that a ministry accessed their data.

The e-mail says only that there was an access and where to read about it: no data,
no ministry name, nothing that would matter if the message were read by someone else.
A background step looks for new entries about subscribed people and sends through the
SMTP server configured by settings.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from app.auth.models import AlertSubscription
from ledger.database import LedgerDatabase
from ledger.persons import person_args, person_entries

log = logging.getLogger("onceonly.alerts")

SUBJECTS = {
    "en": "Onceonly: a ministry accessed your data",
    "fr": "Onceonly : un ministère a consulté vos données",
}
BODIES = {
    "en": "A ministry accessed your data ({count} new access(es) recorded in the ledger).\n\n"
    "Sign in to read what was accessed, by whom and why:\n{url}/activity\n\n"
    "To stop these e-mails, sign in and go to {url}/alerts.\n",
    "fr": "Un ministère a consulté vos données ({count} nouvel(s) accès inscrit(s) au "
    "registre).\n\nConnectez-vous pour savoir ce qui a été consulté, par qui et pourquoi :\n"
    "{url}/activity?lang=fr\n\nPour ne plus recevoir ces courriels, connectez-vous et "
    "allez à {url}/alerts?lang=fr.\n",
}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    sender: str
    starttls: bool = False


def alert_message(to: str, language: str, count: int, base_url: str, sender: str) -> EmailMessage:
    lang = language if language in SUBJECTS else "en"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = SUBJECTS[lang]
    message["Content-Language"] = lang
    message.set_content(BODIES[lang].format(count=count, url=base_url))
    return message


def _send(server: SmtpServer, message: EmailMessage) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        if server.starttls:
            smtp.starttls()
        smtp.send_message(message)


async def send_due_alerts(
    db: LedgerDatabase, server: SmtpServer, base_url: str, *, today: datetime | None = None
) -> int:
    """E-mail every subscriber with new visible accesses since their last alert.

    Returns how many e-mails were sent. A subscriber's position moves forward only after
    their e-mail was accepted by the SMTP server, so a failure is retried next time.
    """
    day = (today or datetime.now(UTC)).date()
    sent = 0
    for subscription in await AlertSubscription.all():
        after = (
            subscription.last_notified_index if subscription.last_notified_index is not None else -1
        )
        rows = await db.fetch(
            # person_entries is constant SQL text: the values are all parameters.
            f"SELECT e.idx FROM ledger_entry e WHERE e.idx IN ({person_entries(db.kind)}) "  # noqa: S608
            "AND e.idx > ? AND e.entry_type = 'access.permitted' "
            "AND (e.hidden_until IS NULL OR e.hidden_until <= ?) ORDER BY e.idx",
            *person_args(subscription.pseudonym),
            after,
            day,
        )
        if not rows:
            continue
        message = alert_message(
            subscription.email, subscription.language, len(rows), base_url, server.sender
        )
        try:
            await asyncio.to_thread(_send, server, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("alert e-mail not sent (%s); will retry", type(exc).__name__)
            continue
        await AlertSubscription.filter(id=subscription.id).update(
            last_notified_index=int(rows[-1][0])
        )
        sent += 1
    return sent
