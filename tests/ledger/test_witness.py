"""The witness's decision rule (C2SP tlog-witness), on small trees built in memory."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import witness
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.merkle import consistency_proof, leaf_hash, root_from_leaves
from ledger.note import Cosigner, Signer, cosignature_time, generate_signer, open_note

ORIGIN = "example.test/log"
NOW = 1_700_000_000


class Tree:
    """A log's leaves, its checkpoints and its consistency proofs, in memory."""

    def __init__(self, signer: Signer, leaves: Sequence[bytes]) -> None:
        self.signer = signer
        self.hashes = [leaf_hash(leaf) for leaf in leaves]

    def read(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        return [
            root_from_leaves(self.hashes[index << level : (index + 1) << level])
            for level, index in nodes
        ]

    def note(self, size: int) -> bytes:
        root = root_from_leaves(self.hashes[:size])
        return sign_checkpoint(Checkpoint(ORIGIN, size, root), self.signer)

    def request(self, old: int, size: int) -> bytes:
        proof = consistency_proof(old, size, self.read) if old else []
        return witness.format_request(old, proof, self.note(size))


@pytest.fixture
def log_signer() -> Signer:
    return generate_signer(ORIGIN)


@pytest.fixture
def tree(log_signer: Signer) -> Tree:
    return Tree(log_signer, [f"entry {i}".encode() for i in range(20)])


@pytest.fixture
def cosigner() -> Cosigner:
    return Cosigner("witness.test/w1", Ed25519PrivateKey.generate())


@pytest.fixture
def state(log_signer: Signer) -> witness.WitnessState:
    return witness.add_log(witness.WitnessState(), log_signer.verifier().vkey)


def test_request_round_trips_and_matches_the_spec_layout(tree: Tree) -> None:
    body = tree.request(5, 13)
    head = body.split(b"\n\n")[0].decode().split("\n")
    assert head[0] == "old 5" and len(head) > 1
    parsed = witness.parse_request(body)
    assert parsed.old_size == 5
    assert witness.format_request(parsed.old_size, parsed.proof, parsed.note) == body


@pytest.mark.parametrize(
    "body",
    [
        b"old 05\n\nx",
        b"old -1\n\nx",
        b"old 1",
        b"new 1\n\nx",
        b"old 1\nnot base64!\n\nx",
        b"old 1\nAAAA\n\nx",
        b"old 1\n" + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 64 + b"\nx",
    ],
)
def test_malformed_requests_are_400(body: bytes) -> None:
    with pytest.raises(witness.MalformedRequest) as caught:
        witness.parse_request(body)
    assert caught.value.status == 400


def test_accepts_a_consistent_checkpoint_and_cosigns_it(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner, log_signer: Signer
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 7), cosigner, NOW)
    state, line = witness.add_checkpoint(state, tree.request(7, 20), cosigner, NOW + 1)
    assert state.logs[ORIGIN].size == 20
    assert state.logs[ORIGIN].root_hash == root_from_leaves(tree.hashes)
    note = tree.note(20) + line.encode()
    opened = open_note(note, [cosigner.verifier()])
    assert cosignature_time(opened.signatures[0]) == NOW + 1
    checkpoint = open_checkpoint(
        note, log_signer.verifier(), origin=ORIGIN, witnesses=[cosigner.verifier()], quorum=1
    )
    assert checkpoint.size == 20


def test_the_same_checkpoint_is_cosigned_again(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 7), cosigner, NOW)
    again, line = witness.add_checkpoint(state, tree.request(7, 7), cosigner, NOW)
    assert again == state and line.startswith("\N{EM DASH} witness.test/w1 ")


def test_refuses_an_inconsistent_proof(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 7), cosigner, NOW)
    request = witness.parse_request(tree.request(7, 20))
    bad = witness.format_request(7, (bytes(32), *request.proof[1:]), request.note)
    with pytest.raises(witness.InvalidProof) as caught:
        witness.add_checkpoint(state, bad, cosigner, NOW)
    assert caught.value.status == 422


def test_refuses_a_checkpoint_of_another_history(
    state: witness.WitnessState, tree: Tree, log_signer: Signer, cosigner: Cosigner
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 7), cosigner, NOW)
    forked = Tree(log_signer, [f"other {i}".encode() for i in range(20)])
    with pytest.raises(witness.InvalidProof):
        witness.add_checkpoint(state, forked.request(7, 20), cosigner, NOW)


def test_refuses_a_rolled_back_size(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 13), cosigner, NOW)
    with pytest.raises(witness.RolledBack) as caught:
        witness.add_checkpoint(state, tree.request(5, 7), cosigner, NOW)
    assert (caught.value.status, caught.value.size) == (409, 13)
    with pytest.raises(witness.MalformedRequest):  # old size beyond the checkpoint's
        witness.add_checkpoint(state, witness.format_request(13, [], tree.note(7)), cosigner, NOW)
    assert state.logs[ORIGIN].size == 13


def test_conflict_on_a_wrong_old_size_tells_the_recorded_size(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 7), cosigner, NOW)
    with pytest.raises(witness.Conflict) as caught:
        witness.add_checkpoint(state, tree.request(0, 20), cosigner, NOW)
    assert type(caught.value) is witness.Conflict
    assert (caught.value.status, caught.value.size) == (409, 7)


def test_detects_a_split_view_and_suspends_the_log(
    state: witness.WitnessState, tree: Tree, log_signer: Signer, cosigner: Cosigner
) -> None:
    state, _ = witness.add_checkpoint(state, tree.request(0, 7), cosigner, NOW)
    forked = Tree(log_signer, [f"other {i}".encode() for i in range(7)])
    with pytest.raises(witness.SplitView) as caught:
        witness.add_checkpoint(state, forked.request(7, 7), cosigner, NOW)
    split = caught.value
    assert (split.status, split.size) == (409, 7)
    assert split.evidence == forked.note(7)
    suspended = split.state
    assert suspended.logs[ORIGIN].split_view == forked.note(7).decode()
    with pytest.raises(witness.Untrusted):
        witness.add_checkpoint(suspended, tree.request(7, 20), cosigner, NOW)
    assert witness.WitnessState.from_json(suspended.to_json()) == suspended


def test_refuses_a_checkpoint_not_signed_by_the_log_key(
    state: witness.WitnessState, cosigner: Cosigner
) -> None:
    impostor = Tree(generate_signer(ORIGIN), [b"a", b"b"])
    with pytest.raises(witness.Untrusted) as caught:
        witness.add_checkpoint(state, impostor.request(0, 2), cosigner, NOW)
    assert caught.value.status == 403


def test_other_signatures_are_ignored(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner
) -> None:
    other = generate_signer("someone.else/key")
    request = witness.parse_request(tree.request(0, 7))
    checkpoint = Checkpoint(ORIGIN, 7, root_from_leaves(tree.hashes[:7]))
    note = request.note + sign_checkpoint(checkpoint, other).split(b"\n\n")[1]
    _, line = witness.add_checkpoint(state, witness.format_request(0, [], note), cosigner, NOW)
    assert line


def test_unknown_origin_is_404(cosigner: Cosigner, tree: Tree) -> None:
    with pytest.raises(witness.UnknownLog) as caught:
        witness.add_checkpoint(witness.WitnessState(), tree.request(0, 3), cosigner, NOW)
    assert caught.value.status == 404


def test_a_proof_with_old_size_zero_must_be_empty(
    state: witness.WitnessState, tree: Tree, cosigner: Cosigner
) -> None:
    request = witness.parse_request(tree.request(0, 7))
    body = witness.format_request(0, [bytes(32)], request.note)
    with pytest.raises(witness.InvalidProof):
        witness.add_checkpoint(state, body, cosigner, NOW)


def test_cosigner_key_round_trips(cosigner: Cosigner) -> None:
    encoded = witness.encode_cosigner_key(cosigner)
    assert encoded.startswith("PRIVATE+KEY+witness.test/w1+")
    parsed = witness.parse_cosigner_key(encoded + "\n")
    assert parsed.verifier().vkey == cosigner.verifier().vkey
    with pytest.raises(witness.WitnessError):
        witness.parse_cosigner_key(encoded[:-4])


def test_add_log_refuses_a_cosigner_key_and_a_second_key(
    state: witness.WitnessState, cosigner: Cosigner
) -> None:
    with pytest.raises(witness.WitnessError):
        witness.add_log(state, cosigner.verifier().vkey)
    with pytest.raises(witness.WitnessError):
        witness.add_log(state, generate_signer(ORIGIN).verifier().vkey)


@pytest.mark.parametrize(
    "data",
    [None, {}, {"logs": []}, {"logs": {"o": {"vkey": "x"}}}, {"logs": {"o": {"vkey": 1}}}],
)
def test_a_malformed_state_is_refused(data: object) -> None:
    with pytest.raises(witness.WitnessError):
        witness.WitnessState.from_json(data)
