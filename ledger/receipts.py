"""Personal receipts: a C2SP tlog-proof whose extra line lets its holder show that an
entry is in the log AND that it is about them.

The extra line is JSON (keys sorted): ``entry`` (base64 of the exact leaf bytes),
``opening`` (base64 of the commitment opening), ``pseudonym`` and ``vkey`` (the log's
verifier key, as a hint: a careful verifier gives the key it trusts instead).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint
from ledger.entry import Entry, decode_entry, verify_commitment
from ledger.errors import EntryError, NoteError, ProofError
from ledger.note import parse_vkey
from ledger.proof import parse_proof, verify_receipt


@dataclass(frozen=True)
class CheckedReceipt:
    index: int
    entry: Entry
    checkpoint: Checkpoint
    pseudonym: str
    key_was_given: bool


def personal_extra(leaf: bytes, opening: bytes, pseudonym: str, vkey: str) -> bytes:
    """The extra line's content for a personal receipt."""
    document = {
        "entry": base64.b64encode(leaf).decode(),
        "opening": base64.b64encode(opening).decode(),
        "pseudonym": pseudonym,
        "vkey": vkey,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def check_personal_receipt(data: bytes, vkey: str | None = None) -> CheckedReceipt:
    """Verify a personal receipt offline.

    The entry must be included in the signed checkpoint of the log whose key is
    ``vkey`` (or, without it, the key the receipt names), and its person commitment
    must open to the pseudonym with the opening. Raises ProofError saying what failed.
    """
    proof = parse_proof(data)
    try:
        extra = json.loads(proof.extra)
        leaf = base64.b64decode(extra["entry"], validate=True)
        opening = base64.b64decode(extra["opening"], validate=True)
        pseudonym = str(extra["pseudonym"])
        named_key = str(extra["vkey"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ProofError("the receipt's extra line is not an Onceonly personal receipt") from None
    try:
        verifier = parse_vkey(vkey or named_key)
    except NoteError as exc:
        raise ProofError(f"the verifier key is not valid: {exc}") from exc
    verified = verify_receipt(data, verifier, origin=verifier.name, leaf=leaf)
    try:
        entry = decode_entry(leaf)
    except EntryError as exc:
        raise ProofError(f"the entry in the receipt is not a valid entry: {exc}") from exc
    if not verify_commitment(entry.subject_commitment, opening, pseudonym):
        raise ProofError("the entry's person commitment does not open to this pseudonym")
    return CheckedReceipt(proof.index, entry, verified.checkpoint, pseudonym, vkey is not None)
