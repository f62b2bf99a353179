"""The key that signs Onceonly's access tokens, and the JWK Set that publishes it.

The private key is an ES256 (ECDSA P-256, SHA-256) key kept as PKCS#8 PEM in
``var/secrets/token-signing.pem`` (0600), generated on first use. Its public half is
published at ``/oauth/jwks`` (RFC 7517) under a ``kid`` that is the key's RFC 7638
thumbprint, so the same key always has the same ``kid`` on every server and after
every restart.

The JWK work (serialisation and thumbprint) uses ``joserfc``, Authlib's JOSE
implementation (``authlib.jose`` is deprecated in its favour and Authlib depends on
it): it implements RFC 7517 and RFC 7638 exactly, so we do not hand-roll base64url
coordinates or the canonical thumbprint input.

Rotation (``onceonly keys rotate token``, app.keys_cli): a :class:`KeyRing` holds one
signing key and a tuple of verification keys: the signing key's public half first, then
each retired key that ``keys.json`` (app.keys) still lists as verifying, newest first.
The JWK Set lists every verification key, so a token signed before a rotation stays
valid until it expires; a token whose ``kid`` is not in the ring is refused.
``token_keys`` re-reads the files when a rotation replaces them, so every worker of a
running server follows a rotation at its next request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from app.keyfiles import KeyFileError, Reloaded, load_or_create
from app.keys import TOKEN, history_path, key_history, load_public_pem, older_keys
from app.settings import Settings

#: The only algorithm Onceonly signs access tokens with, and the only one it accepts.
TOKEN_SIGNING_ALG = "ES256"  # noqa: S105 - an algorithm name, not a secret
TOKEN_KEY_FILE = "token-signing.pem"  # noqa: S105 - a file name


@dataclass(frozen=True)
class VerificationKey:
    """A public key that access tokens may be signed with, named by its ``kid``."""

    kid: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)

    def jwk(self) -> dict[str, str]:
        """The key as a public JWK: ``kty``, ``crv``, ``x``, ``y``, ``kid``, ``alg``, ``use``."""
        public = ECKey.import_key(self.public_key).as_dict(private=False)
        return {
            "kty": public["kty"],
            "crv": public["crv"],
            "x": public["x"],
            "y": public["y"],
            "kid": self.kid,
            "alg": TOKEN_SIGNING_ALG,
            "use": "sig",
        }


@dataclass(frozen=True)
class SigningKey:
    """The private key that signs new access tokens (never shown in a repr or a log)."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def verification_key(self) -> VerificationKey:
        """The public half, under the same ``kid``."""
        return VerificationKey(self.kid, self.private_key.public_key())


@dataclass(frozen=True)
class KeyRing:
    """The key that signs new tokens and every key whose tokens are still accepted."""

    signing: SigningKey
    verification: tuple[VerificationKey, ...]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set (RFC 7517 section 5) of every verification key."""
        return jwks(self.verification)


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of ``public_key``."""
    return ECKey.import_key(public_key).thumbprint()


def jwks(keys: Iterable[VerificationKey]) -> dict[str, list[dict[str, str]]]:
    """A JWK Set document ``{"keys": [...]}`` listing ``keys`` in order."""
    return {"keys": [key.jwk() for key in keys]}


def token_signing_key(settings: Settings) -> SigningKey:
    """The access-token signing key, generated on first use.

    Stored as unencrypted PKCS#8 PEM in ``var/secrets/token-signing.pem`` with mode
    0600 (see app.keyfiles.load_or_create). Raises KeyFileError when the file is
    readable by others, is not a PEM private key, or is not an EC P-256 key.
    """
    path = Path(settings.secrets_dir) / TOKEN_KEY_FILE
    data = load_or_create(path, _generate_pem)
    try:
        key: Any = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{path} is not an EC P-256 key (access tokens are signed ES256)")
    return SigningKey(key_id(key.public_key()), key)


def token_key_ring(settings: Settings, now: float | None = None) -> KeyRing:
    """The key ring for these settings at POSIX time ``now`` (default: now).

    The signing key verifies too, then every retired token key in ``keys.json`` whose
    retention has not ended. Raises KeyFileError as token_signing_key and
    app.keys.key_history do.
    """
    return load_token_key_ring(settings, time.time() if now is None else now)[0]


def load_token_key_ring(settings: Settings, now: float) -> tuple[KeyRing, float | None]:
    """The key ring at ``now`` and the POSIX time its next retired key leaves it (or None)."""
    signing = token_signing_key(settings)  # before keys.json: see app.keys
    records, until = older_keys(
        key_history(settings), TOKEN, {signing.kid}, datetime.fromtimestamp(now, UTC)
    )
    retired = tuple(VerificationKey(record.id, load_public_pem(record)) for record in records)
    return KeyRing(signing, (signing.verification_key, *retired)), until


def token_keys(settings: Settings) -> Reloaded[KeyRing]:
    """The key ring, read again whenever a rotation replaces the token key files."""
    files = [Path(settings.secrets_dir) / TOKEN_KEY_FILE, history_path(settings)]
    return Reloaded(files, lambda now: load_token_key_ring(settings, now))


def _generate_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
