"""The token endpoint, JWK Set and metadata through HTTP, with real tokens."""

from __future__ import annotations

import base64
import functools
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
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import OKPKey

from app.main import create_app
from app.oauth.clients import SCOPES, disable_client
from app.oauth.keys import token_signing_key
from app.services import Services
from app.settings import Settings
from tests.oauth_support import (
    JWT_BEARER,
    assertion,
    assertion_form,
    basic,
    ec_key,
    get_token,
    register,
    request_token,
    rsa_key,
)
from tests.support import make_settings

GENERIC = {"error": "invalid_client", "error_description": "Client authentication failed."}
CLAIMS = {
    "iss",
    "sub",
    "client_id",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "scope",
    "ministry",
    "system",
}


@functools.cache
def shared_rsa_key() -> rsa.RSAPrivateKey:
    return rsa_key()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The application without a database: for answers that never reach it."""
    settings = make_settings(f"sqlite://{tmp_path}/unused.sqlite3", var_dir=tmp_path / "var")
    app = create_app(settings, manage_services=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as http:
        yield http


def token_url(settings: Settings) -> str:
    return settings.base_url + "/oauth/token"


def verify_with_published_jwks(token: str, jwks: dict[str, Any], settings: Settings) -> dict:
    """Check a token as a ministry would: with the JWK Set from /oauth/jwks and PyJWT."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    return jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience=settings.base_url + "/api/v1",
        issuer=settings.base_url,
    )


def assert_error(response: httpx.Response, status: int, error: str, text: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error, body
    assert text in body["error_description"], body
    if error == "invalid_client":
        assert response.headers["www-authenticate"].startswith("Basic realm=")


# --- success ----------------------------------------------------------------------------


async def test_client_secret_basic_gets_an_rfc9068_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    settings = services.settings
    registered = await register(scopes=("consent:request", "access:check"))
    response = await request_token(client, registered)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 300)
    assert body["scope"] == "access:check consent:request"

    token = body["access_token"]
    jwks = (await client.get("/oauth/jwks")).json()
    [published] = jwks["keys"]
    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "typ": "at+jwt",
        "kid": published["kid"],
    }
    claims = verify_with_published_jwks(token, jwks, settings)
    assert set(claims) == CLAIMS
    assert claims["iss"] == settings.base_url
    assert claims["aud"] == settings.base_url + "/api/v1"
    assert claims["sub"] == claims["client_id"] == registered.client_id
    assert (claims["ministry"], claims["system"]) == ("MTO", "driver-licensing")
    assert claims["scope"] == "access:check consent:request"
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 5


async def test_private_key_jwt_with_ec_rsa_and_ed25519_keys(
    client: httpx.AsyncClient, services: Services
) -> None:
    settings = services.settings
    jwks = (await client.get("/oauth/jwks")).json()
    keys = [ec_key(), shared_rsa_key(), ed25519.Ed25519PrivateKey.generate()]
    for n, key in enumerate(keys):
        registered = await register(
            ministry="MOH", system="ohip", scopes=("audit",), key=key, name=f"key {n}"
        )
        token = await get_token(client, registered)
        claims = verify_with_published_jwks(token, jwks, settings)
        assert claims["client_id"] == registered.client_id
        assert (claims["ministry"], claims["system"], claims["scope"]) == ("MOH", "ohip", "audit")
    # The issuer is an accepted audience (RFC 7523bis), the kid may be left out, and
    # the RFC 9864 name Ed25519 is accepted (signed with joserfc: PyJWT lacks it).
    now = int(time.time())
    signed = jose_jwt.encode(
        {"alg": "Ed25519"},
        {
            "iss": registered.client_id,
            "sub": registered.client_id,
            "aud": settings.base_url,
            "exp": now + 60,
            "jti": "ed25519-1",
        },
        OKPKey.import_key(keys[-1]),
        algorithms=["Ed25519"],
    )
    response = await client.post("/oauth/token", data=assertion_form(signed))
    assert response.status_code == 200, response.text


async def test_scope_parameter(client: httpx.AsyncClient, services: Services) -> None:
    registered = await register(scopes=("access:check", "consent:request", "consent:read"))
    response = await request_token(client, registered, scope="consent:read access:check")
    assert response.json()["scope"] == "access:check consent:read"
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "access:check consent:read"
    response = await request_token(client, registered, scope="access:check audit")
    assert_error(response, 400, "invalid_scope", "not registered for the scope audit")
    response = await request_token(client, registered, scope="admin")
    assert_error(response, 400, "invalid_scope", "does not know")


# --- failures ---------------------------------------------------------------------------


async def test_secret_failures_never_tell_whether_the_client_exists(
    client: httpx.AsyncClient, services: Services
) -> None:
    good = await register()
    disabled = await register()
    await disable_client(disabled.client_id)
    with_key = await register(key=ec_key())
    assert good.secret and disabled.secret
    form = {"grant_type": "client_credentials"}
    attempts = {
        "wrong secret": basic(good.client_id, good.secret[:-1] + "x"),
        "unknown client": basic("driver-licensing-00000000", good.secret),
        "disabled client": basic(disabled.client_id, disabled.secret),
        "key client with a secret": basic(with_key.client_id, good.secret),
    }
    for name, headers in attempts.items():
        response = await client.post("/oauth/token", data=form, headers=headers)
        assert response.status_code == 401, name
        assert response.json() == GENERIC, name
        assert response.headers["www-authenticate"] == 'Basic realm="onceonly", charset="UTF-8"'
        assert response.headers["cache-control"] == "no-store"
        assert good.secret not in response.text


async def test_assertion_failures(client: httpx.AsyncClient, services: Services) -> None:
    settings = services.settings
    key = ec_key()
    registered = await register(key=key)
    cid, kid, aud = registered.client_id, registered.kid, token_url(settings)
    now = time.time()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"iss": cid, "sub": cid, "aud": aud, "exp": int(now) + 60, "jti": "j-unsigned"}

    def unsigned(alg: str, sign: Any = None) -> str:
        head = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
        signing_input = f"{head}.{b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64(sign(signing_input.encode()) if sign else b'')}"

    def hs256(data: bytes) -> bytes:
        return hmac.new(public_pem, data, hashlib.sha256).digest()

    other = ec_key()
    cases: dict[str, tuple[dict[str, str], str]] = {
        "wrong aud": (
            assertion_form(assertion(cid, key, "https://evil.example/oauth/token")),
            "aud",
        ),
        "api audience": (assertion_form(assertion(cid, key, settings.base_url + "/api/v1")), "aud"),
        "expired": (assertion_form(assertion(cid, key, aud, now=now - 400)), "has expired"),
        "too long": (assertion_form(assertion(cid, key, aud, lifetime=3600)), "within 300"),
        "no exp": (assertion_form(assertion(cid, key, aud, exp=None)), "must have an exp"),
        "no jti": (assertion_form(assertion(cid, key, aud, jti=None)), "must have a jti"),
        "iss is not sub": (assertion_form(assertion(cid, key, aud, sub="x")), "iss and sub"),
        "future iat": (assertion_form(assertion(cid, key, aud, iat=int(now) + 120)), "iat"),
        "other client_id": (
            assertion_form(assertion(cid, key, aud), client_id="someone-else"),
            "another client",
        ),
        "unregistered key, same kid": (
            assertion_form(assertion(cid, other, aud, kid=kid)),
            GENERIC["error_description"],
        ),
        "unregistered key, no kid": (
            assertion_form(assertion(cid, other, aud)),
            GENERIC["error_description"],
        ),
        "unknown client": (
            assertion_form(assertion("driver-licensing-00000000", key, aud)),
            GENERIC["error_description"],
        ),
        "alg none": (assertion_form(unsigned("none")), "must be signed with one of"),
        "HS256 with the public key": (assertion_form(unsigned("HS256", hs256)), "signed with"),
        "not a JWT": (assertion_form("not.a.jwt"), "not a signed JWT"),
        "wrong assertion type": (
            {**assertion_form(assertion(cid, key, aud)), "client_assertion_type": "saml2-bearer"},
            "client_assertion_type must be",
        ),
        "no assertion": (
            {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER},
            "client_assertion parameter is missing",
        ),
    }
    for name, (form, text) in cases.items():
        response = await client.post("/oauth/token", data=form)
        assert response.status_code == 401, (name, response.text)
        assert_error(response, 401, "invalid_client", text)

    await disable_client(cid)
    response = await client.post("/oauth/token", data=assertion_form(assertion(cid, key, aud)))
    assert response.json() == GENERIC


async def test_a_replayed_assertion_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    registered = await register(key=shared_rsa_key())
    signed = assertion(
        registered.client_id, shared_rsa_key(), token_url(services.settings), kid=registered.kid
    )
    first = await client.post("/oauth/token", data=assertion_form(signed))
    assert first.status_code == 200, first.text
    again = await client.post("/oauth/token", data=assertion_form(signed))
    assert_error(again, 401, "invalid_client", "jti replayed")
    # A new jti from the same key is fine.
    fresh = assertion(
        registered.client_id, shared_rsa_key(), token_url(services.settings), kid=registered.kid
    )
    assert (await client.post("/oauth/token", data=assertion_form(fresh))).status_code == 200


async def test_request_mistakes(bare: httpx.AsyncClient) -> None:
    credentials = basic("driver-licensing-00000000", "secret")
    grant = {"grant_type": "client_credentials"}
    cases: list[tuple[str, dict[str, Any], int, str, str]] = [
        ("no grant_type", {"data": {"scope": "audit"}}, 400, "invalid_request", "grant_type"),
        (
            "authorization_code",
            {"data": {"grant_type": "authorization_code", "code": "x"}},
            400,
            "unsupported_grant_type",
            "client_credentials",
        ),
        ("password", {"data": {"grant_type": "password"}}, 400, "unsupported_grant_type", ""),
        ("JSON", {"json": grant}, 400, "invalid_request", "x-www-form-urlencoded"),
        (
            "text",
            {
                "content": b"grant_type=client_credentials",
                "headers": {"content-type": "text/plain"},
            },
            400,
            "invalid_request",
            "x-www-form-urlencoded",
        ),
        (
            "repeated",
            {
                "content": b"grant_type=client_credentials&grant_type=client_credentials",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            400,
            "invalid_request",
            "grant_type parameter is repeated",
        ),
        (
            "too large",
            {"data": {**grant, "pad": "x" * 20_000}},
            400,
            "invalid_request",
            "exceeds",
        ),
        ("no credentials", {"data": grant}, 401, "invalid_client", "authentication is required"),
        (
            "secret in the body",
            {"data": {**grant, "client_id": "a", "client_secret": "b"}},
            401,
            "invalid_client",
            "HTTP Basic",
        ),
        (
            "two methods",
            {"data": assertion_form("a.b.c"), "headers": credentials},
            400,
            "invalid_request",
            "one client authentication method",
        ),
        (
            "bearer",
            {"data": grant, "headers": {"Authorization": "Bearer abc"}},
            401,
            "invalid_client",
            "",
        ),
        (
            "broken basic",
            {"data": grant, "headers": {"Authorization": "Basic %%%"}},
            401,
            "invalid_client",
            "Client authentication failed.",
        ),
    ]
    for name, request, status, error, text in cases:
        response = await bare.post("/oauth/token", **request)
        assert response.status_code == status, (name, response.text)
        assert_error(response, status, error, text)
    assert (await bare.get("/oauth/token")).status_code == 405


# --- published documents ----------------------------------------------------------------


async def test_metadata_document(bare: httpx.AsyncClient) -> None:
    response = await bare.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    base = "http://127.0.0.1:8000"
    assert response.json() == {
        "issuer": base,
        "token_endpoint": base + "/oauth/token",
        "jwks_uri": base + "/oauth/jwks",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": [
            "ES256",
            "Ed25519",
            "EdDSA",
            "PS256",
            "RS256",
        ],
        "scopes_supported": sorted(SCOPES),
    }


async def test_jwks_document(bare: httpx.AsyncClient, tmp_path: Path) -> None:
    response = await bare.get("/oauth/jwks")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    [key] = response.json()["keys"]
    settings = make_settings(f"sqlite://{tmp_path}/unused.sqlite3", var_dir=tmp_path / "var")
    assert key["kid"] == token_signing_key(settings).kid
    assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert not {"d", "p", "q"} & set(key)
