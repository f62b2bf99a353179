"""The stored log: appends, checkpoints, tiles, proofs and receipts, on both databases."""

from __future__ import annotations

import asyncio

import pytest

from ledger.checkpoint import open_checkpoint
from ledger.errors import EntryError, ProofError
from ledger.log import NotFound, TransparencyLog
from ledger.merkle import leaf_hash, root_from_leaves, verify_consistency, verify_inclusion
from ledger.note import Signer
from ledger.proof import verify_receipt
from ledger.sequencer import Subject
from ledger.tiles import decode_bundle
from tests.conftest import Database
from tests.factories import make_entry, make_subject
from tests.ledger.conftest import ORIGIN


async def all_leaves(log: TransparencyLog) -> list[bytes]:
    rows = await log.db.fetch("SELECT idx, leaf FROM ledger_entry ORDER BY idx")
    assert [row[0] for row in rows] == list(range(len(rows))), "indices are contiguous"
    return [bytes(row[1]) for row in rows]


async def test_first_append_is_checkpointed(ledger_log: TransparencyLog, signer: Signer) -> None:
    subject = make_subject()
    entry = make_entry(subject)
    appended = await ledger_log.append(entry, subject)
    assert appended.index == 0
    assert appended.tree_size == 1
    leaf, stored_hash = await ledger_log.entry(0)
    assert stored_hash == appended.leaf_hash == leaf_hash(leaf)
    latest = await ledger_log.latest_checkpoint()
    assert latest is not None
    checkpoint = open_checkpoint(latest.note, signer.verifier(), origin=ORIGIN)
    assert checkpoint.size == 1
    assert checkpoint.root_hash == appended.leaf_hash  # RFC 9162: MTH of one leaf


async def test_concurrent_appends_make_one_contiguous_tree(ledger_log: TransparencyLog) -> None:
    async def worker(n: int) -> list[int]:
        out = []
        for _ in range(n):
            out.append((await ledger_log.append(make_entry())).index)
        return out

    results = await asyncio.gather(*(worker(6) for _ in range(50)))
    indices = sorted(i for chunk in results for i in chunk)
    assert indices == list(range(300))
    leaves = await all_leaves(ledger_log)
    latest = await ledger_log.latest_checkpoint()
    assert latest is not None and latest.size == 300
    assert latest.root_hash == root_from_leaves([leaf_hash(x) for x in leaves])
    assert ledger_log.sequencer.batches < 300, "concurrent appends share transactions"


async def test_proofs_verify_against_every_checkpoint(ledger_log: TransparencyLog) -> None:
    sizes = []
    for batch in (1, 2, 5, 250, 9, 300):
        appended = await ledger_log.append_all([(make_entry(), None) for _ in range(batch)])
        sizes.append(appended[-1].tree_size)
    leaves = [leaf_hash(x) for x in await all_leaves(ledger_log)]
    roots = {size: (await ledger_log.checkpoint(size)).root_hash for size in sizes}
    for size in sizes:
        assert roots[size] == root_from_leaves(leaves[:size])
        for index in {0, size // 2, size - 1}:
            proof = await ledger_log.inclusion_proof(index, size)
            verify_inclusion(leaves[index], index, size, proof, roots[size])
    for old in sizes:
        for new in sizes:
            if old <= new:
                proof = await ledger_log.consistency_proof(old, new)
                verify_consistency(old, new, roots[old], roots[new], proof)
    with pytest.raises(NotFound):
        await ledger_log.inclusion_proof(0, sizes[-1] + 1)
    with pytest.raises(ProofError):
        await ledger_log.consistency_proof(10, 5)


async def test_tiles_and_bundles_follow_tlog_tiles(ledger_log: TransparencyLog) -> None:
    await ledger_log.append_all([(make_entry(), None) for _ in range(300)])
    leaves = await all_leaves(ledger_log)
    hashes = [leaf_hash(x) for x in leaves]
    assert await ledger_log.tile(0, 0, 256) == b"".join(hashes[:256])
    assert await ledger_log.tile(0, 1, 44) == b"".join(hashes[256:300])
    assert await ledger_log.tile(0, 1, 10) == b"".join(hashes[256:266])
    # Level 1 holds the level-8 subtree hashes: one full subtree of 256 leaves so far.
    assert await ledger_log.tile(1, 0, 1) == root_from_leaves(hashes[:256])
    with pytest.raises(NotFound):
        await ledger_log.tile(0, 1, 256)
    with pytest.raises(NotFound):
        await ledger_log.tile(0, 1, 45)
    assert decode_bundle(await ledger_log.entry_bundle(0, 256)) == leaves[:256]
    assert decode_bundle(await ledger_log.entry_bundle(1, 44)) == leaves[256:]
    with pytest.raises(NotFound):
        await ledger_log.entry_bundle(1, 45)


async def test_a_new_process_continues_the_same_tree(
    database: Database, signer: Signer, ledger_log: TransparencyLog
) -> None:
    await ledger_log.append_all([(make_entry(), None) for _ in range(257)])
    other = await TransparencyLog.open(database.url, signer, ORIGIN)
    try:
        # Two sequencers (as in two processes) appending at once to one database.
        await asyncio.gather(
            *(log.append(make_entry()) for log in (ledger_log, other) for _ in range(40))
        )
        await other.append_all([(make_entry(), None) for _ in range(3)])
        await ledger_log.append(make_entry())
    finally:
        await other.close()
    leaves = await all_leaves(ledger_log)
    assert len(leaves) == 257 + 80 + 3 + 1
    latest = await ledger_log.latest_checkpoint()
    assert latest is not None
    assert latest.root_hash == root_from_leaves([leaf_hash(x) for x in leaves])


async def test_receipt_verifies_and_names_the_entry(
    ledger_log: TransparencyLog, signer: Signer
) -> None:
    appended = await ledger_log.append_all([(make_entry(), None) for _ in range(7)])
    leaf, _ = await ledger_log.entry(3)
    receipt = await ledger_log.receipt(3, extra=leaf)
    verified = verify_receipt(receipt, signer.verifier(), origin=ORIGIN, leaf=leaf)
    assert verified.checkpoint.size == appended[-1].tree_size
    other_leaf, _ = await ledger_log.entry(4)
    with pytest.raises(ProofError):
        verify_receipt(receipt, signer.verifier(), origin=ORIGIN, leaf=other_leaf)
    with pytest.raises(NotFound):
        await ledger_log.receipt(7)


async def test_entry_with_a_foreign_commitment_is_refused(ledger_log: TransparencyLog) -> None:
    entry = make_entry(make_subject("b" * 64))
    with pytest.raises(EntryError):
        await ledger_log.append(entry, Subject.new("c" * 64))
    assert await ledger_log.size() == 0


async def test_openings_are_stored_beside_not_in_the_leaf(ledger_log: TransparencyLog) -> None:
    subject = make_subject("d" * 64)
    await ledger_log.append(make_entry(subject), subject)
    leaf, _ = await ledger_log.entry(0)
    assert subject.opening not in leaf
    assert subject.pseudonym.encode() not in leaf
    rows = await ledger_log.db.fetch("SELECT pseudonym, opening FROM ledger_opening")
    assert [(row[0], bytes(row[1])) for row in rows] == [(subject.pseudonym, subject.opening)]


async def test_proofs_follow_a_tree_grown_by_another_writer(
    database: Database, signer: Signer, ledger_log: TransparencyLog
) -> None:
    await ledger_log.append_all([(make_entry(), None) for _ in range(300)])
    first = await ledger_log.inclusion_proof(299, 300)  # caches the partial right edge
    other = await TransparencyLog.open(database.url, signer, ORIGIN)
    try:
        await other.append_all([(make_entry(), None) for _ in range(250)])
    finally:
        await other.close()
    leaves = [leaf_hash(x) for x in await all_leaves(ledger_log)]
    root_300 = root_from_leaves(leaves[:300])
    root_550 = root_from_leaves(leaves)
    assert await ledger_log.inclusion_proof(299, 300) == first
    verify_inclusion(leaves[299], 299, 300, first, root_300)
    for index in (0, 299, 300, 511, 512, 549):
        proof = await ledger_log.inclusion_proof(index, 550)
        verify_inclusion(leaves[index], index, 550, proof, root_550)
    verify_consistency(300, 550, root_300, root_550, await ledger_log.consistency_proof(300, 550))


async def test_a_size_not_yet_checkpointed_is_not_found_until_it_is(
    ledger_log: TransparencyLog,
) -> None:
    await ledger_log.append_all([(make_entry(), None) for _ in range(3)])
    with pytest.raises(NotFound):
        await ledger_log.inclusion_proof(0, 4)
    with pytest.raises(NotFound):
        await ledger_log.consistency_proof(1, 4)
    with pytest.raises(ProofError):
        await ledger_log.inclusion_proof(3, 3)
    await ledger_log.append(make_entry())
    assert len(await ledger_log.inclusion_proof(0, 4)) == 2
