"""Tests for ledger.proof: C2SP tlog-proof receipts."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle, note
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import ProofError
from ledger.proof import HEADER, LogProof, format_proof, parse_proof, verify_receipt

ORIGIN = "onceonly.example/ledger"

# The example of C2SP tlog-proof, up to the empty line; the checkpoint's signature lines
# are elided ("[...]") in the specification, so they are not base64.
SPEC_HEAD = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

"""
SPEC_CHECKPOINT = """example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

— example.com/fancylog hI2DJw[...]1roloI=
— witness1.example mJirIklj[...]qY9v2B/5bg==
"""


class Log:
    """A small log of entries "entry <i>", its signer, and receipts for it."""

    def __init__(self, size: int) -> None:
        self.entries = [f"entry {i}".encode() for i in range(size)]
        self.builder = merkle.TreeBuilder()
        self.nodes: dict[tuple[int, int], bytes] = {}
        for entry in self.entries:
            for node in self.builder.append(merkle.leaf_hash(entry)):
                self.nodes[(node.level, node.index)] = node.hash
        self.signer = note.generate_signer(ORIGIN)
        self.checkpoint = Checkpoint(ORIGIN, size, self.builder.root())

    def read(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.nodes[node] for node in nodes]

    def receipt(self, index: int, extra: bytes = b"", signed: bytes | None = None) -> bytes:
        hashes = merkle.inclusion_proof(index, self.checkpoint.size, self.read)
        checkpoint = signed or sign_checkpoint(self.checkpoint, self.signer)
        return format_proof(LogProof(index, tuple(hashes), checkpoint, extra))


def test_parse_specification_example() -> None:
    proof = parse_proof((SPEC_HEAD + SPEC_CHECKPOINT).encode())
    assert proof.index == 73894
    assert proof.extra == base64.b64decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
    assert proof.hashes[0] == base64.b64decode("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    assert len(proof.hashes) == 5
    assert proof.checkpoint == SPEC_CHECKPOINT.encode()
    assert format_proof(proof) == (SPEC_HEAD + SPEC_CHECKPOINT).encode()


def test_format_is_the_specified_layout() -> None:
    first, second = hashlib.sha256(b"hash1").digest(), hashlib.sha256(b"hash2").digest()
    checkpoint = b"example.com/log\n2\nAAAA\n\n\xe2\x80\x94 sig\n"
    expected = (
        b"c2sp.org/tlog-proof@v1\n"
        b"extra " + base64.b64encode(b"extra information") + b"\n"
        b"index 10\n"
        + base64.b64encode(first)
        + b"\n"
        + base64.b64encode(second)
        + b"\n\n"
        + checkpoint
    )
    proof = LogProof(10, (first, second), checkpoint, b"extra information")
    assert format_proof(proof) == expected
    assert parse_proof(expected) == proof


def test_proof_without_extra_or_hashes() -> None:
    proof = LogProof(0, (), b"checkpoint\n")
    assert format_proof(proof) == b"c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n"
    assert parse_proof(format_proof(proof)) == proof


@pytest.mark.parametrize(
    "data",
    [
        # transparency-dev/merkle proof/tlog_proof_test.go TestVerifyTLogProofErrors.
        b"wrong-header\nindex 0\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n" + base64.b64encode(bytes(64)) + b"\n\ncheckpoint\n",
        # Further strictness.
        b"c2sp.org/tlog-proof@v1\nindex 01\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex +1\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex  1\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nextra \nindex 0\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\nextra AAAA\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n" + base64.b64encode(bytes(31)) + b"\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n"
        + base64.b64encode(bytes(32)).replace(b"A=", b"B=")
        + b"\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n\n",
        b"c2sp.org/tlog-proof@v2\nindex 0\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\r\nindex 0\n\ncheckpoint\n",
        b"\xffc2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n"
        + b"".join(base64.b64encode(bytes(32)) + b"\n" for _ in range(65))
        + b"\ncheckpoint\n",
    ],
)
def test_malformed_proofs_are_refused(data: bytes) -> None:
    with pytest.raises(ProofError):
        parse_proof(data)


@pytest.mark.parametrize(("size", "index"), [(1, 0), (2, 1), (7, 3), (20, 0), (20, 19), (33, 16)])
def test_verify_receipt(size: int, index: int) -> None:
    log = Log(size)
    receipt = log.receipt(index, extra=b"opening")
    verified = verify_receipt(
        receipt, log.signer.verifier(), origin=ORIGIN, leaf=log.entries[index]
    )
    assert verified.checkpoint == log.checkpoint
    assert verified.proof.index == index
    assert verified.proof.extra == b"opening"
    leaf_hash = merkle.leaf_hash(log.entries[index])
    verify_receipt(receipt, log.signer.verifier(), origin=ORIGIN, leaf_hash=leaf_hash)
    assert receipt.startswith(HEADER.encode() + b"\n")


def test_receipt_for_another_entry_fails() -> None:
    log = Log(20)
    receipt = log.receipt(4)
    with pytest.raises(ProofError, match="entry 4 is not proven"):
        verify_receipt(receipt, log.signer.verifier(), origin=ORIGIN, leaf=log.entries[5])


def test_receipt_with_changed_index_or_hash_fails() -> None:
    log = Log(20)
    proof = parse_proof(log.receipt(4))
    moved = format_proof(LogProof(5, proof.hashes, proof.checkpoint))
    with pytest.raises(ProofError):
        verify_receipt(moved, log.signer.verifier(), origin=ORIGIN, leaf=log.entries[4])
    beyond = format_proof(LogProof(20, proof.hashes, proof.checkpoint))
    with pytest.raises(ProofError):
        verify_receipt(beyond, log.signer.verifier(), origin=ORIGIN, leaf=log.entries[4])
    hashes = (bytes(32), *proof.hashes[1:])
    changed = format_proof(LogProof(4, hashes, proof.checkpoint))
    with pytest.raises(ProofError):
        verify_receipt(changed, log.signer.verifier(), origin=ORIGIN, leaf=log.entries[4])


def test_receipt_checkpoint_must_come_from_the_log() -> None:
    log = Log(8)
    receipt = log.receipt(2)
    stranger = note.generate_signer(ORIGIN)
    with pytest.raises(ProofError, match="receipt checkpoint"):
        verify_receipt(receipt, stranger.verifier(), origin=ORIGIN, leaf=log.entries[2])
    with pytest.raises(ProofError, match="origin"):
        verify_receipt(receipt, log.signer.verifier(), origin="x.example/log", leaf=log.entries[2])
    forged = log.receipt(2, signed=sign_checkpoint(log.checkpoint, stranger))
    with pytest.raises(ProofError):
        verify_receipt(forged, log.signer.verifier(), origin=ORIGIN, leaf=log.entries[2])


def test_receipt_witness_quorum() -> None:
    log = Log(8)
    witness = note.Cosigner("w.example", Ed25519PrivateKey.generate(), clock=lambda: 1700000000)
    cosigned = note.sign_note(log.checkpoint.body(), [log.signer, witness])
    receipt = log.receipt(2, signed=cosigned)
    verify_receipt(
        receipt,
        log.signer.verifier(),
        origin=ORIGIN,
        leaf=log.entries[2],
        witnesses=[witness.verifier()],
        quorum=1,
    )
    with pytest.raises(ProofError, match="witness"):
        verify_receipt(
            log.receipt(2),
            log.signer.verifier(),
            origin=ORIGIN,
            leaf=log.entries[2],
            witnesses=[witness.verifier()],
            quorum=1,
        )


def test_exactly_one_leaf_form_is_required() -> None:
    log = Log(2)
    receipt = log.receipt(0)
    verifier = log.signer.verifier()
    with pytest.raises(ProofError):
        verify_receipt(receipt, verifier, origin=ORIGIN)
    with pytest.raises(ProofError):
        verify_receipt(
            receipt,
            verifier,
            origin=ORIGIN,
            leaf=log.entries[0],
            leaf_hash=merkle.leaf_hash(log.entries[0]),
        )


def test_log_proof_refuses_bad_fields() -> None:
    with pytest.raises(ProofError):
        LogProof(-1, (), b"c\n")
    with pytest.raises(ProofError):
        LogProof(0, (b"short",), b"c\n")
    with pytest.raises(ProofError):
        LogProof(0, (bytes(32),) * 65, b"c\n")
