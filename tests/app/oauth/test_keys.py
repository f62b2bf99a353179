"""The access-token signing key: generated once (0600), a stable RFC 7638 kid, a JWK Set."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc.jwk import ECKey

from app.keyfiles import KeyFileError
from app.oauth.keys import token_key_ring, token_signing_key
from app.settings import Settings


def settings_in(var: Path) -> Settings:
    return Settings.from_env({"ONCEONLY_VAR_DIR": str(var)})


def test_generated_once_owner_only_with_a_stable_thumbprint_kid(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    key = token_signing_key(settings)
    path = tmp_path / "secrets" / "token-signing.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert isinstance(key.private_key.curve, ec.SECP256R1)
    again = token_signing_key(settings)
    assert again.kid == key.kid
    assert key.kid == ECKey.import_key(key.private_key.public_key()).thumbprint()
    assert "PRIVATE" not in repr(key) and "private_key" not in repr(key)


def test_jwks_lists_the_public_key_only(tmp_path: Path) -> None:
    ring = token_key_ring(settings_in(tmp_path))
    document = ring.jwks()
    assert isinstance(document["keys"], list)
    [jwk] = document["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert jwk["kid"] == ring.signing.kid
    public = ECKey.import_key(jwk)
    assert not public.is_private
    assert public.thumbprint() == jwk["kid"]


def test_refuses_a_key_that_is_not_p256(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token-signing.pem"
    path.parent.mkdir(mode=0o700)
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an EC P-256 key"):
        token_signing_key(settings_in(tmp_path))


def test_refuses_a_file_that_is_not_pem(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token-signing.pem"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        token_signing_key(settings_in(tmp_path))
