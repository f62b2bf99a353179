"""ASGI middleware: the request's language, and security headers on every answer."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGE_COOKIE,
    LANGUAGES,
    accepted_language,
    language_of,
    reset_language,
    set_language,
)


# No inline script or style anywhere: everything comes from our own origin.
def content_security_policy(form_origins: tuple[str, ...] = ()) -> str:
    """The policy; ``form_origins`` are other origins a form may lead to (Chrome applies
    form-action to the redirect after a form, e.g. sign-out at the identity provider)."""
    form_action = " ".join(("'self'", *form_origins))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        f"form-action {form_action}; object-src 'none'"
    )


SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def _language(scope: Scope) -> tuple[str, str | None]:
    """The request's language (app.i18n.language_of) and the ``?lang=`` it asked for.

    A request with neither a query nor a cookie (an API call, mostly) is read from its
    Accept-Language header alone, without parsing a Request.
    """
    headers = scope["headers"]
    if scope.get("query_string") or any(name == b"cookie" for name, _ in headers):
        request = Request(scope)
        return language_of(request), request.query_params.get("lang")
    for name, value in headers:
        if name == b"accept-language":
            return accepted_language(value.decode("latin-1")), None
    return DEFAULT_LANGUAGE, None


class LanguageAndSecurity:
    """Sets the language for the request (and remembers an explicit ``?lang=``), and adds
    the security headers to every HTTP answer."""

    def __init__(
        self, app: ASGIApp, *, https: bool = False, form_origins: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.https = https
        self.csp = content_security_policy(form_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lang, asked = _language(scope)
        scope.setdefault("state", {})["lang"] = lang
        token = set_language(lang)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", self.csp)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if self.https:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
                if asked in LANGUAGES:
                    secure = "; Secure" if self.https else ""
                    headers.append(
                        "set-cookie",
                        f"{LANGUAGE_COOKIE}={asked}; Path=/; Max-Age=31536000; "
                        f"SameSite=Lax{secure}",
                    )
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            reset_language(token)
