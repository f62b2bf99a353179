"""The guard API handlers use: forged, foreign, expired and out-of-scope tokens, over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.main import create_app
from app.oauth.clients import disable_client
from app.oauth.guard import ClientStatusCache, require
from app.oauth.keys import KeyRing, token_key_ring
from app.oauth.tokens import ClientIdentity, issue_access_token
from app.problems import PROBLEM_BASE
from app.services import Services
from tests.oauth_support import bearer, ec_key, get_token, register
from tests.support import make_settings

PROTECTED = "/api/v1/test/protected"


async def protected(request: Request) -> JSONResponse:
    token = await require(request, "access:check")
    assert request.state.access_token is token
    return JSONResponse(
        {
            "client_id": token.client_id,
            "ministry": token.ministry,
            "system": token.system,
            "scopes": sorted(token.scopes),
        }
    )


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The application with one extra route that requires the access:check scope."""
    app = create_app(services.settings, manage_services=False)
    app.state.services = services
    app.router.routes.insert(0, Route(PROTECTED, protected, methods=["GET"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=services.settings.base_url) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jws(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()) if sign else b'')}"


def assert_refused(response: httpx.Response, token: str, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + "invalid-token"
    assert reason in problem["detail"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="onceonly", error="invalid_token"')
    assert token not in response.text and token not in challenge


async def test_a_real_token_lets_its_client_in_with_its_tenant(
    api: httpx.AsyncClient, services: Services
) -> None:
    mto = await register(ministry="MTO", system="driver-licensing", scopes=("access:check",))
    moh = await register(ministry="MOH", system="ohip", scopes=("access:check", "holdings:read"))
    for registered, ministry, system in [(mto, "MTO", "driver-licensing"), (moh, "MOH", "ohip")]:
        response = await api.get(PROTECTED, headers=bearer(await get_token(api, registered)))
        assert response.status_code == 200, response.text
        assert response.json()["client_id"] == registered.client_id
        assert (response.json()["ministry"], response.json()["system"]) == (ministry, system)
    assert response.json()["scopes"] == ["access:check", "holdings:read"]


async def test_forged_and_foreign_tokens_are_refused(
    api: httpx.AsyncClient, services: Services
) -> None:
    settings = services.settings
    registered = await register(scopes=("access:check",))
    token = await get_token(api, registered)
    claims = jwt.decode(token, options={"verify_signature": False})
    ring: KeyRing = token_key_ring(settings)  # the very key the server signs with
    kid = ring.signing.kid
    public_pem = ring.verification[0].public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def signed(changes: dict[str, Any], **header: Any) -> str:
        headers = {"typ": "at+jwt", "kid": kid, **header}
        return jwt.encode(
            {**claims, **changes}, ring.signing.private_key, algorithm="ES256", headers=headers
        )

    identity = ClientIdentity(registered.client_id, "MTO", "driver-licensing")
    head, _, signature = token.split(".")
    moh = {**claims, "ministry": "MOH", "system": "ohip"}
    expired, _ = issue_access_token(
        identity, ["access:check"], settings, ring.signing, now=time.time() - 400
    )
    attacks = {
        "alg none": (raw_jws({"alg": "none", "typ": "at+jwt", "kid": kid}, claims), "ES256"),
        "HS256 with the public key PEM": (
            raw_jws(
                {"alg": "HS256", "typ": "at+jwt", "kid": kid},
                claims,
                lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
            ),
            "ES256",
        ),
        "wrong issuer": (signed({"iss": "https://evil.example"}), "wrong issuer"),
        "wrong audience": (signed({"aud": settings.base_url}), "wrong audience"),
        "expired": (expired, "expired"),
        "missing typ": (signed({}, typ=None), "at+jwt"),
        "typ JWT": (signed({}, typ="JWT"), "at+jwt"),
        "unknown kid": (
            jwt.encode(claims, ec_key(), "ES256", headers={"typ": "at+jwt", "kid": "other"}),
            "unknown key",
        ),
        "our kid, another key": (
            jwt.encode(claims, ec_key(), "ES256", headers={"typ": "at+jwt", "kid": kid}),
            "signature",
        ),
        "tenant changed": (f"{head}.{b64(json.dumps(moh).encode())}.{signature}", "signature"),
        "no scope claim": (signed({"scope": None}), "no scope claim"),
        "garbage": ("not-a-token", "malformed"),
    }
    for name, (attack, reason) in attacks.items():
        response = await api.get(PROTECTED, headers=bearer(attack))
        assert response.status_code == 401, name
        assert_refused(response, attack, reason)
    # The untouched token still works: the refusals were about the forgeries.
    assert (await api.get(PROTECTED, headers=bearer(token))).status_code == 200


async def test_no_token_asks_for_one(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite://{tmp_path}/unused.sqlite3", var_dir=tmp_path / "var")
    app = create_app(settings, manage_services=False)
    app.router.routes.insert(0, Route(PROTECTED, protected, methods=["GET"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as bare:
        for headers in ({}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer "}):
            response = await bare.get(PROTECTED, headers=headers)
            assert response.status_code == 401
            assert response.json()["type"] == PROBLEM_BASE + "unauthorized"
            assert response.headers["www-authenticate"] == 'Bearer realm="onceonly"'


async def test_insufficient_scope_is_403(api: httpx.AsyncClient, services: Services) -> None:
    registered = await register(scopes=("consent:request", "access:check"))
    token = await get_token(api, registered, scope="consent:request")
    response = await api.get(PROTECTED, headers=bearer(token))
    assert response.status_code == 403
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + "insufficient-scope"
    assert problem["scope"] == "access:check"
    assert response.headers["www-authenticate"] == (
        'Bearer realm="onceonly", error="insufficient_scope", scope="access:check"'
    )


async def test_a_disabled_client_loses_its_tokens(
    api: httpx.AsyncClient, services: Services
) -> None:
    registered = await register(scopes=("access:check",))
    token = await get_token(api, registered)
    other = await register(scopes=("access:check",))
    clock = [1000.0]
    cache = ClientStatusCache(ttl=5, clock=lambda: clock[0])
    assert await cache.is_active(other.client_id)

    await disable_client(registered.client_id)
    await disable_client(other.client_id)
    response = await api.get(PROTECTED, headers=bearer(token))
    assert_refused(response, token, "disabled")
    # A process that saw the client active a moment ago trusts that for up to 5 s.
    assert await cache.is_active(other.client_id)
    clock[0] += 6
    assert not await cache.is_active(other.client_id)
    assert not await cache.is_active("driver-licensing-00000000")
