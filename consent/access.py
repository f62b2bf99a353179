"""The access check: decide, record the decision in the ledger, then answer.

The order is the promise: a decision is returned only after its ledger entry is
durably committed, so a permit without an entry cannot happen. A one-time consent is
claimed with a conditional update before the entry is written and released again if
the entry cannot be written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from consent.decision import (
    ONE_TIME_CONSENT_USED,
    AccessRequest,
    Decision,
    decide,
)
from consent.errors import Invalid
from consent.identity import Actor, Pseudonymizer
from consent.models import Consent
from consent.reads import consent_states
from consent.reference import Reference, reference
from ledger.entry import Basis, Entry, commitment, format_time
from ledger.log import TransparencyLog
from ledger.sequencer import Appended, Subject


@dataclass(frozen=True)
class AccessCheck:
    """One person in an access check, as the API received it."""

    person_id: str
    query_id: str


@dataclass(frozen=True)
class CheckTerms:
    """What is asked for everyone in a check (one person, or a bulk job)."""

    recipient: str
    categories: frozenset[str]
    purpose: str
    authority: str | None = None
    consent_id: str | None = None
    case_id: str | None = None
    hidden_until: date | None = None
    hidden_reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A recorded decision: the decision and where its entry is in the ledger."""

    query_id: str
    decision: Decision
    appended: Appended


async def validate_terms(actor: Actor, terms: CheckTerms) -> Reference:
    """Check that every code in ``terms`` is known. Raises Invalid naming the fields."""
    known = await reference()
    errors = [
        *known.unknown("recipient", "ministry", [terms.recipient]),
        *known.unknown("categories", "data category", terms.categories),
        *known.unknown("purpose", "purpose", [terms.purpose]),
    ]
    if (terms.hidden_until is None) != (terms.hidden_reason is None):
        errors.append(
            {"field": "hidden_until", "message": "hidden_until and hidden_reason come together"}
        )
    if terms.hidden_until is not None and terms.authority is None:
        errors.append(
            {"field": "hidden_until", "message": "only an access under an authority can be hidden"}
        )
    if errors:
        raise Invalid("The access check names something unknown.", errors)
    return known


async def check_access(
    ledger: TransparencyLog,
    pseudonymizer: Pseudonymizer,
    actor: Actor,
    terms: CheckTerms,
    checks: Sequence[AccessCheck],
    *,
    bulk_job_id: str | None = None,
    now: datetime | None = None,
) -> list[Outcome]:
    """Decide and record access checks for one or more persons (a bulk job).

    The acting ministry is the source. All entries are written in one ledger
    transaction; nothing is answered unless all are durable. Raises Invalid for unknown
    codes (nothing recorded) and LedgerUnavailable when the ledger cannot record
    (nothing answered, one-time consents released).
    """
    known = await validate_terms(actor, terms)
    now = now or datetime.now(UTC)
    authority = known.authorities.get(terms.authority) if terms.authority else None
    pseudonyms = [pseudonymizer.person(check.person_id) for check in checks]
    by_person = await consent_states(pseudonyms, ledger.db)
    claimed: list[str] = []
    entries: list[tuple[Entry, Subject]] = []
    decisions: list[Decision] = []
    try:
        for check, pseudonym in zip(checks, pseudonyms, strict=True):
            request = AccessRequest(
                source=actor.ministry,
                recipient=terms.recipient,
                categories=terms.categories,
                purpose=terms.purpose,
                at=now,
                authority=terms.authority,
                consent_id=terms.consent_id,
            )
            result = decide(request, by_person.get(pseudonym, []), authority)
            if result.permit and result.uses_one_time_consent:
                if await _claim_one_time(result.basis_ref, now):
                    claimed.append(result.basis_ref)
                else:
                    result = Decision(False, "consent", result.basis_ref, (ONE_TIME_CONSENT_USED,))
            decisions.append(result)
            subject = Subject.new(pseudonym)
            entries.append(
                (_entry(actor, terms, check, result, subject, now, bulk_job_id), subject)
            )
        appended = await ledger.append_all(entries)
    except BaseException:
        for consent_id in claimed:
            await Consent.filter(id=consent_id).update(used_at=None)
        raise
    return [
        Outcome(check.query_id, result, where)
        for check, result, where in zip(checks, decisions, appended, strict=True)
    ]


def new_bulk_job_id() -> str:
    return f"bulk-{uuid.uuid4()}"


async def _claim_one_time(consent_id: str, now: datetime) -> bool:
    # The conditional update makes two concurrent checks unable to both use it.
    claimed = await Consent.filter(id=consent_id, used_at__isnull=True).update(used_at=now)
    return claimed == 1


def _entry(
    actor: Actor,
    terms: CheckTerms,
    check: AccessCheck,
    result: Decision,
    subject: Subject,
    now: datetime,
    bulk_job_id: str | None,
) -> Entry:
    return Entry(
        type="access.permitted" if result.permit else "access.denied",
        time=format_time(now),
        actor_org=actor.ministry,
        actor_system=actor.system,
        purpose=terms.purpose,
        basis=Basis(result.basis_kind, result.basis_ref),
        categories=tuple(sorted(terms.categories)),
        query_id=check.query_id,
        subject_commitment=commitment(subject.opening, subject.pseudonym),
        case_id=terms.case_id,
        bulk_job_id=bulk_job_id,
        hidden_until=terms.hidden_until.isoformat() if terms.hidden_until else None,
        hidden_reason=terms.hidden_reason,
        recipient_org=terms.recipient,
        source_orgs=(actor.ministry,),
        reasons=result.reasons,
    )
