"""RFC 9068 access tokens: exactly what is issued, and every forgery verify refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.oauth.keys import KeyRing, token_key_ring
from app.oauth.tokens import (
    AccessToken,
    ClientIdentity,
    InvalidToken,
    issue_access_token,
    verify_access_token,
)
from app.settings import Settings

CLIENT = ClientIdentity("driver-licensing-0a1b2c3d", "MTO", "driver-licensing")
BASE = "https://onceonly.example"


@pytest.fixture
def conf(tmp_path: Path) -> Settings:
    return Settings.from_env({"ONCEONLY_VAR_DIR": str(tmp_path), "ONCEONLY_BASE_URL": BASE})


@pytest.fixture
def ring(conf: Settings) -> KeyRing:
    return token_key_ring(conf)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def resign(ring: KeyRing, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the real key, with any claims and header."""
    headers = {"typ": "at+jwt", "kid": ring.signing.kid, **header}
    return jwt.encode(claims, ring.signing.private_key, algorithm="ES256", headers=headers)


def raw_jws(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def good(ring: KeyRing, conf: Settings) -> tuple[str, dict[str, Any]]:
    token, _ = issue_access_token(CLIENT, ["consent:request", "access:check"], conf, ring.signing)
    return token, parts(token)[1]


def refused(token: str, conf: Settings, ring: KeyRing, reason: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        verify_access_token(token, conf, ring.verification)
    assert reason in caught.value.reason
    assert not token or token not in caught.value.reason


def test_header_and_claims_are_exactly_rfc9068(conf: Settings, ring: KeyRing) -> None:
    now = int(time.time())
    token, expires_in = issue_access_token(
        CLIENT, ["consent:request", "access:check", "access:check"], conf, ring.signing, now=now
    )
    header, claims = parts(token)
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": ring.signing.kid}
    assert expires_in == 300
    jti = claims.pop("jti")
    assert isinstance(jti, str) and len(jti) >= 22
    assert claims == {
        "iss": BASE,
        "sub": CLIENT.client_id,
        "client_id": CLIENT.client_id,
        "aud": BASE + "/api/v1",
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "scope": "access:check consent:request",
        "ministry": "MTO",
        "system": "driver-licensing",
    }
    assert verify_access_token(token, conf, ring.verification) == AccessToken(
        client_id=CLIENT.client_id,
        ministry="MTO",
        system="driver-licensing",
        scopes=frozenset({"access:check", "consent:request"}),
        jti=jti,
        exp=now + 300,
    )


def test_every_token_has_its_own_jti(conf: Settings, ring: KeyRing) -> None:
    first, second = good(ring, conf)[1], good(ring, conf)[1]
    assert first["jti"] != second["jti"]


def test_full_media_type_is_accepted(conf: Settings, ring: KeyRing) -> None:
    _, claims = good(ring, conf)
    token = resign(ring, claims, typ="application/at+jwt")
    assert verify_access_token(token, conf, ring.verification).client_id == CLIENT.client_id


def test_alg_none_is_refused(conf: Settings, ring: KeyRing) -> None:
    _, claims = good(ring, conf)
    token = raw_jws({"alg": "none", "typ": "at+jwt", "kid": ring.signing.kid}, claims)
    refused(token, conf, ring, "not signed ES256")


def test_hs256_with_the_public_key_as_secret_is_refused(conf: Settings, ring: KeyRing) -> None:
    _, claims = good(ring, conf)
    pem = ring.verification[0].public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_secret = json.dumps(ring.jwks()["keys"][0]).encode()
    for secret in (pem, jwk_secret):
        token = raw_jws(
            {"alg": "HS256", "typ": "at+jwt", "kid": ring.signing.kid},
            claims,
            lambda data, secret=secret: hmac.new(secret, data, hashlib.sha256).digest(),
        )
        refused(token, conf, ring, "not signed ES256")


def test_other_algorithms_and_keys_are_refused(conf: Settings, ring: KeyRing) -> None:
    _, claims = good(ring, conf)
    kid = ring.signing.kid
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"typ": "at+jwt", "kid": kid})
    refused(rs256, conf, ring, "not signed ES256")
    other = ec.generate_private_key(ec.SECP256R1())
    same_kid = jwt.encode(claims, other, algorithm="ES256", headers={"typ": "at+jwt", "kid": kid})
    refused(same_kid, conf, ring, "signature does not verify")
    own_kid = jwt.encode(claims, other, algorithm="ES256", headers={"typ": "at+jwt", "kid": "x"})
    refused(own_kid, conf, ring, "unknown key")
    no_kid = jwt.encode(claims, ring.signing.private_key, "ES256", headers={"typ": "at+jwt"})
    refused(no_kid, conf, ring, "unknown key")


def test_type_must_be_at_jwt(conf: Settings, ring: KeyRing) -> None:
    _, claims = good(ring, conf)
    refused(resign(ring, claims, typ="JWT"), conf, ring, "not at+jwt")
    untyped = jwt.encode(
        claims, ring.signing.private_key, "ES256", headers={"kid": ring.signing.kid, "typ": None}
    )
    assert "typ" not in jwt.get_unverified_header(untyped)
    refused(untyped, conf, ring, "not at+jwt")


def test_critical_headers_are_refused(conf: Settings, ring: KeyRing) -> None:
    _, claims = good(ring, conf)
    refused(resign(ring, claims, crit=["exp"]), conf, ring, "")  # PyJWT or we refuse it


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"iss": BASE + "/"}, "wrong issuer"),
        ({"aud": "https://evil.example/api/v1"}, "wrong audience"),
        ({"aud": [BASE + "/api/v1", "https://evil.example"]}, "wrong audience"),
        ({"aud": BASE}, "wrong audience"),
        ({"sub": "someone-else"}, "subject is not its client"),
        ({"scope": ["access:check"]}, "malformed"),
    ],
)
def test_claims_must_be_ours(
    conf: Settings, ring: KeyRing, change: dict[str, Any], reason: str
) -> None:
    _, claims = good(ring, conf)
    refused(resign(ring, {**claims, **change}), conf, ring, reason)


@pytest.mark.parametrize(
    "claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "ministry", "system"]
)
def test_every_required_claim_must_be_present(conf: Settings, ring: KeyRing, claim: str) -> None:
    _, claims = good(ring, conf)
    del claims[claim]
    refused(resign(ring, claims), conf, ring, f"no {claim} claim")


def test_expiry_allows_thirty_seconds_of_skew_and_no_more(conf: Settings, ring: KeyRing) -> None:
    now = time.time()
    recent, _ = issue_access_token(CLIENT, ["audit"], conf, ring.signing, now=now - 310)
    assert verify_access_token(recent, conf, ring.verification).scopes == {"audit"}
    expired, _ = issue_access_token(CLIENT, ["audit"], conf, ring.signing, now=now - 340)
    refused(expired, conf, ring, "expired")
    future, _ = issue_access_token(CLIENT, ["audit"], conf, ring.signing, now=now + 120)
    refused(future, conf, ring, "not valid yet")


def test_tampering_breaks_the_signature(conf: Settings, ring: KeyRing) -> None:
    token, claims = good(ring, conf)
    head, _, signature = token.split(".")
    forged = {**claims, "ministry": "MOH"}
    refused(f"{head}.{b64(json.dumps(forged).encode())}.{signature}", conf, ring, "signature")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "e30.e30.", "x" * 9000])
def test_garbage_is_malformed(conf: Settings, ring: KeyRing, token: str) -> None:
    refused(token, conf, ring, "")


def test_a_token_for_another_deployment_is_refused(conf: Settings, ring: KeyRing) -> None:
    token, _ = good(ring, conf)
    other = Settings.from_env({"ONCEONLY_BASE_URL": "https://other.example"})
    with pytest.raises(InvalidToken, match="wrong issuer"):
        verify_access_token(token, other, ring.verification)
