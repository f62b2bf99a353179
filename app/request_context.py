"""The request context: an id for every request, and one access log line for it.

``RequestContext`` is a pure ASGI middleware (it does not buffer the body, so
streamed answers stay streamed). For each HTTP request it

- takes the client's ``X-Request-ID`` when it is a safe short token, else makes one,
  answers it in the ``X-Request-ID`` header and sets it for every log line written
  while the request is served (app.logs.request_id_var);
- writes one access line to the ``onceonly.access`` logger when it is answered
  (and one when it starts, at DEBUG): method, path without its query string, route
  template, status, duration in ms and the kind of client, never the query, the
  body, the client's address or who it is;
- reports the method, route template, status and duration to ``observe`` (metrics).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.sessions import SESSION_COOKIE
from app.logs import request_id_var

REQUEST_ID_HEADER = "x-request-id"
#: An id a client may choose: 16 to 64 letters, digits, '-' or '_' (a UUID fits).
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: The route label of a request that no route matched.
OTHER_ROUTE = "other"
PROBE_PATHS = ("/healthz", "/readyz", "/metrics")
MAX_LOGGED_PATH = 256
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: observe(method, route template, status, seconds) after each request.
Observer = Callable[[str, str, int, float], None]

access_log = logging.getLogger("onceonly.access")


def new_request_id() -> str:
    """A fresh random request id (32 hex digits)."""
    return secrets.token_hex(16)


def accepted_request_id(value: str | None) -> str | None:
    """``value`` when it is a request id we may repeat in logs and headers, else None."""
    if value is not None and SAFE_REQUEST_ID.fullmatch(value):
        return value
    return None


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return request_id_var.get()


def route_template(scope: Scope) -> str:
    """The path format of the route that matched (``/api/v1/consents/{consent_id}``),
    or ``other`` when none did. Read after the application has handled the request."""
    route = scope.get("route")
    if route is None or not hasattr(route, "path_format"):
        return OTHER_ROUTE
    if isinstance(route, Mount):
        return route.path_format
    if "app_root_path" not in scope:  # no mount on the way
        return route.path_format
    # A route inside a mount: root_path grew by the mount's path.
    mounted = scope.get("root_path", "")[len(scope["app_root_path"]) :]
    return mounted + route.path_format


def client_kind(scope: Scope, headers: Headers) -> str:
    """What kind of client calls, without saying who: ``api-client`` (credentials or the
    token endpoint), ``signed-in`` (a session cookie), ``probe`` (health and metrics)
    or ``anonymous``."""
    path = scope.get("path", "")
    if path in PROBE_PATHS:
        return "probe"
    if "authorization" in headers or path.startswith("/oauth/"):
        return "api-client"
    if f"{SESSION_COOKIE}=" in headers.get("cookie", ""):
        return "signed-in"
    return "anonymous"


class RequestContext:
    """Request id, access log line and request metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, *, observe: Observer | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accepted_request_id(headers.get(REQUEST_ID_HEADER)) or new_request_id()
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        if access_log.isEnabledFor(logging.DEBUG):  # a request that never ends shows here
            access_log.debug("%s %s started", scope["method"], scope["path"][:MAX_LOGGED_PATH])

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            # The error handler outside this middleware answers 500; the request id
            # stays set so that what it logs carries it too.
            self._finish(scope, headers, status or 500, started)
            raise
        self._finish(scope, headers, status, started)
        request_id_var.reset(token)

    def _finish(self, scope: Scope, headers: Headers, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        route = route_template(scope)
        path = scope.get("path", "")[:MAX_LOGGED_PATH]
        access_log.info(
            "%s %s %d %.1f ms",
            method,
            path,
            status,
            seconds * 1000,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
                "client_kind": client_kind(scope, headers),
            },
        )
        if self.observe is not None:
            self.observe(method, route, status, seconds)
