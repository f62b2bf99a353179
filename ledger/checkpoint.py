"""C2SP tlog-checkpoint: the signed tree head of the ledger.

A checkpoint's note text is the log's origin, the tree size in decimal, the base64 root
hash, then optional non-empty extension lines, each ending in a newline. It is signed
as a C2SP signed note by the log's key and may carry witness cosignatures.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import CheckpointError, NoteError
from ledger.merkle import HASH_SIZE
from ledger.note import NoteSigner, NoteVerifier, open_note, sign_note

#: Tree sizes are uint64 on the wire (RFC 9162 and every tlog client).
MAX_TREE_SIZE = 2**64 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and opaque extension lines.

    Raises CheckpointError when a field cannot be represented in a checkpoint: an empty
    origin, a line containing a newline or control character, an empty extension line,
    a size outside 0..2**64-1, or a root hash that is not 32 bytes.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin:
            raise CheckpointError("checkpoint origin is empty")
        for line in (self.origin, *self.extensions):
            if not line:
                raise CheckpointError("checkpoint extension line is empty")
            if any(ord(ch) < 0x20 for ch in line):
                raise CheckpointError(f"checkpoint line {line!r} contains a control character")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size} out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")

    def body(self) -> str:
        """Return the note text: origin, size, base64 root and extensions, one per line."""
        root = base64.b64encode(self.root_hash).decode()
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text strictly.

    The text must end in a newline; the size must be decimal without leading zeros; the
    root must be canonical base64 of 32 bytes. Raises CheckpointError otherwise.
    """
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint text has fewer than three lines")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(f"tree size {size_text!r} is not a decimal without leading zeros")
    if len(size_text) > len(str(MAX_TREE_SIZE)):  # also keeps int() within its digit limit
        raise CheckpointError("tree size out of range")
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("root hash is not base64") from None
    if base64.b64encode(root_hash).decode() != root_text:
        raise CheckpointError("root hash is not canonical base64")
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))


#: The log's key, or its keys across a rotation (any order; see ``open_checkpoint``).
LogKeys = NoteVerifier | Sequence[NoteVerifier]


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner | Sequence[NoteSigner]) -> bytes:
    """Return the checkpoint as a signed note, signed by the log's ``signer``.

    ``signer`` may be several keys (during a key rotation the new and the previous key
    both sign), one signature line each, in order. Raises NoteError if a signer cannot
    sign (see ``ledger.note.sign_note``).
    """
    signers = list(signer) if isinstance(signer, Sequence) else [signer]
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    note: bytes,
    verifier: LogKeys,
    *,
    origin: str,
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int = 0,
) -> Checkpoint:
    """Verify a signed checkpoint from the log whose key is ``verifier`` and parse it.

    ``verifier`` may be the log's keys across rotations (the trusted set): a valid
    signature by one of them is required, and every signature by any of them must be
    valid. The origin line must equal ``origin``, and at least ``quorum`` of the
    ``witnesses`` must have cosigned it. Signatures from other keys are ignored. Raises
    CheckpointError for any failure, with the NoteError of a bad note as its cause.
    """
    keys = log_keys(verifier)
    try:
        opened = open_note(note, [*keys, *witnesses])
    except NoteError as error:
        raise CheckpointError(f"checkpoint note: {error}") from error
    signed_by = {(s.name, s.key_id) for s in opened.signatures}
    if not any((key.name, key.key_id) in signed_by for key in keys):
        raise CheckpointError("checkpoint is not signed by the log's key")
    cosigned = sum((w.name, w.key_id) in signed_by for w in witnesses)
    if cosigned < quorum:
        raise CheckpointError(f"checkpoint has {cosigned} witness cosignatures, needs {quorum}")
    checkpoint = parse_checkpoint(opened.text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint


def log_keys(keys: LogKeys) -> tuple[NoteVerifier, ...]:
    """The log's keys as a tuple, each (name, key ID) once. Raises CheckpointError if none."""
    unique: dict[tuple[str, int], NoteVerifier] = {}
    for key in keys if isinstance(keys, Sequence) else [keys]:
        unique.setdefault((key.name, key.key_id), key)
    if not unique:
        raise CheckpointError("no log key to check the checkpoint with")
    return tuple(unique.values())
