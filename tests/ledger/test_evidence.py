"""Evidence bundles: a slice of the log proven in one cosigned checkpoint, checked offline,
and any changed byte caught and named."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import shutil
import tarfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.bundle import export_bundle
from ledger.entry import decode_entry
from ledger.evidence import (
    CHUNK_SIZE,
    FORMAT,
    EvidenceEntry,
    EvidenceError,
    EvidenceHeader,
    EvidenceManifest,
    Selection,
    bundle_files,
    tar_stream,
    verify_any,
    verify_evidence,
    write_directory,
)
from ledger.log import TransparencyLog
from ledger.note import Cosigner, generate_signer, open_note
from ledger.sequencer import Subject
from ledger.witness import cosign
from tests.factories import make_entry, make_subject
from tests.ledger.conftest import ORIGIN
from tests.ledger.test_tamper import flip

ALEX = "a1" * 32  # a person's pseudonym
SAM = "b2" * 32
MARCH = dt.date(2025, 3, 1)


def at(day: int) -> str:
    return f"2025-03-{day:02d}T10:00:00.000Z"


@pytest.fixture
def witness() -> Cosigner:
    return Cosigner("ipc.test/w1", Ed25519PrivateKey.generate(), clock=lambda: 1_740_000_000)


@pytest.fixture
async def log(ledger_log: TransparencyLog) -> TransparencyLog:
    """40 entries: MTO and FIN alternating over March 2025; Alex in every third, Sam in
    the others."""
    batch = []
    for n in range(40):
        subject = Subject.new(ALEX if n % 3 == 0 else SAM)
        entry = make_entry(
            subject,
            actor_org="MTO" if n % 2 == 0 else "FIN",
            time=at(1 + n % 28),
        )
        batch.append((entry, subject))
    await ledger_log.append_all(batch[:15])
    await ledger_log.append_all(batch[15:])
    return ledger_log


async def cosigned(log: TransparencyLog, *witnesses: Cosigner) -> bytes:
    """The newest checkpoint with a cosignature line of each witness."""
    latest = await log.latest_checkpoint()
    assert latest is not None
    text = open_note(latest.note, [log.verifier]).text
    return latest.note + "".join(cosign(text, w, 1_740_000_000) for w in witnesses).encode()


async def selected(
    log: TransparencyLog, selection: Selection, openings: dict[int, bytes] | None = None
) -> list[EvidenceEntry]:
    """The log's entries in ``selection`` (an opening for each index in ``openings``)."""
    size = await log.size()
    out = []
    for index in range(size):
        leaf, stored_hash = await log.entry(index)
        entry = decode_entry(leaf)
        if selection.mismatch(entry) is not None:
            continue
        proof = tuple(await log.inclusion_proof(index, size))
        out.append(EvidenceEntry(index, leaf, stored_hash, proof, (openings or {}).get(index)))
    return out


async def person_openings(log: TransparencyLog, pseudonym: str) -> dict[int, bytes]:
    rows = await log.db.fetch(
        "SELECT idx, opening FROM ledger_opening WHERE pseudonym = ? ORDER BY idx", pseudonym
    )
    return {int(i): bytes(o) for i, o in rows}


async def each(items: Sequence[EvidenceEntry]) -> AsyncIterator[EvidenceEntry]:
    for item in items:
        yield item


async def write(
    log: TransparencyLog,
    directory: Path,
    selection: Selection,
    *,
    note: bytes,
    witnesses: Sequence[Cosigner] = (),
    quorum: int = 0,
    entries: Sequence[EvidenceEntry] | None = None,
    openings: bool = False,
) -> EvidenceManifest:
    header = EvidenceHeader(
        origin=ORIGIN,
        vkey=log.vkey,
        checkpoint=note,
        witnesses=tuple(w.verifier().vkey for w in witnesses),
        quorum=quorum,
        selection=selection,
        openings=openings,
    )
    if entries is None:
        entries = await selected(log, selection)
    return await write_directory(bundle_files(header, each(entries)), directory)


@pytest.fixture
async def bundle(log: TransparencyLog, witness: Cosigner, tmp_path: Path) -> Path:
    """MTO's entries of 1 to 20 March, proven in a checkpoint cosigned by one witness
    (quorum 1)."""
    directory = tmp_path / "mto"
    selection = Selection(MARCH, dt.date(2025, 3, 20), "MTO")
    note = await cosigned(log, witness)
    await write(log, directory, selection, note=note, witnesses=[witness], quorum=1)
    return directory


def copy(bundle: Path, name: str) -> Path:
    target = bundle.parent / name
    shutil.copytree(bundle, target)
    return target


def lines(directory: Path) -> list[dict]:
    return [
        json.loads(line) for line in (directory / "entries/000000.jsonl").read_text().splitlines()
    ]


def rewrite_line(directory: Path, number: int, change) -> int:
    """Apply ``change`` to the decoded line ``number`` of the first entries file; return
    the entry's index."""
    path = directory / "entries/000000.jsonl"
    rows = path.read_bytes().split(b"\n")
    document = json.loads(rows[number])
    change(document)
    rows[number] = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(b"\n".join(rows))
    return document["index"]


async def test_a_slice_bundle_verifies(
    bundle: Path, log: TransparencyLog, witness: Cosigner
) -> None:
    manifest = EvidenceManifest.decode((bundle / "manifest.json").read_bytes())
    expected = [e.index for e in await selected(log, Selection(MARCH, dt.date(2025, 3, 20), "MTO"))]
    assert expected and len(expected) < 40
    assert [line["index"] for line in lines(bundle)] == expected
    assert manifest.format == FORMAT
    assert manifest.size == await log.size() == 40
    assert manifest.counts == {"entries": len(expected), "openings": 0, "chunks": 1}
    assert manifest.selection.to_json() == {
        "from": "2025-03-01",
        "to": "2025-03-20",
        "ministry": "MTO",
        "system": None,
        "pseudonym": None,
    }
    assert manifest.openings is False
    assert (bundle / "vkey").read_text() == log.vkey + "\n"
    assert (bundle / "witnesses").read_text() == witness.verifier().vkey + "\n"
    checkpoint = (bundle / "checkpoint").read_bytes()
    assert checkpoint.startswith((await log.latest_checkpoint()).note)  # type: ignore[union-attr]
    assert checkpoint.count("\N{EM DASH}".encode()) == 2, "the log's signature and one cosignature"
    assert sorted(manifest.files) == ["checkpoint", "entries/000000.jsonl", "vkey", "witnesses"]

    progress: list[tuple[int, int]] = []
    report = verify_evidence(bundle, progress=lambda *p: progress.append(p))
    assert report.ok, report.first_failure
    assert (report.entries, report.tree_size) == (len(expected), 40)
    assert (report.cosignatures, report.witnesses, report.quorum) == (1, 1, 1)
    assert progress[-1] == (len(expected), len(expected))
    assert report.summary().startswith(f"The evidence verifies: {len(expected)} entries")
    assert "not that the slice is complete" in report.summary()
    assert json.loads(report.to_json())["ok"] is True

    trusted = verify_evidence(bundle, vkey=log.vkey, witnesses=[witness.verifier().vkey])
    assert trusted.ok, trusted.first_failure


async def test_one_changed_byte_in_any_file_fails(bundle: Path) -> None:
    for path in ("vkey", "witnesses", "checkpoint", "entries/000000.jsonl", "manifest.json"):
        size = (bundle / path).stat().st_size
        for at_byte in sorted({0, size // 3, size // 2, size - 2}):
            changed = copy(bundle, f"{path.replace('/', '-')}-{at_byte}")
            target = changed / path
            target.write_bytes(flip(target.read_bytes(), at_byte))
            report = verify_evidence(changed)
            assert not report.ok, (path, at_byte)
            assert report.first_failure, (path, at_byte)


async def test_a_changed_entry_is_named(bundle: Path) -> None:
    def change_leaf(document: dict) -> None:
        leaf = bytearray(base64.b64decode(document["leaf"]))
        leaf[40] ^= 0x01  # one byte of the entry
        document["leaf"] = base64.b64encode(bytes(leaf)).decode()

    index = rewrite_line(bundle, 1, change_leaf)
    report = verify_evidence(bundle)
    assert not report.ok
    assert (report.failure_kind, report.failure_index) == ("entry", index)
    assert f"entry {index} (entries/000000.jsonl line 2): leaf_hash is not the hash" in str(
        report.first_failure
    )
    assert report.entries == 1, "the entry before it verified"


async def test_a_changed_entry_with_its_hash_recomputed_is_not_proven(bundle: Path) -> None:
    import hashlib

    def change_leaf_and_hash(document: dict) -> None:
        leaf = bytearray(base64.b64decode(document["leaf"]))
        leaf[40] ^= 0x01
        document["leaf"] = base64.b64encode(bytes(leaf)).decode()
        digest = hashlib.sha256(b"\x00" + bytes(leaf)).digest()
        document["leaf_hash"] = base64.b64encode(digest).decode()

    index = rewrite_line(bundle, 0, change_leaf_and_hash)
    report = verify_evidence(bundle)
    assert (report.failure_kind, report.failure_index) == ("proof", index)
    assert f"entry {index} (entries/000000.jsonl line 1) is not proven" in str(report.first_failure)


async def test_a_changed_proof_is_named(bundle: Path) -> None:
    def change_proof(document: dict) -> None:
        node = bytearray(base64.b64decode(document["proof"][1]))
        node[0] ^= 0x01
        document["proof"][1] = base64.b64encode(bytes(node)).decode()

    index = rewrite_line(bundle, 2, change_proof)
    report = verify_evidence(bundle)
    assert (report.failure_kind, report.failure_index) == ("proof", index)
    assert "inclusion proof does not lead to the root hash" in str(report.first_failure)


async def test_a_changed_checkpoint_is_named(bundle: Path) -> None:
    note = (bundle / "checkpoint").read_bytes()
    origin, _size, rest = note.split(b"\n", 2)
    (bundle / "checkpoint").write_bytes(b"\n".join([origin, b"41", rest]))
    report = verify_evidence(bundle)
    assert report.failure_kind == "checkpoint"
    assert str(report.first_failure).startswith("checkpoint: ")
    assert "invalid signature" in str(report.first_failure)


async def test_a_changed_cosignature_is_named(bundle: Path, witness: Cosigner) -> None:
    note = (bundle / "checkpoint").read_bytes()
    head, line = note.rstrip(b"\n").rsplit(b"\n", 1)
    name, encoded = line.rsplit(b" ", 1)
    payload = bytearray(base64.b64decode(encoded))
    payload[-1] ^= 0x01  # the last byte of the Ed25519 signature
    forged = name + b" " + base64.b64encode(bytes(payload))
    (bundle / "checkpoint").write_bytes(head + b"\n" + forged + b"\n")
    report = verify_evidence(bundle)
    assert report.failure_kind == "cosignature"
    assert report.first_failure == (
        f"checkpoint: the cosignature of witness {witness.name} does not verify"
    )


async def test_a_changed_manifest_is_named(bundle: Path) -> None:
    manifest = bundle / "manifest.json"
    data = manifest.read_bytes()
    at_byte = data.index(b'"ministry": "MTO"') + len(b'"ministry": "M')
    manifest.write_bytes(flip(data, at_byte))  # MTO -> MUO
    report = verify_evidence(bundle)
    assert report.first_failure == "manifest.json: manifest_sha256 does not match the manifest"


async def test_a_file_the_manifest_does_not_vouch_for_is_named(bundle: Path) -> None:
    manifest = EvidenceManifest.decode((bundle / "manifest.json").read_bytes())
    # Rewrite the manifest for another slice (its own digest is then right): the
    # entries are no longer that slice's.
    resealed = replace(manifest, selection=Selection(MARCH, dt.date(2025, 3, 20), "FIN"))
    (bundle / "manifest.json").write_bytes(resealed.encode())
    report = verify_evidence(bundle)
    assert report.failure_kind == "entry"
    assert "is not in the slice: its ministry is MTO, the slice's is FIN" in str(
        report.first_failure
    )
    (bundle / "notes.txt").write_text("added")
    assert verify_evidence(bundle).first_failure == "notes.txt is not listed in manifest.json"


async def test_the_quorum_and_trusted_keys(
    log: TransparencyLog, witness: Cosigner, tmp_path: Path
) -> None:
    selection = Selection(ministry="FIN")
    plain = (await log.latest_checkpoint()).note  # type: ignore[union-attr]
    uncosigned = await write(
        log, tmp_path / "uncosigned", selection, note=plain, witnesses=[witness], quorum=1
    )
    assert uncosigned.quorum == 1
    report = verify_evidence(tmp_path / "uncosigned")
    assert report.failure_kind == "cosignature"
    assert report.first_failure == "checkpoint: 0 of the 1 witnesses cosigned it, the quorum is 1"

    await write(
        log,
        tmp_path / "cosigned",
        selection,
        note=await cosigned(log, witness),
        witnesses=[witness],
        quorum=1,
    )
    assert verify_evidence(tmp_path / "cosigned").ok
    stranger = Cosigner("ipc.test/w2", Ed25519PrivateKey.generate()).verifier().vkey
    other = verify_evidence(tmp_path / "cosigned", witnesses=[stranger])
    assert other.first_failure == "checkpoint: 0 of the 1 witnesses cosigned it, the quorum is 1"
    impostor = generate_signer(ORIGIN).verifier().vkey
    untrusted = verify_evidence(tmp_path / "cosigned", vkey=impostor)
    assert "is not a trusted key" in str(untrusted.first_failure)
    both = verify_evidence(tmp_path / "cosigned", vkey=f"{impostor} {log.vkey}")
    assert both.ok, "one of several trusted keys (after a rotation) is enough"


async def test_a_person_slice_carries_openings_and_a_shredded_one_is_left_out(
    log: TransparencyLog, tmp_path: Path
) -> None:
    selection = Selection(pseudonym=ALEX)
    openings = await person_openings(log, ALEX)
    assert len(openings) == 14
    shredded = sorted(openings)[3]
    del openings[shredded]  # crypto-shredded: the entry is still exported
    entries = [
        e
        for e in await selected(log, Selection(), openings)
        if e.index in openings or e.index == shredded
    ]
    note = (await log.latest_checkpoint()).note  # type: ignore[union-attr]
    manifest = await write(
        log, tmp_path / "alex", selection, note=note, entries=entries, openings=True
    )
    assert manifest.openings is True
    assert manifest.counts == {"entries": 14, "openings": 13, "chunks": 1}
    shredded_line = next(line for line in lines(tmp_path / "alex") if line["index"] == shredded)
    assert "opening" not in shredded_line
    report = verify_evidence(tmp_path / "alex")
    assert report.ok, report.first_failure
    assert (report.entries, report.openings) == (14, 13)
    assert "13 openings show" in report.summary()

    # Another person's entry with an opening does not open to Alex's pseudonym.
    sam = await person_openings(log, SAM)
    intruder = next(iter(sam))
    mixed = sorted(
        [*entries, *[e for e in await selected(log, Selection(), sam) if e.index == intruder]]
    )
    await write(log, tmp_path / "mixed", selection, note=note, entries=mixed, openings=True)
    failed = verify_evidence(tmp_path / "mixed")
    assert (failed.failure_kind, failed.failure_index) == ("opening", intruder)
    assert "does not open its person commitment to the slice's pseudonym" in str(
        failed.first_failure
    )

    # Openings in a bundle whose manifest says there are none.
    await write(log, tmp_path / "quiet", selection, note=note, entries=entries)
    assert verify_evidence(tmp_path / "quiet").ok, "openings are left out when not asked for"
    with pytest.raises(EvidenceError, match="only be exported for a person's slice"):
        await write(log, tmp_path / "nobody", Selection(), note=note, openings=True)


async def test_an_empty_slice_and_many_chunks(log: TransparencyLog, tmp_path: Path) -> None:
    note = (await log.latest_checkpoint()).note  # type: ignore[union-attr]
    empty = await write(log, tmp_path / "empty", Selection(ministry="MOH"), note=note)
    assert empty.counts == {"entries": 0, "openings": 0, "chunks": 0}
    assert verify_evidence(tmp_path / "empty").ok

    await log.append_all([(make_entry(make_subject()), None) for _ in range(CHUNK_SIZE + 20)])
    note = (await log.latest_checkpoint()).note  # type: ignore[union-attr]
    big = await write(log, tmp_path / "big", Selection(ministry="MTO"), note=note)
    assert big.counts["chunks"] == 2
    report = verify_evidence(tmp_path / "big")
    assert report.ok, report.first_failure
    assert report.entries == big.counts["entries"] == 20 + CHUNK_SIZE + 20


async def test_the_writer_refuses_what_the_checkpoint_does_not_cover(
    log: TransparencyLog, tmp_path: Path
) -> None:
    entries = await selected(log, Selection())
    old = await log.checkpoint(15)
    with pytest.raises(EvidenceError, match="beyond the checkpoint's size 15"):
        await write(log, tmp_path / "late", Selection(), note=old.note, entries=entries)
    assert not (tmp_path / "late").exists()
    with pytest.raises(EvidenceError, match="does not open with the log's key"):
        await write(log, tmp_path / "bad", Selection(), note=old.note.replace(b"15", b"16", 1))


async def tar_bytes(files_of, *, compress: bool = True) -> bytes:
    return b"".join(
        [piece async for piece in tar_stream(files_of, folder="slice", compress=compress)]
    )


async def test_archives_verify_and_a_changed_byte_fails(
    log: TransparencyLog, witness: Cosigner, tmp_path: Path
) -> None:
    selection = Selection(ministry="MTO")
    header = EvidenceHeader(
        origin=ORIGIN,
        vkey=log.vkey,
        checkpoint=await cosigned(log, witness),
        witnesses=(witness.verifier().vkey,),
        quorum=1,
        selection=selection,
    )
    entries = await selected(log, selection)
    for compress, name in ((True, "slice.tar.gz"), (False, "slice.tar")):
        archive = tmp_path / name
        archive.write_bytes(await tar_bytes(bundle_files(header, each(entries)), compress=compress))
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        assert names[0] == "slice/vkey" and names[-1] == "slice/manifest.json"
        report = verify_any(archive)
        assert report.ok, report.first_failure
        assert report.entries == len(entries)

        data = archive.read_bytes()
        damaged = tmp_path / f"damaged-{name}"
        damaged.write_bytes(flip(data, len(data) // 2))
        assert not verify_any(damaged).ok

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes((tmp_path / "slice.tar.gz").read_bytes()[:-100])
    assert "not a readable tar archive" in str(verify_any(truncated).first_failure)


def test_an_archive_may_not_reach_outside(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../outside")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    report = verify_any(archive)
    assert not report.ok
    assert "a path outside it" in str(report.first_failure)
    assert not (tmp_path / "outside").exists()


async def test_whole_log_bundles_still_verify(log: TransparencyLog, tmp_path: Path) -> None:
    directory = tmp_path / "whole"
    await export_bundle(log.db, log.vkey, ORIGIN, directory)
    report = verify_any(directory, vkey=log.vkey, deep=True)
    assert report.ok, report.first_failure
    assert report.entries == 40
    assert report.summary().startswith("The ledger verifies: 40 entries")
    archive = tmp_path / "whole.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname="whole")
    assert verify_any(archive).ok
    (directory / "tile/entries/000.p/40").write_bytes(
        flip((directory / "tile/entries/000.p/40").read_bytes(), 100)
    )
    assert "tile/entries/000.p/40 does not match its SHA-256" in str(
        verify_any(directory).first_failure
    )


@pytest.mark.parametrize(
    "data",
    [b"[" * 100_000, b'{"size": 1' + b"0" * 5000 + b"}", b"\xff\xfe", b"null"],
    ids=["deep nesting", "huge number", "not UTF-8", "not an object"],
)
def test_a_damaged_manifest_is_an_evidence_error(data: bytes) -> None:
    with pytest.raises(EvidenceError):
        EvidenceManifest.decode(data)
