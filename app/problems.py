"""RFC 9457 problem documents: the one place where errors become HTTP answers.

API paths answer ``application/problem+json`` with a stable ``type``; every other path
answers an HTML page a person can read.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

PROBLEM_BASE = "https://onceonly.example/problems/"

_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "Validation failed"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class Problem(Exception):
    """An error to be answered as a problem document.

    ``kind`` is the stable last part of the ``type`` URI (e.g. ``"not-found"``).
    """

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def document(self, instance: str | None = None) -> dict[str, Any]:
        """The problem as an RFC 9457 JSON object."""
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem_response(problem: Problem, request: Request | None = None) -> Response:
    """Render a Problem as ``application/problem+json``."""
    instance = request.url.path if request is not None else None
    return ProblemResponse(
        problem.document(instance), status_code=problem.status, headers=problem.headers
    )


def from_http_exception(exc: HTTPException) -> Problem:
    """The Problem equivalent of a Starlette HTTPException (404 for unknown routes...)."""
    kind, title = _TITLES.get(exc.status_code, ("error", "Error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else title
    return Problem(exc.status_code, kind, title, detail, headers=dict(exc.headers or {}))


def internal_problem() -> Problem:
    """What a client sees for an unexpected failure: nothing of the failure itself."""
    return Problem(500, "internal", "Internal error", "The server could not complete the request.")


#: Seconds a client is asked to wait before retrying while the database is unavailable.
RETRY_AFTER_UNAVAILABLE = 5


def unavailable_problem() -> Problem:
    """What a client sees while the database cannot be reached or cannot take writes
    (down, restarting, full, read-only): a 503 it may retry after Retry-After seconds.

    An access check answered this way has no decision: ask again.
    """
    return Problem(
        503,
        "unavailable",
        "Service unavailable",
        "The database is unavailable right now, so no answer can be given. Try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
    )
