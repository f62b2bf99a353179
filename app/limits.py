"""Size and time limits on requests, so that large or slow clients cannot pin the server.

Two layers:

- ``RequestLimits``, an ASGI middleware: a body larger than ONCEONLY_MAX_BODY_BYTES
  (ONCEONLY_MAX_FORM_BYTES for a form) is refused with 413 as soon as it is declared
  or, sent in chunks, as soon as the bytes read pass the cap, without reading the
  rest; a body that has not arrived whole ONCEONLY_BODY_TIMEOUT seconds after the
  request began is refused with 408. Both are Problems, so an API path answers a
  problem document and a page path an error page in the person's language. Such an
  answer, and any answer sent before the request's body was read whole, closes the
  connection, so the unread rest is never waited for.
- ``ServerConfig``, the uvicorn configuration ``onceonly serve`` runs with: the
  header size cap (ONCEONLY_MAX_HEADER_BYTES), a deadline for a request's headers
  (ONCEONLY_HEADER_TIMEOUT, which uvicorn lacks: its HTTP protocols get it from
  ``HeaderDeadline``), the keep-alive timeout, the connection cap per worker, the
  listen backlog, and the proxies whose X-Forwarded-For is believed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.problems import Problem
from app.settings import Limits

FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class RequestLimits:
    """Caps the size of request bodies and the time they take to arrive (see module)."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_form_bytes: int, body_timeout: float
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_form_bytes = max_form_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        limit = self.max_form_bytes if media in FORM_MEDIA_TYPES else self.max_body_bytes
        body = _Body(headers, limit, asyncio.get_running_loop().time() + self.body_timeout)

        async def limited_receive() -> Message:
            if body.complete:
                return await receive()
            if body.declared_too_large:
                raise body.refuse(too_large(limit))
            try:
                async with asyncio.timeout_at(body.deadline):
                    message = await receive()
            except TimeoutError:
                raise body.refuse(body_too_slow(self.body_timeout)) from None
            if message["type"] == "http.request":
                body.received += len(message.get("body", b""))
                if body.received > limit:
                    raise body.refuse(too_large(limit))
                body.complete = not message.get("more_body", False)
            else:  # http.disconnect: nothing more will come
                body.complete = True
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and (body.refused or not body.complete):
                # The rest of the body is not waited for (nor read): end the connection.
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        await self.app(scope, limited_receive, send_closing)


class _Body:
    """What is known of one request's body while it is read."""

    def __init__(self, headers: Headers, limit: int, deadline: float) -> None:
        declared = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.declared_too_large = declared is not None and (
            not (declared.isascii() and declared.isdigit())
            or len(declared) > 18
            or int(declared) > limit
        )
        self.complete = not chunked and (declared is None or declared == "0")
        self.deadline = deadline
        self.received = 0
        self.refused = False

    def refuse(self, problem: Problem) -> Problem:
        self.refused = True
        return problem


def too_large(limit: int) -> Problem:
    """The 413 problem for a body over ``limit`` bytes."""
    return Problem(413, "too-large", "Request too large", f"The body exceeds {limit} bytes.")


def body_too_slow(seconds: float) -> Problem:
    """The 408 problem for a body that did not arrive within ``seconds``."""
    return Problem(
        408,
        "request-timeout",
        "Request timeout",
        f"The request body did not arrive within {seconds:g} seconds.",
    )


# -- the server ---------------------------------------------------------------------------

_STATUS_LINES = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class HeaderDeadline:
    """For uvicorn's HTTP protocols: a request's headers must arrive whole, and at most
    ``config.h11_max_incomplete_event_size`` bytes of them, within
    ``config.header_timeout`` seconds of the connection opening or of the previous
    answer. Otherwise the connection gets a bare 408 or 431 and is closed.

    (uvicorn's keep-alive timeout only covers a connection that sends nothing; a client
    that sends its headers a byte at a time would otherwise hold a connection forever.)
    """

    config: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _header_timer: asyncio.TimerHandle | None = None
    _awaiting: bool = False
    _awaited_cycle: Any = None
    _header_bytes: int = 0
    _tail: bytes = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._awaiting:
            # Counted before the parser sees them, up to the blank line that ends the
            # headers (which may straddle two reads), so that over-long headers never
            # reach the application even when they arrive in one read.
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
            self._tail = window[-3:]
            limit = self.config.h11_max_incomplete_event_size
            if limit is not None and self._header_bytes > limit:
                self._refuse(431)
                return
        super().data_received(data)  # type: ignore[misc]
        if self._awaiting and self.cycle is not self._awaited_cycle:
            self._stop_waiting()  # the headers are complete: a request began

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        idle = self.cycle is None or (self.cycle.response_complete and not self.cycle.more_body)
        if idle and not self.transport.is_closing():
            self._await_headers()

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._awaiting = True
        self._awaited_cycle = self.cycle
        self._header_bytes = 0
        self._tail = b""
        timeout = getattr(self.config, "header_timeout", None)
        if timeout:
            self._header_timer = self.loop.call_later(timeout, self._refuse, 408)

    def _stop_waiting(self) -> None:
        self._awaiting = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: int) -> None:
        self._stop_waiting()
        if self.transport.is_closing():
            return
        self.transport.write(
            _STATUS_LINES[status] + b"content-length: 0\r\nconnection: close\r\n\r\n"
        )
        self.transport.close()


class GuardedH11Protocol(HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with the header deadline."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
    GuardedHttpToolsProtocol: type[asyncio.Protocol] | None = None
else:

    class GuardedHttpToolsProtocol(HeaderDeadline, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol (its fastest) with the header deadline and cap."""


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration with Onceonly's limits (see the module docstring).

    The HTTP protocol is uvicorn's httptools one (h11 without httptools) with the
    header deadline; ``http=GuardedH11Protocol`` chooses h11. The limits are instance
    attributes, so they reach worker processes (which receive the configuration
    pickled).
    """

    def __init__(self, app: Any, *, limits: Limits, **options: Any) -> None:
        options.setdefault("http", GuardedHttpToolsProtocol or GuardedH11Protocol)
        super().__init__(
            app,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            timeout_keep_alive=limits.keep_alive_timeout,
            limit_concurrency=limits.max_connections or None,
            backlog=limits.backlog,
            forwarded_allow_ips=[str(network) for network in limits.trusted_proxies],
            **options,
        )
        self.header_timeout = limits.header_timeout
