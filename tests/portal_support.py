"""Helpers for tests of the pages a person signs in to.

``sign_in`` walks the real OpenID Connect flow through the built-in development
provider, with the test client, following each redirect by hand:

    await sign_in(client)                       # Alex Tremblay, a demo resident
    await sign_in(client, "demo-resident-sam")  # Sam Nguyen
    await sign_in(client, "demo-auditor")       # the demo auditor (role auditor)
    response = await client.get("/consents")

The session cookie stays in the client. Needs the ``client`` fixture (demo mode, the
default of tests.support.make_settings).
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette

from app.auth.sessions import SESSION_COOKIE
from app.settings import DEV_OIDC_PATH

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')


def application_of(client: httpx.AsyncClient) -> Starlette:
    """The application behind a test client built on ``httpx.ASGITransport``."""
    transport = client._transport  # httpx keeps the transport it was given here
    if not isinstance(transport, httpx.ASGITransport):
        raise TypeError("sign_in needs a client built on httpx.ASGITransport(app)")
    app = transport.app
    assert isinstance(app, Starlette)
    return app


def use_in_process_provider(client: httpx.AsyncClient, app: Starlette | None = None) -> None:
    """Let the application reach the built-in provider in-process (there is no server
    listening in tests): inject an HTTP client on the same ASGI app as
    ``app.state.oidc_http``, the relying party's injection point."""
    app = app or application_of(client)
    if getattr(app.state, "oidc_http", None) is None:
        app.state.oidc_http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=client.base_url
        )


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of an HTML page (name to value)."""
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


async def provider_redirect(
    client: httpx.AsyncClient, subject: str = "demo-resident-alex", next_path: str = "/"
) -> httpx.URL:
    """Start sign-in and pick ``subject`` on the provider's page; return the callback
    URL the provider sends the browser to (not followed yet)."""
    use_in_process_provider(client)
    start = await client.get("/auth/sign-in", params={"next": next_path})
    assert start.status_code == 303, start.text
    authorize = httpx.URL(start.headers["location"])
    assert authorize.path == DEV_OIDC_PATH + "/authorize", authorize
    page = await client.get(authorize)
    assert page.status_code == 200, page.text
    form = hidden_fields(page.text)
    answer = await client.post(
        DEV_OIDC_PATH + "/authorize",
        data={**form, "subject": subject, "action": "sign-in"},
    )
    assert answer.status_code == 303, answer.text
    return httpx.URL(answer.headers["location"])


async def sign_in(
    client: httpx.AsyncClient, subject: str = "demo-resident-alex", next_path: str = "/"
) -> None:
    """Sign ``subject`` in through the real OpenID Connect flow of the built-in
    provider; the session cookie stays in ``client``."""
    callback = await provider_redirect(client, subject, next_path)
    assert "code" in parse_qs(urlsplit(str(callback)).query), callback
    done = await client.get(callback)
    assert done.status_code == 303, done.text
    assert SESSION_COOKIE in done.cookies, done.headers
