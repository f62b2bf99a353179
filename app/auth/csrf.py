"""Cross-site request forgery protection for every form.

Two kinds of token go in the hidden field ``csrf_token``:

- with a session, the session's own synchroniser token (``WebSession.csrf_token``);
- without one (or on a page that did not look the session up), a signed double-submit
  token: the signature of a random value that is also kept in the HttpOnly cookie
  ``onceonly_csrf``. A forged form from another site cannot know the cookie's value.

``check_csrf`` accepts either, and refuses everything else with CsrfFailed, which the
application answers with a 403 page ("This form has expired...").
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from itsdangerous import BadData
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.sessions import current_session, secure_cookies, signer

CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "onceonly_csrf"

#: How long a double-submit token stays good: a form left open longer has expired.
DOUBLE_SUBMIT_SECONDS = 12 * 3600

_STATE_NEW_COOKIE = "csrf_new_cookie"
_MAX_CHARS = 512


class CsrfFailed(Exception):
    """A form came without a valid CSRF token (forged, or left open too long)."""


def csrf_token(request: Request) -> str:
    """The token to put in a form's hidden ``csrf_token`` field.

    The session's token when the handler has looked the session up (``current_session``
    or ``require_person``) before rendering; otherwise a double-submit token, for which
    the cookie ``onceonly_csrf`` is set on the response if the browser has none yet.
    Exposed to templates as the global ``csrf_token(request)``.
    """
    session = getattr(request.state, "web_session", None)
    if session is not None:
        return session.csrf_token
    value = request.cookies.get(CSRF_COOKIE) or getattr(request.state, _STATE_NEW_COOKIE, None)
    if not value or len(value) > _MAX_CHARS:
        value = secrets.token_urlsafe(24)
        setattr(request.state, _STATE_NEW_COOKIE, value)
    return signer(request.app, "csrf").dumps(value)


async def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Refuse a form without a good ``csrf_token``.

    Accepts the signed-in session's token, or a double-submit token that matches the
    ``onceonly_csrf`` cookie and is at most 12 hours old. Raises CsrfFailed otherwise.
    """
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not sent or len(sent) > _MAX_CHARS:
        raise CsrfFailed()
    session = await current_session(request)
    if session is not None and hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or len(cookie) > _MAX_CHARS:
        raise CsrfFailed()
    try:
        value = signer(request.app, "csrf").loads(sent, max_age=DOUBLE_SUBMIT_SECONDS)
    except BadData:
        raise CsrfFailed() from None
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), cookie.encode()):
        raise CsrfFailed()


def install(app: Starlette) -> None:
    """Offer ``csrf_token(request)`` to templates and set the double-submit cookie.

    Call once in create_app, after ``app.state.templates`` and ``app.state.settings``
    are set and before the application starts.
    """
    app.state.templates.env.globals["csrf_token"] = csrf_token
    app.add_middleware(DoubleSubmitCookie, secure=secure_cookies(app.state.settings))


class DoubleSubmitCookie:
    """Sets ``onceonly_csrf`` (HttpOnly, SameSite=Lax, Path=/, Secure over https) on
    the response when rendering a page made a new double-submit value."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_cookie(message: Message) -> None:
            value = state.get(_STATE_NEW_COOKIE)
            if message["type"] == "http.response.start" and value:
                cookie = Response()
                cookie.set_cookie(
                    CSRF_COOKIE, value, path="/", secure=self.secure, httponly=True, samesite="lax"
                )
                headers = MutableHeaders(scope=message)
                headers.append("set-cookie", cookie.headers["set-cookie"])
            await send(message)

        await self.app(scope, receive, send_with_cookie)
