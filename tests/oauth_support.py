"""Helpers for tests that need API clients and access tokens.

Register a client straight in the database (``register``), then get a real token
from the real token endpoint (``get_token``), or do both at once (``token_for``):

    token = await token_for(client, scopes=("access:check",))
    response = await client.get("/api/v1/...", headers=bearer(token))

Needs the database open (the ``services`` or ``db`` fixture).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.jwk import JWKRegistry

from app.oauth.clients import register_client
from app.oauth.models import ApiClient
from consent.models import Ministry, System

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class Registered:
    """A client registered for a test, with what it needs to authenticate."""

    row: ApiClient
    secret: str | None = field(default=None, repr=False)
    private_key: PrivateKey | None = field(default=None, repr=False)
    kid: str | None = None

    @property
    def client_id(self) -> str:
        return self.row.client_id


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: PrivateKey, kid: str | None = None) -> dict[str, Any]:
    """The public JWK of a private key (with ``kid`` if given)."""
    jwk = dict(JWKRegistry.import_key(key.public_key(), _kty(key)).as_dict(private=False))
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def _kty(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    return "EC" if isinstance(key, ec.EllipticCurvePrivateKey) else "OKP"


def default_alg(key: PrivateKey) -> str:
    return {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[_kty(key)]


async def ensure_system(ministry: str = "MTO", system: str = "driver-licensing") -> System:
    """The ministry and its system, created if the database does not have them yet."""
    row, _ = await Ministry.get_or_create(
        code=ministry,
        defaults={"name_en": f"Ministry {ministry}", "name_fr": f"Ministère {ministry}"},
    )
    found, _ = await System.get_or_create(
        code=system, defaults={"ministry": row, "name_en": system, "name_fr": system}
    )
    return found


async def register(
    *,
    ministry: str = "MTO",
    system: str = "driver-licensing",
    scopes: Iterable[str] = ("access:check", "consent:request"),
    key: PrivateKey | None = None,
    name: str | None = None,
) -> Registered:
    """Register a client: client_secret_basic, or private_key_jwt when ``key`` is given."""
    await ensure_system(ministry, system)
    name = name or f"test client {secrets.token_hex(3)}"
    if key is None:
        row, secret = await register_client(
            ministry, system, name, "client_secret_basic", list(scopes)
        )
        return Registered(row, secret=secret)
    kid = f"test-{secrets.token_hex(4)}"
    row, _ = await register_client(
        ministry,
        system,
        name,
        "private_key_jwt",
        list(scopes),
        jwks={"keys": [public_jwk(key, kid)]},
    )
    return Registered(row, private_key=key, kid=kid)


def basic(client_id: str, secret: str) -> dict[str, str]:
    """The Authorization header of client_secret_basic (RFC 6749 section 2.3.1)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assertion(
    client_id: str,
    key: Any,
    audience: str | list[str],
    *,
    alg: str | None = None,
    kid: str | None = None,
    lifetime: int = 60,
    now: float | None = None,
    **claims: Any,
) -> str:
    """A client assertion JWT (RFC 7523) for ``client_id``; any claim can be overridden."""
    issued = int(time.time() if now is None else now)
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(12),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(body, key, algorithm=alg or default_alg(key), headers=headers)


def assertion_form(signed: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": signed,
        **extra,
    }


async def request_token(
    http: httpx.AsyncClient, client: Registered, scope: str | None = None
) -> httpx.Response:
    """POST /oauth/token for ``client`` with the method it was registered with."""
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if client.secret is not None:
        return await http.post(
            "/oauth/token", data=form, headers=basic(client.client_id, client.secret)
        )
    signed = assertion(
        client.client_id,
        client.private_key,
        str(http.base_url).rstrip("/") + "/oauth/token",
        kid=client.kid,
    )
    return await http.post("/oauth/token", data=assertion_form(signed, **form))


async def get_token(http: httpx.AsyncClient, client: Registered, scope: str | None = None) -> str:
    """An access token for ``client`` from the real token endpoint."""
    response = await request_token(http, client, scope)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def token_for(
    http: httpx.AsyncClient,
    *,
    ministry: str = "MTO",
    system: str = "driver-licensing",
    scopes: Iterable[str] = ("access:check",),
) -> str:
    """Register a client_secret_basic client for ``system`` and return a token for it."""
    client = await register(ministry=ministry, system=system, scopes=scopes)
    return await get_token(http, client)
