"""Audit portal pages for the privacy commissioner's office.

Every handler requires a signed-in auditor, records the look in the audit trail
(AuditAccess) and reads the ledger without writing to it. The only things an auditor
writes are review requests for hidden entries and verification runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.audit import anomalies, charts, queries
from app.audit.models import AuditAccess, HiddenReview, VerificationRun
from app.auth.csrf import check_csrf
from app.auth.models import Dispute, WebSession
from app.auth.sessions import require_person
from app.i18n import gettext as _
from app.portal.queries import names as display_names
from app.problems import Problem
from app.services import Services
from consent.models import Ministry, Purpose
from ledger.checkpoint import open_checkpoint
from ledger.entry import ENTRY_TYPES
from ledger.errors import LedgerError
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.verify import verify_database

log = logging.getLogger("onceonly.audit")

#: Weeks shown on the statistics page.
STATISTICS_WEEKS = 26


def _services(request: Request) -> Services:
    return request.app.state.services


async def _auditor(request: Request) -> WebSession:
    return await require_person(request, role="auditor")


def _render(
    request: Request, template: str, session: WebSession, status: int = 200, **context
) -> Response:
    return request.app.state.templates.TemplateResponse(
        request, template, {"session": session, **context}, status_code=status
    )


def _not_found() -> Problem:
    return Problem(404, "not-found", "Not found", "No such page.")


async def overview(request: Request) -> Response:
    session = await _auditor(request)
    size = await _services(request).ledger.size()
    return _render(request, "audit/overview.html", session, size=size)


async def ledger_page(request: Request) -> Response:
    session = await _auditor(request)
    params = request.query_params
    filters = queries.LedgerFilters.from_params(params)
    before_raw = params.get("before", "")
    before = int(before_raw) if before_raw.isdigit() and len(before_raw) < 19 else None
    rows = await queries.explore(
        _services(request).ledger.db, filters, before=before, limit=queries.PAGE_SIZE + 1
    )
    more = len(rows) > queries.PAGE_SIZE
    rows = rows[: queries.PAGE_SIZE]
    trail = filters.as_query()
    if before is not None:
        trail["before"] = str(before)
    await queries.record_access(session.pseudonym, "ledger.search", trail)
    next_query = None
    if more and rows:
        kept = [(k, v) for k, v in params.multi_items() if k not in ("before", "lang")]
        next_query = urlencode([*kept, ("before", str(rows[-1].index))])
    return _render(
        request,
        "audit/ledger.html",
        session,
        rows=rows,
        filters=filters,
        names=await display_names(),
        ministries=await Ministry.all().order_by("code"),
        purposes=await Purpose.all().order_by("code"),
        entry_types=sorted(ENTRY_TYPES),
        next_query=next_query,
        today=datetime.now(UTC).date(),
    )


async def entry_page(request: Request) -> Response:
    session = await _auditor(request)
    raw = request.path_params["index"]
    if not raw.isdigit() or len(raw) > 18:
        raise _not_found()
    index = int(raw)
    services = _services(request)
    detail = await queries.entry_detail(services.ledger.db, index)
    if detail is None:
        raise _not_found()
    await queries.record_access(session.pseudonym, "ledger.entry", {"index": str(index)})
    proof = await check_inclusion(services, detail)
    return _render(
        request,
        "audit/entry.html",
        session,
        detail=detail,
        entry=detail.entry,
        proof=proof,
        names=await display_names(),
        today=datetime.now(UTC).date(),
    )


async def check_inclusion(services: Services, detail: queries.EntryDetail) -> dict[str, object]:
    """Prove the entry is in the tree of the newest checkpoint, verified here.

    Opens the checkpoint with the log's key, computes the inclusion proof from the
    stored tiles and checks it against the leaf hash recomputed from the stored bytes.
    Answers ``status`` ``verified``, ``pending`` (not yet covered by a checkpoint) or
    ``failed`` with the reason.
    """
    ledger = services.ledger
    latest = await ledger.latest_checkpoint()
    if latest is None or detail.index >= latest.size:
        return {"status": "pending", "size": latest.size if latest else 0}
    try:
        checkpoint = open_checkpoint(latest.note, ledger.verifier, origin=ledger.origin)
        computed = leaf_hash(detail.leaf)
        if computed != detail.leaf_hash:
            raise LedgerError("the stored leaf hash is not the hash of the stored entry")
        path = await ledger.inclusion_proof(detail.index, checkpoint.size)
        verify_inclusion(computed, detail.index, checkpoint.size, path, checkpoint.root_hash)
    except LedgerError as exc:
        return {"status": "failed", "size": latest.size, "reason": str(exc)}
    return {
        "status": "verified",
        "size": checkpoint.size,
        "root": checkpoint.root_hash.hex(),
        "path": [node.hex() for node in path],
    }


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


async def statistics_page(request: Request) -> Response:
    session = await _auditor(request)
    db = _services(request).ledger.db
    today = datetime.now(UTC).date()
    first_week = _week(today) - timedelta(weeks=STATISTICS_WEEKS - 1)
    tallies = await queries.day_tallies(db, since=first_week)
    await queries.record_access(session.pseudonym, "statistics", {"since": first_week.isoformat()})
    names = await display_names()
    weeks = [first_week + timedelta(weeks=n) for n in range(STATISTICS_WEEKS)]
    position = {week: n for n, week in enumerate(weeks)}

    def per_week(keep) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0] * len(weeks))
        for t in tallies:
            key = keep(t)
            if key is not None and _week(t.day) in position:
                out[key][position[_week(t.day)]] += t.count
        return out

    is_access = ("access.permitted", "access.denied")
    by_ministry = per_week(lambda t: t.ministry if t.entry_type in is_access else None)
    top_ministries = sorted(by_ministry, key=lambda m: -sum(by_ministry[m]))[:6]
    decisions = per_week(lambda t: t.entry_type if t.entry_type in is_access else None)
    withdrawals = per_week(lambda t: "w" if t.entry_type == "consent.withdrawn" else None)
    basis = defaultdict(int)
    for t in tallies:
        if t.entry_type == "access.permitted":
            basis[t.basis_kind] += t.count
    purposes = await queries.purpose_counts(db)
    labels = [w.isoformat() for w in weeks]
    basis_items = [(_("By consent"), basis["consent"]), (_("By law"), basis["authority"])]
    purpose_items = [(names.purpose(code), count) for code, count in purposes]
    decision_series = [
        charts.Series(_("Permitted"), tuple(decisions["access.permitted"])),
        charts.Series(_("Denied"), tuple(decisions["access.denied"])),
    ]
    ministry_series = [
        charts.Series(names.ministry(code), tuple(by_ministry[code])) for code in top_ministries
    ]
    withdrawal_series = [charts.Series(_("Consent withdrawals"), tuple(withdrawals["w"]))]
    table_note = _("The same numbers are in the table below.")
    return _render(
        request,
        "audit/statistics.html",
        session,
        weeks=labels,
        ministry_series=ministry_series,
        decision_series=decision_series,
        withdrawal_series=withdrawal_series,
        basis_items=basis_items,
        purpose_items=purpose_items,
        ministry_chart=charts.line_chart(
            "ministries",
            _("Accesses per ministry, by week"),
            _("One line per ministry (the six busiest).") + " " + table_note,
            labels,
            ministry_series,
        ),
        decision_chart=charts.line_chart(
            "decisions",
            _("Permits and denials, by week"),
            table_note,
            labels,
            decision_series,
        ),
        basis_chart=charts.bar_chart(
            "basis", _("Permitted accesses by consent and by law"), table_note, basis_items
        ),
        purpose_chart=charts.bar_chart(
            "purposes", _("Top purposes of access decisions"), table_note, purpose_items
        ),
        withdrawal_chart=charts.line_chart(
            "withdrawals", _("Consent withdrawals, by week"), table_note, labels, withdrawal_series
        ),
    )


async def anomalies_page(request: Request) -> Response:
    session = await _auditor(request)
    db = _services(request).ledger.db
    days_raw = request.query_params.get("days", "")
    days = int(days_raw) if days_raw.isdigit() and len(days_raw) < 5 else anomalies.DISPUTE_DAYS
    await queries.record_access(session.pseudonym, "anomalies", {"days": str(days)})
    now = datetime.now(UTC)
    accesses = await queries.consent_accesses(db)
    windows = await queries.consent_windows([a.consent_id for a in accesses])
    checked, consent_findings = anomalies.consent_outside_validity(accesses, windows)
    tallies = await queries.day_tallies(db, since=now.date() - timedelta(days=90))
    hidden = [h for h, _entry in await queries.hidden_entries(db)]
    registered = await queries.registered_systems()
    reporting = await queries.reporting_systems(db, registered)
    return _render(
        request,
        "audit/anomalies.html",
        session,
        names=await display_names(),
        checked=checked,
        consent_findings=consent_findings,
        spikes=anomalies.spikes(queries.daily_counts(tallies)),
        spike_factor=anomalies.SPIKE_FACTOR,
        spike_minimum=anomalies.SPIKE_MINIMUM,
        overdue=anomalies.overdue_reviews(hidden, await queries.latest_reviews(), now.date()),
        unfounded=anomalies.holdings_without_authority(await queries.holding_rows()),
        silent=anomalies.silent_systems(registered, reporting),
        registered=len(registered),
        disputes=anomalies.old_disputes(await queries.open_disputes(), now, days),
        days=days,
    )


async def hidden_page(request: Request) -> Response:
    session = await _auditor(request)
    await queries.record_access(session.pseudonym, "hidden", {})
    return await _hidden(request, session)


async def _hidden(
    request: Request, session: WebSession, error: int | None = None, status: int = 200
) -> Response:
    db = _services(request).ledger.db
    today = datetime.now(UTC).date()
    reviews: dict[int, list[HiddenReview]] = defaultdict(list)
    for review in await HiddenReview.all().order_by("-created_at", "-id"):
        reviews[review.entry_index].append(review)
    return _render(
        request,
        "audit/hidden.html",
        session,
        status=status,
        entries=await queries.hidden_entries(db),
        reviews=reviews,
        today=today,
        error=error,
        names=await display_names(),
    )


async def require_review(request: Request) -> Response:
    session = await _auditor(request)
    form = await request.form()
    await check_csrf(request, form)
    raw = request.path_params["index"]
    if not raw.isdigit() or len(raw) > 18:
        raise _not_found()
    index = int(raw)
    detail = await queries.entry_detail(_services(request).ledger.db, index)
    if detail is None or detail.hidden_until is None:
        raise _not_found()
    review_by = queries.parse_date(str(form.get("review_by", "")).strip())
    note = str(form.get("note", "")).strip()[:2000] or None
    if review_by is None:
        return await _hidden(request, session, error=index, status=422)
    await HiddenReview.create(
        entry_index=index, required_by=session.pseudonym, review_by=review_by, note=note
    )
    await queries.record_access(
        session.pseudonym, "hidden.review", {"index": str(index), "review_by": str(review_by)}
    )
    return RedirectResponse(f"/audit/hidden?reviewed={index}#entry-{index}", status_code=303)


async def disputes_page(request: Request) -> Response:
    session = await _auditor(request)
    status = request.query_params.get("status")
    status = status if status in ("open", "answered", "closed") else None
    await queries.record_access(session.pseudonym, "disputes", {"status": status or ""})
    found = Dispute.all().order_by("-created_at", "-id")
    if status:
        found = found.filter(status=status)
    now = datetime.now(UTC)
    return _render(
        request,
        "audit/disputes.html",
        session,
        disputes=[(d, (now - d.created_at).days) for d in await found.limit(500)],
        status_filter=status,
        names=await display_names(),
    )


async def verify_page(request: Request) -> Response:
    session = await _auditor(request)
    if request.method == "POST":
        form = await request.form()
        await check_csrf(request, form)
        running = await VerificationRun.filter(status="running").first()
        if running is None or not _is_alive(request.app, running.id):
            if running is not None:
                await VerificationRun.filter(id=running.id).update(
                    status="error", finished_at=datetime.now(UTC), report={"error": "interrupted"}
                )
            running = await start_verification(request.app, session.pseudonym)
        await queries.record_access(session.pseudonym, "verify", {"run": str(running.id)})
        return RedirectResponse(f"/audit/verify?run={running.id}", status_code=303)
    runs = await VerificationRun.all().order_by("-id").limit(20)
    return _render(request, "audit/verify.html", session, runs=runs)


def _tasks(app: Starlette) -> dict[int, asyncio.Task[None]]:
    tasks = getattr(app.state, "audit_verifications", None)
    if tasks is None:
        tasks = app.state.audit_verifications = {}
    return tasks


def _is_alive(app: Starlette, run_id: int) -> bool:
    task = _tasks(app).get(run_id)
    return task is not None and not task.done()


async def start_verification(app: Starlette, auditor: str) -> VerificationRun:
    """Record a new run and verify the whole ledger in a task of this process."""
    run = await VerificationRun.create(requested_by=auditor, status="running")
    tasks = _tasks(app)
    task = asyncio.create_task(_verify(app.state.services, run.id))
    tasks[run.id] = task
    task.add_done_callback(lambda _t: tasks.pop(run.id, None))
    return run


async def wait_for_verifications(app: Starlette) -> None:
    """Wait until every verification started in this process has finished (for tests
    and shutdown)."""
    tasks = list(_tasks(app).values())
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def _verify(services: Services, run_id: int) -> None:
    ledger = services.ledger
    updates: list[asyncio.Task[int]] = []

    def progress(done: int, total: int) -> None:
        # At most one progress write in flight; the final result is written anyway.
        if not updates or updates[-1].done():
            updates.append(
                asyncio.ensure_future(
                    VerificationRun.filter(id=run_id).update(checked=done, total=total)
                )
            )

    try:
        report = await verify_database(ledger.db, ledger.verifier, ledger.origin, progress=progress)
        with contextlib.suppress(Exception):
            await asyncio.gather(*updates)
        await VerificationRun.filter(id=run_id).update(
            status="ok" if report.ok else "failed",
            checked=report.entries,
            total=max(report.entries, report.tree_size),
            report={**vars(report), "summary": report.summary()},
            finished_at=datetime.now(UTC),
        )
    except Exception as exc:  # the run must end with a recorded state, whatever happened
        log.exception("verification run %s failed", run_id)
        await VerificationRun.filter(id=run_id).update(
            status="error", report={"error": str(exc)[:500]}, finished_at=datetime.now(UTC)
        )


async def access_log_page(request: Request) -> Response:
    session = await _auditor(request)
    await queries.record_access(session.pseudonym, "accesses", {})
    rows = await AuditAccess.all().order_by("-id").limit(200)
    return _render(request, "audit/access_log.html", session, rows=rows)


routes = [
    Route("/audit", overview, methods=["GET"]),
    Route("/audit/ledger", ledger_page, methods=["GET"]),
    Route("/audit/ledger/{index}", entry_page, methods=["GET"]),
    Route("/audit/statistics", statistics_page, methods=["GET"]),
    Route("/audit/anomalies", anomalies_page, methods=["GET"]),
    Route("/audit/hidden", hidden_page, methods=["GET"]),
    Route("/audit/hidden/{index}/review", require_review, methods=["POST"]),
    Route("/audit/disputes", disputes_page, methods=["GET"]),
    Route("/audit/verify", verify_page, methods=["GET", "POST"]),
    Route("/audit/accesses", access_log_page, methods=["GET"]),
]
