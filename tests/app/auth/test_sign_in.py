"""Sign-in through HTTP with the built-in provider: the whole flow, cookies, what the
database keeps, rotation, next, state, sign-out, and sign-in without a provider."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from app.auth.models import WebSession
from app.auth.routes import SIGN_IN_COOKIE, safe_next
from app.auth.sessions import SESSION_COOKIE, current_session
from app.main import create_app
from app.services import Services
from app.settings import Settings
from tests.portal_support import (
    application_of,
    hidden_fields,
    provider_redirect,
    sign_in,
    use_in_process_provider,
)


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


def plant(client: httpx.AsyncClient, name: str, value: str, path: str = "/") -> None:
    """Put a cookie in the client as the server would have set it (replacing any)."""
    client.cookies.delete(name)
    client.cookies.set(name, value, domain=client.base_url.host, path=path)


def request_with_cookie(client: httpx.AsyncClient) -> Request:
    """A bare request to the client's application carrying the client's session cookie."""
    cookie = f"{SESSION_COOKIE}={client.cookies.get(SESSION_COOKIE)}".encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"cookie", cookie)],
        "app": application_of(client),
    }
    return Request(scope)


async def test_full_flow_signs_alex_in_under_a_pseudonym(
    client: httpx.AsyncClient, services: Services
) -> None:
    use_in_process_provider(client)
    start = await client.get("/auth/sign-in", params={"next": "/consents"})
    assert start.status_code == 303
    authorize = httpx.URL(start.headers["location"])
    assert str(authorize).startswith(services.settings.base_url + "/dev-oidc/authorize?")
    params = dict(authorize.params)
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert params["state"] and params["nonce"] and params["scope"] == "openid profile"
    (pending,) = set_cookie_headers(start, SIGN_IN_COOKIE)
    assert "HttpOnly" in pending and "SameSite=lax" in pending and "Path=/auth" in pending

    page = await client.get(authorize)
    assert page.status_code == 200
    assert "Demonstration sign-in — not a real identity provider" in page.text
    for name in ("Alex Tremblay", "Sam Nguyen", "Demo Auditor (privacy commissioner)"):
        assert name in page.text
    chosen = await client.post(
        "/dev-oidc/authorize",
        data={**hidden_fields(page.text), "subject": "demo-resident-alex", "action": "sign-in"},
    )
    assert chosen.status_code == 303
    callback = httpx.URL(chosen.headers["location"])
    assert str(callback).startswith(services.settings.base_url + "/auth/callback?")
    assert callback.params["state"] == params["state"]

    done = await client.get(callback)
    assert done.status_code == 303
    assert done.headers["location"] == "/consents"
    (cookie,) = set_cookie_headers(done, SESSION_COOKIE)
    attributes = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in attributes
    assert "SameSite=lax" in attributes
    assert "Path=/" in attributes
    assert "Secure" not in attributes  # served over http in tests
    assert not any(a.lower().startswith(("max-age", "expires")) for a in attributes)

    token = client.cookies[SESSION_COOKIE]
    session = await current_session(request_with_cookie(client))
    assert session is not None
    alex = services.people.person("demo-resident-alex")
    assert session.pseudonym == alex != "demo-resident-alex"
    assert session.role == "citizen"
    assert session.display_name == "Alex Tremblay"

    (row,) = await WebSession.all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = " ".join(str(v) for v in (await WebSession.all().values())[0].values())
    assert token not in stored
    assert "demo-resident-alex" not in stored  # not even inside the stored ID token


async def test_sign_in_helper_leaves_a_working_session(client: httpx.AsyncClient) -> None:
    await sign_in(client, "demo-resident-sam")
    home = await client.get("/")
    assert home.status_code == 200
    assert "Sam Nguyen" in home.text
    assert "/auth/sign-out" in home.text


async def test_demo_auditor_gets_the_auditor_role(
    client: httpx.AsyncClient, services: Services
) -> None:
    await sign_in(client, "demo-auditor")
    session = await current_session(request_with_cookie(client))
    assert session is not None
    assert session.role == "auditor"
    assert session.pseudonym == services.people.person("demo-auditor")


async def test_a_cookie_from_before_sign_in_is_not_kept(client: httpx.AsyncClient) -> None:
    await sign_in(client, "demo-resident-sam")
    before = client.cookies[SESSION_COOKIE]
    plant(client, SESSION_COOKIE, before)  # e.g. planted by someone else
    await sign_in(client, "demo-resident-alex")
    after = client.cookies[SESSION_COOKIE]
    assert after != before
    old = await WebSession.get(token_hash=hashlib.sha256(before.encode()).hexdigest())
    assert old.ended_at is not None
    # The old token no longer signs anybody in.
    plant(client, SESSION_COOKIE, before)
    assert await current_session(request_with_cookie(client)) is None


async def test_a_planted_unknown_cookie_is_replaced(client: httpx.AsyncClient) -> None:
    plant(client, SESSION_COOKIE, "chosen-by-an-attacker")
    await sign_in(client)
    assert client.cookies[SESSION_COOKIE] != "chosen-by-an-attacker"
    planted = hashlib.sha256(b"chosen-by-an-attacker").hexdigest()
    assert not await WebSession.filter(token_hash=planted).exists()


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "javascript:alert(1)",
        "/auth/sign-out",
        "/ok\r\nSet-Cookie: x=y",
    ],
)
def test_next_must_be_a_local_path(target: str) -> None:
    assert safe_next(target) == "/"


def test_local_next_paths_are_kept() -> None:
    assert safe_next("/activity?ministry=MTO&page=2") == "/activity?ministry=MTO&page=2"
    assert safe_next(None) == "/"


async def test_open_redirect_in_next_is_refused(client: httpx.AsyncClient) -> None:
    callback = await provider_redirect(client, next_path="https://evil.example/phish")
    done = await client.get(callback)
    assert done.status_code == 303
    assert done.headers["location"] == "/"


async def test_state_mismatch_is_refused(client: httpx.AsyncClient) -> None:
    callback = await provider_redirect(client)
    forged = callback.copy_set_param("state", "not-the-state-we-sent")
    response = await client.get(forged)
    assert response.status_code == 400
    assert "Sign-in did not finish" in response.text
    assert SESSION_COOKIE not in response.cookies
    assert await WebSession.all().count() == 0


async def test_callback_without_the_sign_in_cookie_is_refused(client: httpx.AsyncClient) -> None:
    callback = await provider_redirect(client)
    client.cookies.delete(SIGN_IN_COOKIE)
    response = await client.get(callback)
    assert response.status_code == 400
    assert "expired or was already used" in response.text
    assert await WebSession.all().count() == 0


async def test_a_callback_cannot_be_replayed(client: httpx.AsyncClient) -> None:
    callback = await provider_redirect(client)
    pending = client.cookies[SIGN_IN_COOKIE]
    assert (await client.get(callback)).status_code == 303
    plant(client, SIGN_IN_COOKIE, pending, path="/auth")  # even with the cookie back
    again = await client.get(callback)
    assert again.status_code == 400
    assert await WebSession.all().count() == 1


async def test_cancel_at_the_provider_signs_nobody_in(client: httpx.AsyncClient) -> None:
    use_in_process_provider(client)
    start = await client.get("/auth/sign-in")
    page = await client.get(start.headers["location"])
    cancelled = await client.post(
        "/dev-oidc/authorize", data={**hidden_fields(page.text), "action": "cancel"}
    )
    assert httpx.URL(cancelled.headers["location"]).params["error"] == "access_denied"
    response = await client.get(cancelled.headers["location"])
    assert response.status_code == 400
    assert "cancelled" in response.text
    assert await WebSession.all().count() == 0


async def test_sign_out_ends_the_session_and_logs_out_at_the_provider(
    client: httpx.AsyncClient, services: Services
) -> None:
    await sign_in(client)
    token = client.cookies[SESSION_COOKIE]
    home = await client.get("/")
    csrf = hidden_fields(home.text)["csrf_token"]

    out = await client.post("/auth/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303
    logout = httpx.URL(out.headers["location"])
    base = services.settings.base_url
    assert str(logout).startswith(base + "/dev-oidc/end-session?")
    assert logout.params["post_logout_redirect_uri"] == base + "/"
    assert logout.params["id_token_hint"].count(".") == 2
    (cleared,) = set_cookie_headers(out, SESSION_COOKIE)
    assert "Max-Age=0" in cleared or "expires=" in cleared.lower()

    row = await WebSession.get(token_hash=hashlib.sha256(token.encode()).hexdigest())
    assert row.ended_at is not None
    back = await client.get(logout)
    assert back.status_code == 303
    assert back.headers["location"] == base + "/"

    # The old cookie no longer works, even if the browser kept it.
    plant(client, SESSION_COOKIE, token)
    assert await current_session(request_with_cookie(client)) is None
    page = await client.get("/consents")
    assert page.status_code == 303
    assert page.headers["location"] == "/auth/sign-in?next=%2Fconsents"


def settings_without_demo(services: Services, tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "ONCEONLY_DATABASE_URL": services.settings.database_url,
            "ONCEONLY_VAR_DIR": str(tmp_path / "var-nodemo"),
            "ONCEONLY_DEMO": "false",
            **env,
        }
    )


async def test_without_demo_there_is_no_provider_and_sign_in_says_why(
    services: Services, tmp_path: Path
) -> None:
    app = create_app(settings_without_demo(services, tmp_path), manage_services=False)
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        for path in ("/dev-oidc/.well-known/openid-configuration", "/dev-oidc/authorize"):
            assert (await c.get(path)).status_code == 404
        page = await c.get("/auth/sign-in")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "Sign-in is not configured on this server" in page.text
        assert "ONCEONLY_OIDC_ISSUER" in page.text


async def test_an_unreachable_provider_gives_a_readable_page(
    services: Services, tmp_path: Path
) -> None:
    settings = settings_without_demo(
        services,
        tmp_path,
        ONCEONLY_OIDC_ISSUER="https://idp.example",
        ONCEONLY_OIDC_CLIENT_ID="onceonly",
        ONCEONLY_OIDC_CLIENT_SECRET="s3cret",
    )
    app = create_app(settings, manage_services=False)
    app.state.services = services
    app.state.oidc_http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(500))
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        page = await c.get("/auth/sign-in")
    assert page.status_code == 503
    assert "could not be reached" in page.text
