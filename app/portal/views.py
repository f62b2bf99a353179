"""Citizen portal pages: my data, requests, consents, activity, alerts.

Every handler starts from the signed-in person's session and reads only through their
pseudonym; an id in a URL that is not theirs is a 404, the same as one that does not
exist.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.auth.csrf import check_csrf
from app.auth.models import AlertSubscription, Dispute, WebSession
from app.auth.sessions import current_session, require_person
from app.i18n import current_language
from app.portal import queries
from app.portal.describe import describe
from app.problems import Problem
from app.reference_data import CONSENT_OFFERS
from app.services import Services
from consent.errors import Conflict, NotFound
from consent.lifecycle import answer_request, give_standing, return_location, withdraw
from consent.models import Consent, ConsentStatus, Ministry, Purpose
from consent.receipts import signed_receipt
from ledger.entry import decode_entry
from ledger.receipts import personal_extra

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{2,63}$")


def _services(request: Request) -> Services:
    return request.app.state.services


def _render(
    request: Request, template: str, session: WebSession | None, status: int = 200, **context
) -> Response:
    return request.app.state.templates.TemplateResponse(
        request, template, {"session": session, **context}, status_code=status
    )


def _not_found() -> Problem:
    return Problem(404, "not-found", "Not found", "No such page.")


async def home(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return _render(request, "portal/welcome.html", None)
    if session.role == "auditor":
        return RedirectResponse("/audit", status_code=303)
    services = _services(request)
    consents = await queries.consents_of(session.pseudonym)
    return _render(
        request,
        "portal/home.html",
        session,
        holdings=await queries.holdings_by_ministry(session.pseudonym),
        diagram=flow_diagram(*await queries.flows(services.ledger.db, session.pseudonym)),
        names=await queries.names(),
        active=consents["active"],
        waiting=consents["requested"],
    )


def flow_diagram(flows: list[queries.Flow], capped: bool = False) -> dict[str, object]:
    """Positions for the picture of flows: sources on the left, recipients on the right."""
    sources = sorted({f.source for f in flows})
    recipients = sorted({f.recipient for f in flows})
    rows = max(len(sources), len(recipients), 1)

    def y(i: int) -> int:
        return 30 + i * 56

    return {
        "flows": flows,
        "capped": capped,
        "window": queries.FLOW_WINDOW,
        "height": 30 + rows * 56,
        "sources": [(code, y(i)) for i, code in enumerate(sources)],
        "recipients": [(code, y(i)) for i, code in enumerate(recipients)],
        "lines": [(f, y(sources.index(f.source)), y(recipients.index(f.recipient))) for f in flows],
    }


async def requests_page(request: Request) -> Response:
    session = await require_person(request)
    consents = await queries.consents_of(session.pseudonym)
    return _render(
        request,
        "portal/requests.html",
        session,
        waiting=consents["requested"],
        names=await queries.names(),
    )


async def _own_consent(session: WebSession, raw_id: str) -> Consent:
    try:
        key = uuid.UUID(raw_id)
    except ValueError:
        raise _not_found() from None
    consent = await Consent.get_or_none(id=key, pseudonym=session.pseudonym).prefetch_related(
        "recipient", "purpose"
    )
    if consent is None:
        raise _not_found()
    return consent


async def request_page(request: Request) -> Response:
    session = await require_person(request)
    consent = await _own_consent(session, request.path_params["consent_id"])
    if request.method == "POST":
        form = await request.form()
        await check_csrf(request, form)
        choice = form.get("answer")
        if choice not in ("approve", "refuse"):
            raise Problem(400, "bad-request", "Bad request", "Choose approve or refuse.")
        try:
            consent, _ = await answer_request(
                _services(request).ledger, session.pseudonym, consent.id, choice == "approve"
            )
        except (Conflict, NotFound):
            consent = await _own_consent(session, str(consent.id))
        return RedirectResponse(f"/requests/{consent.id}/done", status_code=303)
    if consent.status != ConsentStatus.REQUESTED:
        return RedirectResponse(f"/requests/{consent.id}/done", status_code=303)
    return _render(
        request, "portal/request.html", session, consent=consent, names=await queries.names()
    )


async def request_done(request: Request) -> Response:
    session = await require_person(request)
    consent = await _own_consent(session, request.path_params["consent_id"])
    return _render(
        request,
        "portal/request_done.html",
        session,
        consent=consent,
        back=return_location(consent),
        names=await queries.names(),
    )


async def consents_page(request: Request) -> Response:
    session = await require_person(request)
    return _render(
        request,
        "portal/consents.html",
        session,
        consents=await queries.consents_of(session.pseudonym),
        names=await queries.names(),
        offers=_offers(),
    )


def _offers() -> list[dict[str, object]]:
    lang = current_language()
    return [
        {
            "code": code,
            "recipient": recipient,
            "sources": sources,
            "categories": categories,
            "purpose": purpose,
            "days": days,
            "notice": notice_fr if lang == "fr" else notice_en,
        }
        for code, recipient, sources, categories, purpose, days, notice_en, notice_fr in (
            CONSENT_OFFERS
        )
    ]


async def give_offer(request: Request) -> Response:
    session = await require_person(request)
    form = await request.form()
    await check_csrf(request, form)
    offer = next((o for o in _offers() if o["code"] == request.path_params["code"]), None)
    if offer is None:
        raise _not_found()
    consent, _ = await give_standing(
        _services(request).ledger,
        session.pseudonym,
        str(offer["recipient"]),
        frozenset(offer["sources"]),  # type: ignore[arg-type]
        frozenset(offer["categories"]),  # type: ignore[arg-type]
        str(offer["purpose"]),
        int(offer["days"]),  # type: ignore[call-overload]
        str(offer["notice"]),
    )
    return RedirectResponse(f"/consents?given={consent.id}", status_code=303)


async def withdraw_page(request: Request) -> Response:
    session = await require_person(request)
    consent = await _own_consent(session, request.path_params["consent_id"])
    if request.method == "POST":
        form = await request.form()
        await check_csrf(request, form)
        try:
            await withdraw(_services(request).ledger, session.pseudonym, consent.id)
        except Conflict:
            pass  # already withdrawn or expired: the list shows its state
        return RedirectResponse(f"/consents?withdrawn={consent.id}", status_code=303)
    if consent.status != ConsentStatus.ACTIVE:
        return RedirectResponse("/consents", status_code=303)
    return _render(
        request, "portal/withdraw.html", session, consent=consent, names=await queries.names()
    )


async def consent_receipt(request: Request) -> Response:
    session = await require_person(request)
    consent = await _own_consent(session, request.path_params["consent_id"])
    services = _services(request)
    key = services.receipt_key
    token = await signed_receipt(
        consent, services.settings.base_url, key.private_key, key.kid, current_language()
    )
    return Response(
        token,
        media_type="application/jwt",
        headers={"Content-Disposition": f'attachment; filename="consent-{consent.id}.jwt"'},
    )


def _date_param(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


async def activity_page(request: Request) -> Response:
    session = await require_person(request)
    services = _services(request)
    params = request.query_params
    before_raw = params.get("before", "")
    before = int(before_raw) if before_raw.isdigit() and len(before_raw) < 19 else None
    filters = {
        "ministry": params.get("ministry") or None,
        "purpose": params.get("purpose") or None,
        "basis": params.get("basis") if params.get("basis") in ("consent", "authority") else None,
        "since": _date_param(request, "since"),
        "until": _date_param(request, "until"),
    }
    rows = await queries.visible_entries(
        services.ledger.db, session.pseudonym, before=before, limit=queries.PAGE_SIZE + 1, **filters
    )
    more = len(rows) > queries.PAGE_SIZE
    rows = rows[: queries.PAGE_SIZE]
    names = await queries.names()
    dates = {
        k: v.date().isoformat() for k, v in (await queries.consent_dates(session.pseudonym)).items()
    }
    items = [(row, describe(row.entry, names, dates)) for row in rows]
    next_query = None
    if more and rows:
        kept = [(k, v) for k, v in params.multi_items() if k != "before"]
        next_query = urlencode([*kept, ("before", str(rows[-1].index))])
    return _render(
        request,
        "portal/activity.html",
        session,
        items=items,
        names=names,
        filters=filters,
        ministries=await Ministry.all(),
        purposes=await Purpose.all(),
        next_query=next_query,
    )


async def entry_receipt(request: Request) -> Response:
    """A tlog-proof of one of the person's entries; its extra line carries the entry and
    the opening, so the person can show it is about them (and recompute the leaf)."""
    session = await require_person(request)
    index = _index(request)
    services = _services(request)
    found = await queries.own_entry(services.ledger.db, session.pseudonym, index)
    if found is None:
        raise _not_found()
    leaf, opening = found
    extra = personal_extra(leaf, opening, session.pseudonym, services.ledger.vkey)
    proof = await services.ledger.receipt(index, extra=extra)
    return Response(
        proof,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="onceonly-receipt-{index}.txt"'},
    )


async def verify_help(request: Request) -> Response:
    session = await current_session(request)
    return _render(request, "portal/verify.html", session, vkey=_services(request).ledger.vkey)


def _index(request: Request) -> int:
    raw = request.path_params["index"]
    if not raw.isdigit() or len(raw) > 18:
        raise _not_found()
    return int(raw)


async def question_page(request: Request) -> Response:
    session = await require_person(request)
    index = _index(request)
    services = _services(request)
    found = await queries.own_entry(services.ledger.db, session.pseudonym, index)
    if found is None:
        raise _not_found()
    entry = decode_entry(found[0])
    names = await queries.names()
    sentence = describe(entry, names, {})
    error = None
    if request.method == "POST":
        form = await request.form()
        await check_csrf(request, form)
        message = str(form.get("message", "")).strip()
        if not 1 <= len(message) <= 4000:
            error = "empty"
        else:
            await Dispute.create(
                pseudonym=session.pseudonym,
                entry_index=index,
                ministry=entry.actor_org,
                message=message,
            )
            return RedirectResponse(f"/activity?questioned={index}", status_code=303)
    return _render(
        request,
        "portal/question.html",
        session,
        status=422 if error else 200,
        index=index,
        sentence=sentence,
        error=error,
    )


async def alerts_page(request: Request) -> Response:
    session = await require_person(request)
    subscription = await AlertSubscription.get_or_none(pseudonym=session.pseudonym)
    error = None
    if request.method == "POST":
        form = await request.form()
        await check_csrf(request, form)
        if form.get("action") == "stop":
            await AlertSubscription.filter(pseudonym=session.pseudonym).delete()
            return RedirectResponse("/alerts?stopped=1", status_code=303)
        email = str(form.get("email", "")).strip()
        if not EMAIL.match(email):
            error = "email"
        else:
            size = await _services(request).ledger.size()
            await AlertSubscription.update_or_create(
                pseudonym=session.pseudonym,
                defaults={
                    "email": email,
                    "language": current_language(),
                    "last_notified_index": size - 1,
                },
            )
            return RedirectResponse("/alerts?saved=1", status_code=303)
    return _render(
        request,
        "portal/alerts.html",
        session,
        status=422 if error else 200,
        subscription=subscription,
        error=error,
    )


routes = [
    Route("/", home, methods=["GET"], name="home"),
    Route("/requests", requests_page, methods=["GET"]),
    Route("/requests/{consent_id}", request_page, methods=["GET", "POST"]),
    Route("/requests/{consent_id}/done", request_done, methods=["GET"]),
    Route("/consents", consents_page, methods=["GET"]),
    Route("/consents/offers/{code}", give_offer, methods=["POST"]),
    Route("/consents/{consent_id}/withdraw", withdraw_page, methods=["GET", "POST"]),
    Route("/consents/{consent_id}/receipt", consent_receipt, methods=["GET"]),
    Route("/activity", activity_page, methods=["GET"]),
    Route("/activity/{index}/receipt", entry_receipt, methods=["GET"]),
    Route("/activity/{index}/question", question_page, methods=["GET", "POST"]),
    Route("/verify", verify_help, methods=["GET"]),
    Route("/alerts", alerts_page, methods=["GET", "POST"]),
]
