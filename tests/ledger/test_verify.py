"""verify_database: a clean log verifies; each kind of tampering is named, first one first."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.database import LedgerDatabase
from ledger.log import TransparencyLog
from ledger.merkle import EMPTY_ROOT, TreeBuilder, leaf_hash, root_from_leaves
from ledger.note import Signer, generate_signer
from ledger.sequencer import INSERT_ENTRY
from ledger.tiles import TILE_WIDTH, tiles_for_size
from ledger.verify import Progress, RebuiltTree, VerifyReport, verify_database
from tests.factories import make_entry
from tests.ledger.conftest import ORIGIN
from tests.ledger.test_tamper import entry_row, flip, tamper

#: Batch sizes of the test log; its checkpoints are at the running totals.
BATCHES = (1, 2, 5, 250, 9, 300, 200)
SIZES = (1, 3, 8, 258, 267, 567, 767)


@pytest.fixture
async def log(ledger_log: TransparencyLog) -> TransparencyLog:
    """767 entries, 7 checkpoints: full tiles 0/0 and 0/1, partial 0/2 and 1/0."""
    for count in BATCHES:
        await ledger_log.append_all([(make_entry(), None) for _ in range(count)])
    return ledger_log


async def verify(
    log: TransparencyLog,
    signer: Signer,
    *,
    batch: int = 10000,
    deep: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    return await verify_database(
        log.db, signer.verifier(), ORIGIN, batch=batch, deep=deep, progress=progress
    )


async def checkpoints_through(log: TransparencyLog, size: int) -> int:
    """How many stored checkpoints have at most ``size`` entries (the empty one too)."""
    rows = await log.db.fetch("SELECT COUNT(*) FROM ledger_checkpoint WHERE size <= ?", size)
    return int(rows[0][0])


def assert_failure(report: VerifyReport, kind: str, index: int, text: str) -> None:
    assert not report.ok
    assert report.failure_kind == kind, report.first_failure
    assert report.failure_index == index, report.first_failure
    assert report.first_failure is not None and text in report.first_failure


async def leaf_of(db: LedgerDatabase, index: int) -> bytes:
    rows = await db.fetch("SELECT leaf FROM ledger_entry WHERE idx = ?", index)
    return bytes(rows[0][0])


@pytest.mark.parametrize("batch", [7, 256, 10000])
async def test_a_clean_log_verifies(log: TransparencyLog, signer: Signer, batch: int) -> None:
    seen: list[tuple[int, int]] = []
    report = await verify(log, signer, batch=batch, progress=lambda *p: seen.append(p))
    assert report.ok, report.first_failure
    assert (report.entries, report.tree_size) == (767, 767)
    assert report.checkpoints == await checkpoints_through(log, 767) >= len(SIZES)
    latest = await log.latest_checkpoint()
    assert latest is not None
    assert report.root == json.loads(report.to_json())["root"]
    assert report.first_failure is report.failure_index is report.failure_kind is None
    assert seen[-1] == (767, 767)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    deep = await verify(log, signer, deep=True)
    assert deep.ok, deep.first_failure


async def test_an_empty_log_verifies(ledger_log: TransparencyLog, signer: Signer) -> None:
    report = await verify(ledger_log, signer)
    assert report.ok
    assert (report.entries, report.tree_size) == (0, 0)
    assert report.checkpoints == await checkpoints_through(ledger_log, 0)
    assert report.root == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # SHA-256("")


async def test_the_report_is_json(log: TransparencyLog, signer: Signer) -> None:
    data = json.loads((await verify(log, signer)).to_json())
    assert data["ok"] is True
    assert data["entries"] == 767
    assert set(data) >= {"ok", "entries", "checkpoints", "tree_size", "root", "first_failure"}
    assert set(data) >= {"failure_index", "seconds"}


async def test_a_gap_in_the_indices(log: TransparencyLog, signer: Signer) -> None:
    await tamper(log.db, "ledger_entry", "DELETE FROM ledger_entry WHERE idx = 300")
    report = await verify(log, signer, batch=100)
    assert_failure(report, "entry", 300, "entry 300 is missing")
    assert report.entries == 300
    assert report.checkpoints == await checkpoints_through(log, 267)  # before the gap
    assert report.tree_size == 267


async def test_a_changed_leaf(log: TransparencyLog, signer: Signer) -> None:
    leaf = await leaf_of(log.db, 100)
    sql = "UPDATE ledger_entry SET leaf = ? WHERE idx = 100"
    await tamper(log.db, "ledger_entry", sql, flip(leaf, 30))
    report = await verify(log, signer)
    assert_failure(report, "entry", 100, "entry 100: stored leaf hash does not match its bytes")
    assert report.entries == 100
    assert report.checkpoints == await checkpoints_through(log, 8)


async def test_a_changed_leaf_hash_column(log: TransparencyLog, signer: Signer) -> None:
    sql = "UPDATE ledger_entry SET leaf_hash = ? WHERE idx = 700"
    await tamper(log.db, "ledger_entry", sql, b"\x00" * 32)
    report = await verify(log, signer)
    assert_failure(report, "entry", 700, "entry 700: stored leaf hash does not match its bytes")


async def test_a_changed_leaf_with_a_matching_hash_is_caught_by_the_tree(
    log: TransparencyLog, signer: Signer
) -> None:
    forged = (await leaf_of(log.db, 100)).replace(b"MTO", b"MOH")
    sql = "UPDATE ledger_entry SET leaf = ?, leaf_hash = ? WHERE idx = 100"
    await tamper(log.db, "ledger_entry", sql, forged, leaf_hash(forged))
    report = await verify(log, signer)
    # The stored tile 0/0 ends before the next checkpoint (258), so it is named first.
    assert_failure(report, "tile", 0, "tile 0/0: hash 100 (over entry 100) does not match")
    assert report.checkpoints == await checkpoints_through(log, 8)


async def test_deep_finds_a_leaf_that_is_not_a_canonical_entry(
    log: TransparencyLog, signer: Signer
) -> None:
    forged = b'{"v": 1}'
    sql = "UPDATE ledger_entry SET leaf = ?, leaf_hash = ? WHERE idx = 5"
    await tamper(log.db, "ledger_entry", sql, forged, leaf_hash(forged))
    report = await verify(log, signer, deep=True)
    assert_failure(report, "entry", 5, "entry 5 is not a canonical entry")
    shallow = await verify(log, signer)
    assert_failure(shallow, "checkpoint", 8, "checkpoint 8: signed root hash does not match")


async def test_a_checkpoint_signed_by_another_key(log: TransparencyLog, signer: Signer) -> None:
    stored = await log.checkpoint(258)
    forged = sign_checkpoint(Checkpoint(ORIGIN, 258, stored.root_hash), generate_signer(ORIGIN))
    sql = "UPDATE ledger_checkpoint SET note = ? WHERE size = 258"
    await tamper(log.db, "ledger_checkpoint", sql, forged.decode())
    report = await verify(log, signer)
    assert_failure(report, "checkpoint", 258, "checkpoint 258: ")
    assert "no signature from a known key" in (report.first_failure or "")
    assert report.checkpoints == await checkpoints_through(log, 8)
    assert report.tree_size == 8


async def test_a_checkpoint_whose_root_does_not_match(log: TransparencyLog, signer: Signer) -> None:
    wrong = hashlib.sha256(b"another tree").digest()
    note = sign_checkpoint(Checkpoint(ORIGIN, 567, wrong), signer)
    sql = "UPDATE ledger_checkpoint SET note = ?, root_hash = ? WHERE size = 567"
    await tamper(log.db, "ledger_checkpoint", sql, note.decode(), wrong)
    report = await verify(log, signer)
    assert_failure(
        report,
        "checkpoint",
        567,
        "checkpoint 567: signed root hash does not match the tree rebuilt from entries 0 to 566",
    )


async def test_a_root_hash_column_that_differs_from_its_note(
    log: TransparencyLog, signer: Signer
) -> None:
    sql = "UPDATE ledger_checkpoint SET root_hash = ? WHERE size = 3"
    await tamper(log.db, "ledger_checkpoint", sql, EMPTY_ROOT)
    report = await verify(log, signer)
    assert_failure(report, "checkpoint", 3, "checkpoint 3: stored root_hash column does not match")


async def test_a_note_stored_under_another_size(log: TransparencyLog, signer: Signer) -> None:
    other = await log.checkpoint(8)
    sql = "UPDATE ledger_checkpoint SET note = ? WHERE size = 258"
    await tamper(log.db, "ledger_checkpoint", sql, other.note.decode())
    report = await verify(log, signer)
    assert_failure(report, "checkpoint", 258, "holds a signed checkpoint of size 8")


async def test_a_tampered_full_tile(log: TransparencyLog, signer: Signer) -> None:
    rows = await log.db.fetch("SELECT hashes FROM ledger_tile WHERE level = 0 AND number = 1")
    sql = "UPDATE ledger_tile SET hashes = ? WHERE level = 0 AND number = 1"
    await tamper(log.db, "ledger_tile", sql, flip(bytes(rows[0][0]), 17 * 32 + 5))
    report = await verify(log, signer)
    assert_failure(report, "tile", 1, "tile 0/1: hash 17 (over entry 273) does not match")
    assert report.checkpoints == await checkpoints_through(log, 267)  # the tile ends at 511


async def test_a_tampered_partial_tile(log: TransparencyLog, signer: Signer) -> None:
    rows = await log.db.fetch("SELECT hashes FROM ledger_tile WHERE level = 1 AND number = 0")
    data = bytes(rows[0][0])
    assert len(data) == 2 * 32
    sql = "UPDATE ledger_tile SET hashes = ? WHERE level = 1 AND number = 0"
    await tamper(log.db, "ledger_tile", sql, flip(data, 40))
    report = await verify(log, signer)
    assert_failure(report, "tile", 0, "tile 1/0: hash 1 (over entries 256 to 511)")
    assert report.checkpoints == await checkpoints_through(log, 767)


async def test_a_missing_tile(log: TransparencyLog, signer: Signer) -> None:
    sql = "DELETE FROM ledger_tile WHERE level = 0 AND number = 2"
    await tamper(log.db, "ledger_tile", sql)
    report = await verify(log, signer)
    assert_failure(report, "tile", 2, "tile 0/2 is missing")


async def test_a_tile_beyond_the_tree(log: TransparencyLog, signer: Signer) -> None:
    async with log.db.write() as tx:  # inserting tiles is not guarded: verification is
        await tx.execute(
            "INSERT INTO ledger_tile (level, number, hashes) VALUES (?, ?, ?)", 0, 9, b"\0" * 32
        )
    report = await verify(log, signer)
    assert_failure(report, "tile", 3, "tile level 0 holds 4 tiles, the tree of 767 entries has 3")


async def test_a_partial_tile_with_extra_hashes(log: TransparencyLog, signer: Signer) -> None:
    rows = await log.db.fetch("SELECT hashes FROM ledger_tile WHERE level = 0 AND number = 2")
    async with log.db.write() as tx:  # growing is allowed: the guard keeps the prefix only
        await tx.execute(
            "UPDATE ledger_tile SET hashes = ? WHERE level = 0 AND number = 2",
            bytes(rows[0][0]) + b"\0" * 32,
        )
    report = await verify(log, signer)
    assert_failure(report, "tile", 2, "tile 0/2 holds more hashes than the tree of 767")


async def test_an_entry_no_checkpoint_covers(log: TransparencyLog, signer: Signer) -> None:
    async with log.db.write() as tx:  # the next index is allowed: only checkpoints vouch
        await tx.execute(INSERT_ENTRY, *entry_row(767))
    report = await verify(log, signer)
    assert_failure(report, "entry", 767, "entry 767 is not covered by a checkpoint")
    assert report.checkpoints == await checkpoints_through(log, 767)
    assert report.entries == 767


async def test_entries_missing_at_the_end(log: TransparencyLog, signer: Signer) -> None:
    await tamper(log.db, "ledger_entry", "DELETE FROM ledger_entry WHERE idx >= 760")
    report = await verify(log, signer)
    assert_failure(
        report, "checkpoint", 767, "checkpoint 767 covers 767 entries but the log holds 760"
    )


def test_the_rebuilt_tree_of_a_big_log_matches_the_reference() -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(65536 + 300)]
    tree = RebuiltTree()
    tiles = []
    for start in range(0, len(hashes), 7000):
        tiles.extend(tree.extend(hashes[start : start + 7000]))
    assert tree.root() == root_from_leaves(hashes)
    tiles.extend(tree.partial_tiles())
    assert sorted((t.level, t.number, t.width) for t in tiles) == sorted(
        (r.level, r.index, r.width) for r in tiles_for_size(len(hashes))
    )
    by_key = {(t.level, t.number): t.data for t in tiles}
    assert by_key[(0, 0)] == b"".join(hashes[:256])
    assert by_key[(1, 0)] == b"".join(
        root_from_leaves(hashes[i : i + 256]) for i in range(0, 65536, 256)
    )
    assert by_key[(2, 0)] == root_from_leaves(hashes[:65536])
    assert by_key[(1, 1)] == root_from_leaves(hashes[65536 : 65536 + 256])


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 1100), cuts=st.lists(st.integers(0, 1100), max_size=4))
def test_the_rebuilt_tree_agrees_with_tree_builder(size: int, cuts: list[int]) -> None:
    """Same roots at every cut, and its tiles are TreeBuilder's nodes at levels 0, 8, ..."""
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    tree, builder = RebuiltTree(), TreeBuilder()
    ours: dict[tuple[int, int], bytes] = {}
    theirs: dict[tuple[int, int], bytes] = {}
    position = 0
    for cut in [*sorted(c for c in cuts if c <= size), size]:
        for tile in tree.extend(hashes[position:cut]):
            ours[(tile.level, tile.number)] = tile.data
        for node in builder.extend(hashes[position:cut]):
            if node.level % 8 == 0:
                key = (node.level // 8, node.index // TILE_WIDTH)
                theirs[key] = theirs.get(key, b"") + node.hash
        position = cut
        assert tree.size == builder.size == cut
        assert tree.root() == builder.root()
    for tile in tree.partial_tiles():
        ours[(tile.level, tile.number)] = tile.data
    assert ours == theirs
