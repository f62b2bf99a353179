"""A log whose checkpoint key was rotated: co-signed checkpoints, several trusted keys.

The origin never changes; a rotation brings a new key that signs every new checkpoint,
the previous key co-signs beside it for a transition, and the trusted key set a
verifier is given decides what verifies: a checkpoint needs a valid signature by one of
those keys, and every signature by one of them must be valid.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ledger.bundle import Manifest, export_bundle, verify_bundle
from ledger.checkpoint import Checkpoint, log_keys, open_checkpoint, sign_checkpoint
from ledger.errors import CheckpointError
from ledger.log import TransparencyLog
from ledger.merkle import EMPTY_ROOT
from ledger.note import Signature, Signer, generate_signer
from ledger.verify import verify_database
from tests.conftest import Database
from tests.factories import make_entry
from tests.ledger.conftest import ORIGIN
from tests.ledger.test_tamper import tamper

CHECKPOINT = Checkpoint(ORIGIN, 7, bytes(range(32)))


def signature_lines(note: bytes) -> list[str]:
    return note.decode().split("\n\n", 1)[1].splitlines()


def signed_key_ids(note: bytes) -> list[int]:
    """The key ID of each signature line, in order."""
    return [
        int.from_bytes(base64.b64decode(line.rsplit(" ", 1)[1])[:4], "big")
        for line in signature_lines(note)
    ]


def test_a_checkpoint_signed_by_two_keys_opens_with_either_or_both() -> None:
    old, new = generate_signer(ORIGIN), generate_signer(ORIGIN)
    note = sign_checkpoint(CHECKPOINT, [new, old])
    assert signed_key_ids(note) == [new.key_id, old.key_id]  # the current key's line first
    for keys in ([old.verifier()], [new.verifier()], [new.verifier(), old.verifier()]):
        assert open_checkpoint(note, keys, origin=ORIGIN) == CHECKPOINT
    assert open_checkpoint(note, old.verifier(), origin=ORIGIN) == CHECKPOINT
    with pytest.raises(CheckpointError, match="no signature from a known key"):
        open_checkpoint(note, [generate_signer(ORIGIN).verifier()], origin=ORIGIN)


def test_each_key_of_the_set_verifies_the_checkpoints_it_signed() -> None:
    old, new = generate_signer(ORIGIN), generate_signer(ORIGIN)
    keys = [new.verifier(), old.verifier()]
    assert open_checkpoint(sign_checkpoint(CHECKPOINT, old), keys, origin=ORIGIN) == CHECKPOINT
    assert open_checkpoint(sign_checkpoint(CHECKPOINT, new), keys, origin=ORIGIN) == CHECKPOINT


def test_a_checkpoint_by_an_unknown_key_of_the_same_origin_is_refused() -> None:
    old, new, forger = (generate_signer(ORIGIN) for _ in range(3))
    forged = sign_checkpoint(CHECKPOINT, forger)
    with pytest.raises(CheckpointError, match="no signature from a known key"):
        open_checkpoint(forged, [new.verifier(), old.verifier()], origin=ORIGIN)


def test_a_bad_signature_by_a_trusted_key_fails_even_beside_a_good_one() -> None:
    old, new = generate_signer(ORIGIN), generate_signer(ORIGIN)
    note = sign_checkpoint(CHECKPOINT, old)
    bogus = Signature(ORIGIN, new.key_id, bytes(64)).line().encode()
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_checkpoint(note + bogus, [new.verifier(), old.verifier()], origin=ORIGIN)
    # A verifier that only trusts the old key does not look at the other line at all.
    assert open_checkpoint(note + bogus, [old.verifier()], origin=ORIGIN) == CHECKPOINT


def test_the_key_set_is_deduplicated_and_never_empty() -> None:
    signer = generate_signer(ORIGIN)
    assert len(log_keys([signer.verifier(), signer.verifier()])) == 1
    with pytest.raises(CheckpointError, match="no log key"):
        log_keys([])
    note = sign_checkpoint(CHECKPOINT, signer)
    assert open_checkpoint(note, [signer.verifier()] * 2, origin=ORIGIN) == CHECKPOINT


async def rotated_log(url: str, old: Signer, new: Signer) -> list[int]:
    """Fill a log in three phases: old key only, new key co-signed by the old, new key
    only (the old one retired). Returns the checkpoint sizes each phase ended at."""
    ends = []
    phases: list[tuple[Signer, list[Signer], list]] = [
        (old, [], []),
        (new, [old], []),
        (new, [], [old.verifier()]),
    ]
    for signer, cosigners, retired in phases:
        log = await TransparencyLog.open(url, signer, ORIGIN, cosigners=cosigners, retired=retired)
        try:
            for count in (3, 260):
                await log.append_all([(make_entry(), None) for _ in range(count)])
            latest = await log.latest_checkpoint()
            assert latest is not None
            assert signed_key_ids(latest.note) == [signer.key_id] + [c.key_id for c in cosigners]
            ends.append(latest.size)
        finally:
            await log.close()
    return ends


@pytest.fixture
def keys() -> tuple[Signer, Signer]:
    return generate_signer(ORIGIN), generate_signer(ORIGIN)


async def test_a_log_verifies_across_a_rotation_with_every_key(
    database: Database, keys: tuple[Signer, Signer]
) -> None:
    old, new = keys
    await rotated_log(database.url, old, new)
    log = await TransparencyLog.open(database.url, new, ORIGIN, retired=[old.verifier()])
    try:
        assert [k.key_id for k in log.verifiers] == [new.key_id, old.key_id]
        report = await verify_database(log.db, log.verifiers, ORIGIN)
        assert report.ok, report.first_failure
        assert (report.entries, report.tree_size) == (789, 789)
        # With the new key alone the first old checkpoint (the empty tree's) fails...
        only_new = await verify_database(log.db, new.verifier(), ORIGIN)
        assert (only_new.ok, only_new.failure_kind, only_new.failure_index) == (
            False,
            "checkpoint",
            0,
        )
        # ...and with the old key alone, the first checkpoint signed by the new one only.
        only_old = await verify_database(log.db, [old.verifier()], ORIGIN)
        assert (only_old.ok, only_old.failure_index) == (False, 529)
        assert "no signature from a known key" in (only_old.first_failure or "")
    finally:
        await log.close()


async def test_a_forged_checkpoint_by_an_unknown_key_fails(
    database: Database, keys: tuple[Signer, Signer]
) -> None:
    old, new = keys
    await rotated_log(database.url, old, new)
    log = await TransparencyLog.open(database.url, new, ORIGIN, retired=[old.verifier()])
    try:
        stored = await log.checkpoint(266)
        text = stored.note.decode().split("\n\n")[0] + "\n"
        forged = sign_checkpoint(Checkpoint(ORIGIN, 266, stored.root_hash), generate_signer(ORIGIN))
        assert forged.decode().startswith(text)
        sql = "UPDATE ledger_checkpoint SET note = ? WHERE size = ?"
        await tamper(log.db, "ledger_checkpoint", sql, forged.decode(), 266)
        report = await verify_database(log.db, log.verifiers, ORIGIN)
        assert (report.ok, report.failure_kind, report.failure_index) == (False, "checkpoint", 266)
        assert "no signature from a known key" in (report.first_failure or "")
    finally:
        await log.close()


async def test_the_empty_tree_of_a_new_log_is_co_signed(database: Database) -> None:
    old, new = generate_signer(ORIGIN), generate_signer(ORIGIN)
    log = await TransparencyLog.open(database.url, new, ORIGIN, cosigners=[old, new])
    try:
        assert log.cosigners == (old,)  # the current key is never its own co-signer
        latest = await log.latest_checkpoint()
        assert latest is not None and latest.root_hash == EMPTY_ROOT
        assert signed_key_ids(latest.note) == [new.key_id, old.key_id]
    finally:
        await log.close()


async def test_a_bundle_of_a_rotated_log_carries_every_key(
    database: Database, keys: tuple[Signer, Signer], tmp_path: Path
) -> None:
    old, new = keys
    await rotated_log(database.url, old, new)
    log = await TransparencyLog.open(database.url, new, ORIGIN, retired=[old.verifier()])
    try:
        vkeys = [key.vkey for key in log.verifiers]
        directory = tmp_path / "bundle"
        await export_bundle(log.db, vkeys, ORIGIN, directory)
    finally:
        await log.close()
    assert (directory / "vkey").read_text() == f"{vkeys[0]}\n{vkeys[1]}\n"
    assert Manifest.decode((directory / "manifest.json").read_bytes()).vkey == new.verifier().vkey
    assert verify_bundle(directory).ok
    for trusted in (vkeys, " ".join(vkeys), "\n".join(reversed(vkeys))):
        report = verify_bundle(directory, vkey=trusted)
        assert report.ok, report.first_failure
        assert report.checkpoints == 7
    # The trusted set is what the verifier is given: one key is not enough.
    report = verify_bundle(directory, vkey=new.verifier().vkey)
    assert not report.ok
    assert "is not the trusted key" in (report.first_failure or "")
    stranger = generate_signer(ORIGIN).verifier().vkey
    report = verify_bundle(directory, vkey=[vkeys[0], stranger])
    assert not report.ok
    assert "is not one of the trusted keys" in (report.first_failure or "")


async def test_a_bundle_with_a_key_the_verifier_does_not_trust_fails(
    database: Database, keys: tuple[Signer, Signer], tmp_path: Path
) -> None:
    """Someone adds their own key to the bundle's list and signs a checkpoint with it."""
    old, new = keys
    await rotated_log(database.url, old, new)
    log = await TransparencyLog.open(database.url, new, ORIGIN, retired=[old.verifier()])
    try:
        vkeys = [key.vkey for key in log.verifiers]
        forger = generate_signer(ORIGIN)
        directory = tmp_path / "bundle"
        await export_bundle(log.db, [*vkeys, forger.verifier().vkey], ORIGIN, directory)
    finally:
        await log.close()
    assert verify_bundle(directory).ok  # self-consistent...
    report = verify_bundle(directory, vkey=vkeys)  # ...but not with the log's keys
    assert not report.ok
    assert "is not one of the trusted keys" in (report.first_failure or "")
