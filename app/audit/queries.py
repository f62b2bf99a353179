"""What the audit portal reads: the whole ledger (never only one person's part), the
consent and holding tables behind the anomaly detectors, and the auditors' own records.

Nothing here writes to the ledger; the only writes are the audit trail (AuditAccess),
review requests (HiddenReview) and verification runs (VerificationRun).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.audit import anomalies
from app.audit.models import AuditAccess, HiddenReview
from app.auth.models import Dispute
from app.oauth.models import ApiClient
from consent.models import Consent, Holding, System
from ledger.database import LedgerDatabase
from ledger.entry import ENTRY_TYPES, Entry, decode_entry
from ledger.persons import person_args, person_entries

PAGE_SIZE = 50
BASIS_KINDS = ("consent", "authority")


@dataclass
class LedgerFilters:
    """The explorer's filters; every one is optional."""

    ministry: str | None = None
    system: str | None = None
    purpose: str | None = None
    basis_kind: str | None = None
    basis_ref: str | None = None
    entry_type: str | None = None
    since: date | None = None
    until: date | None = None
    pseudonym: str | None = None
    query_id: str | None = None
    case_id: str | None = None
    bulk_job_id: str | None = None

    @classmethod
    def from_params(cls, params: Any) -> LedgerFilters:
        """Filters from query parameters; values that cannot be valid are dropped."""

        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            return value[:100] if value else None

        kind = text("basis_kind")
        entry_type = text("entry_type")
        return cls(
            ministry=text("ministry"),
            system=text("system"),
            purpose=text("purpose"),
            basis_kind=kind if kind in BASIS_KINDS else None,
            basis_ref=text("basis_ref"),
            entry_type=entry_type if entry_type in ENTRY_TYPES else None,
            since=parse_date(text("since")),
            until=parse_date(text("until")),
            pseudonym=text("pseudonym"),
            query_id=text("query_id"),
            case_id=text("case_id"),
            bulk_job_id=text("bulk_job_id"),
        )

    def as_query(self) -> dict[str, str]:
        """The filters that are set, as strings (for links and the audit trail)."""
        return {
            name: value.isoformat() if isinstance(value, date) else str(value)
            for name, value in vars(self).items()
            if value is not None
        }


@dataclass
class ExplorerRow:
    index: int
    entry: Entry
    hidden_until: date | None


async def explore(
    db: LedgerDatabase, filters: LedgerFilters, *, before: int | None = None, limit: int = PAGE_SIZE
) -> list[ExplorerRow]:
    """Entries matching ``filters``, newest first, at most ``limit``.

    Keyset pagination on the primary key: ``before`` is the smallest index of the
    previous page, so every page is a range scan of ``idx`` however deep it is. A
    person's entries are found through the person index (ledger.persons).
    """
    sql = ["SELECT e.idx, e.leaf, e.hidden_until FROM ledger_entry e WHERE 1 = 1"]
    conditions, args = filter_sql(filters, db.kind)
    sql.extend(conditions)
    if before is not None:
        sql.append("AND e.idx < ?")
        args.append(before)
    sql.append("ORDER BY e.idx DESC LIMIT ?")
    args.append(limit)
    rows = await db.fetch(" ".join(sql), *args)
    return [ExplorerRow(int(r[0]), decode_entry(bytes(r[1])), as_date(r[2])) for r in rows]


def filter_sql(filters: LedgerFilters, kind: str) -> tuple[list[str], list[Any]]:
    """``AND ...`` conditions on ``ledger_entry e`` for the filters set, and their values,
    on a database of ``kind``.

    A person's entries are found through the person index (ledger.persons).
    """
    sql: list[str] = []
    args: list[Any] = []
    columns = (
        ("actor_org", filters.ministry),
        ("actor_system", filters.system),
        ("purpose", filters.purpose),
        ("basis_kind", filters.basis_kind),
        ("basis_ref", filters.basis_ref),
        ("entry_type", filters.entry_type),
        ("query_id", filters.query_id),
        ("case_id", filters.case_id),
        ("bulk_job_id", filters.bulk_job_id),
    )
    for column, value in columns:
        if value is not None:
            sql.append(f"AND e.{column} = ?")
            args.append(value)
    if filters.pseudonym:
        sql.append(f"AND e.idx IN ({person_entries(kind)})")
        args += person_args(filters.pseudonym)
    if filters.since:
        sql.append("AND e.time >= ?")
        args.append(_midnight(filters.since))
    if filters.until:
        sql.append("AND e.time < ?")
        args.append(_midnight(filters.until) + timedelta(days=1))
    return sql, args


@dataclass
class EntryDetail:
    index: int
    leaf: bytes
    leaf_hash: bytes
    entry: Entry
    hidden_until: date | None
    has_opening: bool
    reviews: list[HiddenReview] = field(default_factory=list)


async def entry_detail(db: LedgerDatabase, index: int) -> EntryDetail | None:
    """One entry with whether its opening still exists (never the opening itself)."""
    rows = await db.fetch(
        "SELECT e.leaf, e.leaf_hash, e.hidden_until, "
        "(SELECT COUNT(*) FROM ledger_opening o WHERE o.idx = e.idx) "
        "FROM ledger_entry e WHERE e.idx = ?",
        index,
    )
    if not rows:
        return None
    leaf, leaf_hash, hidden, openings = rows[0]
    return EntryDetail(
        index,
        bytes(leaf),
        bytes(leaf_hash),
        decode_entry(bytes(leaf)),
        as_date(hidden),
        int(openings) > 0,
        list(await HiddenReview.filter(entry_index=index).order_by("-created_at")),
    )


async def record_access(auditor: str, action: str, query: dict[str, Any]) -> None:
    """Keep who looked at what: one AuditAccess row per auditor search or view."""
    await AuditAccess.create(auditor=auditor, action=action, query=query)


# Statistics and detectors ------------------------------------------------------------


def _day_expression(db: LedgerDatabase) -> str:
    if db.kind == "postgres":
        return "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return "substr(time, 1, 10)"


@dataclass(frozen=True)
class DayTally:
    day: date
    ministry: str
    entry_type: str
    basis_kind: str
    count: int


async def day_tallies(db: LedgerDatabase, since: date | None = None) -> list[DayTally]:
    """Entries counted by day (UTC), ministry, entry type and basis kind."""
    day = _day_expression(db)
    sql = (
        f"SELECT {day} AS day, actor_org, entry_type, basis_kind, COUNT(*) FROM ledger_entry "  # noqa: S608
        + ("WHERE time >= ? " if since else "")
        + "GROUP BY 1, actor_org, entry_type, basis_kind"
    )
    rows = await db.fetch(sql, *([_midnight(since)] if since else []))
    return [
        DayTally(date.fromisoformat(str(r[0])), str(r[1]), str(r[2]), str(r[3]), int(r[4]))
        for r in rows
    ]


async def purpose_counts(db: LedgerDatabase, limit: int = 10) -> list[tuple[str, int]]:
    """The purposes of the most access decisions, most frequent first."""
    rows = await db.fetch(
        "SELECT purpose, COUNT(*) FROM ledger_entry "
        "WHERE entry_type IN ('access.permitted', 'access.denied') "
        "GROUP BY purpose ORDER BY COUNT(*) DESC, purpose LIMIT ?",
        limit,
    )
    return [(str(r[0]), int(r[1])) for r in rows]


def daily_counts(tallies: Sequence[DayTally]) -> list[anomalies.DailyCount]:
    """Per ministry and day: all entries and the denials among them."""
    totals: dict[tuple[date, str], list[int]] = {}
    for t in tallies:
        pair = totals.setdefault((t.day, t.ministry), [0, 0])
        pair[0] += t.count
        if t.entry_type == "access.denied":
            pair[1] += t.count
    return [
        anomalies.DailyCount(day, ministry, total, denied)
        for (day, ministry), (total, denied) in sorted(totals.items())
    ]


async def consent_accesses(db: LedgerDatabase) -> list[anomalies.ConsentAccess]:
    """Every ``access.permitted`` entry relying on a consent."""
    rows = await db.fetch(
        "SELECT idx, time, basis_ref FROM ledger_entry "
        "WHERE entry_type = 'access.permitted' AND basis_kind = 'consent' ORDER BY idx"
    )
    return [anomalies.ConsentAccess(int(r[0]), as_datetime(r[1]), str(r[2])) for r in rows]


async def consent_windows(ids: Sequence[str]) -> dict[str, anomalies.ConsentWindow]:
    """The validity and status of the consents named (ids that are not UUIDs are absent)."""
    keys = []
    for raw in set(ids):
        try:
            keys.append(uuid.UUID(raw))
        except ValueError:
            continue
    out: dict[str, anomalies.ConsentWindow] = {}
    for start in range(0, len(keys), 500):
        for c in await Consent.filter(id__in=keys[start : start + 500]):
            out[str(c.id)] = anomalies.ConsentWindow(
                c.valid_from, c.valid_until, str(c.status), c.decided_at, c.withdrawn_at
            )
    return out


async def hidden_entries(
    db: LedgerDatabase, *, before: int | None = None, limit: int | None = None
) -> list[tuple[anomalies.HiddenEntry, Entry]]:
    """Every entry ever hidden from its person (still hidden or not), newest first.

    ``before`` and ``limit`` page through them (keyset on the index, as ``explore``).
    """
    sql = "SELECT idx, leaf, hidden_until FROM ledger_entry WHERE hidden_until IS NOT NULL"
    args: list[Any] = []
    if before is not None:
        sql += " AND idx < ?"
        args.append(before)
    sql += " ORDER BY idx DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    rows = await db.fetch(sql, *args)
    out = []
    for r in rows:
        entry = decode_entry(bytes(r[1]))
        until = as_date(r[2])
        assert until is not None
        hidden = anomalies.HiddenEntry(int(r[0]), entry.actor_org, until, entry.hidden_reason)
        out.append((hidden, entry))
    return out


async def reviews_by_entry(indices: Sequence[int] | None = None) -> dict[int, list[HiddenReview]]:
    """The review requests of each entry (of ``indices``, or all), newest first."""
    found = HiddenReview.all().order_by("-created_at", "-id")
    if indices is not None:
        found = found.filter(entry_index__in=list(indices))
    out: dict[int, list[HiddenReview]] = {}
    for review in await found:
        out.setdefault(review.entry_index, []).append(review)
    return out


async def latest_reviews() -> dict[int, date]:
    """The latest review date required of each hidden entry that has one."""
    out: dict[int, date] = {}
    for review in await HiddenReview.all().order_by("created_at", "id"):
        out[review.entry_index] = review.review_by
    return out


async def holding_rows() -> list[anomalies.HoldingRow]:
    """Holdings registered without an authority (the others need not be read)."""
    rows = await Holding.filter(authority_id=None).prefetch_related("system__ministry")
    return [
        anomalies.HoldingRow(h.system.ministry.code, h.system.code, h.category_id, None)  # type: ignore[attr-defined]
        for h in rows
    ]


async def registered_systems() -> list[tuple[str, str]]:
    """(ministry, system) pairs that have an API client (other than an auditor's) or at
    least one holding."""
    pairs: set[tuple[str, str]] = set()
    for client in await ApiClient.filter(disabled_at=None).prefetch_related("system__ministry"):
        if "audit" in (client.scopes or []):
            continue  # auditors read; they never report to the ledger
        pairs.add((client.system.ministry.code, client.system.code))
    for system in await System.all().prefetch_related("ministry"):
        if await Holding.filter(system_id=system.id).exists():
            pairs.add((system.ministry.code, system.code))
    return sorted(pairs)


async def reporting_systems(
    db: LedgerDatabase, pairs: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Those of ``pairs`` with at least one ledger entry (one indexed probe each)."""
    out = []
    for ministry, system in pairs:
        rows = await db.fetch(
            "SELECT 1 FROM ledger_entry WHERE actor_org = ? AND actor_system = ? LIMIT 1",
            ministry,
            system,
        )
        if rows:
            out.append((ministry, system))
    return out


async def disputes(
    status: str | None = None, *, before: int | None = None, limit: int = PAGE_SIZE
) -> list[Dispute]:
    """Disputes (of one ``status``, or all), newest first; ``before`` is an id (keyset)."""
    found = Dispute.all().order_by("-id")
    if status is not None:
        found = found.filter(status=status)
    if before is not None:
        found = found.filter(id__lt=before)
    return list(await found.limit(limit))


async def open_disputes() -> list[anomalies.OpenDispute]:
    return [
        anomalies.OpenDispute(d.id, d.ministry, d.entry_index, d.created_at, d.status)
        for d in await Dispute.filter(status="open")
    ]


def as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_date(raw: str | None) -> date | None:
    """An ISO date, or None when ``raw`` is empty or not one."""
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
