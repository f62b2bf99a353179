"""JSON Schemas (2020-12) of the API's request and response bodies.

One source of truth: requests are validated against these, and the OpenAPI 3.1
document embeds them.
"""

from __future__ import annotations

from typing import Any

CODE = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}
#: The caller's own references, kept in ledger columns of 64 characters.
REFERENCE = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"}
#: Free text: anything but NUL, which PostgreSQL cannot store.
TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}
PERSON_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": "^[!-~]+$",
    "description": "The person's provincial digital identity identifier; pseudonymised "
    "on arrival and never stored.",
}
UUID = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}
DATE_TIME = {
    "type": "string",
    "maxLength": 40,
    "pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
    "description": "RFC 3339 date-time with an offset; a day the calendar does not have "
    "(e.g. 02-30, or the year 0000) is refused with 422",
}
DATE = {"type": "string", "pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"}
DURATION = {
    "type": "string",
    "maxLength": 32,
    "pattern": r"^P(?=[0-9])([0-9]+Y)?([0-9]+M)?([0-9]+W)?([0-9]+D)?$",
    "description": "ISO 8601 duration in years, months, weeks or days, e.g. P7Y",
}
CODES = {"type": "array", "items": CODE, "minItems": 1, "maxItems": 50, "uniqueItems": True}
URL = {
    "type": "string",
    "maxLength": 500,
    "pattern": r"^(https://[A-Za-z0-9\[][!-~]*|http://(localhost|127\.0\.0\.1)(:[0-9]+)?(/[!-~]*)?)$",
    "description": "https URL in ASCII (http only for localhost)",
}


def obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


HOLDING = obj(
    {
        "person_id": PERSON_ID,
        "category": CODE,
        "authority": CODE,
        "retention": DURATION,
    },
    ["person_id", "category", "retention"],
)
HOLDINGS_REQUEST = obj(
    {"holdings": {"type": "array", "items": HOLDING, "minItems": 1, "maxItems": 1000}},
    ["holdings"],
)
CONSENT_REQUEST = obj(
    {
        "person_id": PERSON_ID,
        "sources": {**CODES, "maxItems": 30},
        "categories": CODES,
        "purpose": CODE,
        "valid_from": DATE_TIME,
        "valid_until": DATE_TIME,
        "one_time": {"type": "boolean"},
        "notice_text": {**TEXT, "minLength": 1, "maxLength": 10000},
        "return_url": URL,
        "state": {**TEXT, "minLength": 1, "maxLength": 500},
        "answer_by": DATE_TIME,
    },
    ["person_id", "sources", "categories", "purpose", "valid_until", "notice_text", "return_url"],
)
_CHECK_TERMS = {
    "recipient": CODE,
    "categories": CODES,
    "purpose": CODE,
    "authority": CODE,
    "consent_id": UUID,
    "case_id": REFERENCE,
    "hidden_until": DATE,
    "hidden_reason": CODE,
}
ACCESS_CHECK = obj(
    {**_CHECK_TERMS, "person_id": PERSON_ID, "query_id": REFERENCE},
    ["person_id", "recipient", "categories", "purpose", "query_id"],
)
BATCH_ACCESS_CHECK = obj(
    {
        **{k: v for k, v in _CHECK_TERMS.items() if k != "consent_id"},
        "persons": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": obj(
                {"person_id": PERSON_ID, "query_id": REFERENCE}, ["person_id", "query_id"]
            ),
        },
    },
    ["recipient", "categories", "purpose", "persons"],
)

LEDGER_REF = obj(
    {
        "index": {"type": "integer"},
        "leaf_hash": {"type": "string", "contentEncoding": "base64"},
        "tree_size": {"type": "integer"},
        "receipt_url": {"type": "string"},
    },
    ["index", "leaf_hash", "tree_size", "receipt_url"],
)
DECISION = obj(
    {
        "query_id": REFERENCE,
        "decision": {"enum": ["permit", "deny"]},
        "basis": obj({"kind": {"enum": ["consent", "authority"]}, "ref": CODE}, ["kind", "ref"]),
        "reasons": {"type": "array", "items": {"type": "string"}},
        "ledger": LEDGER_REF,
    },
    ["query_id", "decision", "basis", "reasons", "ledger"],
)
BATCH_DECISION = obj(
    {"bulk_job_id": CODE, "results": {"type": "array", "items": DECISION}},
    ["bulk_job_id", "results"],
)
CONSENT = obj(
    {
        "id": UUID,
        "status": {"enum": ["requested", "active", "refused", "withdrawn", "expired"]},
        "recipient": CODE,
        "sources": {"type": "array", "items": CODE},
        "categories": {"type": "array", "items": CODE},
        "purpose": CODE,
        "one_time": {"type": "boolean"},
        "used": {"type": "boolean"},
        "valid_from": DATE_TIME,
        "valid_until": DATE_TIME,
        "notice_hash": {"type": "string"},
        "created_at": DATE_TIME,
        "decided_at": {"oneOf": [DATE_TIME, {"type": "null"}]},
        "withdrawn_at": {"oneOf": [DATE_TIME, {"type": "null"}]},
        "answer_by": {"oneOf": [DATE_TIME, {"type": "null"}]},
        "request_url": {"type": "string"},
        "ledger": LEDGER_REF,
    },
    ["id", "status", "recipient", "sources", "categories", "purpose", "valid_until"],
)
CONSENT_PAGE = obj(
    {
        "items": {"type": "array", "items": CONSENT},
        "next_cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]},
    },
    ["items", "next_cursor"],
)
HOLDINGS_RESULT = obj(
    {"created": {"type": "integer"}, "updated": {"type": "integer"}}, ["created", "updated"]
)
HOLDING_OUT = obj(
    {
        "id": {"type": "integer"},
        "system": CODE,
        "category": CODE,
        "authority": {"oneOf": [CODE, {"type": "null"}]},
        "retention": DURATION,
        "registered_at": DATE_TIME,
    },
    ["id", "system", "category", "authority", "retention", "registered_at"],
)
HOLDINGS_PAGE = obj(
    {
        "items": {"type": "array", "items": HOLDING_OUT},
        "next_cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]},
    },
    ["items", "next_cursor"],
)
NOTIFICATION = obj(
    {
        "id": {"type": "integer"},
        "event": {"type": "string"},
        "consent_id": UUID,
        "payload": {"type": "object"},
        "created_at": DATE_TIME,
        "acknowledged_at": {"oneOf": [DATE_TIME, {"type": "null"}]},
    },
    ["id", "event", "consent_id", "payload", "created_at", "acknowledged_at"],
)
NOTIFICATIONS_PAGE = obj(
    {
        "items": {"type": "array", "items": NOTIFICATION},
        "next_cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]},
    },
    ["items", "next_cursor"],
)
PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}
