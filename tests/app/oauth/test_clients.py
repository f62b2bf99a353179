"""Registering clients: JWK Set and scope validation, secrets stored only as hashes."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from joserfc.jwk import JWKRegistry

from app.oauth.clients import (
    SCOPES,
    DuplicateClient,
    InvalidJwks,
    InvalidRegistration,
    InvalidScope,
    ReplayCache,
    UnknownClient,
    UnknownMinistry,
    UnknownSystem,
    disable_client,
    granted_scopes,
    hash_secret,
    list_clients,
    register_client,
    validate_jwks,
    validate_scopes,
    validate_webhook_url,
    verify_secret,
)
from app.oauth.models import ApiClient, ClientAuthMethod
from app.settings import Settings
from tests.oauth_support import ensure_system, public_jwk


def private_jwk(key: Any, kty: str) -> dict[str, Any]:
    return dict(JWKRegistry.import_key(key, kty).as_dict(private=True))


# --- JWK Sets ---------------------------------------------------------------------------


def test_public_keys_of_each_kind_are_accepted_and_named_by_thumbprint() -> None:
    keys = [
        public_jwk(ec.generate_private_key(ec.SECP256R1())),
        public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="r1"),
        {**public_jwk(ed25519.Ed25519PrivateKey.generate()), "alg": "EdDSA", "use": "sig"},
    ]
    keys[0]["x5c"] = ["not kept"]
    result = validate_jwks({"keys": keys})["keys"]
    assert result[0]["kid"] == JWKRegistry.import_key(keys[0]).thumbprint()
    assert "x5c" not in result[0]
    assert result[1]["kid"] == "r1"
    assert (result[2]["alg"], result[2]["use"]) == ("EdDSA", "sig")
    assert {k["kty"] for k in result} == {"EC", "RSA", "OKP"}


@functools.cache
def _bad_jwks() -> list[tuple[Any, str]]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = public_jwk(ec_key)
    off_curve = {**good, "y": good["x"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns of the short key we want refused
        short = public_jwk(rsa.generate_private_key(65537, 1024))  # noqa: S505 - must be refused
    return [
        ([good], "JSON object"),
        ({"keys": []}, "1 to 10 keys"),
        ({"keys": [good] * 11}, "1 to 10 keys"),
        ({"keys": ["x"]}, "not a JSON object"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "symmetric"),
        ({"keys": [private_jwk(ec_key, "EC")]}, "private key material (d)"),
        ({"keys": [private_jwk(rsa_key, "RSA")]}, "private key material"),
        ({"keys": [{**good, "d": "AAAA"}]}, "private key material (d)"),
        ({"keys": [public_jwk(ec.generate_private_key(ec.SECP384R1()))]}, "curve P-256"),
        ({"keys": [short]}, "shorter than 2048"),
        ({"keys": [{"kty": "OKP", "crv": "X25519", "x": "AAAA"}]}, "curve Ed25519"),
        ({"keys": [{"kty": "PQC"}]}, "kty 'PQC'"),
        ({"keys": [{**good, "use": "enc"}]}, "use 'enc'"),
        ({"keys": [{**good, "alg": "RS256"}]}, "does not fit"),
        ({"keys": [{**good, "alg": "HS256"}]}, "does not fit"),
        ({"keys": [{**good, "kid": "a"}, {**public_jwk(rsa_key), "kid": "a"}]}, "same kid"),
        ({"keys": [off_curve]}, "not a valid EC public key"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_jwks())))
def test_bad_jwks_are_refused_with_a_reason(index: int) -> None:
    jwks, reason = _bad_jwks()[index]
    with pytest.raises(InvalidJwks, match=reason.replace("(", r"\(").replace(")", r"\)")):
        validate_jwks(jwks)


def test_x25519_is_not_a_signing_key() -> None:
    jwk = public_jwk(x25519.X25519PrivateKey.generate())
    with pytest.raises(InvalidJwks, match="Ed25519"):
        validate_jwks({"keys": [jwk]})


# --- secrets, scopes, URLs, replay ------------------------------------------------------


def test_secret_hash_is_salted_scrypt_and_verifies_only_the_secret() -> None:
    stored = hash_secret("s3cret")
    assert stored.startswith("scrypt$16384$8$1$")
    assert "s3cret" not in stored
    assert hash_secret("s3cret") != stored  # a new salt each time
    assert verify_secret("s3cret", stored)
    assert not verify_secret("s3cret!", stored)
    assert not verify_secret("s3cret", None)
    assert not verify_secret("s3cret", "plain$text")


def test_scopes_are_validated_and_sorted() -> None:
    assert validate_scopes(["consent:request", "access:check", "access:check"]) == [
        "access:check",
        "consent:request",
    ]
    with pytest.raises(InvalidScope, match="unknown scope 'everything'"):
        validate_scopes(["access:check", "everything"])
    with pytest.raises(InvalidScope, match="at least one scope"):
        validate_scopes([""])
    assert "audit" in SCOPES and len(SCOPES) == 8


def test_granted_scopes_never_exceed_the_registration() -> None:
    client = ApiClient(client_id="c", scopes=["access:check", "consent:request"])
    assert granted_scopes(client, None) == ["access:check", "consent:request"]
    assert granted_scopes(client, " ") == ["access:check", "consent:request"]
    assert granted_scopes(client, "consent:request") == ["consent:request"]
    with pytest.raises(InvalidScope, match="not registered for the scope audit"):
        granted_scopes(client, "access:check audit")
    with pytest.raises(InvalidScope, match="does not know"):
        granted_scopes(client, "access:check root")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://mto.example/hooks/onceonly", True),
        ("http://localhost:9000/hook", True),
        ("http://127.0.0.1/hook", True),
        ("http://mto.example/hook", False),
        ("ftp://mto.example/hook", False),
        ("https://user:pw@mto.example/hook", False),
        ("https:///nohost", False),
    ],
)
def test_webhook_urls(url: str, ok: bool) -> None:
    if ok:
        assert validate_webhook_url(url) == url
    else:
        with pytest.raises(InvalidRegistration):
            validate_webhook_url(url)


def test_replay_cache_remembers_a_jti_until_it_expires() -> None:
    cache = ReplayCache()
    assert cache.first_use("c", "j1", expires_at=100, now=0)
    assert not cache.first_use("c", "j1", expires_at=100, now=50)
    assert cache.first_use("other", "j1", expires_at=100, now=50)
    assert cache.first_use("c", "j2", expires_at=300, now=60)
    assert cache.first_use("c", "j3", expires_at=400, now=101)  # prunes j1 of both clients
    assert len(cache) == 2
    assert cache.first_use("c", "j1", expires_at=500, now=101)


# --- registration in the database -------------------------------------------------------


async def test_register_clients_of_both_kinds(db: Settings) -> None:
    await ensure_system("MTO", "driver-licensing")
    client, secret = await register_client(
        "MTO",
        "driver-licensing",
        "Renewals",
        "client_secret_basic",
        ["consent:request", "access:check"],
        webhook_url="https://mto.example/hook",
    )
    assert secret is not None and len(secret) == 43
    assert client.client_id.startswith("driver-licensing-") and len(client.client_id) == 25
    row = await ApiClient.get(client_id=client.client_id).select_related("ministry", "system")
    assert row.auth_method == ClientAuthMethod.CLIENT_SECRET_BASIC
    assert row.secret_hash and secret not in row.secret_hash
    assert verify_secret(secret, row.secret_hash)
    assert row.scopes == ["access:check", "consent:request"]
    assert row.jwks is None and row.disabled_at is None
    assert (row.ministry.code, row.system.code) == ("MTO", "driver-licensing")
    assert row.webhook_url == "https://mto.example/hook"

    await ensure_system("MOH", "ohip")
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()), kid="k1")
    client, secret = await register_client(
        "MOH", "ohip", "OHIP", ClientAuthMethod.PRIVATE_KEY_JWT, ["audit"], jwks={"keys": [jwk]}
    )
    assert secret is None
    row = await ApiClient.get(client_id=client.client_id)
    assert row.secret_hash is None
    assert row.jwks == {"keys": [jwk]}


async def test_registration_mistakes(db: Settings) -> None:
    await ensure_system("MTO", "driver-licensing")
    await ensure_system("MOH", "ohip")
    jwks = {"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()))]}
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"ministry_code": "XYZ"}, UnknownMinistry, "no ministry has the code 'XYZ'"),
        ({"system_code": "nope"}, UnknownSystem, "has no system 'nope'"),
        ({"system_code": "ohip"}, UnknownSystem, "ministry MTO has no system 'ohip'"),
        ({"scopes": ["root"]}, InvalidScope, "unknown scope 'root'"),
        ({"auth_method": "tls_client_auth"}, InvalidRegistration, "unknown auth method"),
        ({"name": " "}, InvalidRegistration, "a name"),
        ({"jwks": jwks}, InvalidRegistration, "has no JWK Set"),
        ({"auth_method": "private_key_jwt"}, InvalidJwks, "needs a JWK Set"),
        ({"webhook_url": "http://mto.example"}, InvalidRegistration, "https"),
    ]
    base: dict[str, Any] = {
        "ministry_code": "MTO",
        "system_code": "driver-licensing",
        "name": "Renewals",
        "auth_method": "client_secret_basic",
        "scopes": ["access:check"],
    }
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            await register_client(**{**base, **change})
    assert await ApiClient.all().count() == 0


async def test_duplicates_disable_and_list(db: Settings) -> None:
    await ensure_system("MTO", "driver-licensing")
    first, _ = await register_client(
        "MTO", "driver-licensing", "Renewals", "client_secret_basic", ["access:check"]
    )
    with pytest.raises(DuplicateClient, match="already has an active client named 'Renewals'"):
        await register_client(
            "MTO", "driver-licensing", "Renewals", "client_secret_basic", ["access:check"]
        )
    disabled = await disable_client(first.client_id)
    assert disabled.disabled_at is not None
    again = await disable_client(first.client_id)
    assert again.disabled_at == disabled.disabled_at
    second, _ = await register_client(
        "MTO", "driver-licensing", "Renewals", "client_secret_basic", ["access:check"]
    )
    listed = await list_clients()
    assert [c.client_id for c in listed] == sorted([first.client_id, second.client_id])
    assert {c.client_id: c.disabled_at is None for c in listed} == {
        first.client_id: False,
        second.client_id: True,
    }
    assert listed[0].ministry.code == "MTO"
    with pytest.raises(UnknownClient, match="no client has the client_id 'nope'"):
        await disable_client("nope")
