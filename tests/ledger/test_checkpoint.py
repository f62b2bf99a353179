"""Tests for ledger.checkpoint: C2SP tlog-checkpoint bodies, signing and opening."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle, note
from ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.errors import CheckpointError

# golang.org/x/mod sumdb/tlog note_test.go TestFormatTree: the go.sum database's tree
# note, the format tlog-checkpoint grew from, for RecordHash("hello world").
GO_TREE = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"

# The example checkpoint of C2SP tlog-checkpoint.
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

ORIGIN = "onceonly.example/ledger"
ROOT = merkle.leaf_hash(b"hello world")


def test_body_matches_go_tree_note() -> None:
    checkpoint = Checkpoint("go.sum database tree", 123456789012, merkle.leaf_hash(b"hello world"))
    assert checkpoint.body() == GO_TREE
    assert parse_checkpoint(GO_TREE) == checkpoint


def test_parse_specification_example() -> None:
    checkpoint = parse_checkpoint(SPEC_TEXT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.body() == SPEC_TEXT


def test_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT, ("ext one", "— two"))
    assert checkpoint.body().endswith("\next one\n— two\n")
    assert parse_checkpoint(checkpoint.body()) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        # golang.org/x/mod sumdb/tlog TestParseTree, bad trees.
        "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
        # Strictness of tlog-checkpoint.
        GO_TREE[:-1],
        GO_TREE + "JOE",
        GO_TREE + "\n",
        "go.sum database tree\n0123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n-1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n+1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n 1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n\u0661\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "o\n18446744073709551616\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n",
        "go.sum database tree\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n",
        "go.sum database tree\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40Hmuw\n",
        "\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
        "go.sum database tree\n1\n",
        "",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(text)


def test_largest_and_smallest_sizes() -> None:
    assert parse_checkpoint(f"o\n0\n{base64.b64encode(ROOT).decode()}\n").size == 0
    largest = f"o\n18446744073709551615\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(largest).size == 2**64 - 1


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
    ],
)
def test_unrepresentable_checkpoints_are_refused(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root, extensions)


def test_sign_and_open() -> None:
    log = note.generate_signer(ORIGIN)
    checkpoint = Checkpoint(ORIGIN, 42, ROOT)
    signed = sign_checkpoint(checkpoint, log)
    assert signed.startswith(checkpoint.body().encode() + b"\n\xe2\x80\x94 " + ORIGIN.encode())
    assert open_checkpoint(signed, log.verifier(), origin=ORIGIN) == checkpoint


def test_open_refuses_wrong_origin_key_or_body() -> None:
    log = note.generate_signer(ORIGIN)
    signed = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), log)
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(signed, log.verifier(), origin="other.example/ledger")
    with pytest.raises(CheckpointError):
        open_checkpoint(signed, note.generate_signer(ORIGIN).verifier(), origin=ORIGIN)
    tampered = signed.replace(b"\n42\n", b"\n43\n")
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_checkpoint(tampered, log.verifier(), origin=ORIGIN)


def test_open_refuses_a_signed_note_that_is_not_a_checkpoint() -> None:
    log = note.generate_signer(ORIGIN)
    signed = note.sign_note(f"{ORIGIN}\nforty-two\n", [log])
    with pytest.raises(CheckpointError):
        open_checkpoint(signed, log.verifier(), origin=ORIGIN)


def test_witness_quorum() -> None:
    log = note.generate_signer(ORIGIN)
    witnesses = [
        note.Cosigner(f"witness{i}.example", Ed25519PrivateKey.generate(), clock=lambda: 1700000000)
        for i in range(3)
    ]
    checkpoint = Checkpoint(ORIGIN, 7, ROOT)
    signed = note.sign_note(checkpoint.body(), [log, *witnesses[:2]])
    verifiers = [w.verifier() for w in witnesses]
    assert open_checkpoint(signed, log.verifier(), origin=ORIGIN, witnesses=verifiers, quorum=2)
    with pytest.raises(CheckpointError, match="2 witness cosignatures, needs 3"):
        open_checkpoint(signed, log.verifier(), origin=ORIGIN, witnesses=verifiers, quorum=3)


def test_witness_signatures_alone_are_not_enough() -> None:
    log = note.generate_signer(ORIGIN)
    witness = note.Cosigner("w.example", Ed25519PrivateKey.generate(), clock=lambda: 1)
    signed = note.sign_note(Checkpoint(ORIGIN, 7, ROOT).body(), [witness])
    with pytest.raises(CheckpointError, match="not signed by the log"):
        open_checkpoint(signed, log.verifier(), origin=ORIGIN, witnesses=[witness.verifier()])
