"""The built-in development provider, spoken to directly as a client would."""

from __future__ import annotations

import base64
import hashlib
import secrets

import httpx
import jwt
import pytest

from app.auth import devprovider
from app.auth.oidc import client_secret
from app.services import Services
from tests.portal_support import hidden_fields


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(services: Services, verifier: str, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": "onceonly-portal",
        "redirect_uri": services.settings.base_url + "/auth/callback",
        "scope": "openid profile",
        "state": "s-123",
        "nonce": "n-456",
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v}


async def get_code(
    client: httpx.AsyncClient,
    services: Services,
    verifier: str,
    subject: str = "demo-resident-alex",
) -> str:
    page = await client.get("/dev-oidc/authorize", params=authorize_params(services, verifier))
    assert page.status_code == 200, page.text
    answer = await client.post(
        "/dev-oidc/authorize",
        data={**hidden_fields(page.text), "subject": subject, "action": "sign-in"},
    )
    assert answer.status_code == 303
    location = httpx.URL(answer.headers["location"])
    assert location.params["state"] == "s-123"
    assert location.params["iss"] == services.settings.base_url + "/dev-oidc"
    return location.params["code"]


def token_form(services: Services, code: str, verifier: str | None) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": services.settings.base_url + "/auth/callback",
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return form


def client_auth(services: Services) -> httpx.BasicAuth:
    return httpx.BasicAuth("onceonly-portal", client_secret(services.settings))


async def test_discovery_document(client: httpx.AsyncClient, services: Services) -> None:
    doc = (await client.get("/dev-oidc/.well-known/openid-configuration")).json()
    issuer = services.settings.base_url + "/dev-oidc"
    assert doc["issuer"] == issuer
    for name in ("authorization", "token", "userinfo", "end_session"):
        assert doc[f"{name}_endpoint"].startswith(issuer + "/")
    assert doc["jwks_uri"] == issuer + "/jwks"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert doc["scopes_supported"] == ["openid", "profile"]
    assert doc["subject_types_supported"] == ["public"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    keys = (await client.get("/dev-oidc/jwks")).json()["keys"]
    assert [k["kty"] for k in keys] == ["EC"]
    assert "d" not in keys[0]


async def test_code_flow_gives_a_signed_id_token_and_userinfo(
    client: httpx.AsyncClient, services: Services
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await get_code(client, services, verifier, subject="demo-auditor")
    response = await client.post(
        "/dev-oidc/token", data=token_form(services, code, verifier), auth=client_auth(services)
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    key = devprovider.signing_key(services.settings).private_key.public_key()
    claims = jwt.decode(
        body["id_token"],
        key,
        algorithms=["ES256"],
        audience="onceonly-portal",
        issuer=services.settings.base_url + "/dev-oidc",
    )
    assert claims["sub"] == "demo-auditor"
    assert claims["nonce"] == "n-456"
    assert claims["name"] == "Demo Auditor (privacy commissioner)"
    assert claims["onceonly_role"] == "auditor"
    assert claims["exp"] > claims["iat"]

    info = await client.get(
        "/dev-oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.json() == {
        "sub": "demo-auditor",
        "name": "Demo Auditor (privacy commissioner)",
        "onceonly_role": "auditor",
    }
    refused = await client.get("/dev-oidc/userinfo", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401


async def test_client_secret_post_works_too(client: httpx.AsyncClient, services: Services) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await get_code(client, services, verifier)
    form = token_form(services, code, verifier)
    form |= {"client_id": "onceonly-portal", "client_secret": client_secret(services.settings)}
    response = await client.post("/dev-oidc/token", data=form)
    assert response.status_code == 200, response.text
    assert "onceonly_role" not in jwt.decode(
        response.json()["id_token"], options={"verify_signature": False}
    )


@pytest.mark.parametrize("verifier", [None, "x" * 43, "wrong-" + "v" * 40])
async def test_pkce_is_enforced(
    client: httpx.AsyncClient, services: Services, verifier: str | None
) -> None:
    good = secrets.token_urlsafe(48)
    code = await get_code(client, services, good)
    response = await client.post(
        "/dev-oidc/token", data=token_form(services, code, verifier), auth=client_auth(services)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # A failed attempt spends the code: guessing verifiers gets nowhere.
    retry = await client.post(
        "/dev-oidc/token", data=token_form(services, code, good), auth=client_auth(services)
    )
    assert retry.json()["error"] == "invalid_grant"


async def test_authorization_without_pkce_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    verifier = secrets.token_urlsafe(48)
    for overrides in ({"code_challenge": ""}, {"code_challenge_method": "plain"}):
        params = authorize_params(services, verifier, **overrides)
        response = await client.get("/dev-oidc/authorize", params=params)
        assert response.status_code == 303
        location = httpx.URL(response.headers["location"])
        assert location.params["error"] == "invalid_request"
        assert location.params["state"] == "s-123"


async def test_unknown_client_or_redirect_uri_is_not_redirected_to(
    client: httpx.AsyncClient, services: Services
) -> None:
    verifier = secrets.token_urlsafe(48)
    for overrides in ({"client_id": "someone-else"}, {"redirect_uri": "https://evil.example/cb"}):
        params = authorize_params(services, verifier, **overrides)
        response = await client.get("/dev-oidc/authorize", params=params)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Demonstration sign-in — not a real identity provider" in response.text


async def test_a_code_is_single_use(client: httpx.AsyncClient, services: Services) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await get_code(client, services, verifier)
    form = token_form(services, code, verifier)
    first = await client.post("/dev-oidc/token", data=form, auth=client_auth(services))
    assert first.status_code == 200
    second = await client.post("/dev-oidc/token", data=form, auth=client_auth(services))
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


async def test_a_code_lives_sixty_seconds(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await get_code(client, services, verifier)
    later = devprovider._now() + devprovider.CODE_SECONDS + 1
    monkeypatch.setattr(devprovider, "_now", lambda: later)
    response = await client.post(
        "/dev-oidc/token", data=token_form(services, code, verifier), auth=client_auth(services)
    )
    assert response.json()["error"] == "invalid_grant"


async def test_the_token_endpoint_checks_client_and_redirect_uri(
    client: httpx.AsyncClient, services: Services
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await get_code(client, services, verifier)
    form = token_form(services, code, verifier)
    bad_secret = httpx.BasicAuth("onceonly-portal", "not-the-secret")
    response = await client.post("/dev-oidc/token", data=form, auth=bad_secret)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert (await client.post("/dev-oidc/token", data=form)).status_code == 401

    code = await get_code(client, services, verifier)
    form = token_form(services, code, verifier) | {"redirect_uri": "https://evil.example/cb"}
    response = await client.post("/dev-oidc/token", data=form, auth=client_auth(services))
    assert response.json()["error"] == "invalid_grant"


async def test_the_choice_form_is_csrf_protected(
    client: httpx.AsyncClient, services: Services
) -> None:
    verifier = secrets.token_urlsafe(48)
    page = await client.get("/dev-oidc/authorize", params=authorize_params(services, verifier))
    fields = hidden_fields(page.text)
    for data in ({}, {"authorization": fields["authorization"] + "x"}):
        response = await client.post(
            "/dev-oidc/authorize", data={**data, "subject": "demo-resident-alex"}
        )
        assert response.status_code == 403
        assert "This form has expired. Go back, reload the page and try again." in response.text
    # A signed field from another browser (without its cookie) is refused too.
    client.cookies.delete(devprovider.FORM_COOKIE)
    response = await client.post(
        "/dev-oidc/authorize", data={**fields, "subject": "demo-resident-alex"}
    )
    assert response.status_code == 403


async def test_no_choice_shows_the_form_again(
    client: httpx.AsyncClient, services: Services
) -> None:
    verifier = secrets.token_urlsafe(48)
    page = await client.get("/dev-oidc/authorize", params=authorize_params(services, verifier))
    response = await client.post(
        "/dev-oidc/authorize", data={**hidden_fields(page.text), "action": "sign-in"}
    )
    assert response.status_code == 400
    assert 'role="alert"' in response.text
    assert "Demonstration sign-in — not a real identity provider" in response.text


async def test_end_session_returns_only_to_onceonly(
    client: httpx.AsyncClient, services: Services
) -> None:
    base = services.settings.base_url
    back = await client.get(
        "/dev-oidc/end-session", params={"post_logout_redirect_uri": base + "/", "state": "z"}
    )
    assert back.status_code == 303
    assert back.headers["location"] == base + "/?state=z"
    evil = await client.get(
        "/dev-oidc/end-session", params={"post_logout_redirect_uri": "https://evil.example/"}
    )
    assert evil.status_code == 400
    assert "location" not in evil.headers
    lookalike = await client.get(
        "/dev-oidc/end-session", params={"post_logout_redirect_uri": base + ".evil.example/"}
    )
    assert lookalike.status_code == 400
    forged_hint = jwt.encode({"sub": "x"}, "key-of-nobody-here-at-least-32-bytes", "HS256")
    refused = await client.get("/dev-oidc/end-session", params={"id_token_hint": forged_hint})
    assert refused.status_code == 400
    plain = await client.get("/dev-oidc/end-session")
    assert plain.status_code == 200
    assert "Demonstration sign-in — not a real identity provider" in plain.text
