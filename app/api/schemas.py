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

# The audit API (app/api/audit.py): responses only, every call is a GET.


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _page(item: dict[str, Any]) -> dict[str, Any]:
    return obj(
        {
            "items": {"type": "array", "items": item},
            "next_cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        },
        ["items", "next_cursor"],
    )


BASE64 = {"type": "string", "contentEncoding": "base64"}
COUNT = {"type": "integer", "minimum": 0}
COUNTS = {"type": "array", "items": COUNT}
PSEUDONYM = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ENTRY_PROPERTIES = {
    "index": COUNT,
    "type": {"type": "string"},
    "time": DATE_TIME,
    "actor_org": CODE,
    "actor_system": CODE,
    "purpose": CODE,
    "basis": obj({"kind": {"enum": ["consent", "authority"]}, "ref": CODE}, ["kind", "ref"]),
    "categories": {"type": "array", "items": CODE},
    "query_id": CODE,
    "case_id": _nullable(CODE),
    "bulk_job_id": _nullable(CODE),
    "recipient_org": _nullable(CODE),
    "source_orgs": {"type": "array", "items": CODE},
    "reasons": {"type": "array", "items": CODE},
    "subject_commitment": BASE64,
    "hidden_until": _nullable(DATE),
    "hidden_reason": _nullable(CODE),
    "hidden": {"type": "boolean", "description": "still hidden from the person today"},
}
AUDIT_ENTRY = obj(_ENTRY_PROPERTIES, list(_ENTRY_PROPERTIES))
AUDIT_ENTRY_PAGE = _page(AUDIT_ENTRY)
REVIEW = obj(
    {
        "review_by": DATE,
        "note": _nullable({"type": "string"}),
        "required_by": {"type": "string"},
        "created_at": DATE_TIME,
    },
    ["review_by", "note", "required_by", "created_at"],
)
INCLUSION = obj(
    {
        "status": {"enum": ["verified", "pending", "failed"]},
        "tree_size": COUNT,
        "root_hash": _nullable(BASE64),
        "proof": {"type": "array", "items": BASE64, "maxItems": 64},
        "checkpoint": _nullable({"type": "string", "description": "the signed checkpoint note"}),
        "reason": _nullable({"type": "string"}),
    },
    ["status", "tree_size", "root_hash", "proof", "checkpoint", "reason"],
)
_DETAIL_PROPERTIES = {
    **_ENTRY_PROPERTIES,
    "leaf": {**BASE64, "description": "the entry's exact bytes (canonical JSON)"},
    "leaf_hash": BASE64,
    "has_opening": {"type": "boolean", "description": "whether the link to the person is kept"},
    "reviews": {"type": "array", "items": REVIEW},
    "inclusion": INCLUSION,
}
AUDIT_ENTRY_DETAIL = obj(_DETAIL_PROPERTIES, list(_DETAIL_PROPERTIES))
AUDIT_STATISTICS = obj(
    {
        "since": DATE,
        "weeks": {"type": "array", "items": DATE},
        "accesses_per_ministry": {
            "type": "array",
            "items": obj({"ministry": CODE, "counts": COUNTS}, ["ministry", "counts"]),
        },
        "decisions": obj({"permitted": COUNTS, "denied": COUNTS}, ["permitted", "denied"]),
        "withdrawals": COUNTS,
        "permitted_by_basis": obj({"consent": COUNT, "authority": COUNT}, ["consent", "authority"]),
        "top_purposes": {
            "type": "array",
            "items": obj({"purpose": CODE, "count": COUNT}, ["purpose", "count"]),
        },
    },
    [
        "since",
        "weeks",
        "accesses_per_ministry",
        "decisions",
        "withdrawals",
        "permitted_by_basis",
        "top_purposes",
    ],
)


def _findings(item: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    return obj(
        {**extra, "count": COUNT, "findings": {"type": "array", "items": item}},
        [*extra, "count", "findings"],
    )


AUDIT_ANOMALIES = obj(
    {
        "generated_at": DATE_TIME,
        "consent_outside_validity": _findings(
            obj(
                {
                    "index": COUNT,
                    "consent_id": CODE,
                    "problem": {
                        "enum": ["missing", "not_given", "not_yet_valid", "expired", "withdrawn"]
                    },
                },
                ["index", "consent_id", "problem"],
            ),
            checked=COUNT,
        ),
        "spikes": _findings(
            obj(
                {
                    "ministry": CODE,
                    "day": DATE,
                    "kind": {"enum": ["volume", "denials"]},
                    "count": COUNT,
                    "median": {"type": "number"},
                },
                ["ministry", "day", "kind", "count", "median"],
            ),
            window_days=COUNT,
            factor={"type": "number"},
            minimum=COUNT,
        ),
        "overdue_reviews": _findings(
            obj(
                {
                    "index": COUNT,
                    "ministry": CODE,
                    "hidden_until": DATE,
                    "reason": _nullable(CODE),
                    "review_by": DATE,
                },
                ["index", "ministry", "hidden_until", "reason", "review_by"],
            )
        ),
        "holdings_without_authority": _findings(
            obj(
                {"ministry": CODE, "system": CODE, "category": CODE, "count": COUNT},
                ["ministry", "system", "category", "count"],
            )
        ),
        "silent_systems": _findings(
            obj({"ministry": CODE, "system": CODE}, ["ministry", "system"]), registered=COUNT
        ),
        "old_disputes": _findings(
            obj(
                {
                    "id": COUNT,
                    "ministry": {"type": "string"},
                    "entry_index": COUNT,
                    "created_at": DATE_TIME,
                    "age_days": COUNT,
                },
                ["id", "ministry", "entry_index", "created_at", "age_days"],
            ),
            days=COUNT,
        ),
    },
    [
        "generated_at",
        "consent_outside_validity",
        "spikes",
        "overdue_reviews",
        "holdings_without_authority",
        "silent_systems",
        "old_disputes",
    ],
)
HIDDEN_ENTRY = obj(
    {
        "index": COUNT,
        "ministry": CODE,
        "system": CODE,
        "time": DATE_TIME,
        "hidden_until": DATE,
        "reason": _nullable(CODE),
        "hidden": {"type": "boolean", "description": "still hidden from the person today"},
        "reviews": {"type": "array", "items": REVIEW},
    },
    ["index", "ministry", "system", "time", "hidden_until", "reason", "hidden", "reviews"],
)
HIDDEN_PAGE = _page(HIDDEN_ENTRY)
DISPUTE = obj(
    {
        "id": COUNT,
        "entry_index": COUNT,
        "ministry": {"type": "string"},
        "status": {"enum": ["open", "answered", "closed"]},
        "message": {"type": "string"},
        "answer": _nullable({"type": "string"}),
        "created_at": DATE_TIME,
        "answered_at": _nullable(DATE_TIME),
        "age_days": {"type": "integer"},
    },
    [
        "id",
        "entry_index",
        "ministry",
        "status",
        "message",
        "answer",
        "created_at",
        "answered_at",
        "age_days",
    ],
)
DISPUTES_PAGE = _page(DISPUTE)
