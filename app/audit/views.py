"""Audit portal pages for the privacy commissioner's office.

Every handler requires a signed-in auditor, records the look in the audit trail
(AuditAccess) and reads the ledger without writing to it. The only things an auditor
writes are review requests for hidden entries and verification runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from app.audit import anomalies, charts, export, queries, report
from app.audit.models import AuditAccess, HiddenReview, VerificationRun
from app.auth.csrf import check_csrf
from app.auth.models import Dispute, WebSession
from app.auth.sessions import require_person
from app.i18n import gettext as _
from app.portal.queries import names as display_names
from app.problems import Problem
from app.services import Services
from consent.models import Ministry, Purpose
from ledger.entry import ENTRY_TYPES
from ledger.verify import verify_database

log = logging.getLogger("onceonly.audit")

#: Weeks shown on the statistics page.
STATISTICS_WEEKS = report.STATISTICS_WEEKS


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
    """The entry's inclusion proof in the newest checkpoint (report.check_inclusion),
    with the root and the path in hex for the page."""
    proof = await report.check_inclusion(services.ledger, detail)
    shown: dict[str, object] = {"status": proof.status, "size": proof.size}
    if proof.reason is not None:
        shown["reason"] = proof.reason
    if proof.root_hash is not None:
        shown["root"] = proof.root_hash.hex()
        shown["path"] = [node.hex() for node in proof.path]
    return shown


async def statistics_page(request: Request) -> Response:
    session = await _auditor(request)
    db = _services(request).ledger.db
    figures = await report.statistics(db, datetime.now(UTC).date(), STATISTICS_WEEKS)
    first_week = figures.weeks[0]
    await queries.record_access(session.pseudonym, "statistics", {"since": first_week.isoformat()})
    names = await display_names()
    labels = [w.isoformat() for w in figures.weeks]
    basis = figures.basis
    basis_items = [(_("By consent"), basis["consent"]), (_("By law"), basis["authority"])]
    purpose_items = [(names.purpose(code), count) for code, count in figures.purposes]
    decision_series = [
        charts.Series(_("Permitted"), tuple(figures.decisions["access.permitted"])),
        charts.Series(_("Denied"), tuple(figures.decisions["access.denied"])),
    ]
    ministry_series = [
        charts.Series(names.ministry(code), tuple(figures.accesses[code]))
        for code in figures.busiest(6)
    ]
    withdrawal_series = [charts.Series(_("Consent withdrawals"), tuple(figures.withdrawals))]
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
    found = await report.anomaly_report(db, datetime.now(UTC), days)
    return _render(
        request,
        "audit/anomalies.html",
        session,
        names=await display_names(),
        checked=found.checked,
        consent_findings=found.consent_findings,
        spikes=found.spikes,
        spike_factor=anomalies.SPIKE_FACTOR,
        spike_minimum=anomalies.SPIKE_MINIMUM,
        overdue=found.overdue,
        unfounded=found.unfounded,
        silent=found.silent,
        registered=found.registered,
        disputes=found.disputes,
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
    reviews = await queries.reviews_by_entry()
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
        report = await verify_database(
            ledger.db, ledger.verifiers, ledger.origin, progress=progress
        )
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


async def export_page(request: Request) -> Response:
    """The evidence export form (GET); its "Count" button posts here (POST)."""
    session = await _auditor(request)
    if request.method == "GET":
        return await _export_form(request, session, {"format": "bundle"})
    form = await request.form()
    await check_csrf(request, form)
    values = _export_values(form)
    try:
        evidence = export.EvidenceSlice.from_params(values)
        export.check_format(values["format"])
        services = _services(request)
        found = await export.preview(
            export.LedgerView.of(services), evidence.selection(services.people)
        )
    except (ValueError, export.NothingPublished) as exc:
        return await _export_form(request, session, values, error=str(exc))
    trail = {**evidence.trail(services.people), "format": values["format"]}
    await queries.record_access(session.pseudonym, "export.count", trail)
    return await _export_form(request, session, values, preview=found)


async def export_download(request: Request) -> Response:
    """Stream the slice as a file; bad input gives the form again, and nothing else."""
    session = await _auditor(request)
    form = await request.form()
    await check_csrf(request, form)
    values = _export_values(form)
    services = _services(request)
    try:
        evidence = export.EvidenceSlice.from_params(values)
        fmt = export.check_format(values["format"])
        stream = export.export_stream(services, evidence, fmt)
        first = await anext(stream)  # the checkpoint is chosen: errors can still show
    except (ValueError, export.NothingPublished) as exc:
        return await _export_form(request, session, values, error=str(exc))
    trail = {**evidence.trail(services.people), "format": fmt}
    await queries.record_access(session.pseudonym, "export", trail)
    disposition = f'attachment; filename="{export.filename(evidence, fmt)}"'
    return StreamingResponse(
        _chain(first, stream),
        media_type=export.media_type(fmt),
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for piece in rest:
        yield piece


def _export_values(form: FormData) -> dict[str, str]:
    names = ("from", "to", "ministry", "system", "person", "format")
    return {name: str(form.get(name) or "").strip()[:300] for name in names}


async def _export_form(
    request: Request,
    session: WebSession,
    values: dict[str, str],
    *,
    error: str | None = None,
    preview: export.Preview | None = None,
) -> Response:
    return _render(
        request,
        "audit/export.html",
        session,
        status=422 if error else 200,
        values=values,
        error=error,
        preview=preview,
        ministries=await Ministry.all().order_by("code"),
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
    Route("/audit/export", export_page, methods=["GET", "POST"]),
    Route("/audit/export/download", export_download, methods=["POST"]),
]
