"""What the audit portal and the audit API both report: an entry's inclusion proof, the
figures behind the statistics charts, and the anomaly detectors' findings.

Each function reads through ``app.audit.queries``, runs the pure detectors of
``app.audit.anomalies`` and returns plain data; the portal renders it as pages and
charts (``app.audit.views``), the API as JSON (``app.api.audit``). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from app.audit import anomalies, queries
from ledger.checkpoint import open_checkpoint
from ledger.database import LedgerDatabase
from ledger.errors import LedgerError
from ledger.log import TransparencyLog
from ledger.merkle import leaf_hash, verify_inclusion

#: Weeks of the statistics, unless asked otherwise.
STATISTICS_WEEKS = 26
#: Days of ledger activity the spike detector looks at.
SPIKE_WINDOW_DAYS = 90
ACCESS_TYPES = ("access.permitted", "access.denied")


@dataclass(frozen=True)
class Inclusion:
    """Whether an entry is proven in the tree of the newest checkpoint.

    ``status`` is ``verified`` (with the checkpoint's root, the proof path and the
    signed checkpoint note), ``pending`` (no checkpoint covers the entry yet) or
    ``failed`` (with the reason).
    """

    status: str
    size: int
    root_hash: bytes | None = None
    path: tuple[bytes, ...] = ()
    checkpoint: bytes | None = None
    reason: str | None = None


async def check_inclusion(ledger: TransparencyLog, detail: queries.EntryDetail) -> Inclusion:
    """Prove the entry is in the tree of the newest checkpoint, verified here.

    Opens the checkpoint with the log's key, computes the inclusion proof from the
    stored tiles and checks it against the leaf hash recomputed from the stored bytes.
    """
    latest = await ledger.latest_checkpoint()
    if latest is None or detail.index >= latest.size:
        return Inclusion("pending", latest.size if latest else 0)
    try:
        checkpoint = open_checkpoint(latest.note, ledger.verifiers, origin=ledger.origin)
        computed = leaf_hash(detail.leaf)
        if computed != detail.leaf_hash:
            raise LedgerError("the stored leaf hash is not the hash of the stored entry")
        path = await ledger.inclusion_proof(detail.index, checkpoint.size)
        verify_inclusion(computed, detail.index, checkpoint.size, path, checkpoint.root_hash)
    except LedgerError as exc:
        return Inclusion("failed", latest.size, reason=str(exc))
    return Inclusion("verified", checkpoint.size, checkpoint.root_hash, tuple(path), latest.note)


def week_of(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Statistics:
    """Counts of ledger entries by week (Monday, UTC), from ``weeks[0]`` to this week.

    ``accesses`` counts access decisions per ministry and week, ``decisions`` permits
    and denials per week, ``withdrawals`` consent withdrawals per week, ``basis`` the
    permitted accesses of the period by basis kind (``consent`` or ``authority``), and
    ``purposes`` the purposes of the most access decisions ever (most frequent first).
    """

    weeks: list[date]
    accesses: dict[str, list[int]]
    decisions: dict[str, list[int]]
    withdrawals: list[int]
    basis: dict[str, int]
    purposes: list[tuple[str, int]]

    def busiest(self, n: int) -> list[str]:
        """The ``n`` ministries with the most access decisions over the weeks."""
        return sorted(self.accesses, key=lambda m: (-sum(self.accesses[m]), m))[:n]


async def statistics(db: LedgerDatabase, today: date, weeks: int = STATISTICS_WEEKS) -> Statistics:
    """The figures behind the statistics charts, for the ``weeks`` weeks up to ``today``."""
    first_week = week_of(today) - timedelta(weeks=weeks - 1)
    tallies = await queries.day_tallies(db, since=first_week)
    week_list = [first_week + timedelta(weeks=n) for n in range(weeks)]
    position = {week: n for n, week in enumerate(week_list)}

    def per_week(keep: Callable[[queries.DayTally], str | None]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for t in tallies:
            key = keep(t)
            if key is not None and week_of(t.day) in position:
                out.setdefault(key, [0] * weeks)[position[week_of(t.day)]] += t.count
        return out

    accesses = per_week(lambda t: t.ministry if t.entry_type in ACCESS_TYPES else None)
    decisions = per_week(lambda t: t.entry_type if t.entry_type in ACCESS_TYPES else None)
    withdrawals = per_week(lambda t: "w" if t.entry_type == "consent.withdrawn" else None)
    basis: dict[str, int] = {kind: 0 for kind in queries.BASIS_KINDS}
    for t in tallies:
        if t.entry_type == "access.permitted":
            basis[t.basis_kind] = basis.get(t.basis_kind, 0) + t.count
    return Statistics(
        weeks=week_list,
        accesses=accesses,
        decisions={kind: decisions.get(kind, [0] * weeks) for kind in ACCESS_TYPES},
        withdrawals=withdrawals.get("w", [0] * weeks),
        basis=basis,
        purposes=await queries.purpose_counts(db),
    )


@dataclass(frozen=True)
class AnomalyReport:
    """Every detector's findings, as the anomalies page shows them.

    ``checked`` is how many accesses permitted by consent were checked against their
    consent; ``registered`` how many systems are registered (coverage); ``days`` the
    age above which an open dispute is reported.
    """

    checked: int
    consent_findings: list[anomalies.ConsentFinding]
    spikes: list[anomalies.Spike]
    overdue: list[anomalies.OverdueReview]
    unfounded: list[anomalies.UnfoundedHoldings]
    registered: int
    silent: list[tuple[str, str]]
    days: int
    disputes: list[tuple[anomalies.OpenDispute, int]] = field(default_factory=list)


async def anomaly_report(
    db: LedgerDatabase, now: datetime, days: int = anomalies.DISPUTE_DAYS
) -> AnomalyReport:
    """Run every anomaly detector on the ledger and the consent tables as of ``now``."""
    accesses = await queries.consent_accesses(db)
    windows = await queries.consent_windows([a.consent_id for a in accesses])
    checked, consent_findings = anomalies.consent_outside_validity(accesses, windows)
    tallies = await queries.day_tallies(db, since=now.date() - timedelta(days=SPIKE_WINDOW_DAYS))
    hidden = [h for h, _entry in await queries.hidden_entries(db)]
    registered = await queries.registered_systems()
    reporting = await queries.reporting_systems(db, registered)
    return AnomalyReport(
        checked=checked,
        consent_findings=consent_findings,
        spikes=anomalies.spikes(queries.daily_counts(tallies)),
        overdue=anomalies.overdue_reviews(hidden, await queries.latest_reviews(), now.date()),
        unfounded=anomalies.holdings_without_authority(await queries.holding_rows()),
        registered=len(registered),
        silent=anomalies.silent_systems(registered, reporting),
        days=days,
        disputes=anomalies.old_disputes(await queries.open_disputes(), now, days),
    )
