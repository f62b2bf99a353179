"""The relying party against a stand-in provider (httpx.MockTransport): discovery,
client authentication, key rotation, claims. No database needed."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.auth.oidc import ClientRegistration, RelyingParty, SignInFailed

ISSUER = "https://idp.example/realms/ontario"


class StandIn:
    """A provider that answers discovery, JWKS and token requests, and records what the
    relying party sent to its token endpoint."""

    def __init__(self, auth_methods: list[str] | None = None, **claims: Any) -> None:
        self.keys = [(f"k{i}", ec.generate_private_key(ec.SECP256R1())) for i in range(2)]
        self.published = 1  # how many of the keys the JWK Set lists
        self.signing = 0
        self.auth_methods = auth_methods
        self.claims = claims
        self.token_requests: list[httpx.Request] = []
        self.nonce = ""

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            doc: dict[str, Any] = {
                "issuer": ISSUER,
                "authorization_endpoint": ISSUER + "/auth",
                "token_endpoint": ISSUER + "/token",
                "jwks_uri": ISSUER + "/certs",
            }
            if self.auth_methods is not None:
                doc["token_endpoint_auth_methods_supported"] = self.auth_methods
            return httpx.Response(200, json=doc)
        if request.url.path.endswith("/certs"):
            keys = []
            for kid, key in self.keys[: self.published]:
                jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
                keys.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
            return httpx.Response(200, json={"keys": keys})
        self.token_requests.append(request)
        now = int(time.time())
        kid, key = self.keys[self.signing]
        body = {
            "iss": ISSUER,
            "sub": "1234-5678",
            "aud": "onceonly",
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
            **self.claims,
        }
        token = jwt.encode(body, key, algorithm="ES256", headers={"kid": kid})
        return httpx.Response(200, json={"id_token": token, "token_type": "bearer"})


def party(**overrides: str) -> RelyingParty:
    client = ClientRegistration(
        issuer=ISSUER,
        client_id="onceonly",
        client_secret="s3cret/+=",
        redirect_uri="https://onceonly.example/auth/callback",
        post_logout_redirect_uri="https://onceonly.example/",
        **overrides,
    )
    return RelyingParty(client, pkce_key=b"k" * 32)


async def finish(rp: RelyingParty, provider: StandIn) -> Any:
    provider.nonce = "n1"
    async with httpx.AsyncClient(transport=httpx.MockTransport(provider.handler)) as http:
        return await rp.finish(http, code="c1", state="s1", nonce="n1")


async def test_code_exchange_with_client_secret_basic_and_pkce() -> None:
    provider = StandIn()
    signed_in = await finish(party(), provider)
    assert signed_in.subject == "1234-5678"
    assert not signed_in.auditor
    (request,) = provider.token_requests
    basic = request.headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic).decode() == "onceonly:s3cret/+="
    form = dict(parse_qsl(request.content.decode()))
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == "c1"
    assert form["redirect_uri"] == "https://onceonly.example/auth/callback"
    assert form["code_verifier"] == party().code_verifier("s1")
    assert "client_secret" not in form


async def test_client_secret_post_when_that_is_all_the_provider_offers() -> None:
    provider = StandIn(auth_methods=["client_secret_post"])
    await finish(party(), provider)
    form = dict(parse_qsl(provider.token_requests[0].content.decode()))
    assert (form["client_id"], form["client_secret"]) == ("onceonly", "s3cret/+=")
    assert "authorization" not in provider.token_requests[0].headers


async def test_a_rotated_provider_key_is_fetched_once_more() -> None:
    provider = StandIn()
    rp = party()
    await finish(rp, provider)
    provider.published, provider.signing = 2, 1  # new key, signed with it
    assert (await finish(rp, provider)).subject == "1234-5678"


async def test_configured_subject_and_auditor_claims() -> None:
    provider = StandIn(ontario_id="ON-42", groups=["staff", "ipc-auditors"])
    rp = party(subject_claim="ontario_id", auditor_claim="groups", auditor_value="ipc-auditors")
    signed_in = await finish(rp, provider)
    assert signed_in.subject == "ON-42"
    assert signed_in.auditor


async def test_a_missing_subject_claim_is_refused() -> None:
    with pytest.raises(SignInFailed) as caught:
        await finish(party(subject_claim="ontario_id"), StandIn())
    assert caught.value.reason == "no-subject"


async def test_discovery_for_another_issuer_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://evil.example"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(SignInFailed) as caught:
            await party().authorization_url(http, "s", "n")
    assert caught.value.reason == "provider-unavailable"


async def test_a_token_error_is_a_failed_exchange() -> None:
    provider = StandIn()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(400, content=json.dumps({"error": "invalid_grant"}))
        return provider.handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(SignInFailed) as caught:
            await party().finish(http, code="c", state="s", nonce="n")
    assert caught.value.reason == "token-exchange"


async def test_the_authorization_url_carries_pkce_state_and_nonce() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(StandIn().handler)) as http:
        url = httpx.URL(await party().authorization_url(http, "state-1", "nonce-1"))
    assert str(url).startswith(ISSUER + "/auth?")
    assert url.params["code_challenge_method"] == "S256"
    assert url.params["state"] == "state-1" and url.params["nonce"] == "nonce-1"
    assert url.params["redirect_uri"] == "https://onceonly.example/auth/callback"
    assert party().code_verifier("state-1") not in str(url)
