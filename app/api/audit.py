"""The audit API: what the audit portal shows, as JSON for the commissioner's own tools.

Every call needs an access token with the ``audit`` scope, whose client holds no scope
that writes (registration refuses it and the guard checks it again); every endpoint is
a GET. Each call is recorded in the audit trail as an auditor's page view is: who is
the client (``api:<client_id>``, so the access log tells API clients from people),
what is the action and the filters, with a person only ever as a pseudonym.

Query parameters are checked strictly: an unknown parameter, a value that cannot be a
code, an unknown choice or a date the calendar does not have is a 422 problem naming
the field, so that a mistyped filter never silently answers the whole ledger.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.api.edge import next_cursor, page_params, validation_problem
from app.audit import anomalies, queries, report
from app.audit.models import HiddenReview
from app.auth.models import Dispute
from app.oauth.guard import require
from app.problems import Problem
from app.services import Services
from ledger.entry import CODE, ENTRY_TYPES, Entry

SCOPE = "audit"
#: How the access log names an API client: this prefix and the client_id.
WHO_PREFIX = "api:"
#: The audit trail's ``auditor`` column holds this many characters.
WHO_LENGTH = 64
MAX_WEEKS = 104
MAX_DAYS = 9999
DISPUTE_STATUSES = ("open", "answered", "closed")
#: The export's own parameters, checked by app.audit.export.EvidenceSlice.
EXPORT_FILTERS = ("from", "to", "ministry", "system", "person")
PAGING = ("cursor", "limit")

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_PERSON_ID = re.compile(r"[!-~]{1,128}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,17}")
_CODE_FILTERS = (
    "ministry",
    "system",
    "purpose",
    "basis_ref",
    "query_id",
    "case_id",
    "bulk_job_id",
)
#: The explorer's parameters: the portal's filters (app.audit.queries.LedgerFilters),
#: a person's identifier instead of their pseudonym, and the page.
ENTRY_PARAMS = (
    *_CODE_FILTERS,
    "basis_kind",
    "entry_type",
    "since",
    "until",
    "pseudonym",
    "person_id",
    *PAGING,
)


def _services(request: Request) -> Services:
    return request.app.state.services


def who(client_id: str) -> str:
    """The access log's name of an API client: ``api:<client_id>``.

    A name too long for the log keeps its start and ends with 8 hex digits of the
    client_id's SHA-256, so it still names one client.
    """
    name = WHO_PREFIX + client_id
    if len(name) <= WHO_LENGTH:
        return name
    digest = hashlib.sha256(client_id.encode()).hexdigest()[:8]
    return f"{name[: WHO_LENGTH - 9]}~{digest}"


async def _auditor(request: Request) -> str:
    token = await require(request, SCOPE)
    return who(token.client_id)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _today() -> date:
    return datetime.now(UTC).date()


class Params:
    """The query parameters of one call, read one by one; every fault is collected and
    ``check`` raises them together as one 422 problem."""

    def __init__(self, request: Request, known: Iterable[str]) -> None:
        self.query = request.query_params
        self.errors: list[dict[str, str]] = []
        allowed = set(known)
        for name in dict.fromkeys(self.query.keys()):
            if name not in allowed:
                self.fail(name, "is not a known parameter")
            elif len(self.query.getlist(name)) > 1:
                self.fail(name, "is given more than once")

    def fail(self, name: str, message: str) -> None:
        self.errors.append({"field": name, "message": message})

    def text(self, name: str) -> str | None:
        value = self.query.get(name)
        if value == "":
            self.fail(name, "must not be empty (leave the parameter out instead)")
        return value or None

    def code(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not CODE.fullmatch(value):
            self.fail(name, "is not a code (letters, digits and ._:-, at most 128)")
            return None
        return value

    def choice(self, name: str, choices: Iterable[str]) -> str | None:
        value = self.text(name)
        options = sorted(choices)
        if value is not None and value not in options:
            self.fail(name, "must be one of " + ", ".join(options))
            return None
        return value

    def day(self, name: str) -> date | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            if not _DAY.fullmatch(value):
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError:
            self.fail(name, "is not a real date (YYYY-MM-DD)")
            return None

    def number(self, name: str, low: int, high: int, default: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        if not _DECIMAL.fullmatch(value) or not low <= int(value) <= high:
            self.fail(name, f"must be a whole number from {low} to {high}")
            return default
        return int(value)

    def check(self) -> None:
        if self.errors:
            raise validation_problem(self.errors, "The query parameters are not valid; see errors.")


def _filters(params: Params, services: Services) -> queries.LedgerFilters:
    codes = {name: params.code(name) for name in _CODE_FILTERS}
    pseudonym = params.text("pseudonym")
    if pseudonym is not None and not _PSEUDONYM.fullmatch(pseudonym):
        params.fail("pseudonym", "is not a pseudonym (64 lowercase hex digits)")
    person_id = params.text("person_id")
    if person_id is not None:
        if pseudonym is not None:
            params.fail("person_id", "give person_id or pseudonym, not both")
        elif not _PERSON_ID.fullmatch(person_id):
            params.fail("person_id", "is not a person identifier (1 to 128 printable ASCII)")
        else:
            # Pseudonymised on arrival: the filters (and so the audit trail) never hold it.
            pseudonym = services.people.person(person_id)
    filters = queries.LedgerFilters(
        basis_kind=params.choice("basis_kind", queries.BASIS_KINDS),
        entry_type=params.choice("entry_type", ENTRY_TYPES),
        since=params.day("since"),
        until=params.day("until"),
        pseudonym=pseudonym,
        **codes,
    )
    if filters.since and filters.until and filters.since > filters.until:
        params.fail("until", "is before since")
    return filters


def entry_document(index: int, entry: Entry, today: date) -> dict[str, Any]:
    """A ledger entry decoded, with whether it is still hidden from its person today."""
    return {
        "index": index,
        "type": entry.type,
        "time": entry.time,
        "actor_org": entry.actor_org,
        "actor_system": entry.actor_system,
        "purpose": entry.purpose,
        "basis": {"kind": entry.basis.kind, "ref": entry.basis.ref},
        "categories": list(entry.categories),
        "query_id": entry.query_id,
        "case_id": entry.case_id,
        "bulk_job_id": entry.bulk_job_id,
        "recipient_org": entry.recipient_org,
        "source_orgs": list(entry.source_orgs),
        "reasons": list(entry.reasons),
        "subject_commitment": _b64(entry.subject_commitment),
        "hidden_until": entry.hidden_until,
        "hidden_reason": entry.hidden_reason,
        "hidden": entry.hidden_until is not None and date.fromisoformat(entry.hidden_until) > today,
    }


def _review_document(review: HiddenReview) -> dict[str, Any]:
    return {
        "review_by": review.review_by.isoformat(),
        "note": review.note,
        "required_by": review.required_by,
        "created_at": _iso(review.created_at),
    }


async def list_entries(request: Request) -> Response:
    auditor = await _auditor(request)
    services = _services(request)
    params = Params(request, ENTRY_PARAMS)
    filters = _filters(params, services)
    params.check()
    before, limit = page_params(request)
    rows = await queries.explore(services.ledger.db, filters, before=before, limit=limit + 1)
    trail = filters.as_query()
    if before is not None:
        trail["before"] = str(before)
    await queries.record_access(auditor, "ledger.search", trail)
    today = _today()
    items = [entry_document(r.index, r.entry, today) for r in rows[:limit]]
    more = len(rows) > limit
    return JSONResponse(
        {"items": items, "next_cursor": next_cursor(items[-1]["index"] if more else None)}
    )


async def get_entry(request: Request) -> Response:
    auditor = await _auditor(request)
    Params(request, []).check()
    raw = request.path_params["index"]
    if not _DECIMAL.fullmatch(raw):
        raise Problem(404, "not-found", "Not found", "No such ledger entry.")
    index = int(raw)
    services = _services(request)
    await queries.record_access(auditor, "ledger.entry", {"index": str(index)})
    detail = await queries.entry_detail(services.ledger.db, index)
    if detail is None:
        raise Problem(404, "not-found", "Not found", f"The ledger has no entry {index}.")
    proof = await report.check_inclusion(services.ledger, detail)
    document = entry_document(index, detail.entry, _today())
    document.update(
        {
            "leaf": _b64(detail.leaf),
            "leaf_hash": _b64(detail.leaf_hash),
            "has_opening": detail.has_opening,
            "reviews": [_review_document(r) for r in detail.reviews],
            "inclusion": {
                "status": proof.status,
                "tree_size": proof.size,
                "root_hash": _b64(proof.root_hash) if proof.root_hash is not None else None,
                "proof": [_b64(node) for node in proof.path],
                "checkpoint": proof.checkpoint.decode() if proof.checkpoint is not None else None,
                "reason": proof.reason,
            },
        }
    )
    return JSONResponse(document)


async def get_statistics(request: Request) -> Response:
    auditor = await _auditor(request)
    params = Params(request, ["weeks"])
    weeks = params.number("weeks", 1, MAX_WEEKS, report.STATISTICS_WEEKS)
    params.check()
    figures = await report.statistics(_services(request).ledger.db, _today(), weeks)
    since = figures.weeks[0].isoformat()
    await queries.record_access(auditor, "statistics", {"since": since, "weeks": str(weeks)})
    order = figures.busiest(len(figures.accesses))
    return JSONResponse(
        {
            "since": since,
            "weeks": [w.isoformat() for w in figures.weeks],
            "accesses_per_ministry": [
                {"ministry": code, "counts": figures.accesses[code]} for code in order
            ],
            "decisions": {
                "permitted": figures.decisions["access.permitted"],
                "denied": figures.decisions["access.denied"],
            },
            "withdrawals": figures.withdrawals,
            "permitted_by_basis": {
                "consent": figures.basis.get("consent", 0),
                "authority": figures.basis.get("authority", 0),
            },
            "top_purposes": [{"purpose": code, "count": count} for code, count in figures.purposes],
        }
    )


async def get_anomalies(request: Request) -> Response:
    auditor = await _auditor(request)
    params = Params(request, ["days"])
    days = params.number("days", 0, MAX_DAYS, anomalies.DISPUTE_DAYS)
    params.check()
    await queries.record_access(auditor, "anomalies", {"days": str(days)})
    now = datetime.now(UTC)
    found = await report.anomaly_report(_services(request).ledger.db, now, days)

    def section(findings: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**extra, "count": len(findings), "findings": findings}

    return JSONResponse(
        {
            "generated_at": _iso(now),
            "consent_outside_validity": section(
                [
                    {"index": f.index, "consent_id": f.consent_id, "problem": f.problem}
                    for f in found.consent_findings
                ],
                checked=found.checked,
            ),
            "spikes": section(
                [
                    {
                        "ministry": s.ministry,
                        "day": s.day.isoformat(),
                        "kind": s.kind,
                        "count": s.count,
                        "median": s.median,
                    }
                    for s in found.spikes
                ],
                window_days=report.SPIKE_WINDOW_DAYS,
                factor=anomalies.SPIKE_FACTOR,
                minimum=anomalies.SPIKE_MINIMUM,
            ),
            "overdue_reviews": section(
                [
                    {
                        "index": o.entry.index,
                        "ministry": o.entry.ministry,
                        "hidden_until": o.entry.hidden_until.isoformat(),
                        "reason": o.entry.reason,
                        "review_by": o.review_by.isoformat(),
                    }
                    for o in found.overdue
                ]
            ),
            "holdings_without_authority": section(
                [
                    {
                        "ministry": u.ministry,
                        "system": u.system,
                        "category": u.category,
                        "count": u.count,
                    }
                    for u in found.unfounded
                ]
            ),
            "silent_systems": section(
                [{"ministry": m, "system": s} for m, s in found.silent],
                registered=found.registered,
            ),
            "old_disputes": section(
                [
                    {
                        "id": d.id,
                        "ministry": d.ministry,
                        "entry_index": d.entry_index,
                        "created_at": _iso(d.created_at),
                        "age_days": age,
                    }
                    for d, age in found.disputes
                ],
                days=days,
            ),
        }
    )


async def list_hidden(request: Request) -> Response:
    auditor = await _auditor(request)
    Params(request, PAGING).check()
    before, limit = page_params(request)
    db = _services(request).ledger.db
    rows = await queries.hidden_entries(db, before=before, limit=limit + 1)
    await queries.record_access(
        auditor, "hidden", {"before": str(before)} if before is not None else {}
    )
    page = rows[:limit]
    reviews = await queries.reviews_by_entry([hidden.index for hidden, _entry in page])
    today = _today()
    items = [
        {
            "index": hidden.index,
            "ministry": hidden.ministry,
            "system": entry.actor_system,
            "time": entry.time,
            "hidden_until": hidden.hidden_until.isoformat(),
            "reason": hidden.reason,
            "hidden": hidden.hidden_until > today,
            "reviews": [_review_document(r) for r in reviews.get(hidden.index, [])],
        }
        for hidden, entry in page
    ]
    more = len(rows) > limit
    return JSONResponse(
        {"items": items, "next_cursor": next_cursor(items[-1]["index"] if more else None)}
    )


async def list_disputes(request: Request) -> Response:
    auditor = await _auditor(request)
    params = Params(request, ["status", *PAGING])
    status = params.choice("status", DISPUTE_STATUSES)
    params.check()
    before, limit = page_params(request)
    rows = await queries.disputes(status, before=before, limit=limit + 1)
    trail = {"status": status or ""}
    if before is not None:
        trail["before"] = str(before)
    await queries.record_access(auditor, "disputes", trail)
    now = datetime.now(UTC)
    items = [_dispute_document(d, now) for d in rows[:limit]]
    more = len(rows) > limit
    return JSONResponse(
        {"items": items, "next_cursor": next_cursor(items[-1]["id"] if more else None)}
    )


def _dispute_document(dispute: Dispute, now: datetime) -> dict[str, Any]:
    return {
        "id": dispute.id,
        "entry_index": dispute.entry_index,
        "ministry": dispute.ministry,
        "status": dispute.status,
        "message": dispute.message,
        "answer": dispute.answer,
        "created_at": _iso(dispute.created_at),
        "answered_at": _iso(dispute.answered_at),
        "age_days": (now - dispute.created_at).days,
    }


async def export(request: Request) -> Response:
    """Stream an evidence export (app.audit.export) of the slice the parameters name.

    The slice's own checks (app.audit.export.EvidenceSlice) run after these, so a
    refusal there is a 422 too; the stream's first (empty) piece is awaited before the
    answer starts, so a ledger with no published checkpoint is a 409 problem.
    """
    from app.audit import export as evidence

    auditor = await _auditor(request)
    params = Params(request, [*EXPORT_FILTERS, "format"])
    params.day("from")
    params.day("to")
    params.code("ministry")
    params.code("system")
    person = params.text("person")
    if person is not None and len(person) > evidence.MAX_PERSON_ID:
        params.fail("person", f"is longer than {evidence.MAX_PERSON_ID} characters")
    fmt = params.choice("format", evidence.FORMATS) or "bundle"
    params.check()
    given = {
        name: request.query_params[name] for name in EXPORT_FILTERS if name in request.query_params
    }
    try:
        chosen = evidence.EvidenceSlice.from_params(given)
    except ValueError as exc:
        field = "to" if "from" in given and "to" in given else "query"
        raise validation_problem([{"field": field, "message": str(exc)}], str(exc)) from None
    services = _services(request)
    stream = evidence.export_stream(services, chosen, fmt)
    try:
        await anext(stream)
    except evidence.NothingPublished as exc:
        raise Problem(409, "not-published", "Nothing published yet", str(exc)) from None
    # The trail names the person by pseudonym only (EvidenceSlice.trail).
    await queries.record_access(auditor, "export", {**chosen.trail(services.people), "format": fmt})
    return StreamingResponse(
        stream,
        media_type=evidence.media_type(fmt),
        headers={"Content-Disposition": f'attachment; filename="{evidence.filename(chosen, fmt)}"'},
    )


routes = [
    Route("/api/v1/audit/entries", list_entries, methods=["GET"]),
    Route("/api/v1/audit/entries/{index}", get_entry, methods=["GET"]),
    Route("/api/v1/audit/statistics", get_statistics, methods=["GET"]),
    Route("/api/v1/audit/anomalies", get_anomalies, methods=["GET"]),
    Route("/api/v1/audit/hidden", list_hidden, methods=["GET"]),
    Route("/api/v1/audit/disputes", list_disputes, methods=["GET"]),
    Route("/api/v1/audit/export", export, methods=["GET"]),
]
