"""C2SP tlog-witness: the witness's decision rule for ``add-checkpoint``, and its formats.

A witness keeps, per log origin, the log's verifier key and the size and root hash of
the latest checkpoint it cosigned. ``add_checkpoint`` is the whole rule of the spec as a
pure function of that state and one request body: it returns the new state and the
cosignature line (C2SP tlog-cosignature, cosignature/v1), or raises a WitnessError
whose ``status`` is the HTTP status code the spec prescribes.

A checkpoint of the recorded size with another root hash is a split view: the log
signed two different trees of one size. ``SplitView`` carries the state in which the
log is suspended; a suspended log gets no further cosignature.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ledger.checkpoint import Checkpoint, parse_checkpoint
from ledger.errors import CheckpointError, LedgerError, NoteError, ProofError
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    Cosigner,
    Signature,
    Verifier,
    cosigned_message,
    open_note,
    parse_vkey,
)

#: The spec forbids clients to send more consistency proof lines than this.
MAX_PROOF_LINES = 63

#: The media type of a 409 answer's body: the witness's recorded size and a newline.
SIZE_MEDIA_TYPE = "text/x.tlog.size"

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_TIMESTAMP = 2**63 - 1


class WitnessError(LedgerError):
    """The witness refuses a request; ``status`` is the HTTP status the spec gives it."""

    status = 400


class MalformedRequest(WitnessError):
    """The body is not an add-checkpoint request, or its old size exceeds the checkpoint's."""

    status = 400


class UnknownLog(WitnessError):
    """The checkpoint's origin is not a log this witness knows."""

    status = 404


class Untrusted(WitnessError):
    """No signature from the log's trusted key verifies, or the log is suspended."""

    status = 403


class InvalidProof(WitnessError):
    """The consistency proof does not lead from the recorded tree to the checkpoint."""

    status = 422


class Conflict(WitnessError):
    """The request's old size is not the size the witness recorded (``size``)."""

    status = 409

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class RolledBack(Conflict):
    """The checkpoint is smaller than the one the witness already cosigned."""


class SplitView(Conflict):
    """The log signed two different root hashes for one tree size.

    ``state`` is the witness state with the log suspended and the evidence kept: the
    caller must persist it and report the split view.
    """

    def __init__(self, message: str, size: int, state: WitnessState, evidence: bytes) -> None:
        super().__init__(message, size)
        self.state = state
        self.evidence = evidence


@dataclass(frozen=True)
class AddCheckpointRequest:
    """An add-checkpoint body: the old size, the consistency proof and the signed note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


@dataclass(frozen=True)
class LogState:
    """What the witness holds for one log.

    ``root_hash`` is None until the witness cosigns a checkpoint of the log (then
    ``size`` is 0). ``split_view`` is the conflicting note once a split view was seen.
    """

    vkey: str
    size: int = 0
    root_hash: bytes | None = None
    split_view: str | None = None

    @property
    def verifier(self) -> Verifier:
        return parse_vkey(self.vkey)


@dataclass(frozen=True)
class WitnessState:
    """Every log the witness knows, by origin."""

    logs: Mapping[str, LogState] = field(default_factory=dict)

    def with_log(self, origin: str, state: LogState) -> WitnessState:
        """Return a copy in which ``origin`` has ``state``."""
        return WitnessState({**self.logs, origin: state})

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-ready data (root hashes in base64)."""
        return {
            "logs": {
                origin: {
                    "vkey": log.vkey,
                    "size": log.size,
                    "root_hash": None if log.root_hash is None else _b64(log.root_hash),
                    "split_view": log.split_view,
                }
                for origin, log in sorted(self.logs.items())
            }
        }

    @classmethod
    def from_json(cls, data: Any) -> WitnessState:
        """Parse what ``to_json`` wrote. Raises WitnessError for anything else."""
        try:
            logs = {origin: _log_state(log) for origin, log in data["logs"].items()}
        except (KeyError, TypeError, AttributeError, ValueError, NoteError) as exc:
            raise WitnessError(f"witness state is malformed ({type(exc).__name__})") from None
        return cls(logs)


def _log_state(data: dict[str, Any]) -> LogState:
    root, size, vkey, split_view = (data[k] for k in ("root_hash", "size", "vkey", "split_view"))
    if not (isinstance(size, int) and size >= 0 and isinstance(vkey, str)):
        raise ValueError("bad size or key")
    if not (split_view is None or isinstance(split_view, str)):
        raise ValueError("bad split view")
    parse_vkey(vkey)
    root_hash = None if root is None else base64.b64decode(root, validate=True)
    if root_hash is not None and len(root_hash) != HASH_SIZE:
        raise ValueError("bad root hash")
    return LogState(vkey, size, root_hash, split_view)


def add_log(state: WitnessState, vkey: str, origin: str | None = None) -> WitnessState:
    """Trust the log whose Ed25519 verifier key is ``vkey`` (origin: the key's name).

    Adding the same key again changes nothing. Raises WitnessError for a key that is
    not an Ed25519 note key, or an origin already trusted with another key.
    """
    try:
        verifier = parse_vkey(vkey)
    except NoteError as exc:
        raise WitnessError(f"log key: {exc}") from None
    if verifier.key_type != ED25519:
        raise WitnessError("a log key must be an Ed25519 (type 0x01) verifier key")
    origin = origin or verifier.name
    known = state.logs.get(origin)
    if known is not None:
        if known.vkey != verifier.vkey:
            raise WitnessError(f"log {origin} is already trusted with another key")
        return state
    return state.with_log(origin, LogState(verifier.vkey))


def parse_request(body: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint body strictly. Raises MalformedRequest."""
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise MalformedRequest("request has no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise MalformedRequest("request header is not ASCII") from None
    old_line, proof_lines = lines[0], lines[1:]
    keyword, space, size_text = old_line.partition(" ")
    if keyword != "old" or not space or not _DECIMAL.fullmatch(size_text):
        raise MalformedRequest("first line must be `old <size>` in decimal")
    if len(size_text) > 20:  # above 2**64, and beyond int()'s digit limit further on
        raise MalformedRequest("old size out of range")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in proof_lines:
        try:
            node = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequest("a consistency proof line is not base64") from None
        if len(node) != HASH_SIZE or _b64(node) != line:
            raise MalformedRequest("a consistency proof line is not one canonical hash")
        proof.append(node)
    return AddCheckpointRequest(int(size_text), tuple(proof), note)


def format_request(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """Return the add-checkpoint body for a signed checkpoint ``note``."""
    lines = [f"old {old_size}", *(_b64(node) for node in proof)]
    return ("\n".join(lines) + "\n\n").encode() + note


def add_checkpoint(
    state: WitnessState, request_bytes: bytes, cosigner: Cosigner, now: int
) -> tuple[WitnessState, str]:
    """Decide an add-checkpoint request (C2SP tlog-witness) at POSIX time ``now``.

    On success returns the state recording the checkpoint and one cosignature/v1
    signature line (ending in a newline). Raises, in the spec's order: MalformedRequest
    (400) for a malformed body or an old size beyond the checkpoint's, UnknownLog (404),
    Untrusted (403) when the log's key did not sign it or the log is suspended,
    Conflict (409, with the recorded size; RolledBack for a smaller checkpoint) when the
    old size is not the recorded one, InvalidProof (422), and SplitView (409) for
    another root hash of the recorded size.
    """
    request = parse_request(request_bytes)
    checkpoint = _checkpoint_text(request.note)
    log = state.logs.get(checkpoint.origin)
    if log is None:
        raise UnknownLog(f"unknown log {checkpoint.origin!r}")
    try:
        opened = open_note(request.note, [log.verifier])
    except NoteError as exc:
        raise Untrusted(
            f"checkpoint is not signed by the key of {checkpoint.origin}: {exc}"
        ) from None
    if log.split_view is not None:
        raise Untrusted(f"log {checkpoint.origin} is suspended after a split view")
    if request.old_size > checkpoint.size:
        raise MalformedRequest(
            f"old size {request.old_size} exceeds the checkpoint size {checkpoint.size}"
        )
    if request.old_size != log.size:
        if checkpoint.size < log.size:
            raise RolledBack(
                f"checkpoint size {checkpoint.size} is smaller than the cosigned {log.size}",
                log.size,
            )
        raise Conflict(f"old size {request.old_size} is not the cosigned {log.size}", log.size)
    if checkpoint.size == log.size:
        if request.proof:
            raise InvalidProof("the consistency proof between equal sizes must be empty")
        recorded = log.root_hash if log.root_hash is not None else EMPTY_ROOT
        if checkpoint.root_hash != recorded:
            if log.root_hash is None:
                raise InvalidProof("an empty tree must have the empty root hash")
            suspended = state.with_log(
                checkpoint.origin, replace(log, split_view=request.note.decode())
            )
            raise SplitView(
                f"split view of {checkpoint.origin}: two root hashes for size {log.size}",
                log.size,
                suspended,
                request.note,
            )
    else:
        try:
            verify_consistency(
                log.size,
                checkpoint.size,
                log.root_hash if log.root_hash is not None else EMPTY_ROOT,
                checkpoint.root_hash,
                request.proof,
            )
        except ProofError as exc:
            raise InvalidProof(f"consistency proof does not verify: {exc}") from None
    new_state = state.with_log(
        checkpoint.origin, replace(log, size=checkpoint.size, root_hash=checkpoint.root_hash)
    )
    return new_state, cosign(opened.text, cosigner, now)


def cosign(text: str, cosigner: Cosigner, now: int) -> str:
    """Return the cosignature/v1 line of ``cosigner`` over the note ``text`` at ``now``."""
    if not 0 <= now <= _MAX_TIMESTAMP:
        raise WitnessError(f"cosignature timestamp {now} out of range")
    signed = cosigner.private_key.sign(cosigned_message(text.encode(), now))
    return Signature(cosigner.name, cosigner.key_id, now.to_bytes(8, "big") + signed).line()


def encode_cosigner_key(cosigner: Cosigner) -> str:
    """Encode a witness key as ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x04 || seed)``.

    The shape of ledger.note's signer keys, with the cosignature/v1 type byte. Secret.
    """
    seed = cosigner.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    encoded = _b64(bytes([COSIGNATURE_V1]) + seed)
    return f"PRIVATE+KEY+{cosigner.name}+{cosigner.key_id:08x}+{encoded}"


def parse_cosigner_key(skey: str) -> Cosigner:
    """Parse what ``encode_cosigner_key`` wrote. Raises WitnessError; never shows the key."""
    parts = skey.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise WitnessError("malformed witness key")
    name, hex_id, encoded = parts[2:]
    try:
        key = base64.b64decode(encoded, validate=True)
        if len(key) != 33 or key[0] != COSIGNATURE_V1:
            raise ValueError
        cosigner = Cosigner(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
    except (binascii.Error, ValueError, NoteError):
        raise WitnessError("malformed witness key") from None
    if f"{cosigner.key_id:08x}" != hex_id.lower():
        raise WitnessError("witness key ID does not match its key")
    return cosigner


def _checkpoint_text(note: bytes) -> Checkpoint:
    # The origin picks the trusted key, so the text is read before any signature is.
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("checkpoint is not UTF-8") from None
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedRequest("checkpoint has no signature lines")
    try:
        return parse_checkpoint(text[: split + 1])
    except CheckpointError as exc:
        raise MalformedRequest(str(exc)) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
