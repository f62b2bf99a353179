"""The OpenAPI 3.1 document of the ministry API, and its readable reference page.

Built from the same JSON Schemas the handlers validate with, so the document cannot
drift from what the API accepts.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.api import schemas
from ledger.entry import ENTRY_TYPES

PROBLEM_RESPONSE = {
    "description": "An RFC 9457 problem document",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
ERRORS = {
    "400": PROBLEM_RESPONSE,
    "401": PROBLEM_RESPONSE,
    "403": PROBLEM_RESPONSE,
    "404": PROBLEM_RESPONSE,
    "409": PROBLEM_RESPONSE,
    "413": PROBLEM_RESPONSE,
    "415": PROBLEM_RESPONSE,
    "422": PROBLEM_RESPONSE,
    "429": PROBLEM_RESPONSE,
    "503": PROBLEM_RESPONSE,
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retrying a POST with the same key returns the first answer and records "
    "nothing more.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]+$"},
}
CURSOR = {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}}
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 200},
}
CONSENT_ID = {"name": "consent_id", "in": "path", "required": True, "schema": schemas.UUID}
COMPACT_JWS = {
    "type": "string",
    "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
        },
    }


def _body(schema_name: str) -> dict[str, Any]:
    return {
        "description": "At most 64 KiB (1 MiB for holdings and batches); a larger body is "
        "refused with 413.",
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
        },
    }


def _op(
    summary: str,
    scope: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    post: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"oauth2": [scope]}],
        "responses": {**responses, **ERRORS},
    }
    params = list(parameters or [])
    if post:
        params.append(IDEMPOTENCY_KEY)
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = _body(body)
    return operation


AUDIT_SCHEMAS = {
    "AuditEntry": schemas.AUDIT_ENTRY,
    "AuditEntryPage": schemas.AUDIT_ENTRY_PAGE,
    "AuditEntryDetail": schemas.AUDIT_ENTRY_DETAIL,
    "AuditStatistics": schemas.AUDIT_STATISTICS,
    "AuditAnomalies": schemas.AUDIT_ANOMALIES,
    "HiddenEntriesPage": schemas.HIDDEN_PAGE,
    "DisputesPage": schemas.DISPUTES_PAGE,
}


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _export_media_types() -> dict[str, Any]:
    """The export's media types (parameters left out), as app.audit.export answers them."""
    from app.audit import export

    types = {export.media_type(fmt).split(";")[0] for fmt in export.FORMATS}
    return {media: {"schema": {"type": "string"}} for media in sorted(types)}


def audit_paths() -> dict[str, Any]:
    """The audit API (app/api/audit.py): GET only, scope ``audit``."""
    day = {**schemas.DATE, "format": "date"}
    filters = [
        *(
            _query(name, schemas.CODE)
            for name in ("ministry", "system", "purpose", "basis_ref", "query_id", "case_id")
        ),
        _query("bulk_job_id", schemas.CODE),
        _query("basis_kind", {"enum": ["consent", "authority"]}),
        _query("entry_type", {"enum": sorted(ENTRY_TYPES)}),
        _query("since", day, "first day (UTC) of the period"),
        _query("until", day, "last day (UTC) of the period, not before since"),
        _query("pseudonym", schemas.PSEUDONYM, "a person's pseudonym (not with person_id)"),
        _query(
            "person_id",
            {"type": "string", "pattern": "^[!-~]{1,128}$"},
            "a person's identifier, pseudonymised on arrival and never recorded",
        ),
    ]
    return {
        "/api/v1/audit/entries": {
            "get": _op(
                "The ledger explorer: entries matching every filter given, newest first",
                "audit",
                {"200": _json("AuditEntryPage", "A page of decoded entries")},
                parameters=[*filters, CURSOR, LIMIT],
            ),
        },
        "/api/v1/audit/entries/{index}": {
            "get": _op(
                "One entry decoded, with its hidden status, review requests and its "
                "inclusion proof in the newest checkpoint (checked by the server too)",
                "audit",
                {"200": _json("AuditEntryDetail", "The entry and its proof")},
                parameters=[
                    {
                        "name": "index",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
            ),
        },
        "/api/v1/audit/statistics": {
            "get": _op(
                "The figures behind the portal's charts, by week (Monday, UTC)",
                "audit",
                {"200": _json("AuditStatistics", "Counts by week")},
                parameters=[_query("weeks", {"type": "integer", "minimum": 1, "maximum": 104})],
            ),
        },
        "/api/v1/audit/anomalies": {
            "get": _op(
                "Every anomaly detector's findings and counts",
                "audit",
                {"200": _json("AuditAnomalies", "The findings")},
                parameters=[
                    _query(
                        "days",
                        {"type": "integer", "minimum": 0, "maximum": 9999},
                        "report disputes open longer than this many days (30)",
                    )
                ],
            ),
        },
        "/api/v1/audit/hidden": {
            "get": _op(
                "Every entry ever hidden from its person, newest first, with review requests",
                "audit",
                {"200": _json("HiddenEntriesPage", "A page of hidden entries")},
                parameters=[CURSOR, LIMIT],
            ),
        },
        "/api/v1/audit/disputes": {
            "get": _op(
                "The residents' questions about entries, newest first",
                "audit",
                {"200": _json("DisputesPage", "A page of disputes")},
                parameters=[
                    _query("status", {"enum": ["open", "answered", "closed"]}),
                    CURSOR,
                    LIMIT,
                ],
            ),
        },
        "/api/v1/audit/export": {
            "get": _op(
                "A streamed evidence export of a slice of the ledger: entries, proofs and "
                "cosigned checkpoints (bundle), or CSV, or JSON Lines",
                "audit",
                {
                    "200": {
                        "description": "The export, as an attachment",
                        "content": _export_media_types(),
                    }
                },
                parameters=[
                    _query("from", day, "first day (UTC) of the slice"),
                    _query("to", day, "last day (UTC) of the slice"),
                    _query("ministry", schemas.CODE),
                    _query("system", schemas.CODE),
                    _query(
                        "person",
                        {"type": "string", "minLength": 1, "maxLength": 200},
                        "a person's identifier, pseudonymised on arrival and never recorded",
                    ),
                    _query("format", {"enum": ["bundle", "csv", "jsonl"]}),
                ],
            ),
        },
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1``."""
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Onceonly ministry API",
            "version": "1.0.0",
            "description": "Register holdings, ask people for consent, and ask before "
            "sharing: every access decision is recorded in the verifiable ledger before "
            "it is answered. Errors are RFC 9457 problem documents.",
        },
        "servers": [{"url": base_url}],
        "components": {
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Client credentials with private_key_jwt or "
                    "client_secret_basic; JWT access tokens (RFC 9068).",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": f"{base_url}/oauth/token",
                            "scopes": {
                                "holdings:write": "Declare holdings",
                                "holdings:read": "Read own holdings",
                                "consent:request": "Ask people for consent",
                                "consent:read": "Read consents and receipts",
                                "access:check": "Ask for access decisions",
                                "notifications:read": "Read and acknowledge notices",
                                "audit": "Read the whole ledger and the audit reports "
                                "(the commissioner's clients; never with a scope that writes)",
                            },
                        }
                    },
                }
            },
            "schemas": {
                "HoldingsRequest": schemas.HOLDINGS_REQUEST,
                "HoldingsResult": schemas.HOLDINGS_RESULT,
                "HoldingsPage": schemas.HOLDINGS_PAGE,
                "ConsentRequest": schemas.CONSENT_REQUEST,
                "Consent": schemas.CONSENT,
                "ConsentPage": schemas.CONSENT_PAGE,
                "AccessCheck": schemas.ACCESS_CHECK,
                "BatchAccessCheck": schemas.BATCH_ACCESS_CHECK,
                "Decision": schemas.DECISION,
                "BatchDecision": schemas.BATCH_DECISION,
                "Notification": schemas.NOTIFICATION,
                "NotificationsPage": schemas.NOTIFICATIONS_PAGE,
                "Problem": schemas.PROBLEM,
                **AUDIT_SCHEMAS,
            },
        },
        "paths": {
            "/api/v1/holdings": {
                "post": _op(
                    "Declare holdings of the calling system (up to 1,000, all or none)",
                    "holdings:write",
                    {"200": _json("HoldingsResult", "How many were created and updated")},
                    body="HoldingsRequest",
                    post=True,
                ),
                "get": _op(
                    "List the calling system's holdings",
                    "holdings:read",
                    {"200": _json("HoldingsPage", "A page of holdings")},
                    parameters=[CURSOR, LIMIT],
                ),
            },
            "/api/v1/consent-requests": {
                "post": _op(
                    "Ask a person for consent; send them to request_url",
                    "consent:request",
                    {
                        "201": {
                            **_json("Consent", "The requested consent"),
                            "headers": {
                                "Location": {
                                    "description": "Where to read the consent",
                                    "required": True,
                                    "schema": {"type": "string", "pattern": "^/api/v1/consents/"},
                                }
                            },
                        }
                    },
                    body="ConsentRequest",
                    post=True,
                ),
            },
            "/api/v1/consents": {
                "get": _op(
                    "List consents given to the calling ministry",
                    "consent:read",
                    {"200": _json("ConsentPage", "A page of consents")},
                    parameters=[
                        CURSOR,
                        LIMIT,
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "enum": ["requested", "active", "refused", "withdrawn", "expired"]
                            },
                        },
                    ],
                ),
            },
            "/api/v1/consents/{consent_id}": {
                "get": _op(
                    "Read a consent the calling ministry receives or is a source of",
                    "consent:read",
                    {"200": _json("Consent", "The consent")},
                    parameters=[CONSENT_ID],
                ),
            },
            "/api/v1/consents/{consent_id}/receipt": {
                "get": _op(
                    "The signed consent receipt (JWS, ES256; keys at /api/v1/jwks)",
                    "consent:read",
                    {
                        "200": {
                            "description": "Compact JWS",
                            "content": {"application/jwt": {"schema": COMPACT_JWS}},
                        }
                    },
                    parameters=[CONSENT_ID],
                ),
            },
            "/api/v1/access-checks": {
                "post": _op(
                    "May the calling ministry share these categories of this person with "
                    "the recipient for this purpose? Recorded in the ledger before it answers.",
                    "access:check",
                    {"200": _json("Decision", "The recorded decision")},
                    body="AccessCheck",
                    post=True,
                ),
            },
            "/api/v1/access-checks/batch": {
                "post": _op(
                    "The same question for up to 1,000 persons (one bulk job, one entry each)",
                    "access:check",
                    {"200": _json("BatchDecision", "The recorded decisions")},
                    body="BatchAccessCheck",
                    post=True,
                ),
            },
            "/api/v1/notifications": {
                "get": _op(
                    "Revocation notices for the calling ministry (also pushed by webhook)",
                    "notifications:read",
                    {"200": _json("NotificationsPage", "A page of notices")},
                    parameters=[
                        CURSOR,
                        LIMIT,
                        {
                            "name": "unacknowledged",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": ["true", "false"]},
                        },
                    ],
                ),
            },
            "/api/v1/notifications/{notification_id}/ack": {
                "post": _op(
                    "Acknowledge a notice",
                    "notifications:read",
                    {"200": _json("Notification", "The acknowledged notice")},
                    parameters=[
                        {
                            "name": "notification_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    ],
                ),
            },
            **audit_paths(),
        },
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.state.settings.base_url))


async def reference(request: Request) -> Response:
    document = openapi_document(request.app.state.settings.base_url)
    return request.app.state.templates.TemplateResponse(
        request,
        "api/reference.html",
        {"doc": document, "settings": request.app.state.settings},
    )


routes = [
    Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    Route("/api/v1/docs", reference, methods=["GET"]),
]
