"""Handlers of the ministry API: parse, authorise, call the consent domain, answer.

Every call needs a bearer access token with the capability's scope; the calling
ministry and system come from the token, never from the body, so no ministry can act
as another. Access checks are rate-limited per client (app.ratelimit), one per person
of a batch.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tortoise.expressions import Q

from app.api import schemas
from app.api.edge import (
    MAX_BATCH_BODY,
    domain_problem,
    idempotent,
    next_cursor,
    page_params,
    parse_date,
    parse_time,
    read_json,
)
from app.oauth.guard import require
from app.problems import Problem
from app.ratelimit import ACCESS_CHECKS, enforce
from app.services import Services
from consent.access import AccessCheck, CheckTerms, Outcome, check_access, new_bulk_job_id
from consent.errors import ConsentError
from consent.holdings import HoldingDeclaration, register_holdings
from consent.identity import Actor
from consent.lifecycle import ConsentTerms, create_request
from consent.models import Consent, ConsentStatus, Holding, Notification
from consent.receipts import signed_receipt
from ledger.sequencer import Appended


def _services(request: Request) -> Services:
    return request.app.state.services


def _actor(token: Any) -> Actor:
    return Actor(token.ministry, token.system, token.client_id)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _ledger_ref(appended: Appended) -> dict[str, Any]:
    return {
        "index": appended.index,
        "leaf_hash": base64.b64encode(appended.leaf_hash).decode(),
        "tree_size": appended.tree_size,
        "receipt_url": f"/ledger/receipt/{appended.index}",
    }


async def post_holdings(request: Request) -> Response:
    token = await require(request, "holdings:write")
    body = await read_json(request, schemas.HOLDINGS_REQUEST, MAX_BATCH_BODY)

    async def run() -> Response:
        items = [
            HoldingDeclaration(h["person_id"], h["category"], h.get("authority"), h["retention"])
            for h in body["holdings"]
        ]
        try:
            counts = await register_holdings(_services(request).people, _actor(token), items)
        except ConsentError as exc:
            raise domain_problem(exc) from exc
        return JSONResponse(counts, status_code=200)

    return await idempotent(request, token.client_id, run)


async def list_holdings(request: Request) -> Response:
    token = await require(request, "holdings:read")
    after, limit = page_params(request)
    query = Holding.filter(system__code=token.system).order_by("id")
    if after is not None:
        query = query.filter(id__gt=after)
    rows = await query.limit(limit + 1).prefetch_related("system")
    items = [
        {
            "id": h.id,
            "system": h.system.code,
            "category": h.category_id,  # type: ignore[attr-defined]
            "authority": h.authority_id,  # type: ignore[attr-defined]
            "retention": h.retention,
            "registered_at": _iso(h.registered_at),
        }
        for h in rows[:limit]
    ]
    more = len(rows) > limit
    return JSONResponse(
        {"items": items, "next_cursor": next_cursor(items[-1]["id"] if more else None)}
    )


async def post_consent_request(request: Request) -> Response:
    token = await require(request, "consent:request")
    body = await read_json(request, schemas.CONSENT_REQUEST)
    now = datetime.now(UTC)
    terms = ConsentTerms(
        person_id=body["person_id"],
        sources=frozenset(body["sources"]),
        categories=frozenset(body["categories"]),
        purpose=body["purpose"],
        valid_from=parse_time(body["valid_from"], "valid_from") if "valid_from" in body else now,
        valid_until=parse_time(body["valid_until"], "valid_until"),
        one_time=body.get("one_time", False),
        notice_text=body["notice_text"],
        return_url=body["return_url"],
        state=body.get("state"),
        answer_by=parse_time(body["answer_by"], "answer_by") if "answer_by" in body else None,
    )

    async def run() -> Response:
        services = _services(request)
        try:
            consent, appended = await create_request(
                services.ledger, services.people, _actor(token), terms, now=now
            )
        except ConsentError as exc:
            raise domain_problem(exc) from exc
        document = consent_document(consent, services, appended)
        return JSONResponse(document, status_code=201, headers=_location(document))

    return await idempotent(request, token.client_id, run, _location)


def _location(document: dict[str, Any]) -> dict[str, str]:
    return {"Location": f"/api/v1/consents/{document['id']}"}


def consent_document(
    consent: Consent, services: Services, appended: Appended | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": str(consent.id),
        "status": str(consent.status),
        "recipient": consent.recipient.code,
        "sources": list(consent.sources),
        "categories": list(consent.categories),
        "purpose": consent.purpose_id,  # type: ignore[attr-defined]
        "one_time": consent.one_time,
        "used": consent.used_at is not None,
        "valid_from": _iso(consent.valid_from),
        "valid_until": _iso(consent.valid_until),
        "notice_hash": consent.notice_hash,
        "created_at": _iso(consent.created_at),
        "decided_at": _iso(consent.decided_at),
        "withdrawn_at": _iso(consent.withdrawn_at),
        "answer_by": _iso(consent.request_expires_at),
    }
    if consent.status == ConsentStatus.REQUESTED:
        document["request_url"] = f"{services.settings.base_url}/requests/{consent.id}"
    if appended is not None:
        document["ledger"] = _ledger_ref(appended)
    return document


async def _visible_consent(request: Request, token: Any) -> Consent:
    """A consent the calling ministry may see: it is the recipient or a source."""
    try:
        key = uuid.UUID(request.path_params["consent_id"])
    except ValueError:
        raise Problem(404, "not-found", "Not found", "No such consent.") from None
    consent = await Consent.get_or_none(id=key).prefetch_related("recipient", "purpose")
    if consent is None or (
        consent.recipient.code != token.ministry and token.ministry not in consent.sources
    ):
        raise Problem(404, "not-found", "Not found", "No such consent.")
    return consent


async def get_consent(request: Request) -> Response:
    token = await require(request, "consent:read")
    consent = await _visible_consent(request, token)
    return JSONResponse(consent_document(consent, _services(request)))


async def list_consents(request: Request) -> Response:
    token = await require(request, "consent:read")
    after, limit = page_params(request, _is_consent_position)
    status = request.query_params.get("status")
    if status is not None and status not in {s.value for s in ConsentStatus}:
        raise Problem(
            400,
            "validation",
            "Validation failed",
            "status must be requested, active, refused, withdrawn or expired.",
            errors=[{"field": "status", "message": "unknown status"}],
        )
    # Keyset pagination over (created_at, id): stays fast however deep the page.
    query = Consent.filter(recipient__code=token.ministry).order_by("created_at", "id")
    if status:
        query = query.filter(status=status)
    if after is not None:
        moment, last_id = datetime.fromisoformat(after[0]), uuid.UUID(after[1])
        query = query.filter(Q(created_at__gt=moment) | Q(created_at=moment, id__gt=last_id))
    rows = await query.limit(limit + 1).prefetch_related("recipient")
    services = _services(request)
    items = [consent_document(c, services) for c in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    position = [last.created_at.isoformat(), str(last.id)] if last else None
    return JSONResponse({"items": items, "next_cursor": next_cursor(position)})


def _is_consent_position(value: Any) -> bool:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        return False
    try:
        moment = datetime.fromisoformat(value[0])
        uuid.UUID(value[1])
        # This API's cursors hold aware moments that convert to UTC, as the database needs.
        if moment.tzinfo is None:
            return False
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return True


async def get_receipt(request: Request) -> Response:
    token = await require(request, "consent:read")
    consent = await _visible_consent(request, token)
    services = _services(request)
    key = services.receipt_key
    return Response(
        await signed_receipt(consent, services.settings.base_url, key.private_key, key.kid),
        media_type="application/jwt",
        headers={"Content-Disposition": f'attachment; filename="consent-{consent.id}.jwt"'},
    )


async def receipt_keys(request: Request) -> Response:
    # Every receipt key whose receipts still verify (after a rotation), current first.
    return JSONResponse(_services(request).receipt_jwks())


def _terms(body: dict[str, Any]) -> CheckTerms:
    return CheckTerms(
        recipient=body["recipient"],
        categories=frozenset(body["categories"]),
        purpose=body["purpose"],
        authority=body.get("authority"),
        consent_id=body.get("consent_id"),
        case_id=body.get("case_id"),
        hidden_until=parse_date(body["hidden_until"], "hidden_until")
        if "hidden_until" in body
        else None,
        hidden_reason=body.get("hidden_reason"),
    )


def _decision_document(outcome: Outcome) -> dict[str, Any]:
    decision = outcome.decision
    return {
        "query_id": outcome.query_id,
        "decision": "permit" if decision.permit else "deny",
        "basis": {"kind": decision.basis_kind, "ref": decision.basis_ref},
        "reasons": list(decision.reasons),
        "ledger": _ledger_ref(outcome.appended),
    }


async def post_access_check(request: Request) -> Response:
    token = await require(request, "access:check")
    enforce(request, ACCESS_CHECKS, token.client_id)
    body = await read_json(request, schemas.ACCESS_CHECK)
    terms = _terms(body)

    async def run() -> Response:
        services = _services(request)
        try:
            outcomes = await check_access(
                services.ledger,
                services.people,
                _actor(token),
                terms,
                [AccessCheck(body["person_id"], body["query_id"])],
            )
        except ConsentError as exc:
            raise domain_problem(exc) from exc
        request.app.state.metrics.count_decisions(o.decision for o in outcomes)
        return JSONResponse(_decision_document(outcomes[0]))

    return await idempotent(request, token.client_id, run)


async def post_access_check_batch(request: Request) -> Response:
    token = await require(request, "access:check")
    body = await read_json(request, schemas.BATCH_ACCESS_CHECK, MAX_BATCH_BODY)
    # A batch spends one access check of the client's rate per person.
    enforce(request, ACCESS_CHECKS, token.client_id, cost=len(body["persons"]))
    terms = _terms(body)
    checks = [AccessCheck(p["person_id"], p["query_id"]) for p in body["persons"]]

    async def run() -> Response:
        services = _services(request)
        job = new_bulk_job_id()
        try:
            outcomes = await check_access(
                services.ledger, services.people, _actor(token), terms, checks, bulk_job_id=job
            )
        except ConsentError as exc:
            raise domain_problem(exc) from exc
        request.app.state.metrics.count_decisions(o.decision for o in outcomes)
        return JSONResponse(
            {"bulk_job_id": job, "results": [_decision_document(o) for o in outcomes]}
        )

    return await idempotent(request, token.client_id, run)


def _notification_document(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "event": n.event,
        "consent_id": str(n.consent_id),  # type: ignore[attr-defined]
        "payload": n.payload,
        "created_at": _iso(n.created_at),
        "acknowledged_at": _iso(n.acknowledged_at),
    }


async def list_notifications(request: Request) -> Response:
    token = await require(request, "notifications:read")
    after, limit = page_params(request)
    unacknowledged = request.query_params.get("unacknowledged")
    if unacknowledged not in (None, "true", "false"):
        raise Problem(
            400,
            "validation",
            "Validation failed",
            "unacknowledged must be true or false.",
            errors=[{"field": "unacknowledged", "message": "must be true or false"}],
        )
    query = Notification.filter(ministry__code=token.ministry).order_by("id")
    if unacknowledged == "true":
        query = query.filter(acknowledged_at__isnull=True)
    if after is not None:
        query = query.filter(id__gt=after)
    rows = await query.limit(limit + 1)
    items = [_notification_document(n) for n in rows[:limit]]
    more = len(rows) > limit
    return JSONResponse(
        {"items": items, "next_cursor": next_cursor(items[-1]["id"] if more else None)}
    )


async def acknowledge_notification(request: Request) -> Response:
    token = await require(request, "notifications:read")
    raw = request.path_params["notification_id"]
    notification = None
    if raw.isascii() and raw.isdigit() and len(raw) < 19:
        notification = await Notification.get_or_none(id=int(raw), ministry__code=token.ministry)
    if notification is None:
        raise Problem(404, "not-found", "Not found", "No such notification.")
    if notification.acknowledged_at is None:
        notification.acknowledged_at = datetime.now(UTC)
        notification.next_attempt_at = None
        await notification.save(update_fields=["acknowledged_at", "next_attempt_at"])
    return JSONResponse(_notification_document(notification))


routes = [
    Route("/api/v1/holdings", post_holdings, methods=["POST"]),
    Route("/api/v1/holdings", list_holdings, methods=["GET"]),
    Route("/api/v1/consent-requests", post_consent_request, methods=["POST"]),
    Route("/api/v1/consents", list_consents, methods=["GET"]),
    Route("/api/v1/consents/{consent_id}", get_consent, methods=["GET"]),
    Route("/api/v1/consents/{consent_id}/receipt", get_receipt, methods=["GET"]),
    Route("/api/v1/jwks", receipt_keys, methods=["GET"]),
    Route("/api/v1/access-checks", post_access_check, methods=["POST"]),
    Route("/api/v1/access-checks/batch", post_access_check_batch, methods=["POST"]),
    Route("/api/v1/notifications", list_notifications, methods=["GET"]),
    Route(
        "/api/v1/notifications/{notification_id}/ack", acknowledge_notification, methods=["POST"]
    ),
]
