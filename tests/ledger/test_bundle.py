"""Bundles: export the log, verify it offline, and catch any changed byte by name."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from ledger.bundle import BundleError, Manifest, export_bundle, verify_bundle
from ledger.checkpoint import parse_checkpoint, sign_checkpoint
from ledger.database import open_ledger_database
from ledger.log import TransparencyLog
from ledger.note import Signer, generate_signer
from ledger.tiles import decode_bundle
from tests.conftest import Database
from tests.factories import make_entry
from tests.ledger.conftest import ORIGIN
from tests.ledger.test_tamper import flip, tamper

BATCHES = (3, 260, 37)  # checkpoints at 3, 263 and 300


@pytest.fixture
async def log(ledger_log: TransparencyLog) -> TransparencyLog:
    for count in BATCHES:
        await ledger_log.append_all([(make_entry(), None) for _ in range(count)])
    return ledger_log


@pytest.fixture
async def bundle(log: TransparencyLog, tmp_path: Path) -> Path:
    directory = tmp_path / "bundle"
    await export_bundle(log.db, log.vkey, ORIGIN, directory)
    return directory


def reseal(directory: Path) -> None:
    """Rewrite the manifest to match the files, as someone hiding a change would."""
    manifest = Manifest.decode((directory / "manifest.json").read_bytes())
    files = {
        path: hashlib.sha256((directory / path).read_bytes()).hexdigest() for path in manifest.files
    }
    resealed = dataclasses.replace(manifest, files=files)
    (directory / "manifest.json").write_bytes(resealed.encode())


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def changed_copy(bundle: Path, name: str, path: str, at: int) -> Path:
    copy = bundle.parent / name
    shutil.copytree(bundle, copy)
    target = copy / path
    target.write_bytes(flip(target.read_bytes(), at))
    return copy


async def test_an_exported_bundle_verifies(log: TransparencyLog, tmp_path: Path) -> None:
    directory = tmp_path / "exports" / "out"
    directory.mkdir(parents=True)  # an empty directory is fine
    seen: list[tuple[int, int]] = []
    manifest = await export_bundle(
        log.db, log.vkey, ORIGIN, directory, progress=lambda *p: seen.append(p)
    )
    assert seen[-1] == (300, 300)
    assert manifest.size == 300
    checkpoints = len(await log.db.fetch("SELECT size FROM ledger_checkpoint"))
    assert checkpoints >= len(BATCHES)
    assert manifest.counts == {
        "entries": 300,
        "checkpoints": checkpoints,
        "entry_bundles": 2,
        "tiles": 3,
    }
    assert (directory / "vkey").read_text() == log.vkey + "\n"
    latest = await log.latest_checkpoint()
    assert latest is not None
    assert (directory / "checkpoint").read_bytes() == latest.note
    for size in (3, 263, 300):
        assert (directory / "checkpoints" / str(size)).read_bytes() == (
            await log.checkpoint(size)
        ).note
    # A static tlog-tiles mirror: entry bundles and tiles as the log serves them.
    assert (directory / "tile/entries/000").read_bytes() == await log.entry_bundle(0, 256)
    assert (directory / "tile/entries/001.p/44").read_bytes() == await log.entry_bundle(1, 44)
    assert (directory / "tile/0/000").read_bytes() == await log.tile(0, 0, 256)
    assert (directory / "tile/0/001.p/44").read_bytes() == await log.tile(0, 1, 44)
    assert (directory / "tile/1/000.p/1").read_bytes() == await log.tile(1, 0, 1)
    assert names(directory.parent) == ["out"], "the staging directory is gone"

    progress: list[tuple[int, int]] = []
    report = verify_bundle(directory, progress=lambda *p: progress.append(p))
    assert report.ok, report.first_failure
    assert (report.entries, report.checkpoints, report.tree_size) == (300, checkpoints, 300)
    assert progress[-1] == (300, 300)
    leaves = decode_bundle((directory / "tile/entries/000").read_bytes())
    assert len(leaves) == 256
    trusted = verify_bundle(directory, vkey=log.vkey, deep=True)
    assert trusted.ok, trusted.first_failure
    assert trusted.root == report.root


@pytest.mark.parametrize(
    "path",
    [
        "tile/entries/000",
        "tile/entries/001.p/44",
        "tile/0/000",
        "tile/1/000.p/1",
        "checkpoints/263",
        "checkpoint",
        "manifest.json",
        "vkey",
    ],
)
async def test_any_changed_byte_fails_naming_the_file(bundle: Path, path: str) -> None:
    size = (bundle / path).stat().st_size
    spots = sorted({0, size - 1, *range(1, size, max(1, size // 7))})
    for at in spots:
        copy = changed_copy(bundle, f"changed-{at}", path, at)
        report = verify_bundle(copy)
        assert not report.ok, f"byte {at} of {path}"
        assert report.first_failure is not None and path in report.first_failure
        assert report.failure_kind == "file"
        shutil.rmtree(copy)


async def test_every_byte_of_the_manifest_and_vkey_matters(bundle: Path) -> None:
    for path in ("vkey", "manifest.json"):
        original = (bundle / path).read_bytes()
        for at in range(0, len(original), max(1, len(original) // 300)):
            (bundle / path).write_bytes(flip(original, at))
            assert not verify_bundle(bundle).ok, f"byte {at} of {path}"
        (bundle / path).write_bytes(original)
    assert verify_bundle(bundle).ok


@pytest.mark.parametrize(
    ("path", "at", "kind", "text"),
    [
        ("tile/entries/000", 300, "checkpoint", "checkpoints/3: signed root hash"),
        ("tile/entries/000", 100 * 352, "tile", "tile/0/000: hash "),
        ("tile/entries/001.p/44", 3000, "checkpoint", "checkpoints/300: signed root hash"),
        ("tile/0/000", 32 * 200, "tile", "tile/0/000: hash 200 (over entry 200)"),
        ("tile/1/000.p/1", 7, "tile", "tile/1/000.p/1: hash 0 (over entries 0 to 255)"),
        ("checkpoints/3", 40, "checkpoint", "checkpoints/3: "),
    ],
)
async def test_a_resealed_manifest_does_not_hide_a_change(
    bundle: Path, path: str, at: int, kind: str, text: str
) -> None:
    copy = changed_copy(bundle, "resealed", path, at)
    reseal(copy)
    report = verify_bundle(copy)
    assert not report.ok
    assert report.failure_kind == kind, report.first_failure
    assert text in (report.first_failure or "")


async def test_a_bundle_resigned_with_another_key(bundle: Path, log: TransparencyLog) -> None:
    """Someone re-signs everything with their own key: only a trusted vkey catches it."""
    other = generate_signer(ORIGIN)
    copy = bundle.parent / "resigned"
    shutil.copytree(bundle, copy)
    for note_path in [*(copy / "checkpoints").iterdir(), copy / "checkpoint"]:
        text = note_path.read_bytes().split(b"\n\n")[0].decode() + "\n"
        note_path.write_bytes(sign_checkpoint(parse_checkpoint(text), other))
    (copy / "vkey").write_text(other.verifier().vkey + "\n")
    manifest = Manifest.decode((copy / "manifest.json").read_bytes())
    (copy / "manifest.json").write_bytes(
        dataclasses.replace(manifest, vkey=other.verifier().vkey).encode()
    )
    reseal(copy)
    assert verify_bundle(copy).ok  # self-consistent...
    report = verify_bundle(copy, vkey=log.vkey)  # ...but not the log's key
    assert not report.ok
    assert "vkey: the bundle's key" in (report.first_failure or "")
    assert "is not the trusted key" in (report.first_failure or "")


async def test_a_wrong_trusted_vkey_fails(bundle: Path, signer: Signer) -> None:
    report = verify_bundle(bundle, vkey=generate_signer(ORIGIN).verifier().vkey)
    assert not report.ok
    assert report.failure_kind == "file"
    assert "is not the trusted key" in (report.first_failure or "")
    assert verify_bundle(bundle, vkey=signer.verifier().vkey).ok


async def test_missing_and_extra_files_are_named(bundle: Path) -> None:
    missing = bundle.parent / "missing"
    shutil.copytree(bundle, missing)
    (missing / "tile/0/000").unlink()
    report = verify_bundle(missing)
    assert "tile/0/000 is listed in manifest.json but missing" in (report.first_failure or "")
    reseal_missing = bundle.parent / "missing-resealed"
    shutil.copytree(missing, reseal_missing)
    manifest = Manifest.decode((reseal_missing / "manifest.json").read_bytes())
    files = {k: v for k, v in manifest.files.items() if k != "tile/0/000"}
    (reseal_missing / "manifest.json").write_bytes(
        dataclasses.replace(manifest, files=files).encode()
    )
    report = verify_bundle(reseal_missing)
    assert "tile/0/000 is missing" in (report.first_failure or "")

    extra = bundle.parent / "extra"
    shutil.copytree(bundle, extra)
    (extra / "tile/0/002").write_bytes(b"\0" * 32)
    report = verify_bundle(extra)
    assert "tile/0/002 is not listed in manifest.json" in (report.first_failure or "")
    assert not verify_bundle(bundle.parent / "nowhere").ok


async def test_a_tampered_database_exports_a_failing_bundle(
    log: TransparencyLog, tmp_path: Path
) -> None:
    rows = await log.db.fetch("SELECT leaf FROM ledger_entry WHERE idx = 42")
    sql = "UPDATE ledger_entry SET leaf = ? WHERE idx = 42"
    await tamper(log.db, "ledger_entry", sql, flip(bytes(rows[0][0]), 20))
    await export_bundle(log.db, log.vkey, ORIGIN, tmp_path / "b")
    report = verify_bundle(tmp_path / "b")
    assert not report.ok
    assert report.failure_kind == "tile"
    assert "over entry 42" in (report.first_failure or "")


async def test_export_refuses_a_non_empty_directory_and_a_log_without_checkpoints(
    database: Database, signer: Signer, tmp_path: Path
) -> None:
    db = open_ledger_database(database.url)
    await db.connect()
    vkey = signer.verifier().vkey
    exports = tmp_path / "exports"
    try:
        (exports / "full").mkdir(parents=True)
        (exports / "full" / "x").write_text("x")
        with pytest.raises(BundleError, match="is not empty"):
            await export_bundle(db, vkey, ORIGIN, exports / "full")
        with pytest.raises(BundleError, match="no checkpoint yet"):
            await export_bundle(db, vkey, ORIGIN, exports / "none")
        with pytest.raises(BundleError, match="not a verifier key"):
            await export_bundle(db, "nonsense", ORIGIN, exports / "bad")
    finally:
        await db.close()
    assert names(exports) == ["full"]


async def test_an_empty_log_exports_and_verifies(
    ledger_log: TransparencyLog, tmp_path: Path
) -> None:
    if await ledger_log.latest_checkpoint() is None:
        pytest.skip("this log signs no checkpoint before its first entry")
    manifest = await export_bundle(ledger_log.db, ledger_log.vkey, ORIGIN, tmp_path / "b")
    assert manifest.size == 0
    report = verify_bundle(tmp_path / "b", vkey=ledger_log.vkey)
    assert report.ok, report.first_failure
    assert (report.entries, report.checkpoints, report.tree_size) == (0, 1, 0)


def test_the_manifest_round_trips_and_refuses_other_forms() -> None:
    manifest = Manifest(
        origin=ORIGIN,
        vkey="k",
        size=1,
        root="r",
        created="2025-01-02T03:04:05Z",
        counts={"entries": 1, "checkpoints": 1, "entry_bundles": 1, "tiles": 1},
        files={"vkey": "0" * 64},
    )
    assert Manifest.decode(manifest.encode()) == manifest
    with pytest.raises(BundleError, match="canonical"):
        Manifest.decode(manifest.encode().replace(b"\n", b"\n ", 1))
