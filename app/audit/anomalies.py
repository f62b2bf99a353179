"""Anomaly detectors of the audit portal: pure functions of rows to findings.

Each detector takes plain rows already read by ``app.audit.queries`` and returns the
findings, so that it can be tested on hand-made data with and without the anomaly.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

#: A day counts as a spike above this many times the ministry's median daily count.
SPIKE_FACTOR = 3.0
#: Days with fewer entries than this are never spikes (a median of 1 makes 4 a spike).
SPIKE_MINIMUM = 10
#: Disputes open longer than this many days are reported, unless the page asks otherwise.
DISPUTE_DAYS = 30


@dataclass(frozen=True)
class ConsentWindow:
    """What the consent table says about one consent, for checking an access against it."""

    valid_from: datetime
    valid_until: datetime
    status: str
    decided_at: datetime | None
    withdrawn_at: datetime | None


@dataclass(frozen=True)
class ConsentAccess:
    """An ``access.permitted`` entry whose basis is a consent."""

    index: int
    time: datetime
    consent_id: str


@dataclass(frozen=True)
class ConsentFinding:
    index: int
    consent_id: str
    problem: str  # missing, not_given, not_yet_valid, expired, withdrawn


def consent_outside_validity(
    accesses: Iterable[ConsentAccess], consents: Mapping[str, ConsentWindow]
) -> tuple[int, list[ConsentFinding]]:
    """Check each access against its consent's window and status at the access's time.

    Returns how many accesses were checked and one finding per access that relied on a
    consent that did not exist, was never given (requested or refused), was given after
    the access, had not started or had ended, or had been withdrawn before it.
    """
    checked = 0
    findings: list[ConsentFinding] = []
    for access in accesses:
        checked += 1
        problem = _consent_problem(access.time, consents.get(access.consent_id))
        if problem:
            findings.append(ConsentFinding(access.index, access.consent_id, problem))
    return checked, findings


def _consent_problem(moment: datetime, consent: ConsentWindow | None) -> str | None:
    if consent is None:
        return "missing"
    if consent.status in ("requested", "refused"):
        return "not_given"
    if consent.decided_at is not None and consent.decided_at > moment:
        return "not_given"
    if moment < consent.valid_from:
        return "not_yet_valid"
    if moment > consent.valid_until:
        return "expired"
    if consent.withdrawn_at is not None and consent.withdrawn_at <= moment:
        return "withdrawn"
    return None


@dataclass(frozen=True)
class DailyCount:
    """Entries of one ministry on one day: all of them and the denials among them."""

    day: date
    ministry: str
    total: int
    denied: int


@dataclass(frozen=True)
class Spike:
    ministry: str
    day: date
    kind: str  # volume or denials
    count: int
    median: float


def spikes(
    days: Iterable[DailyCount], factor: float = SPIKE_FACTOR, minimum: int = SPIKE_MINIMUM
) -> list[Spike]:
    """Days on which a ministry's volume or denials rose above ``factor`` times its
    median daily count (over the days it reported anything), and at least ``minimum``."""
    by_ministry: dict[str, list[DailyCount]] = defaultdict(list)
    for row in days:
        by_ministry[row.ministry].append(row)
    found: list[Spike] = []
    for ministry, rows in sorted(by_ministry.items()):
        for kind in ("volume", "denials"):
            counts = [r.total if kind == "volume" else r.denied for r in rows]
            median = statistics.median(counts)
            for row, count in zip(rows, counts, strict=True):
                if count >= minimum and count > factor * median:
                    found.append(Spike(ministry, row.day, kind, count, float(median)))
    return sorted(found, key=lambda s: (s.day, s.ministry, s.kind))


@dataclass(frozen=True)
class HiddenEntry:
    index: int
    ministry: str
    hidden_until: date
    reason: str | None


@dataclass(frozen=True)
class OverdueReview:
    entry: HiddenEntry
    review_by: date


def overdue_reviews(
    entries: Iterable[HiddenEntry], reviews: Mapping[int, date], today: date
) -> list[OverdueReview]:
    """Entries still hidden ``today`` whose required review date (the latest one the
    auditors set, in ``reviews`` by entry index) has passed."""
    return [
        OverdueReview(entry, reviews[entry.index])
        for entry in entries
        if entry.hidden_until > today and entry.index in reviews and reviews[entry.index] < today
    ]


@dataclass(frozen=True)
class HoldingRow:
    ministry: str
    system: str
    category: str
    authority: str | None


@dataclass(frozen=True)
class UnfoundedHoldings:
    ministry: str
    system: str
    category: str
    count: int


def holdings_without_authority(rows: Iterable[HoldingRow]) -> list[UnfoundedHoldings]:
    """Holdings registered with no legal authority, counted by system and category."""
    counted: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        if not row.authority:
            counted[(row.ministry, row.system, row.category)] += 1
    return [UnfoundedHoldings(*key, count) for key, count in sorted(counted.items())]


def silent_systems(
    registered: Iterable[tuple[str, str]], reporting: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Registered (ministry, system) pairs (with an API client or holdings) that never
    reported a ledger entry."""
    heard = set(reporting)
    return sorted(set(registered) - heard)


@dataclass(frozen=True)
class OpenDispute:
    id: int
    ministry: str
    entry_index: int
    created_at: datetime
    status: str


def old_disputes(
    disputes: Iterable[OpenDispute], now: datetime, days: int = DISPUTE_DAYS
) -> list[tuple[OpenDispute, int]]:
    """Disputes still open after more than ``days`` days, with their age in days."""
    out = []
    for dispute in disputes:
        age = (now - dispute.created_at).days
        if dispute.status == "open" and age > days:
            out.append((dispute, age))
    return sorted(out, key=lambda pair: -pair[1])
