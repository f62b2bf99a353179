"""What the portal reads about the signed-in person: every query takes their pseudonym,
so nothing of anyone else can be reached."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.i18n import current_language
from app.portal.describe import Names
from consent.models import (
    Consent,
    ConsentStatus,
    DataCategory,
    Holding,
    LegalAuthority,
    Ministry,
    Purpose,
)
from ledger.database import LedgerDatabase
from ledger.entry import Entry, decode_entry
from ledger.persons import person_args, person_entries

PAGE_SIZE = 25


async def names() -> Names:
    """Display names of ministries, categories, purposes and laws in the current language."""
    lang = current_language()

    def pick(row: Any, en: str, fr: str) -> str:
        return getattr(row, fr) if lang == "fr" else getattr(row, en)

    return Names(
        ministries={m.code: pick(m, "name_en", "name_fr") for m in await Ministry.all()},
        categories={c.code: pick(c, "label_en", "label_fr") for c in await DataCategory.all()},
        purposes={p.code: pick(p, "label_en", "label_fr") for p in await Purpose.all()},
        authorities={a.code: f"{a.act}, {a.section}" for a in await LegalAuthority.all()},
    )


async def holdings_by_ministry(pseudonym: str) -> list[tuple[Ministry, dict[Any, list[Holding]]]]:
    """The person's holdings, grouped by ministry, then system."""
    rows = await Holding.filter(pseudonym=pseudonym).prefetch_related(
        "system__ministry", "category", "authority"
    )
    grouped: dict[int, tuple[Ministry, dict[Any, list[Holding]]]] = {}
    for holding in sorted(rows, key=lambda h: (h.system.ministry.code, h.system.code)):
        ministry = holding.system.ministry
        grouped.setdefault(ministry.id, (ministry, defaultdict(list)))[1][holding.system].append(
            holding
        )
    return list(grouped.values())


@dataclass(frozen=True)
class Flow:
    """Data about the person that went from one ministry to another, and how often."""

    source: str
    recipient: str
    basis_kind: str
    count: int
    categories: tuple[str, ...]


@dataclass
class ActivityRow:
    index: int
    entry: Entry
    hidden_until: date | None


async def visible_entries(
    db: LedgerDatabase,
    pseudonym: str,
    *,
    before: int | None = None,
    ministry: str | None = None,
    purpose: str | None = None,
    basis: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = PAGE_SIZE,
    today: date | None = None,
) -> list[ActivityRow]:
    """The person's ledger entries, newest first, without those still hidden.

    Keyset pagination: ``before`` is the smallest index of the previous page.
    """
    today = today or datetime.now(UTC).date()
    sql = [
        # person_entries is constant SQL text: the values are all parameters.
        "SELECT e.idx, e.leaf, e.hidden_until FROM ledger_entry e "  # noqa: S608
        f"WHERE e.idx IN ({person_entries(db.kind)}) "
        "AND (e.hidden_until IS NULL OR e.hidden_until <= ?)"
    ]
    args: list[Any] = [*person_args(pseudonym), today]
    if before is not None:
        sql.append("AND e.idx < ?")
        args.append(before)
    if ministry:
        sql.append("AND e.actor_org = ?")
        args.append(ministry)
    if purpose:
        sql.append("AND e.purpose = ?")
        args.append(purpose)
    if basis in ("consent", "authority"):
        sql.append("AND e.basis_kind = ?")
        args.append(basis)
    if since:
        sql.append("AND e.time >= ?")
        args.append(datetime(since.year, since.month, since.day, tzinfo=UTC))
    if until:
        sql.append("AND e.time < ?")
        args.append(datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1))
    sql.append("ORDER BY e.idx DESC LIMIT ?")
    args.append(limit)
    rows = await db.fetch(" ".join(sql), *args)
    return [ActivityRow(int(row[0]), decode_entry(bytes(row[1])), _as_date(row[2])) for row in rows]


async def own_entry(db: LedgerDatabase, pseudonym: str, index: int) -> tuple[bytes, bytes] | None:
    """The leaf bytes and opening of entry ``index`` if it is the person's and not hidden."""
    rows = await db.fetch(
        "SELECT e.leaf, o.opening, e.hidden_until FROM ledger_opening o "
        "JOIN ledger_entry e ON e.idx = o.idx WHERE o.pseudonym = ? AND o.idx = ?",
        pseudonym,
        index,
    )
    if not rows:
        return None
    hidden = _as_date(rows[0][2])
    if hidden is not None and hidden > datetime.now(UTC).date():
        return None
    return bytes(rows[0][0]), bytes(rows[0][1])


FLOW_WINDOW = 2000


async def flows(
    db: LedgerDatabase, pseudonym: str, limit: int = FLOW_WINDOW
) -> tuple[list[Flow], bool]:
    """Who shared what about the person with whom, by consent or by law, over their
    ``limit`` most recent visible permitted accesses; and whether there were more.

    Reads the leaves with a plain JSON parse: they were validated when appended and the
    tree protects them, and this page must not pay for full decoding.
    """
    today = datetime.now(UTC).date()
    rows = await db.fetch(
        f"SELECT e.leaf FROM ledger_entry e WHERE e.idx IN ({person_entries(db.kind)}) "  # noqa: S608
        "AND e.entry_type = 'access.permitted' "
        "AND (e.hidden_until IS NULL OR e.hidden_until <= ?) ORDER BY e.idx DESC LIMIT ?",
        *person_args(pseudonym),
        today,
        limit + 1,
    )
    counted: dict[tuple[str, str, str], tuple[int, set[str]]] = {}
    for row in rows[:limit]:
        entry = json.loads(bytes(row[0]))
        recipient = entry.get("recipient_org")
        if not recipient:
            continue
        for source in entry.get("source_orgs") or [entry["actor_org"]]:
            key = (source, recipient, entry["basis"]["kind"])
            count, cats = counted.get(key, (0, set()))
            counted[key] = (count + 1, cats | set(entry["categories"]))
    found = [
        Flow(source, recipient, kind, count, tuple(sorted(cats)))
        for (source, recipient, kind), (count, cats) in sorted(counted.items())
    ]
    return found, len(rows) > limit


async def consents_of(pseudonym: str) -> dict[str, list[Consent]]:
    """The person's consents by status (requests waiting for an answer under requested)."""
    out: dict[str, list[Consent]] = {status.value: [] for status in ConsentStatus}
    for consent in await Consent.filter(pseudonym=pseudonym).prefetch_related(
        "recipient", "purpose"
    ):
        out[str(consent.status)].append(consent)
    return out


async def consent_dates(pseudonym: str) -> dict[str, datetime]:
    return {
        str(c.id): c.decided_at or c.created_at for c in await Consent.filter(pseudonym=pseudonym)
    }


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
