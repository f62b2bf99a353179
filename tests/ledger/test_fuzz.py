"""Fuzzing the ledger's parsers: hostile bytes raise only each parser's own error.

Every parser of outside input (signed notes and keys, checkpoints, tlog-proof receipts,
tile paths, hash tiles and entry bundles, entries, bundle manifests, witness requests)
gets arbitrary bytes and text, inputs shaped like its format with hostile values (huge
numbers, deep nesting), and small mutations of a valid input. Each may refuse only with
its documented error class (never IndexError, UnicodeDecodeError, struct.error,
ValueError, RecursionError...), and a mutated signed input is never accepted as saying
something else than what was signed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ledger import witness
from ledger.bundle import BundleError, Manifest
from ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.entry import Basis, Entry, decode_entry, encode_entry
from ledger.errors import CheckpointError, EntryError, NoteError, ProofError, TileError
from ledger.merkle import consistency_proof, inclusion_proof, leaf_hash, root_from_leaves
from ledger.note import (
    Cosigner,
    encode_signer_key,
    generate_signer,
    open_note,
    parse_signer_key,
    parse_vkey,
    sign_note,
)
from ledger.proof import HEADER, LogProof, format_proof, parse_proof, verify_receipt
from ledger.tiles import decode_bundle, encode_bundle, parse_tile_path, tile_hashes

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTATIONS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ORIGIN = "fuzz.example/log"
NOW = 1_700_000_000
SIGNER = generate_signer(ORIGIN)
VERIFIER = SIGNER.verifier()
COSIGNER = Cosigner("fuzz.example/witness", Ed25519PrivateKey.generate(), clock=lambda: NOW)

LEAVES = [f"entry {i}".encode() for i in range(11)]
HASHES = [leaf_hash(leaf) for leaf in LEAVES]


def read(nodes: Any) -> list[bytes]:
    return [
        root_from_leaves(HASHES[index << level : (index + 1) << level]) for level, index in nodes
    ]


def signed_checkpoint(size: int) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root_from_leaves(HASHES[:size])), SIGNER)


CHECKPOINT_NOTE = signed_checkpoint(len(LEAVES))
CHECKPOINT = parse_checkpoint(CHECKPOINT_NOTE.decode().split("\n\n")[0] + "\n")
COSIGNED_NOTE = sign_note(CHECKPOINT.body(), [SIGNER, COSIGNER])
RECEIPT = format_proof(LogProof(5, tuple(inclusion_proof(5, len(LEAVES), read)), CHECKPOINT_NOTE))
RECEIPT_WITH_EXTRA = format_proof(
    LogProof(5, tuple(inclusion_proof(5, len(LEAVES), read)), CHECKPOINT_NOTE, b"extra data")
)
ENTRY = Entry(
    type="access.denied",
    time="2025-12-31T23:59:59.999Z",
    actor_org="MIN-EDU",
    actor_system="grants",
    purpose="grant.check",
    basis=Basis("authority", "law-12.3"),
    categories=("income", "address"),
    query_id="q-2",
    subject_commitment=bytes(range(32)),
    hidden_until="2026-06-30",
    hidden_reason="investigation",
    reasons=("no-consent",),
    source_orgs=("TAX", "POP"),
)
ENTRY_BYTES = encode_entry(ENTRY)
BUNDLE = encode_bundle([ENTRY_BYTES, b"", b"x" * 300, LEAVES[0]])
MANIFEST = Manifest(
    origin=ORIGIN,
    vkey=VERIFIER.vkey,
    size=11,
    root=base64.b64encode(CHECKPOINT.root_hash).decode(),
    created="2025-01-02T03:04:05Z",
    counts={"entries": 11, "checkpoints": 2, "entry_bundles": 1, "tiles": 1},
    files={"vkey": "0" * 64, "checkpoint": "1" * 64},
)
WITNESS_STATE, _ = witness.add_checkpoint(
    witness.add_log(witness.WitnessState(), VERIFIER.vkey),
    witness.format_request(0, [], signed_checkpoint(4)),
    COSIGNER,
    NOW,
)
WITNESS_REQUEST = witness.format_request(
    4, consistency_proof(4, len(LEAVES), read), CHECKPOINT_NOTE
)
WITNESS_ANSWER = witness.add_checkpoint(WITNESS_STATE, WITNESS_REQUEST, COSIGNER, NOW)

DIGITS = st.text("0123456789", min_size=1, max_size=6000)
#: JSON documents of any shape, and some no parser should try to recurse into.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
HOSTILE_JSON = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    DIGITS.map(lambda d: b'{"v":' + d.encode() + b"}"),
    DIGITS.map(lambda d: b"1" + d.encode() + b"e" + d.encode()),
)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with one to three small changes: bits flipped, bytes replaced, inserted,
    deleted or repeated, or the end cut off."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "replace", "insert", "delete", "cut", "repeat"]))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(INSERTS))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 80))]
    changed = bytes(data)
    assume(changed != valid)
    return changed


#: Pieces of the formats a mutation may insert: separators, dashes, digits, base64.
INSERTS = [b"\n", b"\n\n", b"\r", b" ", b"\xe2\x80\x94 ", b"+", b"=", b"0", b"9" * 30, b"\x00"]


def refused_only_with(error: type[Exception] | tuple[type[Exception], ...]) -> Callable[..., Any]:
    """Run ``parse(data)``; an exception other than ``error`` fails the test."""

    def run(parse: Callable[[Any], Any], data: Any) -> Any:
        try:
            return parse(data)
        except error:
            return None

    return run


# --- signed notes and keys --------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
@example(b"x\n\n\xe2\x80\x94 k " + b"A" * 5000 + b"\n")
@example(("a\n" * 5000 + "\n").encode())
def test_open_note_refuses_anything_with_note_error(data: bytes) -> None:
    refused_only_with(NoteError)(lambda d: open_note(d, [VERIFIER]), data)


@MUTATIONS
@given(st.sampled_from([CHECKPOINT_NOTE, COSIGNED_NOTE]).flatmap(mutated))
def test_a_mutated_note_never_says_something_else(data: bytes) -> None:
    opened = refused_only_with(NoteError)(
        lambda d: open_note(d, [VERIFIER, COSIGNER.verifier()]), data
    )
    if opened is not None:  # e.g. a signature line repeated: the signed text is intact
        assert opened.text == CHECKPOINT.body()


@FUZZ
@given(st.text(max_size=300) | st.from_regex(r"[a-z.]{1,9}\+[0-9a-fA-F]{0,10}\+[A-Za-z0-9+/=]*"))
@example("k+00000000+" + base64.b64encode(b"\x01" + b"\0" * 32).decode())
@example("k+0000000g+AQ==")
def test_verifier_keys_are_refused_with_note_error(text: str) -> None:
    refused_only_with(NoteError)(parse_vkey, text)


@FUZZ
@given(st.sampled_from([encode_signer_key(SIGNER).encode()]).flatmap(mutated))
def test_signer_keys_are_refused_with_note_error(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    signer = refused_only_with(NoteError)(parse_signer_key, text)
    if signer is not None:
        assert signer.verifier().vkey == VERIFIER.vkey


# --- checkpoints --------------------------------------------------------------------------


@FUZZ
@given(
    st.text(max_size=500)
    | DIGITS.map(lambda d: f"{ORIGIN}\n{d}\n{base64.b64encode(bytes(32)).decode()}\n")
)
@example(f"o\n{'1' * 5000}\n{'A' * 43}=\n")
def test_parse_checkpoint_refuses_with_checkpoint_error(text: str) -> None:
    refused_only_with(CheckpointError)(parse_checkpoint, text)


@MUTATIONS
@given(st.sampled_from([CHECKPOINT_NOTE, COSIGNED_NOTE]).flatmap(mutated))
def test_a_mutated_checkpoint_is_never_another_checkpoint(data: bytes) -> None:
    opened = refused_only_with(CheckpointError)(
        lambda d: open_checkpoint(d, VERIFIER, origin=ORIGIN), data
    )
    assert opened is None or opened == CHECKPOINT


# --- tlog-proof receipts ------------------------------------------------------------------


@FUZZ
@given(
    st.binary(max_size=2000)
    | DIGITS.map(lambda d: f"{HEADER}\nindex {d}\n\n".encode() + CHECKPOINT_NOTE)
    | st.text(max_size=300).map(lambda t: f"{HEADER}\n{t}\n\n".encode() + CHECKPOINT_NOTE)
)
@example(f"{HEADER}\nindex {'7' * 5000}\n\n".encode() + CHECKPOINT_NOTE)
@example(f"{HEADER}\nextra \nindex 1\n\nx".encode())
def test_parse_proof_refuses_with_proof_error(data: bytes) -> None:
    refused_only_with(ProofError)(parse_proof, data)
    refused_only_with(ProofError)(
        lambda d: verify_receipt(d, VERIFIER, origin=ORIGIN, leaf=LEAVES[5]), data
    )


@MUTATIONS
@given(st.sampled_from([RECEIPT, RECEIPT_WITH_EXTRA]).flatmap(mutated))
def test_a_mutated_receipt_never_proves_anything_else(data: bytes) -> None:
    verified = refused_only_with(ProofError)(
        lambda d: verify_receipt(d, VERIFIER, origin=ORIGIN, leaf=LEAVES[5]), data
    )
    if verified is not None:  # only the unauthenticated extra line may differ
        assert verified.proof.index == 5
        assert verified.checkpoint == CHECKPOINT


# --- tiles and entry bundles --------------------------------------------------------------


@FUZZ
@given(
    st.text(max_size=200)
    | st.from_regex(r"tile/(entries|[0-9]{1,4})/(x[0-9]{3}/){0,8}[0-9]{3}(\.p/[0-9]{1,4})?")
    | st.tuples(DIGITS, st.integers(0, 3000)).map(
        lambda t: f"tile/{t[0]}/" + "x123/" * t[1] + "456"
    )
)
@example("tile/0/" + "x001/" * 2000 + "001")
@example("tile/" + "1" * 5000 + "/001")
@example("tile/0/001.p/" + "9" * 5000)
def test_tile_paths_are_refused_with_tile_error(path: str) -> None:
    ref = refused_only_with(TileError)(parse_tile_path, path)
    if ref is not None:
        assert ref.path() == path  # one path per tile


@FUZZ
@given(st.binary(max_size=10_000))
def test_tiles_and_bundles_are_refused_with_tile_error(data: bytes) -> None:
    refused_only_with(TileError)(tile_hashes, data)
    entries = refused_only_with(TileError)(decode_bundle, data)
    if entries is not None:
        assert encode_bundle(entries) == data


@MUTATIONS
@given(mutated(BUNDLE))
def test_a_mutated_entry_bundle_decodes_only_as_what_it_encodes(data: bytes) -> None:
    entries = refused_only_with(TileError)(lambda d: decode_bundle(d, 4), data)
    if entries is not None:
        assert encode_bundle(entries) == data


# --- entries ------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000) | HOSTILE_JSON)
@example(b"[" * 5000)
@example(b'{"v":' + b"1" * 5000 + b"}")
def test_entries_are_refused_with_entry_error(data: bytes) -> None:
    refused_only_with(EntryError)(decode_entry, data)


@MUTATIONS
@given(mutated(ENTRY_BYTES))
def test_a_mutated_entry_decodes_only_as_its_own_canonical_encoding(data: bytes) -> None:
    entry = refused_only_with(EntryError)(decode_entry, data)
    if entry is not None:
        assert encode_entry(entry) == data


# --- bundle manifests ---------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000) | HOSTILE_JSON)
@example(b"[" * 100_000)
@example(b'{"size":' + b"9" * 5000 + b"}")
def test_manifests_are_refused_with_bundle_error(data: bytes) -> None:
    refused_only_with(BundleError)(Manifest.decode, data)


@MUTATIONS
@given(mutated(MANIFEST.encode()))
def test_a_mutated_manifest_is_refused(data: bytes) -> None:
    manifest = refused_only_with(BundleError)(Manifest.decode, data)
    assert manifest is None or manifest == MANIFEST


# --- witness requests ---------------------------------------------------------------------


@FUZZ
@given(
    st.binary(max_size=2000)
    | DIGITS.map(lambda d: f"old {d}\n\n".encode() + CHECKPOINT_NOTE)
    | st.text(max_size=300).map(lambda t: f"old 4\n{t}\n\n".encode() + CHECKPOINT_NOTE)
)
@example(b"old " + b"4" * 5000 + b"\n\n" + CHECKPOINT_NOTE)
def test_witness_requests_are_refused_with_witness_errors(data: bytes) -> None:
    refused_only_with(witness.MalformedRequest)(witness.parse_request, data)
    refused_only_with(witness.WitnessError)(
        lambda d: witness.add_checkpoint(WITNESS_STATE, d, COSIGNER, NOW), data
    )


@MUTATIONS
@given(mutated(WITNESS_REQUEST))
def test_a_mutated_witness_request_is_never_cosigned_differently(data: bytes) -> None:
    answer = refused_only_with(witness.WitnessError)(
        lambda d: witness.add_checkpoint(WITNESS_STATE, d, COSIGNER, NOW), data
    )
    assert answer is None or answer == WITNESS_ANSWER


@FUZZ
@given(st.sampled_from([witness.encode_cosigner_key(COSIGNER).encode()]).flatmap(mutated))
def test_witness_keys_are_refused_with_witness_error(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    cosigner = refused_only_with(witness.WitnessError)(witness.parse_cosigner_key, text)
    if cosigner is not None:
        assert cosigner.verifier().vkey == COSIGNER.verifier().vkey
