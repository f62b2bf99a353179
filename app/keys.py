"""The server's secrets, loaded from files under ``var/secrets`` (generated on first run)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.keyfiles import KeyFileError, load_or_create, random_key
from app.settings import Settings
from ledger.errors import NoteError
from ledger.note import Signer, encode_signer_key, generate_signer, parse_signer_key


def pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key that turns a person's identifier into their pseudonym.

    Losing it unlinks every stored pseudonym from the people they stand for; it is
    generated once (32 random bytes) and must be backed up with the database.
    """
    path = settings.pseudonym_key_file or Path(settings.secrets_dir) / "pseudonym.key"
    return load_or_create(path, random_key(32))


def ledger_signer(settings: Settings, *, create: bool = True) -> Signer:
    """The Ed25519 key that signs the ledger's checkpoints, named after the log's origin.

    Stored as a note private key (``PRIVATE+KEY+name+id+key``) in
    ``var/secrets/ledger-signer.key``; generated on first use unless ``create`` is
    False (tools that only check the log must never invent a new key). Raises
    KeyFileError when the file is missing (``create=False``), unusable, or for another
    origin.
    """
    path = Path(settings.secrets_dir) / "ledger-signer.key"
    if not create and not path.exists():
        raise KeyFileError(
            f"there is no ledger key at {path}; point ONCEONLY_VAR_DIR at the installation "
            "whose log this is, or give --vkey"
        )

    def generate() -> bytes:
        return (encode_signer_key(generate_signer(settings.log_origin)) + "\n").encode()

    try:
        signer = parse_signer_key(load_or_create(path, generate).decode())
    except (NoteError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path} is not a note signer key: {exc}") from None
    if signer.name != settings.log_origin:
        raise KeyFileError(
            f"{path} signs for {signer.name!r} but ONCEONLY_LOG_ORIGIN is "
            f"{settings.log_origin!r}; a log's origin never changes"
        )
    return signer


@dataclass(frozen=True)
class ReceiptKey:
    """The ES256 key that signs consent receipts, with its JWK ``kid``."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str

    def __repr__(self) -> str:
        return f"ReceiptKey(kid={self.kid!r})"

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517) for the receipt key set."""
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}


def receipt_key(settings: Settings) -> ReceiptKey:
    """The consent receipt signing key, generated on first use (var/secrets, 0600)."""
    path = Path(settings.secrets_dir) / "receipt-signing.pem"

    def generate() -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    try:
        key = serialization.load_pem_private_key(load_or_create(path, generate), password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an EC P-256 key")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = "receipt-" + hashlib.sha256(public).hexdigest()[:16]
    return ReceiptKey(key, kid)
