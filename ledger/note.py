"""C2SP signed notes with Ed25519 keys, and C2SP tlog-cosignature Ed25519 cosignatures.

A signed note is a text ending in a newline, a blank line, then one or more signature
lines ``— <key name> base64(key ID || signature)``. A key is identified by its name and
its 32-bit key ID, ``SHA-256(name || 0x0A || type || public key)[:4]``.

Two key types are supported: ``0x01`` (Ed25519 over the note text, the log's own key)
and ``0x04`` (cosignature/v1, a witness's timestamped Ed25519 signature over
``cosignature/v1\\ntime <t>\\n`` followed by the note text). Keys travel as verifier keys
(vkeys) ``<name>+<hex key ID>+base64(type || public key)``; an Ed25519 signing key is
stored as ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)``, the encoding of
golang.org/x/mod/sumdb/note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger.errors import NoteError

ED25519 = 0x01
COSIGNATURE_V1 = 0x04

#: Notes with more signature lines are refused; C2SP requires accepting at least 16.
MAX_SIGNATURES = 100

_DASH = "\N{EM DASH} "
_ED25519_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_MAX_TIMESTAMP = 2**63 - 1
_COSIGNATURE_HEADER = "cosignature/v1\n"


class NoteSigner(Protocol):
    """Anything that can add a signature line to a note."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, message: bytes) -> bytes:
        """Return the signature bytes (without the key ID) over the note text."""
        ...


class NoteVerifier(Protocol):
    """Anything that can check the signature line of one known key."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key ID) is valid over the note text."""
        ...


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the key ID, and the signature bytes after it."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """Return the signature line, including its final newline."""
        payload = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_DASH}{self.name} {base64.b64encode(payload).decode()}\n"


class Note(NamedTuple):
    """An opened note: its text, the signatures verified, and those from unknown keys."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def key_id(name: str, public_key: bytes, key_type: int = ED25519) -> int:
    """Return the C2SP key ID: the first 4 bytes of SHA-256(name || 0x0A || type || key).

    The result is the big-endian uint32 of those bytes.
    """
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def check_key_name(name: str) -> None:
    """Raise NoteError unless ``name`` is non-empty and has no Unicode space nor '+'."""
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"invalid key name {name!r}")
    _check_characters(name)


class Verifier:
    """An Ed25519 (type 0x01) note verifier for one named key."""

    key_type = ED25519

    def __init__(self, name: str, public_key: bytes) -> None:
        """Raise NoteError for an invalid name or a public key that is not 32 bytes."""
        check_key_name(name)
        self._name = name
        self._public_key = _load_public_key(public_key)
        self._raw = public_key
        self._key_id = key_id(name, public_key, self.key_type)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._raw

    def __repr__(self) -> str:
        return f"parse_vkey({self.vkey!r})"

    @property
    def vkey(self) -> str:
        """The verifier key ``<name>+<hex key ID>+base64(type || public key)``."""
        encoded = base64.b64encode(bytes([self.key_type]) + self._raw).decode()
        return f"{self._name}+{self._key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a valid Ed25519 signature of ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            self._public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class CosignatureVerifier(Verifier):
    """A tlog-cosignature Ed25519 (type 0x04) verifier for one named witness key."""

    key_type = COSIGNATURE_V1

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a timestamped cosignature/v1 of the note text ``message``."""
        if len(signature) != 8 + _ED25519_SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > _MAX_TIMESTAMP:
            return False
        return super().verify(cosigned_message(message, timestamp), signature[8:])


class Signer:
    """An Ed25519 (type 0x01) note signer: a key name and its private key."""

    key_type = ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Raise NoteError for an invalid key name."""
        check_key_name(name)
        self._name = name
        self._private_key = private_key
        self._public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id(name, self._public, self.key_type)

    def __repr__(self) -> str:
        # Never show key material, even by accident in a log line.
        return f"{type(self).__name__}({self._name!r}, key_id={self._key_id:08x})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._private_key

    def verifier(self) -> Verifier:
        """Return the verifier for this signer's key."""
        return Verifier(self._name, self._public)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._private_key.sign(message)


class Cosigner(Signer):
    """A tlog-cosignature Ed25519 (type 0x04) witness signer.

    ``clock`` returns the POSIX time in seconds to stamp each cosignature with.
    """

    key_type = COSIGNATURE_V1

    def __init__(
        self,
        name: str,
        private_key: Ed25519PrivateKey,
        clock: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        super().__init__(name, private_key)
        self._clock = clock

    def verifier(self) -> CosignatureVerifier:
        """Return the cosignature verifier for this witness key."""
        return CosignatureVerifier(self._name, self._public)

    def sign(self, message: bytes) -> bytes:
        """Return timestamp (uint64 big-endian) || Ed25519 signature of the cosigned message.

        Raises NoteError when the clock gives a time outside 0..2**63-1.
        """
        timestamp = self._clock()
        if not 0 <= timestamp <= _MAX_TIMESTAMP:
            raise NoteError(f"cosignature timestamp {timestamp} out of range")
        signature = self._private_key.sign(cosigned_message(message, timestamp))
        return timestamp.to_bytes(8, "big") + signature


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """Return the cosignature/v1 signed message for a checkpoint note text at ``timestamp``."""
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n".encode() + text


def cosignature_time(signature: Signature) -> int:
    """Return the POSIX timestamp of a cosignature/v1 signature line.

    Raises NoteError when the signature is not the 72 bytes of a cosignature.
    """
    if len(signature.signature) != 8 + _ED25519_SIGNATURE_SIZE:
        raise NoteError(f"signature of {signature.name} is not a cosignature/v1")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp of {signature.name} out of range")
    return timestamp


def generate_signer(name: str) -> Signer:
    """Return a Signer with a fresh Ed25519 key. Raises NoteError for an invalid name."""
    return Signer(name, Ed25519PrivateKey.generate())


def parse_vkey(vkey: str) -> Verifier:
    """Parse a verifier key ``<name>+<hex key ID>+base64(type || public key)``.

    Type 0x01 gives a Verifier, type 0x04 a CosignatureVerifier. Raises NoteError for a
    malformed key, an unknown type, or a key ID that does not match the key.
    """
    parts = vkey.split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise NoteError("malformed verifier key")
    name, hex_id, encoded = parts
    key = _decode_key(hex_id, encoded)
    verifiers: dict[int, type[Verifier]] = {ED25519: Verifier, COSIGNATURE_V1: CosignatureVerifier}
    kind = verifiers.get(key[0])
    if kind is None:
        raise NoteError(f"unknown verifier key type {key[0]:#04x}")
    verifier = kind(name, key[1:])
    if verifier.key_id != int(hex_id, 16):
        raise NoteError("verifier key ID does not match its key")
    return verifier


def encode_signer_key(signer: Signer) -> str:
    """Encode an Ed25519 signer as ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)``.

    The result is secret. Raises NoteError for a cosigner, which has no standard encoding.
    """
    if signer.key_type != ED25519:
        raise NoteError("only Ed25519 note signers have a private key encoding")
    seed = signer.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    encoded = base64.b64encode(bytes([ED25519]) + seed).decode()
    return f"PRIVATE+KEY+{signer.name}+{signer.key_id:08x}+{encoded}"


def parse_signer_key(skey: str) -> Signer:
    """Parse ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)`` into a Signer.

    Surrounding whitespace (a key file's final newline) is ignored. Raises NoteError for
    a malformed key or a key ID that does not match the key; the message never contains
    key material.
    """
    parts = skey.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise NoteError("malformed signer key")
    name, hex_id, encoded = parts[2:]
    key = _decode_key(hex_id, encoded)
    if key[0] != ED25519 or len(key) != 1 + _ED25519_KEY_SIZE:
        raise NoteError("signer key is not an Ed25519 seed")
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
    if signer.key_id != int(hex_id, 16):
        raise NoteError("signer key ID does not match its key")
    return signer


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """Sign ``text`` with every signer and return the signed note's bytes.

    ``text`` must be non-empty, end in a newline and contain no control character other
    than newline. Raises NoteError otherwise, when there is no signer, or when two
    signers share a name and key ID.
    """
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    _check_characters(text)
    if not signers:
        raise NoteError("a note needs at least one signer")
    if len({(s.name, s.key_id) for s in signers}) != len(signers):
        raise NoteError("two signers share a key name and key ID")
    message = text.encode()
    lines = []
    for signer in signers:
        check_key_name(signer.name)
        lines.append(Signature(signer.name, signer.key_id, signer.sign(message)).line())
    return (text + "\n" + "".join(lines)).encode()


def open_note(note: bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse a signed note and check the signatures of the known keys.

    Signatures from keys not in ``verifiers`` (by name and key ID) are returned as
    unverified. Raises NoteError when the note is malformed, has more than 100 signature
    lines, when a signature from a known key is invalid, when two verifiers share a name
    and key ID, or when no known key signed it.
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        ident = (verifier.name, verifier.key_id)
        if ident in known:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_id:08x}")
        known[ident] = verifier
    text, signatures = _split_note(note)
    message = text.encode()
    verified: dict[tuple[str, int], Signature] = {}
    unverified: dict[Signature, None] = {}
    for signature in signatures:
        ident = (signature.name, signature.key_id)
        signer_key = known.get(ident)
        if signer_key is None:
            unverified[signature] = None
            continue
        if not signer_key.verify(message, signature.signature):
            raise NoteError(f"invalid signature for key {signature.name}+{signature.key_id:08x}")
        verified.setdefault(ident, signature)
    if not verified:
        raise NoteError("note has no signature from a known key")
    return Note(text, tuple(verified.values()), tuple(unverified))


def _split_note(note: bytes) -> tuple[str, list[Signature]]:
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note is not valid UTF-8") from None
    _check_characters(decoded)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(_DASH):
        raise NoteError("malformed signature line")
    name, space, encoded = line[len(_DASH) :].partition(" ")
    if not space:
        raise NoteError("malformed signature line")
    check_key_name(name)
    try:
        payload = _b64decode(encoded)
    except ValueError:
        raise NoteError(f"signature of {name} is not base64") from None
    if len(payload) < 5:
        raise NoteError(f"signature of {name} is too short")
    return Signature(name, int.from_bytes(payload[:4], "big"), payload[4:])


def _check_characters(text: str) -> None:
    # C2SP signed-note: no ASCII control characters other than newline, anywhere.
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise NoteError("note contains a control character")


def _decode_key(hex_id: str, encoded: str) -> bytes:
    if len(hex_id) != 8 or any(ch not in "0123456789abcdefABCDEF" for ch in hex_id):
        raise NoteError("key ID must be 8 hex digits")
    try:
        key = _b64decode(encoded)
    except ValueError:
        raise NoteError("key is not base64") from None
    if not key:
        raise NoteError("key is empty")
    return key


def _load_public_key(public_key: bytes) -> Ed25519PublicKey:
    if len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError(f"Ed25519 public key must be 32 bytes, not {len(public_key)}")
    return Ed25519PublicKey.from_public_bytes(public_key)


def _b64decode(text: str) -> bytes:
    """Decode canonical standard base64; raise ValueError for anything else."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(str(error)) from None
    # Re-encoding rejects non-zero padding bits, so each value has one text form.
    if base64.b64encode(raw).decode() != text:
        raise ValueError("non-canonical base64")
    return raw
