"""Consents through their lifecycle: requested, active, refused, withdrawn, expired.

Every change is a ledger entry. A change is made with a conditional update (so two
answers to one request cannot both win), then recorded in the ledger; if the ledger
cannot record it, the change is undone and the caller gets the error.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from consent.errors import Conflict, Invalid, NotFound
from consent.identity import EXPIRY, PORTAL, Actor, Pseudonymizer
from consent.models import Consent, ConsentStatus, Ministry, Notification
from consent.reference import reference
from ledger.entry import Basis, Entry, commitment, format_time
from ledger.log import TransparencyLog
from ledger.sequencer import Appended, Subject

MAX_REQUEST_DAYS_TO_ANSWER = 30
DEFAULT_REQUEST_DAYS_TO_ANSWER = 7

EVENT_OF_STATUS = {
    ConsentStatus.REQUESTED: "consent.requested",
    ConsentStatus.ACTIVE: "consent.given",
    ConsentStatus.REFUSED: "consent.refused",
    ConsentStatus.WITHDRAWN: "consent.withdrawn",
    ConsentStatus.EXPIRED: "consent.expired",
}


@dataclass(frozen=True)
class ConsentTerms:
    """What a recipient ministry asks a person to agree to."""

    person_id: str
    sources: frozenset[str]
    categories: frozenset[str]
    purpose: str
    valid_from: datetime
    valid_until: datetime
    one_time: bool
    notice_text: str
    return_url: str | None = None
    state: str | None = None
    answer_by: datetime | None = None


def notice_hash(text: str) -> str:
    """SHA-256 (hex) of the exact notice text the person is shown."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def create_request(
    ledger: TransparencyLog,
    pseudonymizer: Pseudonymizer,
    actor: Actor,
    terms: ConsentTerms,
    *,
    now: datetime | None = None,
) -> tuple[Consent, Appended]:
    """Create a consent request from the acting (recipient) ministry and record it.

    Raises Invalid for unknown codes or an impossible window.
    """
    now = now or datetime.now(UTC)
    await _validate(terms, now)
    answer_by = terms.answer_by or now + timedelta(days=DEFAULT_REQUEST_DAYS_TO_ANSWER)
    consent = await Consent.create(
        id=uuid.uuid4(),
        pseudonym=pseudonymizer.person(terms.person_id),
        recipient=await Ministry.get(code=actor.ministry),
        sources=sorted(terms.sources),
        categories=sorted(terms.categories),
        purpose_id=terms.purpose,
        status=ConsentStatus.REQUESTED,
        one_time=terms.one_time,
        valid_from=terms.valid_from,
        valid_until=terms.valid_until,
        notice_text=terms.notice_text,
        notice_hash=notice_hash(terms.notice_text),
        requested_by=actor.client_id,
        return_url=terms.return_url,
        state=terms.state,
        request_expires_at=answer_by,
    )
    try:
        appended = await _record(ledger, consent, actor, ConsentStatus.REQUESTED, now)
    except BaseException:
        await Consent.filter(id=consent.id).delete()
        raise
    return consent, appended


async def answer_request(
    ledger: TransparencyLog,
    pseudonym: str,
    consent_id: uuid.UUID | str,
    approve: bool,
    *,
    now: datetime | None = None,
) -> tuple[Consent, Appended]:
    """The person answers a request addressed to them: approve (active) or refuse.

    Raises NotFound when the request is not this person's, Conflict when it was already
    answered or has expired.
    """
    now = now or datetime.now(UTC)
    consent = await _own(pseudonym, consent_id)
    if consent.status != ConsentStatus.REQUESTED:
        raise Conflict(f"this request was already answered ({consent.status})")
    if consent.request_expires_at is not None and consent.request_expires_at <= now:
        await expire_due(ledger, now=now)
        raise Conflict("this request has expired")
    status = ConsentStatus.ACTIVE if approve else ConsentStatus.REFUSED
    return await _transition(
        ledger, consent, ConsentStatus.REQUESTED, status, PORTAL, now, decided_at=now
    )


async def withdraw(
    ledger: TransparencyLog,
    pseudonym: str,
    consent_id: uuid.UUID | str,
    *,
    now: datetime | None = None,
) -> tuple[Consent, Appended]:
    """The person withdraws an active consent; the ministries relying on it are notified.

    Raises NotFound when it is not this person's, Conflict when it is not active.
    """
    now = now or datetime.now(UTC)
    consent = await _own(pseudonym, consent_id)
    if consent.status != ConsentStatus.ACTIVE:
        raise Conflict(f"only an active consent can be withdrawn (this one is {consent.status})")
    return await _transition(
        ledger,
        consent,
        ConsentStatus.ACTIVE,
        ConsentStatus.WITHDRAWN,
        PORTAL,
        now,
        withdrawn_at=now,
        notify=True,
    )


async def expire_due(ledger: TransparencyLog, *, now: datetime | None = None) -> int:
    """Expire unanswered requests past their answer-by time and active consents past
    their validity; record each and notify for consents that were relied on.

    Returns how many expired. Safe to run from several processes at once.
    """
    now = now or datetime.now(UTC)
    count = 0
    unanswered = await Consent.filter(
        status=ConsentStatus.REQUESTED, request_expires_at__lte=now
    ).prefetch_related("recipient")
    for consent in unanswered:
        if await _try_transition(ledger, consent, ConsentStatus.REQUESTED, now, notify=False):
            count += 1
    lapsed = await Consent.filter(
        status=ConsentStatus.ACTIVE, valid_until__lte=now
    ).prefetch_related("recipient")
    for consent in lapsed:
        if await _try_transition(ledger, consent, ConsentStatus.ACTIVE, now, notify=True):
            count += 1
    return count


async def _try_transition(
    ledger: TransparencyLog,
    consent: Consent,
    expected: ConsentStatus,
    now: datetime,
    *,
    notify: bool,
) -> bool:
    try:
        await _transition(
            ledger, consent, expected, ConsentStatus.EXPIRED, EXPIRY, now, notify=notify
        )
    except Conflict:
        return False  # another process got there first
    return True


async def _transition(
    ledger: TransparencyLog,
    consent: Consent,
    expected: ConsentStatus,
    status: ConsentStatus,
    actor: Actor,
    now: datetime,
    *,
    notify: bool = False,
    **changes: object,
) -> tuple[Consent, Appended]:
    undo = {name: getattr(consent, name) for name in changes}
    changed = await Consent.filter(id=consent.id, status=expected).update(status=status, **changes)
    if changed != 1:
        raise Conflict("the consent changed meanwhile; reload it")
    consent.status = status
    for name, value in changes.items():
        setattr(consent, name, value)
    try:
        appended = await _record(ledger, consent, actor, status, now)
    except BaseException:
        await Consent.filter(id=consent.id, status=status).update(status=expected, **undo)
        raise
    if notify:
        await _notify(consent, EVENT_OF_STATUS[status], appended, now)
    return consent, appended


async def _record(
    ledger: TransparencyLog,
    consent: Consent,
    actor: Actor,
    status: ConsentStatus,
    now: datetime,
) -> Appended:
    recipient = await _recipient_code(consent)
    subject = Subject.new(consent.pseudonym)
    entry = Entry(
        type=EVENT_OF_STATUS[status],
        time=format_time(now),
        actor_org=actor.ministry,
        actor_system=actor.system,
        purpose=consent.purpose_id,  # type: ignore[attr-defined]
        basis=Basis("consent", str(consent.id)),
        categories=tuple(consent.categories),
        query_id=f"consent-{consent.id}",
        subject_commitment=commitment(subject.opening, subject.pseudonym),
        recipient_org=recipient,
        source_orgs=tuple(consent.sources),
    )
    return await ledger.append(entry, subject)


async def _notify(consent: Consent, event: str, appended: Appended, now: datetime) -> None:
    recipient = await _recipient_code(consent)
    payload = {
        "event": event,
        "consent_id": str(consent.id),
        "status": str(consent.status),
        "recipient": recipient,
        "sources": list(consent.sources),
        "categories": list(consent.categories),
        "purpose": consent.purpose_id,  # type: ignore[attr-defined]
        "time": format_time(now),
        "ledger_index": appended.index,
    }
    relying = {recipient, *consent.sources}
    for ministry in await Ministry.filter(code__in=sorted(relying)):
        await Notification.create(
            ministry=ministry, event=event, consent=consent, payload=payload, next_attempt_at=now
        )


async def _recipient_code(consent: Consent) -> str:
    recipient = consent.recipient
    if not isinstance(recipient, Ministry):
        await consent.fetch_related("recipient")
        recipient = consent.recipient
    return recipient.code


async def _own(pseudonym: str, consent_id: uuid.UUID | str) -> Consent:
    try:
        key = uuid.UUID(str(consent_id))
    except ValueError:
        raise NotFound("no such consent") from None
    consent = await Consent.get_or_none(id=key, pseudonym=pseudonym).prefetch_related("recipient")
    if consent is None:
        raise NotFound("no such consent")
    return consent


async def _validate(terms: ConsentTerms, now: datetime) -> None:
    known = await reference()
    errors = [
        *known.unknown("sources", "ministry", terms.sources),
        *known.unknown("categories", "data category", terms.categories),
        *known.unknown("purpose", "purpose", [terms.purpose]),
    ]
    if terms.valid_until <= terms.valid_from:
        errors.append({"field": "valid_until", "message": "must be after valid_from"})
    if terms.valid_until <= now:
        errors.append({"field": "valid_until", "message": "must be in the future"})
    if terms.answer_by is not None and not (
        now < terms.answer_by <= now + timedelta(days=MAX_REQUEST_DAYS_TO_ANSWER)
    ):
        errors.append(
            {
                "field": "answer_by",
                "message": f"must be within {MAX_REQUEST_DAYS_TO_ANSWER} days from now",
            }
        )
    if errors:
        raise Invalid("The consent request names something unknown or impossible.", errors)


def return_location(consent: Consent) -> str | None:
    """Where to send the person back after they answered: the ministry's return URL with
    the outcome, the consent id and the ministry's own ``state`` echoed unchanged.

    Like an OAuth authorization response: the ministry must check that ``state`` is
    the one it sent, which ties the answer to the person's session with it.
    """
    if not consent.return_url:
        return None
    outcome = {
        ConsentStatus.ACTIVE: "approved",
        ConsentStatus.REFUSED: "refused",
        ConsentStatus.EXPIRED: "expired",
    }.get(consent.status, str(consent.status))
    params = {"outcome": outcome, "consent_id": str(consent.id)}
    if consent.state is not None:
        params["state"] = consent.state
    parts = urlsplit(consent.return_url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def give_standing(
    ledger: TransparencyLog,
    pseudonym: str,
    recipient: str,
    sources: frozenset[str],
    categories: frozenset[str],
    purpose: str,
    days: int,
    notice_text: str,
    *,
    now: datetime | None = None,
) -> tuple[Consent, Appended]:
    """The person gives a standing (repeated-use) consent from an offer, in the portal.

    Raises Invalid for unknown codes.
    """
    now = now or datetime.now(UTC)
    terms = ConsentTerms(
        person_id="-",
        sources=sources,
        categories=categories,
        purpose=purpose,
        valid_from=now,
        valid_until=now + timedelta(days=days),
        one_time=False,
        notice_text=notice_text,
    )
    await _validate(terms, now)
    consent = await Consent.create(
        id=uuid.uuid4(),
        pseudonym=pseudonym,
        recipient=await Ministry.get(code=recipient),
        sources=sorted(sources),
        categories=sorted(categories),
        purpose_id=purpose,
        status=ConsentStatus.ACTIVE,
        one_time=False,
        valid_from=terms.valid_from,
        valid_until=terms.valid_until,
        notice_text=notice_text,
        notice_hash=notice_hash(notice_text),
        decided_at=now,
    )
    try:
        appended = await _record(ledger, consent, PORTAL, ConsentStatus.ACTIVE, now)
    except BaseException:
        await Consent.filter(id=consent.id).delete()
        raise
    return consent, appended
