"""C2SP tlog-proof (``c2sp.org/tlog-proof@v1``): offline-verifiable inclusion receipts.

A proof is the header line, an optional ``extra <base64>`` line of unauthenticated
application data, ``index <n>``, the inclusion proof hashes in base64 one per line
(the leaf's sibling first), an empty line, and the signed checkpoint verbatim::

    c2sp.org/tlog-proof@v1
    extra <base64>
    index 73894
    gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
    ...

    <signed checkpoint note>

Onceonly hands these out as receipts: anyone holding one, the entry and the log's
verifier key can check that the entry is in the log without asking the log.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import CheckpointError, ProofError
from ledger.note import NoteVerifier

HEADER = "c2sp.org/tlog-proof@v1"

#: A proof in a tree of at most 2**64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class LogProof:
    """A parsed tlog-proof: entry index, inclusion proof, signed checkpoint, extra data.

    ``checkpoint`` is the signed note's bytes, unverified until ``verify_receipt``.
    ``extra`` is empty when the proof carries no extra line. Raises ProofError for a
    negative index, a hash that is not 32 bytes, or more than 64 hashes.
    """

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes = b""

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ProofError(f"negative entry index {self.index}")
        if len(self.hashes) > MAX_PROOF_HASHES:
            raise ProofError(f"inclusion proof has more than {MAX_PROOF_HASHES} hashes")
        if any(len(h) != merkle.HASH_SIZE for h in self.hashes):
            raise ProofError(f"inclusion proof hashes must be {merkle.HASH_SIZE} bytes")


class VerifiedReceipt(NamedTuple):
    """A receipt that verified: the proof as parsed and the checkpoint it proves against."""

    proof: LogProof
    checkpoint: Checkpoint


def format_proof(proof: LogProof) -> bytes:
    """Return the tlog-proof text of ``proof`` as UTF-8 bytes."""
    lines = [HEADER]
    if proof.extra:
        lines.append(f"extra {base64.b64encode(proof.extra).decode()}")
    lines.append(f"index {proof.index}")
    lines.extend(base64.b64encode(h).decode() for h in proof.hashes)
    return ("\n".join(lines) + "\n\n").encode() + proof.checkpoint


def parse_proof(data: bytes) -> LogProof:
    """Parse a tlog-proof strictly; the checkpoint after the empty line is kept verbatim.

    Raises ProofError for a wrong header, an empty or non-canonical base64 extra line,
    an index with leading zeros or signs, a hash line that is not canonical base64 of 32
    bytes, a missing empty line, or a missing checkpoint.
    """
    head, separator, checkpoint = data.partition(b"\n\n")
    if not separator or not checkpoint:
        raise ProofError("proof has no checkpoint after an empty line")
    try:
        lines = head.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise ProofError("proof is not valid UTF-8") from None
    if lines[0] != HEADER:
        raise ProofError(f"proof does not start with {HEADER!r}")
    rest = lines[1:]
    extra = b""
    if rest and rest[0].startswith("extra "):
        extra = _decode(rest.pop(0).removeprefix("extra "), "extra data")
        if not extra:
            raise ProofError("proof has an empty extra line")
    if not rest or not rest[0].startswith("index "):
        raise ProofError("proof has no index line")
    index_text = rest.pop(0).removeprefix("index ")
    if not _DECIMAL.fullmatch(index_text):
        raise ProofError(f"entry index {index_text!r} is not a decimal without leading zeros")
    if len(index_text) > 20:  # above 2**64, and beyond int()'s digit limit further on
        raise ProofError("entry index out of range")
    hashes = tuple(_decode(line, "proof hash") for line in rest)
    return LogProof(int(index_text), hashes, checkpoint, extra)


def verify_receipt(
    data: bytes,
    verifier: NoteVerifier,
    *,
    origin: str,
    leaf: bytes | None = None,
    leaf_hash: bytes | None = None,
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int = 0,
) -> VerifiedReceipt:
    """Check that a tlog-proof proves an entry is in the log of ``verifier`` and ``origin``.

    Give the entry as ``leaf`` (its bytes) or as ``leaf_hash`` (its RFC 9162 leaf hash),
    not both. The checkpoint must be signed by the log and cosigned by ``quorum`` of the
    ``witnesses``. Returns the parsed proof and checkpoint; raises ProofError for any
    failure, with the underlying error as its cause.
    """
    if leaf is not None and leaf_hash is None:
        expected = merkle.leaf_hash(leaf)
    elif leaf_hash is not None and leaf is None:
        expected = leaf_hash
    else:
        raise ProofError("give exactly one of leaf and leaf_hash")
    proof = parse_proof(data)
    try:
        checkpoint = open_checkpoint(
            proof.checkpoint, verifier, origin=origin, witnesses=witnesses, quorum=quorum
        )
    except CheckpointError as error:
        raise ProofError(f"receipt checkpoint: {error}") from error
    try:
        merkle.verify_inclusion(
            expected, proof.index, checkpoint.size, proof.hashes, checkpoint.root_hash
        )
    except ProofError as error:
        raise ProofError(
            f"entry {proof.index} is not proven in the tree of size {checkpoint.size}: {error}"
        ) from error
    return VerifiedReceipt(proof, checkpoint)


def _decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError(f"{what} is not base64") from None
    # Re-encoding rejects non-zero padding bits, so each proof has one text form.
    if base64.b64encode(raw).decode() != text:
        raise ProofError(f"{what} is not canonical base64")
    return raw
