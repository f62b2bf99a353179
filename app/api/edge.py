"""The API's edge: reading JSON bodies safely, validation errors, cursors, idempotency.

Every failure here is a Problem (RFC 9457) with a stable type, raised before the
domain is called, so nothing is half-written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import IntegrityError

from app.problems import Problem
from consent.errors import Conflict, ConsentError, Invalid, NotFound
from consent.models import IdempotencyRecord

MAX_BODY = 64 * 1024
MAX_BATCH_BODY = 1024 * 1024
DEFAULT_PAGE = 50
MAX_PAGE = 200
#: No request schema nests deeper than this; deeper documents are refused before the
#: validator recurses into them.
MAX_DEPTH = 16
#: An Idempotency-Key still in progress after this long belongs to a request that died.
STALE = timedelta(seconds=60)


def validation_problem(errors: list[dict[str, str]], detail: str | None = None) -> Problem:
    return Problem(
        422,
        "validation",
        "Validation failed",
        detail or "The request body does not match the schema; see errors.",
        errors=errors,
    )


async def read_json(request: Request, schema: dict[str, Any], limit: int = MAX_BODY) -> Any:
    """Read the body as JSON and validate it against ``schema``.

    Raises Problem 415 for another media type, 413 above ``limit`` bytes, 400 for
    malformed JSON (including a string with a lone surrogate, which is not Unicode and
    which no database stores, and nesting deeper than MAX_DEPTH) and 422 with field
    errors for anything the schema refuses (unknown fields included).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as application/json.",
        )
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Problem(413, "too-large", "Request too large", f"The body exceeds {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise Problem(413, "too-large", "Request too large", f"The body exceeds {limit} bytes.")
    request.state.raw_body = bytes(body)
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
        _check_depth(document)
        json.dumps(document, ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        raise Problem(
            400, "malformed-json", "Malformed JSON", "The body is not valid JSON."
        ) from None
    validators = _validators(schema)
    if validators.accepts(document):
        return document
    errors = []
    for error in sorted(validators.full.iter_errors(document), key=str):
        errors.append({"field": _field(error), "message": _message(error)})
        if len(errors) >= 50:
            break
    if errors:
        raise validation_problem(errors)
    return document


class _Validators:
    """A schema's two validators: a compiled one that only says yes or no, quickly, and
    jsonschema's, which names every error (asked only when the first says no)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.full = Draft202012Validator(schema)
        # The schemas use only keywords that draft 7 and 2020-12 read alike (types,
        # properties, required, additionalProperties, patterns, lengths, items, enum);
        # tests/app/api/test_validators.py checks both validators agree.
        self._fast = fastjsonschema.compile(schema, use_default=False)

    def accepts(self, document: Any) -> bool:
        try:
            self._fast(document)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


_VALIDATORS: dict[int, _Validators] = {}


def _validators(schema: dict[str, Any]) -> _Validators:
    """The validators of ``schema`` (made once per schema object)."""
    found = _VALIDATORS.get(id(schema))
    if found is None or found.schema is not schema:
        found = _VALIDATORS[id(schema)] = _Validators(schema)
    return found


def parse_time(value: str, field: str) -> datetime:
    """An RFC 3339 date-time (already pattern-checked) as an aware datetime.

    Raises Problem 422 for a day the calendar does not have, or a moment that is out of
    range once in UTC (e.g. 0001-01-01T00:00:00+05:00).
    """
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise validation_problem([{"field": field, "message": "not a real date-time"}]) from None
    return parsed


def parse_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise validation_problem([{"field": field, "message": "not a real date"}]) from None


def domain_problem(exc: ConsentError) -> Problem:
    """The problem document for a consent-domain error."""
    if isinstance(exc, NotFound):
        return Problem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, Conflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, Invalid):
        return validation_problem(exc.errors, str(exc))
    return Problem(400, "bad-request", "Bad request", str(exc))


def page_params(request: Request, check: Callable[[Any], bool] | None = None) -> tuple[Any, int]:
    """``(after, limit)`` from the ``cursor`` and ``limit`` query parameters.

    ``after`` is what the previous page's last item put in its cursor (by default a
    non-negative integer id; ``check`` validates other shapes). Raises Problem 400 for
    a malformed cursor or limit.
    """
    raw_limit = request.query_params.get("limit", str(DEFAULT_PAGE))
    digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 10
    if not digits or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise Problem(
            400,
            "validation",
            "Validation failed",
            f"limit must be a number from 1 to {MAX_PAGE}.",
            errors=[{"field": "limit", "message": f"1 to {MAX_PAGE}"}],
        )
    cursor = request.query_params.get("cursor")
    if not cursor:
        return None, int(raw_limit)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = decoded["after"]
        if not (check or _is_id)(after):
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise Problem(
            400,
            "invalid-cursor",
            "Invalid cursor",
            "The cursor is not one this API gave out.",
            errors=[{"field": "cursor", "message": "not a cursor from this API"}],
        ) from None
    return after, int(raw_limit)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def next_cursor(after: Any) -> str | None:
    if after is None:
        return None
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def idempotent(
    request: Request,
    client_id: str,
    run: Callable[[], Awaitable[Response]],
    replay_headers: Callable[[Any], dict[str, str]] | None = None,
) -> Response:
    """Run a POST once per ``Idempotency-Key``: a retry gets the first answer back.

    The key is scoped to the client. Reusing a key for a different request is a 422
    problem; a retry while the first is still running is a 409 with Retry-After.
    Server errors are not remembered, so the retry runs again. Only the status and
    body are remembered: ``replay_headers`` rebuilds the headers of a successful first
    answer (e.g. its Location) from its JSON body.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return await run()
    if not 1 <= len(key) <= 200 or not key.isascii() or not key.isprintable():
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            "The Idempotency-Key must be 1 to 200 printable ASCII characters.",
        )
    body = getattr(request.state, "raw_body", b"")
    digest = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    try:
        record = await IdempotencyRecord.create(client_id=client_id, key=key, request_hash=digest)
    except IntegrityError:
        existing = await IdempotencyRecord.get(client_id=client_id, key=key)
        if existing.request_hash != digest:
            raise Problem(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "This Idempotency-Key was used for a different request.",
            ) from None
        if existing.status_code is None and existing.created_at < datetime.now(UTC) - STALE:
            # The first attempt died mid-way (its process was killed): let this one run.
            await IdempotencyRecord.filter(id=existing.id, status_code__isnull=True).delete()
            return await idempotent(request, client_id, run, replay_headers)
        if existing.status_code is None:
            raise Problem(
                409,
                "idempotency-in-progress",
                "Request in progress",
                "The first request with this Idempotency-Key is still running.",
                headers={"Retry-After": "1"},
            ) from None
        headers = {"Idempotency-Replayed": "true"}
        if replay_headers is not None and existing.status_code < 400 and existing.response:
            headers.update(replay_headers(json.loads(existing.response)))
        return Response(
            existing.response or "",
            status_code=existing.status_code,
            media_type=_media(existing.status_code),
            headers=headers,
        )
    try:
        response = await run()
    except Problem as problem:
        if problem.status >= 500:
            await record.delete()
        else:
            await _remember(record, problem.status, json.dumps(problem.document(request.url.path)))
        raise
    except BaseException:
        await record.delete()
        raise
    if response.status_code >= 500:
        await record.delete()
    else:
        await _remember(record, response.status_code, bytes(response.body).decode())
    return response


async def _remember(record: IdempotencyRecord, status: int, body: str) -> None:
    record.status_code = status
    record.response = body
    await record.save(update_fields=["status_code", "response"])


def _media(status: int) -> str:
    return "application/json" if status < 400 else "application/problem+json"


def _field(error: Any) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}/{missing}".strip("/")
    if error.validator == "additionalProperties":
        extra = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}/{extra}".strip("/")
    return path or "(body)"


def _message(error: Any) -> str:
    value = error.validator_value
    kind = error.validator
    if kind == "required":
        return "is required"
    if kind == "additionalProperties":
        return "is not a known field"
    if kind == "type":
        return f"must be {value}"
    if kind == "pattern":
        return "has the wrong format"
    if kind == "maxLength":
        return f"is longer than {value} characters"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxItems":
        return f"has more than {value} items"
    if kind == "minItems":
        return "must not be empty"
    if kind == "uniqueItems":
        return "has duplicates"
    if kind == "enum":
        return f"must be one of {', '.join(map(str, value))}"
    return "is invalid"


def _check_depth(document: Any) -> None:
    """Raise ValueError when ``document`` nests deeper than MAX_DEPTH."""
    level = [document]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return
    raise ValueError("nested too deeply")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
