"""Sign-in and sign-out pages, and how the application answers the auth exceptions.

- ``GET /auth/sign-in?next=/path``: starts the OpenID Connect authorization code flow
  (PKCE S256, ``state`` and ``nonce`` in the short-lived signed cookie
  ``onceonly_signin``); without a configured provider, a page says sign-in is not
  available.
- ``GET /auth/callback``: checks ``state``, exchanges the code, validates the ID token,
  pseudonymises the person's identifier at once, opens a new session (ending the one
  the browser had) and sends the person to ``next``.
- ``POST /auth/sign-out``: (CSRF-protected) ends the session server-side, clears the
  cookie and, when the provider offers it, continues to its logout (RP-initiated
  logout, with ``id_token_hint``); otherwise to the home page.

Sign-in and callback are rate-limited per client address (app.ratelimit): past the
limit a 429 page says to wait.

``exception_handlers`` maps SignInRequired, SessionExpired and CsrfFailed to a redirect
or a page a person understands; create_app installs it.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from itsdangerous import BadData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.auth import oidc
from app.auth.csrf import CsrfFailed, check_csrf
from app.auth.sessions import (
    SessionExpired,
    SignInRequired,
    clear_session_cookie,
    current_session,
    end_session,
    id_token_hint,
    secure_cookies,
    set_session_cookie,
    signer,
    start_session,
)
from app.ratelimit import SIGN_IN, SIGN_IN_CALLBACK, client_address, enforce
from app.services import Services
from app.settings import Settings

SIGN_IN_COOKIE = "onceonly_signin"
SIGN_IN_SECONDS = 600
_MAX_NEXT_CHARS = 2000

log = logging.getLogger("onceonly.auth")


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``"/"``.

    Refuses absolute and scheme-relative URLs (``https://x``, ``//x``, ``/\\x``),
    control characters and the sign-in pages themselves, so ``next`` can never send a
    person to another site (no open redirect).
    """
    if not value or len(value) > _MAX_NEXT_CHARS or not value.startswith("/"):
        return "/"
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path.startswith("/auth/"):
        return "/"
    return value


async def sign_in(request: Request) -> Response:
    """Send the browser to the provider (303), remembering state, nonce and ``next`` in
    the signed cookie; a 503 page when sign-in is not configured or unreachable."""
    enforce(request, SIGN_IN, client_address(request))
    next_path = safe_next(request.query_params.get("next"))
    party = oidc.relying_party(request.app)
    if party is None:
        return _page(request, "auth/sign_in_unavailable.html", 503, reason="not-configured")
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    try:
        async with oidc.http_client(request.app) as http:
            location = await party.authorization_url(http, state, nonce)
    except oidc.SignInFailed as exc:
        log.warning("sign-in could not start: %s", exc)
        return _page(request, "auth/sign_in_unavailable.html", 503, reason=exc.reason)
    pending = {"state": state, "nonce": nonce, "next": next_path}
    response = RedirectResponse(location, status_code=303)
    response.set_cookie(
        SIGN_IN_COOKIE,
        signer(request.app, "signin").dumps(pending),
        max_age=SIGN_IN_SECONDS,
        path="/auth",
        secure=secure_cookies(_settings(request)),
        httponly=True,
        samesite="lax",
    )
    return response


async def callback(request: Request) -> Response:
    """Finish sign-in: a new session and a 303 to ``next``, or a 400 page saying that
    sign-in did not finish (nobody is signed in then)."""
    enforce(request, SIGN_IN_CALLBACK, client_address(request))
    pending = _pending(request)
    next_path = pending["next"] if pending else "/"
    try:
        signed_in = await _finish(request, pending)
    except oidc.SignInFailed as exc:
        log.warning("sign-in failed: %s", exc)
        response = _page(
            request, "auth/sign_in_failed.html", 400, reason=exc.reason, next_path=next_path
        )
        _forget_pending(response, request)
        return response
    services: Services = request.app.state.services
    _, token = await start_session(
        request,
        pseudonym=services.people.person(signed_in.subject),
        role="auditor" if signed_in.auditor else "citizen",
        display_name=signed_in.name,
        id_token=signed_in.id_token,
    )
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, token, _settings(request))
    _forget_pending(response, request)
    return response


async def sign_out(request: Request) -> Response:
    """End the session (CSRF-checked) and 303 to the provider's logout, or to ``/``."""
    form = await request.form()
    await check_csrf(request, form)
    location = "/"
    session = await current_session(request)
    if session is not None:
        hint = id_token_hint(session, request)
        await end_session(session)
        party = oidc.relying_party(request.app)
        if party is not None:
            try:
                async with oidc.http_client(request.app) as http:
                    location = await party.logout_url(http, hint) or "/"
            except oidc.SignInFailed as exc:
                log.warning("provider logout skipped: %s", exc)
    response = RedirectResponse(location, status_code=303)
    clear_session_cookie(response, _settings(request))
    return response


async def _finish(request: Request, pending: dict[str, str] | None) -> oidc.SignedIn:
    party = oidc.relying_party(request.app)
    if party is None:
        raise oidc.SignInFailed("not-configured", "no identity provider is configured")
    query = request.query_params
    state = query.get("state", "")
    if pending is None or not hmac.compare_digest(state.encode(), pending["state"].encode()):
        raise oidc.SignInFailed("expired", "no sign-in in progress with this state")
    if "iss" in query and query["iss"] != party.client.issuer:  # RFC 9207 mix-up defence
        raise oidc.SignInFailed("invalid-id-token", f"the answer came from {query['iss']!r}")
    if "error" in query or not query.get("code"):
        raise oidc.SignInFailed("refused", f"the provider answered {query.get('error')!r}")
    async with oidc.http_client(request.app) as http:
        return await party.finish(http, code=query["code"], state=state, nonce=pending["nonce"])


def _pending(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(SIGN_IN_COOKIE)
    if not raw:
        return None
    try:
        value = signer(request.app, "signin").loads(raw, max_age=SIGN_IN_SECONDS)
    except BadData:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str) for k in ("state", "nonce", "next")
    ):
        return None
    return {"state": value["state"], "nonce": value["nonce"], "next": safe_next(value["next"])}


def _forget_pending(response: Response, request: Request) -> None:
    response.delete_cookie(
        SIGN_IN_COOKIE,
        path="/auth",
        secure=secure_cookies(_settings(request)),
        httponly=True,
        samesite="lax",
    )


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _page(request: Request, template: str, status: int, **context: Any) -> Response:
    session = getattr(request.state, "web_session", None)
    return request.app.state.templates.TemplateResponse(
        request,
        template,
        {"session": session, **context},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def on_sign_in_required(request: Request, exc: Exception) -> Response:
    """A page needs a signed-in person: go and sign in, then come back."""
    assert isinstance(exc, SignInRequired)
    query = urlencode({"next": safe_next(exc.next_path)})
    return RedirectResponse(f"/auth/sign-in?{query}", status_code=303)


async def on_session_expired(request: Request, exc: Exception) -> Response:
    """The session timed out: say so (401), forget the cookie, offer to sign in again."""
    assert isinstance(exc, SessionExpired)
    response = _page(request, "auth/session_expired.html", 401, next_path=safe_next(exc.next_path))
    clear_session_cookie(response, _settings(request))
    return response


async def on_csrf_failed(request: Request, exc: Exception) -> Response:
    """A form without a good CSRF token: a 403 page saying the form has expired."""
    assert isinstance(exc, CsrfFailed)
    return _page(request, "auth/csrf_failed.html", 403)


routes = [
    Route("/auth/sign-in", sign_in, methods=["GET"], name="sign_in"),
    Route("/auth/callback", callback, methods=["GET"], name="auth_callback"),
    Route("/auth/sign-out", sign_out, methods=["POST"], name="sign_out"),
]

exception_handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    SignInRequired: on_sign_in_required,
    SessionExpired: on_session_expired,
    CsrfFailed: on_csrf_failed,
}
