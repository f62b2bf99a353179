"""Evidence export through HTTP as the demo auditor, and through `onceonly ledger`."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.export import COLUMNS, EvidenceSlice, filename, media_type
from app.audit.models import AuditAccess
from app.cli import main
from app.main import create_app
from app.seed import seed_demo, seed_reference
from app.services import Services
from ledger.evidence import EvidenceManifest
from ledger.models import LedgerEntry, LedgerOpening
from ledger.note import Cosigner, open_note
from ledger.witness import cosign
from tests.app.portal.conftest import csrf_from
from tests.audit_support import ALEX, AUDITOR
from tests.ledger.test_tamper import flip
from tests.portal_support import sign_in

PAGE = "/audit/export"
DOWNLOAD = "/audit/export/download"


@pytest.fixture
async def demo(services: Services) -> Services:
    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    return services


async def auditor_form(client: httpx.AsyncClient) -> str:
    """Sign in as the auditor, open the export page, return its CSRF token."""
    await sign_in(client, AUDITOR)
    page = await client.get(PAGE)
    assert page.status_code == 200
    assert "<script" not in page.text and " style=" not in page.text
    return csrf_from(page)


async def download(
    client: httpx.AsyncClient, token: str, fmt: str, **criteria: str
) -> httpx.Response:
    return await client.post(DOWNLOAD, data={"csrf_token": token, "format": fmt, **criteria})


def cli(services: Services, *args: str) -> int:
    """`onceonly ...` in this process, on the test's installation (call in a thread)."""
    settings = services.settings
    environ = {
        "ONCEONLY_DATABASE_URL": settings.database_url,
        "ONCEONLY_DEMO": "true",
        "ONCEONLY_VAR_DIR": str(settings.var_dir),
    }
    return main(list(args), environ)


def verify_offline(path: Path, *options: str) -> int:
    """`onceonly ledger verify --bundle` with no database or key of its own."""
    environ = {"ONCEONLY_DATABASE_URL": "postgres://nowhere.invalid/x"}
    return main(["ledger", "verify", "--bundle", str(path), *options], environ)


async def test_only_auditors_reach_the_export(client: httpx.AsyncClient, demo: Services) -> None:
    r = await client.get(PAGE)
    assert r.status_code in (302, 303, 307)
    assert r.headers["location"].startswith("/auth/sign-in")
    r = await client.post(DOWNLOAD, data={"format": "csv"})
    assert r.status_code in (302, 303, 307)
    assert r.headers["location"].startswith("/auth/sign-in")
    await sign_in(client, ALEX)
    assert (await client.get(PAGE)).status_code == 403
    assert (await client.post(PAGE, data={"format": "csv"})).status_code == 403
    assert (await client.post(DOWNLOAD, data={"format": "csv"})).status_code == 403
    assert await AuditAccess.all().count() == 0


async def test_count_then_csv_and_json_lines_match_the_slice(
    client: httpx.AsyncClient, demo: Services
) -> None:
    token = await auditor_form(client)
    mto = sorted(await LedgerEntry.filter(actor_org="MTO").values_list("idx", flat=True))
    assert 0 < len(mto) < await LedgerEntry.all().count()

    counted = await client.post(
        PAGE, data={"csrf_token": token, "ministry": "MTO", "format": "csv"}
    )
    assert counted.status_code == 200
    assert f"{len(mto)} entries match this slice." in counted.text
    assert f"tree size {await demo.ledger.size()}" in counted.text

    r = await download(client, token, "csv", ministry="MTO")
    assert r.status_code == 200
    assert r.headers["content-type"] == media_type("csv")
    assert r.headers["content-disposition"] == 'attachment; filename="onceonly-evidence-MTO.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["index"]) for row in rows] == mto
    assert tuple(rows[0]) == COLUMNS
    first = await LedgerEntry.get(idx=mto[0])
    assert rows[0]["organisation"] == "MTO"
    assert rows[0]["system"] == first.actor_system
    assert rows[0]["query_id"] == first.query_id
    assert rows[0]["time"].startswith(first.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))

    r = await download(client, token, "jsonl", ministry="MTO")
    assert r.headers["content-type"] == media_type("jsonl")
    records = [json.loads(line) for line in r.text.splitlines()]
    assert [record["index"] for record in records] == mto
    assert all(record["organisation"] == "MTO" for record in records)
    assert records[0]["leaf_hash"] == rows[0]["leaf_hash"]
    assert isinstance(records[0]["categories"], list)

    # A period: the last three days, both days included.
    since = (datetime.now(UTC) - timedelta(days=2)).date()
    recent = [
        e.idx
        for e in await LedgerEntry.all().order_by("idx")
        if e.time.astimezone(UTC).date() >= since
    ]
    r = await download(client, token, "jsonl", **{"from": since.isoformat()})
    assert [json.loads(line)["index"] for line in r.text.splitlines()] == recent

    looks = await AuditAccess.all().order_by("id")
    assert [a.action for a in looks] == ["export.count", "export", "export", "export"]
    assert looks[1].query == {"ministry": "MTO", "format": "csv"}
    assert looks[3].query == {"from": since.isoformat(), "format": "jsonl"}
    trail = await client.get("/audit/accesses")
    assert "export" in trail.text


async def test_a_person_bundle_verifies_offline_and_fails_after_one_changed_byte(
    client: httpx.AsyncClient, demo: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = await auditor_form(client)
    pseudonym = demo.people.person(ALEX)
    own = sorted(await LedgerOpening.filter(pseudonym=pseudonym).values_list("idx", flat=True))
    assert own

    r = await download(client, token, "bundle", person=ALEX)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["content-disposition"] == (
        'attachment; filename="onceonly-evidence-person.tar.gz"'
    )
    archive = tmp_path / "alex.tar.gz"
    archive.write_bytes(r.content)
    with tarfile.open(archive) as tar:
        manifest = EvidenceManifest.decode(
            tar.extractfile("onceonly-evidence-person/manifest.json").read()  # type: ignore[union-attr]
        )
        lines = tar.extractfile("onceonly-evidence-person/entries/000000.jsonl").read()  # type: ignore[union-attr]
    assert manifest.selection.pseudonym == pseudonym
    assert manifest.openings is True
    assert manifest.counts == {"entries": len(own), "openings": len(own), "chunks": 1}
    assert [json.loads(line)["index"] for line in lines.splitlines()] == own
    assert ALEX.encode() not in r.content  # only the pseudonym travels

    look = await AuditAccess.filter(action="export").get()
    assert look.query == {"pseudonym": pseudonym, "format": "bundle"}
    assert ALEX not in json.dumps(look.query)

    vkey = demo.ledger.vkey
    capsys.readouterr()
    assert await asyncio.to_thread(verify_offline, archive, "--vkey", vkey) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"The evidence verifies: {len(own)} entries (person {pseudonym})")
    assert f"{len(own)} openings show" in out

    data = archive.read_bytes()
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(flip(data, len(data) // 2))
    assert await asyncio.to_thread(verify_offline, damaged, "--json") == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


async def test_a_shredded_opening_leaves_the_entry_in_a_ministry_slice(
    client: httpx.AsyncClient, demo: Services, tmp_path: Path
) -> None:
    opening = await LedgerOpening.filter(
        idx__in=await LedgerEntry.filter(actor_org="FIN").values_list("idx", flat=True)
    ).first()
    assert opening is not None
    await LedgerOpening.filter(idx=opening.idx).delete()  # crypto-shredding
    token = await auditor_form(client)
    r = await download(client, token, "bundle", ministry="FIN")
    archive = tmp_path / "fin.tar.gz"
    archive.write_bytes(r.content)
    assert await asyncio.to_thread(verify_offline, archive) == 0
    with tarfile.open(archive) as tar:
        lines = tar.extractfile("onceonly-evidence-FIN/entries/000000.jsonl").read()  # type: ignore[union-attr]
    assert opening.idx in [json.loads(line)["index"] for line in lines.splitlines()]
    assert b'"opening"' not in lines, "a ministry slice carries no openings"


@pytest.mark.parametrize(
    ("criteria", "english", "french"),
    [
        (
            {"from": "2025-13-45"},
            "The start of the period must be a date (YYYY-MM-DD).",
            "Le début de la période doit être une date (AAAA-MM-JJ).",
        ),
        (
            {"from": "2025-03-02", "to": "2025-03-01"},
            "The period ends before it starts.",
            "La période se termine avant de commencer.",
        ),
        (
            {"ministry": "M T O"},
            "The ministry code is not valid.",
            "Le code du ministère n'est pas valide.",
        ),
        ({"format": "pdf"}, "Choose a format: bundle, CSV or JSON Lines.", "Choisissez un format"),
    ],
)
async def test_bad_input_gives_the_page_again_with_the_error(
    client: httpx.AsyncClient,
    demo: Services,
    criteria: dict[str, str],
    english: str,
    french: str,
) -> None:
    token = await auditor_form(client)
    data = {"csrf_token": token, "format": "csv", **criteria}
    for url in (DOWNLOAD, PAGE):
        r = await client.post(url, data=data)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("text/html")
        assert english in r.text.replace("&#39;", "'")
        assert 'role="alert"' in r.text
    r = await client.post(DOWNLOAD + "?lang=fr", data=data)
    assert r.status_code == 422
    assert french in r.text.replace("&#39;", "'")
    assert await AuditAccess.all().count() == 0


async def test_without_a_csrf_token_nothing_is_exported(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await auditor_form(client)
    r = await client.post(DOWNLOAD, data={"format": "csv"})
    assert r.status_code == 403
    assert await AuditAccess.all().count() == 0


async def test_the_published_checkpoint_and_its_cosignature(
    demo: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    witness = Cosigner("ipc.test/w1", Ed25519PrivateKey.generate())
    vkey = witness.verifier().vkey
    settings = dataclasses.replace(
        demo.settings, witnesses=((vkey, "http://witness.invalid"),), witness_quorum=1
    )
    services = dataclasses.replace(demo, settings=settings)
    app = create_app(settings, manage_services=False)
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client:
        token = await auditor_form(client)
        nothing = await download(client, token, "bundle", ministry="MTO")
        assert nothing.status_code == 422
        assert "No checkpoint is cosigned by enough witnesses yet." in nothing.text

        latest = await demo.ledger.latest_checkpoint()
        assert latest is not None
        text = open_note(latest.note, [demo.ledger.verifier]).text
        line = cosign(text, witness, int(datetime.now(UTC).timestamp()))
        async with demo.ledger.db.write() as tx:
            await tx.execute(
                "INSERT INTO ledger_cosignature (size, witness, line, created_at) "
                "VALUES (?, ?, ?, ?)",
                latest.size,
                vkey,
                line,
                datetime.now(UTC),
            )
        r = await download(client, token, "bundle", ministry="MTO")
        assert r.status_code == 200
    archive = tmp_path / "mto.tar.gz"
    archive.write_bytes(r.content)
    with tarfile.open(archive) as tar:
        note = tar.extractfile("onceonly-evidence-MTO/checkpoint").read()  # type: ignore[union-attr]
        witnesses = tar.extractfile("onceonly-evidence-MTO/witnesses").read()  # type: ignore[union-attr]
    assert note == latest.note + line.encode()
    assert witnesses == f"{vkey}\n".encode()
    capsys.readouterr()
    assert await asyncio.to_thread(verify_offline, archive, "--witness", vkey, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["cosignatures"], report["witnesses"], report["quorum"]) == (1, 1, 1)
    other = Cosigner("ipc.test/w2", Ed25519PrivateKey.generate()).verifier().vkey
    assert await asyncio.to_thread(verify_offline, archive, "--witness", other) == 1
    assert "0 of the 1 witnesses cosigned it, the quorum is 1" in capsys.readouterr().out


async def test_the_cli_exports_slices(
    demo: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mto = sorted(await LedgerEntry.filter(actor_org="MTO").values_list("idx", flat=True))
    capsys.readouterr()
    bundle = tmp_path / "mto"
    assert (
        await asyncio.to_thread(cli, demo, "ledger", "export", "--ministry", "MTO", str(bundle))
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(f"exported {len(mto)} entries (ministry MTO), proven in the checkpoint")
    assert await asyncio.to_thread(verify_offline, bundle, "--vkey", demo.ledger.vkey) == 0

    pseudonym = demo.people.person(ALEX)
    own = await LedgerOpening.filter(pseudonym=pseudonym).count()
    person = tmp_path / "alex"
    assert (
        await asyncio.to_thread(cli, demo, "ledger", "export", "--person", ALEX, str(person)) == 0
    )
    assert f"exported {own} entries with their openings" in capsys.readouterr().out
    assert (
        EvidenceManifest.decode((person / "manifest.json").read_bytes()).counts["openings"] == own
    )

    table = tmp_path / "mto.csv"
    code = await asyncio.to_thread(
        cli, demo, "ledger", "export", "--ministry", "MTO", "--format", "csv", str(table)
    )
    assert code == 0
    rows = list(csv.DictReader(table.open()))
    assert [int(row["index"]) for row in rows] == mto
    capsys.readouterr()
    code = await asyncio.to_thread(
        cli, demo, "ledger", "export", "--ministry", "MTO", "--format", "jsonl"
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert [json.loads(line)["index"] for line in printed.splitlines()] == mto

    bad = await asyncio.to_thread(
        cli, demo, "ledger", "export", "--from", "yesterday", str(tmp_path / "x")
    )
    assert bad == 1
    assert "The start of the period must be a date" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_slices_from_parameters() -> None:
    evidence = EvidenceSlice.from_params(
        {"from": " 2025-03-01 ", "to": "", "ministry": "MTO", "person": "123456789"}
    )
    assert (evidence.since, evidence.until, evidence.ministry) == (
        datetime(2025, 3, 1).date(),
        None,
        "MTO",
    )
    assert "123456789" not in repr(evidence)
    assert filename(evidence, "bundle") == "onceonly-evidence-MTO-2025-03-01-person.tar.gz"
    assert filename(EvidenceSlice(), "csv") == "onceonly-evidence.csv"
    with pytest.raises(ValueError, match="too long"):
        EvidenceSlice.from_params({"person": "9" * 201})
    with pytest.raises(ValueError, match="system code"):
        EvidenceSlice.from_params({"system": "a/b"})
    with pytest.raises(ValueError):
        media_type("pdf")
