"""The access decision: a plain function of the consent state and the request.

"May source S share categories C of person P with recipient R for purpose X?" The
answer is a permit on a basis (a legal authority or a consent) or a deny with reason
codes. Nothing here reads a database or a clock: callers pass the person's consents,
the authority named in the request, and the moment of the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

# Deny reason codes: stable, part of the API.
NO_CONSENT = "no_consent"
CONSENT_WITHDRAWN = "consent_withdrawn"
CONSENT_REFUSED = "consent_refused"
CONSENT_PENDING = "consent_pending"
CONSENT_EXPIRED = "consent_expired"
CONSENT_NOT_YET_VALID = "consent_not_yet_valid"
PURPOSE_MISMATCH = "purpose_mismatch"
CATEGORY_NOT_COVERED = "category_not_covered"
SOURCE_NOT_COVERED = "source_not_covered"
RECIPIENT_MISMATCH = "recipient_mismatch"
ONE_TIME_CONSENT_USED = "one_time_consent_used"
UNKNOWN_AUTHORITY = "unknown_authority"
AUTHORITY_NOT_APPLICABLE = "authority_not_applicable"

REASONS = (
    NO_CONSENT,
    CONSENT_WITHDRAWN,
    CONSENT_REFUSED,
    CONSENT_PENDING,
    CONSENT_EXPIRED,
    CONSENT_NOT_YET_VALID,
    PURPOSE_MISMATCH,
    CATEGORY_NOT_COVERED,
    SOURCE_NOT_COVERED,
    RECIPIENT_MISMATCH,
    ONE_TIME_CONSENT_USED,
    UNKNOWN_AUTHORITY,
    AUTHORITY_NOT_APPLICABLE,
)

ANY = "*"


@dataclass(frozen=True)
class AccessRequest:
    """What a source ministry asks before it shares data about one person."""

    source: str
    recipient: str
    categories: frozenset[str]
    purpose: str
    at: datetime
    authority: str | None = None
    consent_id: str | None = None


@dataclass(frozen=True)
class ConsentState:
    """A consent as the decision sees it (status as stored; expiry is judged by ``at``)."""

    id: str
    status: str
    recipient: str
    sources: frozenset[str]
    categories: frozenset[str]
    purpose: str
    valid_from: datetime
    valid_until: datetime
    one_time: bool
    used: bool


@dataclass(frozen=True)
class AuthorityState:
    """A legal authority and what it permits (codes, or ``"*"`` for any)."""

    code: str
    sources: frozenset[str]
    recipients: frozenset[str]
    categories: frozenset[str]
    purposes: frozenset[str]
    consent_required: bool


@dataclass(frozen=True)
class Decision:
    """The answer: ``permit`` on ``basis_kind``/``basis_ref``, or a deny with ``reasons``.

    ``uses_one_time_consent`` tells the caller to mark that consent used in the same step
    as recording the decision.
    """

    permit: bool
    basis_kind: str
    basis_ref: str
    reasons: tuple[str, ...] = field(default_factory=tuple)
    uses_one_time_consent: bool = False


def decide(
    request: AccessRequest,
    consents: Sequence[ConsentState],
    authority: AuthorityState | None,
) -> Decision:
    """Decide ``request`` given all of the person's consents and the named authority.

    With an authority that applies and needs no consent, the answer is a permit on that
    authority. Otherwise a consent must cover the request: right recipient, source,
    categories and purpose, active, within its validity window, and not a one-time
    consent already used. A deny names the reasons of the consent that came closest (or
    ``no_consent`` when the person has none for this recipient).
    """
    if request.authority is not None:
        if authority is None or authority.code != request.authority:
            return _deny("authority", request.authority, [UNKNOWN_AUTHORITY])
        misfit = authority_misfit(authority, request)
        if misfit:
            return _deny("authority", authority.code, [AUTHORITY_NOT_APPLICABLE, *misfit])
        if not authority.consent_required:
            return Decision(True, "authority", authority.code)
    return _decide_by_consent(request, consents)


def authority_misfit(authority: AuthorityState, request: AccessRequest) -> list[str]:
    """The reasons ``authority`` does not cover ``request`` (empty when it does)."""
    reasons = []
    if not _allows(authority.sources, {request.source}):
        reasons.append(SOURCE_NOT_COVERED)
    if not _allows(authority.recipients, {request.recipient}):
        reasons.append(RECIPIENT_MISMATCH)
    if not _allows(authority.categories, request.categories):
        reasons.append(CATEGORY_NOT_COVERED)
    if not _allows(authority.purposes, {request.purpose}):
        reasons.append(PURPOSE_MISMATCH)
    return reasons


def consent_misfit(consent: ConsentState, request: AccessRequest) -> list[str]:
    """The reasons ``consent`` does not permit ``request`` (empty when it does)."""
    reasons = []
    if consent.recipient != request.recipient:
        reasons.append(RECIPIENT_MISMATCH)
    if consent.status == "withdrawn":
        reasons.append(CONSENT_WITHDRAWN)
    elif consent.status == "refused":
        reasons.append(CONSENT_REFUSED)
    elif consent.status == "requested":
        reasons.append(CONSENT_PENDING)
    elif consent.status == "expired" or request.at >= consent.valid_until:
        reasons.append(CONSENT_EXPIRED)
    elif request.at < consent.valid_from:
        reasons.append(CONSENT_NOT_YET_VALID)
    if request.source not in consent.sources:
        reasons.append(SOURCE_NOT_COVERED)
    if not request.categories <= consent.categories:
        reasons.append(CATEGORY_NOT_COVERED)
    if request.purpose != consent.purpose:
        reasons.append(PURPOSE_MISMATCH)
    if consent.one_time and consent.used:
        reasons.append(ONE_TIME_CONSENT_USED)
    return reasons


def _decide_by_consent(request: AccessRequest, consents: Sequence[ConsentState]) -> Decision:
    if request.consent_id is not None:
        named = [c for c in consents if c.id == request.consent_id]
        if not named:
            return _deny("consent", request.consent_id, [NO_CONSENT])
        candidates = named
    else:
        candidates = [c for c in consents if c.recipient == request.recipient]
        if not candidates:
            reasons = [RECIPIENT_MISMATCH] if consents else [NO_CONSENT]
            return _deny("consent", "none", reasons)
    judged = [(consent_misfit(c, request), c) for c in candidates]
    fitting = [c for misfit, c in judged if not misfit]
    if fitting:
        # Prefer a standing consent over a one-time one, then the longest-lived.
        best = max(fitting, key=lambda c: (not c.one_time, c.valid_until))
        return Decision(True, "consent", best.id, uses_one_time_consent=best.one_time)
    misfit, closest = min(judged, key=lambda item: (len(item[0]), -item[1].valid_until.timestamp()))
    return _deny("consent", closest.id, misfit)


def _allows(permitted: Iterable[str], wanted: Iterable[str]) -> bool:
    permitted = set(permitted)
    return ANY in permitted or set(wanted) <= permitted


def _deny(kind: str, ref: str, reasons: Iterable[str]) -> Decision:
    return Decision(False, kind, ref, tuple(dict.fromkeys(reasons)))
