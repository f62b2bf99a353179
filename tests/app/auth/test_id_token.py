"""ID token validation: every check, directly and through the sign-in flow with an ID
token the test forges on its way from the provider to Onceonly."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import KeySet

from app.auth import devprovider
from app.auth.models import WebSession
from app.auth.oidc import SignInFailed, validate_id_token
from app.services import Services
from tests.portal_support import application_of, provider_redirect

ISSUER = "https://idp.example"
CLIENT = "onceonly-portal"
NONCE = "nonce-1"

PROVIDER_KEY = ec.generate_private_key(ec.SECP256R1())
FOREIGN_KEY = ec.generate_private_key(ec.SECP256R1())


def key_set(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> KeySet:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return KeySet.import_key_set({"keys": [{**jwk, "kid": kid, "alg": "ES256", "use": "sig"}]})


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "demo-resident-alex",
        "aud": CLIENT,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "name": "Alex Tremblay",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def signed(body: dict[str, Any], key: Any = PROVIDER_KEY, alg: str = "ES256") -> str:
    return jwt.encode(body, key, algorithm=alg, headers={"kid": "k1"})


def unsigned(body: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{part(body)}."


def check(token: str) -> dict[str, Any]:
    return validate_id_token(
        token, key_set(PROVIDER_KEY), issuer=ISSUER, client_id=CLIENT, nonce=NONCE
    )


def test_a_good_token_passes() -> None:
    assert check(signed(claims()))["sub"] == "demo-resident-alex"
    assert check(signed(claims(aud=[CLIENT, "other"], azp=CLIENT)))["aud"][0] == CLIENT


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "wrong audience": lambda: signed(claims(aud="someone-else")),
    "wrong issuer": lambda: signed(claims(iss="https://evil.example")),
    "expired": lambda: signed(claims(exp=int(time.time()) - 120)),
    "issued in the future": lambda: signed(claims(iat=int(time.time()) + 600)),
    "no iat": lambda: signed(claims(iat=None)),
    "no exp": lambda: signed(claims(exp=None)),
    "wrong nonce": lambda: signed(claims(nonce="another-nonce")),
    "no nonce": lambda: signed(claims(nonce=None)),
    "alg none": lambda: unsigned(claims()),
    "foreign key": lambda: signed(claims(), key=FOREIGN_KEY),
    "HS256 with a shared secret": lambda: signed(claims(), key="x" * 32, alg="HS256"),
    "several audiences without azp": lambda: signed(claims(aud=[CLIENT, "other"])),
    "tampered payload": lambda: tamper(signed(claims())),
}


def tamper(token: str) -> str:
    header, _, signature = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims(sub="someone-else")).encode())
    return f"{header}.{body.rstrip(b'=').decode()}.{signature}"


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_a_bad_token_is_refused(case: str) -> None:
    with pytest.raises(SignInFailed) as caught:
        check(BAD_TOKENS[case]())
    assert caught.value.reason == "invalid-id-token"


class ForgingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the application, but replaces the ID token in the provider's
    token response with ``forge(claims)``: a man in the middle, or a bad provider."""

    def __init__(self, app: Any, forge: Callable[[dict[str, Any]], str]) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.forge = forge

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/dev-oidc/token":
            return response
        await response.aread()
        body = response.json()
        real = jwt.decode(body["id_token"], options={"verify_signature": False})
        body["id_token"] = self.forge(real)
        return httpx.Response(response.status_code, json=body)


def provider_signed(services: Services, **changes: Any) -> Callable[[dict[str, Any]], str]:
    key = devprovider.signing_key(services.settings)

    def forge(real: dict[str, Any]) -> str:
        body = {k: v for k, v in {**real, **changes}.items() if v is not None}
        return jwt.encode(body, key.private_key, algorithm="ES256", headers={"kid": key.kid})

    return forge


def foreign_signed(services: Services) -> Callable[[dict[str, Any]], str]:
    """Signed with another key under the provider's key id."""
    kid = devprovider.signing_key(services.settings).kid
    return lambda real: jwt.encode(real, FOREIGN_KEY, algorithm="ES256", headers={"kid": kid})


FORGERIES: dict[str, Callable[[Services], Callable[[dict[str, Any]], str]]] = {
    "wrong audience": lambda s: provider_signed(s, aud="another-client"),
    "wrong issuer": lambda s: provider_signed(s, iss="https://evil.example"),
    "expired": lambda s: provider_signed(s, exp=int(time.time()) - 3600),
    "nonce mismatch": lambda s: provider_signed(s, nonce="not-the-nonce-we-sent"),
    "alg none": lambda s: lambda real: unsigned(real),
    "foreign key": lambda s: foreign_signed(s),
    "no subject": lambda s: provider_signed(s, sub=None),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
async def test_a_forged_id_token_signs_nobody_in(
    client: httpx.AsyncClient, services: Services, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = application_of(client)
    forge = FORGERIES[case](services)
    app.state.oidc_http = httpx.AsyncClient(transport=ForgingTransport(app, forge))
    callback = await provider_redirect(client)
    response = await client.get(callback)
    assert response.status_code == 400
    assert "We could not confirm who you are" in response.text
    assert "onceonly_session" not in response.cookies
    assert await WebSession.all().count() == 0
    expected = "no-subject" if case == "no subject" else "invalid-id-token"
    assert f"sign-in failed: {expected}" in caplog.text


async def test_the_same_forging_path_lets_a_genuine_token_through(
    client: httpx.AsyncClient, services: Services
) -> None:
    app = application_of(client)
    app.state.oidc_http = httpx.AsyncClient(
        transport=ForgingTransport(app, provider_signed(services))
    )
    response = await client.get(await provider_redirect(client))
    assert response.status_code == 303
    assert await WebSession.all().count() == 1
