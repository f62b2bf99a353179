"""The server's secrets, loaded from files under ``var/secrets`` (generated on first run).

Three signing keys can be rotated (``onceonly keys``, app.keys_cli): the ledger's
checkpoint key, the access-token key (app.oauth.keys) and the consent receipt key. The
current private key of each stays where it always was; ``keys.json`` keeps the public
half and the dates of every key a rotation replaced, so that what an old key signed
still verifies:

- ``ledger-signer.key``: the current checkpoint key; ``ledger-signer.previous.key``:
  during a transition, the previous key, which co-signs every new checkpoint;
- ``token-signing.pem``, ``receipt-signing.pem``: the current token and receipt keys;
- ``keys.json``: ``{"format": "onceonly-keys/1", "keys": [record, ...]}``, one record
  per key (see KeyRecord); never private material.

Readers take the current key file first and ``keys.json`` second: a rotation writes
``keys.json`` first and replaces the current key last, so a reader between the two
steps still has every key it needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.keyfiles import KeyFileError, Reloaded, load_or_create, random_key, read_secret
from app.settings import Settings
from ledger.errors import NoteError
from ledger.note import (
    ED25519,
    Signer,
    Verifier,
    encode_signer_key,
    generate_signer,
    parse_signer_key,
    parse_vkey,
)

CHECKPOINT = "checkpoint"
TOKEN = "token"  # noqa: S105 - a key kind, not a secret
RECEIPT = "receipt"
#: The kinds of signing keys ``onceonly keys`` rotates.
KINDS = (CHECKPOINT, TOKEN, RECEIPT)

HISTORY_FILE = "keys.json"
HISTORY_FORMAT = "onceonly-keys/1"
LEDGER_KEY_FILE = "ledger-signer.key"
LEDGER_PREVIOUS_KEY_FILE = "ledger-signer.previous.key"
RECEIPT_KEY_FILE = "receipt-signing.pem"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key that turns a person's identifier into their pseudonym.

    Losing it unlinks every stored pseudonym from the people they stand for; it is
    generated once (32 random bytes) and must be backed up with the database.
    """
    path = settings.pseudonym_key_file or Path(settings.secrets_dir) / "pseudonym.key"
    return load_or_create(path, random_key(32))


# --- the key history -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """One signing key in ``keys.json``: its public half and its dates, nothing secret.

    ``id`` is the checkpoint key's hex key ID or the JWS ``kid``; ``public`` is the
    checkpoint key's vkey or the token or receipt key's SubjectPublicKeyInfo PEM.
    ``retired`` is when it stopped signing (None while it is current); ``until`` is
    when what it signed stops verifying (None: never).
    """

    kind: str
    id: str
    public: str
    created: datetime
    retired: datetime | None = None
    until: datetime | None = None

    def verifies(self, now: datetime) -> bool:
        """Whether material this key signed still verifies at ``now``."""
        return self.until is None or now < self.until

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "public": self.public,
            "created": format_time(self.created),
            "retired": None if self.retired is None else format_time(self.retired),
            "until": None if self.until is None else format_time(self.until),
        }

    @classmethod
    def from_json(cls, data: Any) -> KeyRecord:
        """Parse one record. Raises ValueError, KeyError or TypeError when malformed."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError("a key record has exactly kind, id, public, created, retired, until")
        kind, key_id, public = data["kind"], data["id"], data["public"]
        if kind not in KINDS or not isinstance(key_id, str) or not isinstance(public, str):
            raise ValueError("bad kind, id or public key")
        return cls(
            kind,
            key_id,
            public,
            parse_time(data["created"]),
            None if data["retired"] is None else parse_time(data["retired"]),
            None if data["until"] is None else parse_time(data["until"]),
        )


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: Any) -> datetime:
    """Parse what format_time writes. Raises ValueError or TypeError."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def history_path(settings: Settings) -> Path:
    return Path(settings.secrets_dir) / HISTORY_FILE


def key_history(settings: Settings) -> tuple[KeyRecord, ...]:
    """Every key record in ``keys.json``, oldest first; none when there is no file.

    Raises KeyFileError when the file is readable by others or malformed.
    """
    path = history_path(settings)
    try:
        data = read_secret(path)
    except FileNotFoundError:
        return ()
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != HISTORY_FORMAT:
            raise ValueError(f"not an {HISTORY_FORMAT} document")
        return tuple(KeyRecord.from_json(record) for record in document["keys"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is malformed ({exc}); restore it from a backup") from None


def encode_history(records: tuple[KeyRecord, ...] | list[KeyRecord]) -> bytes:
    """The bytes of ``keys.json`` holding ``records`` in order."""
    document = {"format": HISTORY_FORMAT, "keys": [record.to_json() for record in records]}
    return (json.dumps(document, indent=2) + "\n").encode()


def older_keys(
    records: tuple[KeyRecord, ...], kind: str, skip: set[str], now: datetime
) -> tuple[list[KeyRecord], float | None]:
    """The records of ``kind`` (ids in ``skip`` left out) whose material still verifies
    at ``now``, newest first, and the POSIX time at which the next of them stops."""
    kept = [r for r in records if r.kind == kind and r.id not in skip and r.verifies(now)]
    kept.sort(key=lambda record: record.created, reverse=True)
    ends = [record.until.timestamp() for record in kept if record.until is not None]
    return kept, min(ends, default=None)


def file_created(path: Path) -> datetime:
    """When a key file was written (for a key no rotation has recorded yet)."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


# --- the ledger's checkpoint keys ---------------------------------------------------


def ledger_signer(settings: Settings, *, create: bool = True) -> Signer:
    """The Ed25519 key that signs the ledger's checkpoints, named after the log's origin.

    Stored as a note private key (``PRIVATE+KEY+name+id+key``) in
    ``var/secrets/ledger-signer.key``; generated on first use unless ``create`` is
    False (tools that only check the log must never invent a new key). Raises
    KeyFileError when the file is missing (``create=False``), unusable, or for another
    origin.
    """
    path = Path(settings.secrets_dir) / LEDGER_KEY_FILE
    if not create and not path.exists():
        raise KeyFileError(
            f"there is no ledger key at {path}; point ONCEONLY_VAR_DIR at the installation "
            "whose log this is, or give --vkey"
        )

    def generate() -> bytes:
        return (encode_signer_key(generate_signer(settings.log_origin)) + "\n").encode()

    return _ledger_signer_in(path, load_or_create(path, generate), settings)


def previous_ledger_signer(settings: Settings) -> Signer | None:
    """The previous checkpoint key while a rotation's transition lasts, else None.

    Raises KeyFileError when its file is unusable.
    """
    path = Path(settings.secrets_dir) / LEDGER_PREVIOUS_KEY_FILE
    try:
        data = read_secret(path)
    except FileNotFoundError:
        return None
    return _ledger_signer_in(path, data, settings)


def _ledger_signer_in(path: Path, data: bytes, settings: Settings) -> Signer:
    try:
        signer = parse_signer_key(data.decode())
    except (NoteError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path} is not a note signer key: {exc}") from None
    if signer.name != settings.log_origin:
        raise KeyFileError(
            f"{path} signs for {signer.name!r} but ONCEONLY_LOG_ORIGIN is "
            f"{settings.log_origin!r}; a log's origin never changes"
        )
    return signer


@dataclass(frozen=True)
class LedgerKeys:
    """The log's keys: the current signer, the previous key still co-signing during a
    transition (if any), and every older key, whose checkpoints still verify."""

    signer: Signer
    cosigners: tuple[Signer, ...] = ()
    retired: tuple[Verifier, ...] = ()

    def verifiers(self) -> tuple[Verifier, ...]:
        """Every key the log's checkpoints may be signed with, newest first, each once."""
        unique: dict[int, Verifier] = {}
        for key in [self.signer.verifier(), *(c.verifier() for c in self.cosigners)]:
            unique.setdefault(key.key_id, key)
        for key in self.retired:
            unique.setdefault(key.key_id, key)
        return tuple(unique.values())


def ledger_keys(settings: Settings, *, create: bool = True) -> LedgerKeys:
    """The log's current, co-signing and retired keys (see ledger_signer for ``create``).

    Raises KeyFileError when a key file or ``keys.json`` is unusable, or when
    ``keys.json`` names a checkpoint key of another origin.
    """
    signer = ledger_signer(settings, create=create)
    previous = previous_ledger_signer(settings)
    cosigners = () if previous is None or previous.key_id == signer.key_id else (previous,)
    skip = {f"{s.key_id:08x}" for s in (signer, *cosigners)}
    records, _ = older_keys(key_history(settings), CHECKPOINT, skip, datetime.now(UTC))
    retired = []
    for record in records:
        try:
            verifier = parse_vkey(record.public)
        except NoteError as exc:
            raise KeyFileError(f"{HISTORY_FILE}: checkpoint key {record.id}: {exc}") from None
        if verifier.name != settings.log_origin or verifier.key_type != ED25519:
            raise KeyFileError(
                f"{HISTORY_FILE}: checkpoint key {record.id} is not an Ed25519 key of "
                f"{settings.log_origin!r}"
            )
        retired.append(verifier)
    return LedgerKeys(signer, cosigners, tuple(retired))


def ledger_verifiers(settings: Settings) -> tuple[Verifier, ...]:
    """Every checkpoint key of this installation's log, newest first; never creates one.

    Raises KeyFileError as ledger_keys does (and when there is no ledger key).
    """
    return ledger_keys(settings, create=False).verifiers()


# --- consent receipt keys ------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptKey:
    """The ES256 key that signs consent receipts, with its JWK ``kid``."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str

    def __repr__(self) -> str:
        return f"ReceiptKey(kid={self.kid!r})"

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517) for the receipt key set."""
        return public_jwk(self.private_key.public_key(), self.kid)


def public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """An ES256 public key as a JWK with its ``kid``, ``alg`` and ``use``."""
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def receipt_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The ``kid`` of a receipt key: ``receipt-`` and 16 hex digits of its SPKI hash."""
    public = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "receipt-" + hashlib.sha256(public).hexdigest()[:16]


def generate_es256_pem() -> bytes:
    """A new ECDSA P-256 private key as unencrypted PKCS#8 PEM."""
    return private_pem(ec.generate_private_key(ec.SECP256R1()))


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A private key as the unencrypted PKCS#8 PEM of a key file. Secret."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    """The SubjectPublicKeyInfo PEM of a public key (what keys.json keeps)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(record: KeyRecord) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a token or receipt key record. Raises KeyFileError."""
    try:
        key = serialization.load_pem_public_key(record.public.encode())
    except ValueError:
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{HISTORY_FILE}: {record.kind} key {record.id} is not a P-256 key")
    return key


def receipt_key(settings: Settings) -> ReceiptKey:
    """The consent receipt signing key, generated on first use (var/secrets, 0600)."""
    path = Path(settings.secrets_dir) / RECEIPT_KEY_FILE
    try:
        key = serialization.load_pem_private_key(
            load_or_create(path, generate_es256_pem), password=None
        )
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an EC P-256 key")
    return ReceiptKey(key, receipt_key_id(key.public_key()))


@dataclass(frozen=True)
class ReceiptKeySet:
    """The key that signs new receipts and the retired ones whose receipts still verify."""

    current: ReceiptKey
    retired: tuple[tuple[str, ec.EllipticCurvePublicKey], ...] = ()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set of every receipt key, the current one first."""
        keys = [self.current.public_jwk()]
        keys += [public_jwk(public, kid) for kid, public in self.retired]
        return {"keys": keys}


def receipt_key_set(settings: Settings, now: float) -> tuple[ReceiptKeySet, float | None]:
    """The receipt keys at POSIX time ``now``, and when the next retired one stops
    verifying (None: never). Raises KeyFileError when a file is unusable."""
    current = receipt_key(settings)  # before keys.json: see the module's docstring
    records, until = older_keys(
        key_history(settings), RECEIPT, {current.kid}, datetime.fromtimestamp(now, UTC)
    )
    retired = tuple((record.id, load_public_pem(record)) for record in records)
    return ReceiptKeySet(current, retired), until


def receipt_keys(settings: Settings) -> Reloaded[ReceiptKeySet]:
    """The receipt keys, read again whenever a rotation replaces their files."""
    files = [Path(settings.secrets_dir) / RECEIPT_KEY_FILE, history_path(settings)]
    return Reloaded(files, lambda now: receipt_key_set(settings, now))
