"""The audit API through HTTP with real tokens: the commissioner's client reads the
ledger, the reports and the disputes, every call is recorded, and the roles stay apart
(a ministry cannot audit, an auditor cannot write)."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.audit import who
from app.audit.models import AuditAccess, HiddenReview
from app.auth.models import Dispute
from app.oauth.clients import InvalidScope, register_client
from app.oauth.models import ApiClient, ClientAuthMethod
from app.problems import PROBLEM_BASE
from app.seed import DEMO_NAMESPACE, seed_demo
from app.services import Services
from consent.models import Consent, Holding, Ministry, System
from ledger.entry import Basis, decode_entry
from ledger.errors import ProofError
from ledger.models import LedgerEntry, LedgerOpening
from ledger.proof import LogProof, format_proof, verify_receipt
from tests.app.api.conftest import ALL_SCOPES
from tests.audit_support import ALEX, access_entry
from tests.conftest import Database
from tests.oauth_support import bearer, get_token, register

ENTRIES = "/api/v1/audit/entries"
#: Every audit endpoint (GET), with an entry that exists in the demo data.
AUDIT_PATHS = (
    ENTRIES,
    f"{ENTRIES}/0",
    "/api/v1/audit/statistics",
    "/api/v1/audit/anomalies",
    "/api/v1/audit/hidden",
    "/api/v1/audit/disputes",
    "/api/v1/audit/export",
)
#: Every endpoint of the ministry API that writes, with a body it would accept.
WRITES = (
    (
        "/api/v1/holdings",
        {"holdings": [{"person_id": "p", "category": "name", "retention": "P1Y"}]},
    ),
    (
        "/api/v1/consent-requests",
        {
            "person_id": "p",
            "sources": ["MPBSDP"],
            "categories": ["address"],
            "purpose": "licence-renewal",
            "valid_until": "2030-01-01T00:00:00Z",
            "notice_text": "May we?",
            "return_url": "https://mto.example/done",
        },
    ),
    (
        "/api/v1/access-checks",
        {
            "person_id": "p",
            "recipient": "MTO",
            "categories": ["address"],
            "purpose": "licence-renewal",
            "query_id": "q-1",
        },
    ),
    (
        "/api/v1/access-checks/batch",
        {
            "recipient": "MTO",
            "categories": ["address"],
            "purpose": "licence-renewal",
            "persons": [{"person_id": "p", "query_id": "q-2"}],
        },
    ),
    ("/api/v1/notifications/1/ack", None),
)


@pytest.fixture
async def demo(seeded: Services) -> Services:
    await seed_demo(seeded.settings, seeded.ledger)
    return seeded


@pytest.fixture
async def auditor(client: httpx.AsyncClient, demo: Services) -> dict[str, Any]:
    """The commissioner's API client (IPC, ipc-audit, scope audit) and its headers."""
    registered = await register(ministry="IPC", system="ipc-audit", scopes=("audit",))
    token = await get_token(client, registered)
    return {"client_id": registered.client_id, "headers": bearer(token)}


async def get(client: httpx.AsyncClient, auditor: dict[str, Any], path: str, **params: Any):
    response = await client.get(path, params=params, headers=auditor["headers"])
    return response


async def indices(client: httpx.AsyncClient, auditor: dict[str, Any], **params: Any) -> list[int]:
    response = await get(client, auditor, ENTRIES, limit=200, **params)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [item["index"] for item in response.json()["items"]]


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + kind
    return problem


# The ledger explorer ---------------------------------------------------------------------


async def test_explorer_filters(client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services):
    size = await demo.ledger.size()
    assert await indices(client, auditor) == list(range(size - 1, -1, -1))
    mto = await LedgerEntry.filter(actor_org="MTO").values_list("idx", flat=True)
    assert await indices(client, auditor, ministry="MTO") == sorted(mto, reverse=True)
    alex = demo.people.person(ALEX)
    own = sorted(await LedgerOpening.filter(pseudonym=alex).values_list("idx", flat=True))
    assert await indices(client, auditor, pseudonym=alex) == own[::-1]
    assert await indices(client, auditor, person_id=ALEX) == own[::-1]
    denied = await indices(client, auditor, entry_type="access.denied")
    assert denied == await LedgerEntry.filter(entry_type="access.denied").values_list(
        "idx", flat=True
    )
    assert len(denied) == 1
    law = await indices(client, auditor, basis_kind="authority", basis_ref="HTA-205")
    assert len(law) == 1
    latest = await LedgerEntry.get(idx=size - 1)
    assert await indices(client, auditor, query_id=latest.query_id) == [size - 1]
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert await indices(client, auditor, since=future) == []
    recent = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    assert 0 < len(await indices(client, auditor, since=recent)) < size
    assert await indices(client, auditor, case_id="no-such-case") == []

    page = await get(client, auditor, ENTRIES, ministry="MTO", limit=1)
    item = page.json()["items"][0]
    stored = decode_entry(bytes((await LedgerEntry.get(idx=item["index"])).leaf))
    assert item["actor_org"] == stored.actor_org == "MTO"
    assert (item["type"], item["time"], item["purpose"]) == (
        stored.type,
        stored.time,
        stored.purpose,
    )
    assert item["basis"] == {"kind": stored.basis.kind, "ref": stored.basis.ref}
    assert item["categories"] == list(stored.categories)
    assert base64.b64decode(item["subject_commitment"]) == stored.subject_commitment


async def test_explorer_pages_by_cursor(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"basis_kind": "consent", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await get(client, auditor, ENTRIES, **params)).json()
        assert len(page["items"]) <= 3
        seen += [item["index"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    consent = await LedgerEntry.filter(basis_kind="consent").values_list("idx", flat=True)
    assert seen == sorted(consent, reverse=True)
    assert pages > 2 and len(seen) < await demo.ledger.size()


async def test_bad_filters_are_refused_with_field_errors(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    cases = [
        ({"entry_type": "access.maybe"}, "entry_type"),
        ({"basis_kind": "mood"}, "basis_kind"),
        ({"since": "2025-02-30"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2025-03-02", "until": "2025-03-01"}, "until"),
        ({"ministry": "not a code"}, "ministry"),
        ({"pseudonym": "ALEX"}, "pseudonym"),
        ({"pseudonym": "a" * 64, "person_id": ALEX}, "person_id"),
        ({"minstry": "MTO"}, "minstry"),
    ]
    for params, field in cases:
        problem = assert_problem(await get(client, auditor, ENTRIES, **params), 422, "validation")
        assert field in [e["field"] for e in problem["errors"]], (params, problem)
    both = await get(client, auditor, ENTRIES, entry_type="x", since="2025-13-01")
    assert {e["field"] for e in both.json()["errors"]} == {"entry_type", "since"}
    assert_problem(await get(client, auditor, ENTRIES, limit=0), 400, "validation")
    assert_problem(await get(client, auditor, ENTRIES, cursor="nope"), 400, "invalid-cursor")
    days = await get(client, auditor, "/api/v1/audit/anomalies", days="-1")
    assert assert_problem(days, 422, "validation")["errors"][0]["field"] == "days"
    weeks = await get(client, auditor, "/api/v1/audit/statistics", weeks="0")
    assert assert_problem(weeks, 422, "validation")["errors"][0]["field"] == "weeks"
    status = await get(client, auditor, "/api/v1/audit/disputes", status="pending")
    assert assert_problem(status, 422, "validation")["errors"][0]["field"] == "status"
    assert await AuditAccess.all().count() == 0  # a refused call looked at nothing


# One entry and its proof -----------------------------------------------------------------


async def test_an_entry_with_its_inclusion_proof_that_verifies(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    hidden = await LedgerEntry.filter(hidden_until__gt=date.today()).order_by("-idx").first()
    assert hidden is not None
    response = await get(client, auditor, f"{ENTRIES}/{hidden.idx}")
    assert response.status_code == 200, response.text
    detail = response.json()
    leaf = base64.b64decode(detail["leaf"])
    assert leaf == bytes(hidden.leaf)
    entry = decode_entry(leaf)
    assert (detail["index"], detail["type"], detail["actor_org"]) == (
        hidden.idx,
        entry.type,
        entry.actor_org,
    )
    assert detail["hidden"] is True
    assert detail["hidden_until"] == entry.hidden_until
    assert detail["hidden_reason"] == "active-investigation"
    assert detail["has_opening"] is True and detail["reviews"] == []
    opening = await LedgerOpening.get(idx=hidden.idx)
    assert opening.opening.hex() not in response.text and opening.pseudonym not in response.text

    inclusion = detail["inclusion"]
    assert inclusion["status"] == "verified" and inclusion["reason"] is None
    assert inclusion["tree_size"] == await demo.ledger.size()
    receipt = format_proof(
        LogProof(
            hidden.idx,
            tuple(base64.b64decode(node) for node in inclusion["proof"]),
            inclusion["checkpoint"].encode(),
        )
    )
    verified = verify_receipt(
        receipt, demo.ledger.verifier, origin=demo.ledger.origin, leaf=leaf
    ).checkpoint
    assert base64.b64decode(inclusion["root_hash"]) == verified.root_hash
    assert verified.size == inclusion["tree_size"]
    with pytest.raises(ProofError):
        verify_receipt(
            receipt, demo.ledger.verifier, origin=demo.ledger.origin, leaf=leaf.replace(b"1", b"2")
        )

    await HiddenReview.create(
        entry_index=hidden.idx, required_by="someone", review_by=date(2030, 1, 1), note="Why?"
    )
    again = (await get(client, auditor, f"{ENTRIES}/{hidden.idx}")).json()
    assert [(r["review_by"], r["note"]) for r in again["reviews"]] == [("2030-01-01", "Why?")]


async def test_an_unknown_entry_is_404(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    for index in ("999999", "abc", "007", "-1", "9" * 30):
        assert_problem(await get(client, auditor, f"{ENTRIES}/{index}"), 404, "not-found")


# Reports -----------------------------------------------------------------------------------


async def test_statistics_are_the_figures_of_the_charts(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    response = await get(client, auditor, "/api/v1/audit/statistics")
    assert response.status_code == 200, response.text
    figures = response.json()
    assert len(figures["weeks"]) == 26 and figures["weeks"][0] == figures["since"]
    assert date.fromisoformat(figures["weeks"][-1]).weekday() == 0
    since = datetime.fromisoformat(figures["since"]).replace(tzinfo=UTC)
    in_period = LedgerEntry.filter(time__gte=since)
    permitted = await in_period.filter(entry_type="access.permitted").count()
    denied = await in_period.filter(entry_type="access.denied").count()
    assert sum(figures["decisions"]["permitted"]) == permitted > 0
    assert sum(figures["decisions"]["denied"]) == denied
    by_law = await in_period.filter(entry_type="access.permitted", basis_kind="authority").count()
    assert figures["permitted_by_basis"] == {"consent": permitted - by_law, "authority": by_law}
    per_ministry = {row["ministry"]: sum(row["counts"]) for row in figures["accesses_per_ministry"]}
    fin = await in_period.filter(
        actor_org="FIN", entry_type__in=["access.permitted", "access.denied"]
    ).count()
    assert per_ministry.get("FIN", 0) == fin
    withdrawn = await in_period.filter(entry_type="consent.withdrawn").count()
    assert sum(figures["withdrawals"]) == withdrawn
    assert figures["top_purposes"][0]["count"] >= figures["top_purposes"][-1]["count"]
    short = (await get(client, auditor, "/api/v1/audit/statistics", weeks=4)).json()
    assert len(short["weeks"]) == 4 == len(short["decisions"]["permitted"])


async def test_anomalies_on_clean_data(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    await Holding.filter(authority_id=None).delete()  # the demo has one, on purpose
    response = await get(client, auditor, "/api/v1/audit/anomalies")
    assert response.status_code == 200, response.text
    found = response.json()
    checked = await LedgerEntry.filter(entry_type="access.permitted", basis_kind="consent").count()
    assert found["consent_outside_validity"]["checked"] == checked >= 3
    for name in (
        "consent_outside_validity",
        "spikes",
        "overdue_reviews",
        "holdings_without_authority",
        "old_disputes",
    ):
        assert found[name]["count"] == 0 and found[name]["findings"] == [], name
    # The commissioner's own client is registered but is no system that should report.
    silent = found["silent_systems"]["findings"]
    assert {"ministry": "IPC", "system": "ipc-audit"} not in silent


async def test_anomalies_find_each_seeded_anomaly(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    withdrawn = uuid.uuid5(DEMO_NAMESPACE, "alex-mlitsd-employment")
    consent = await Consent.get(id=withdrawn)
    appended = await demo.ledger.append(
        *access_entry(pseudonym=consent.pseudonym, basis=Basis("consent", str(withdrawn)))
    )
    hidden = await LedgerEntry.filter(hidden_until__gt=date.today()).first()
    assert hidden is not None
    yesterday = date.today() - timedelta(days=1)
    await HiddenReview.create(entry_index=hidden.idx, required_by="a", review_by=yesterday)
    quiet = await System.create(
        ministry=await Ministry.get(code="MTO"), code="quiet-system", name_en="Q", name_fr="Q"
    )
    await Holding.create(pseudonym="p", system=quiet, category_id="address", retention="P1Y")
    dispute = await Dispute.create(pseudonym="p", entry_index=1, ministry="MTO", message="?")
    await Dispute.filter(id=dispute.id).update(created_at=datetime.now(UTC) - timedelta(days=40))
    sam = (await Consent.get(id=uuid.uuid5(DEMO_NAMESPACE, "sam-ow-income"))).pseudonym
    # Noon, so that the twelve denials of yesterday stay on one day whatever the hour.
    noon = datetime.combine(date.today(), time(12), UTC)
    denials = [
        access_entry(
            pseudonym=sam,
            basis=Basis("authority", "HTA-205"),
            entry_type="access.denied",
            actor="MNR",
            system="mnr-system",
            moment=moment,
        )
        for moment in [noon - timedelta(days=d) for d in (5, 4, 3)]
        + [noon - timedelta(days=1, minutes=n) for n in range(12)]
    ]
    await demo.ledger.append_all(denials)

    found = (await get(client, auditor, "/api/v1/audit/anomalies")).json()
    consent_section = found["consent_outside_validity"]
    assert consent_section["count"] == 1
    assert consent_section["findings"] == [
        {"index": appended.index, "consent_id": str(withdrawn), "problem": "withdrawn"}
    ]
    assert {"ministry": "MNR", "kind": "denials", "count": 12} in [
        {k: s[k] for k in ("ministry", "kind", "count")} for s in found["spikes"]["findings"]
    ]
    overdue = found["overdue_reviews"]["findings"]
    assert [(o["index"], o["review_by"]) for o in overdue] == [(hidden.idx, yesterday.isoformat())]
    assert {"ministry": "MTO", "system": "quiet-system", "category": "address", "count": 1} in (
        found["holdings_without_authority"]["findings"]
    )
    assert {"ministry": "MTO", "system": "quiet-system"} in found["silent_systems"]["findings"]
    old = found["old_disputes"]
    assert old["days"] == 30 and [(d["id"], d["age_days"]) for d in old["findings"]] == [
        (dispute.id, 40)
    ]
    later = (await get(client, auditor, "/api/v1/audit/anomalies", days=60)).json()
    assert later["old_disputes"]["count"] == 0 and later["old_disputes"]["days"] == 60


async def test_hidden_entries_with_their_reviews_page_by_page(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    first = await LedgerEntry.filter(hidden_until__isnull=False).order_by("idx").first()
    assert first is not None
    extra, subject = access_entry(
        pseudonym="b" * 64, basis=Basis("authority", "HTA-205"), actor="MTO"
    )
    ended = await demo.ledger.append(
        dataclasses.replace(extra, hidden_until="2020-01-01", hidden_reason="court"), subject
    )
    await HiddenReview.create(entry_index=first.idx, required_by="x", review_by=date(2031, 5, 1))
    hidden = sorted(
        await LedgerEntry.filter(hidden_until__isnull=False).values_list("idx", flat=True),
        reverse=True,
    )
    assert len(hidden) >= 2
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await get(client, auditor, "/api/v1/audit/hidden", **params)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["index"] for item in seen] == hidden
    by_index = {item["index"]: item for item in seen}
    assert by_index[ended.index]["hidden"] is False
    assert by_index[ended.index]["reason"] == "court"
    assert by_index[ended.index]["hidden_until"] == "2020-01-01"
    assert [r["review_by"] for r in by_index[first.idx]["reviews"]] == ["2031-05-01"]


async def test_disputes_by_status_page_by_page(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    made = [
        await Dispute.create(pseudonym="p", entry_index=n, ministry="MTO", message=f"Why {n}?")
        for n in range(3)
    ]
    await Dispute.filter(id=made[1].id).update(status="answered", answer="Your renewal.")
    everything = (await get(client, auditor, "/api/v1/audit/disputes")).json()
    assert [d["id"] for d in everything["items"]] == [d.id for d in reversed(made)]
    answered = everything["items"][1]
    assert (answered["status"], answered["answer"], answered["message"]) == (
        "answered",
        "Your renewal.",
        "Why 1?",
    )
    assert "pseudonym" not in answered
    only_open = (await get(client, auditor, "/api/v1/audit/disputes", status="open")).json()
    assert [d["id"] for d in only_open["items"]] == [made[2].id, made[0].id]
    first = (await get(client, auditor, "/api/v1/audit/disputes", limit=2)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await get(
        client, auditor, "/api/v1/audit/disputes", limit=2, cursor=first["next_cursor"]
    )
    assert [d["id"] for d in rest.json()["items"]] == [made[0].id]
    assert rest.json()["next_cursor"] is None


# The audit trail ----------------------------------------------------------------------------


async def test_every_call_is_recorded_with_the_client_and_never_a_person_id(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    alex = demo.people.person(ALEX)
    calls = [
        (ENTRIES, {"ministry": "MTO", "person_id": ALEX}),
        (f"{ENTRIES}/2", {}),
        ("/api/v1/audit/statistics", {}),
        ("/api/v1/audit/anomalies", {"days": 7}),
        ("/api/v1/audit/hidden", {}),
        ("/api/v1/audit/disputes", {"status": "open"}),
    ]
    for path, params in calls:
        assert (await get(client, auditor, path, **params)).status_code == 200, path
    looks = await AuditAccess.all().order_by("id")
    assert [a.action for a in looks] == [
        "ledger.search",
        "ledger.entry",
        "statistics",
        "anomalies",
        "hidden",
        "disputes",
    ]
    assert {a.auditor for a in looks} == {"api:" + auditor["client_id"]}
    assert looks[0].query == {"ministry": "MTO", "pseudonym": alex}
    assert looks[1].query == {"index": "2"}
    assert looks[3].query == {"days": "7"}
    assert looks[5].query == {"status": "open"}
    assert all(ALEX not in str(a.query) for a in looks)


def test_a_long_client_id_still_fits_the_access_log() -> None:
    assert who("ipc-audit-0a1b2c3d") == "api:ipc-audit-0a1b2c3d"
    long_a, long_b = who("s" * 64 + "-0a1b2c3d"), who("s" * 64 + "-0a1b2c3e")
    assert len(long_a) == len(long_b) == 64 and long_a != long_b
    assert long_a.startswith("api:sss")


# Role isolation ------------------------------------------------------------------------------


async def test_a_ministry_cannot_use_the_audit_api(client: httpx.AsyncClient, demo: Services):
    registered = await register(scopes=ALL_SCOPES)
    headers = bearer(await get_token(client, registered))
    for path in AUDIT_PATHS:
        problem = assert_problem(await client.get(path, headers=headers), 403, "insufficient-scope")
        assert problem["scope"] == "audit"
        assert_problem(await client.get(path), 401, "unauthorized")
    assert await AuditAccess.all().count() == 0


async def test_an_auditor_cannot_write(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    size = await demo.ledger.size()
    before = (await Holding.all().count(), await Consent.all().count())
    for path, body in WRITES:
        response = await client.post(path, json=body, headers=auditor["headers"])
        assert response.status_code == 403, (path, response.text)
    for path in ("/api/v1/holdings", "/api/v1/consents", "/api/v1/notifications"):
        assert (await client.get(path, headers=auditor["headers"])).status_code == 403, path
    for path in AUDIT_PATHS:
        for method in ("POST", "PUT", "DELETE"):
            response = await client.request(method, path, headers=auditor["headers"])
            assert response.status_code == 405, (method, path)
    assert await demo.ledger.size() == size
    assert (await Holding.all().count(), await Consent.all().count()) == before


async def test_a_client_cannot_hold_audit_and_a_write_scope(demo: Services) -> None:
    for write in ("holdings:write", "consent:request", "access:check", "notifications:read"):
        with pytest.raises(InvalidScope, match=f"an audit client only reads.*{write}"):
            await register_client(
                "IPC", "ipc-audit", f"mixed {write}", "client_secret_basic", ["audit", write]
            )
    assert not await ApiClient.filter(system__code="ipc-audit").exists()
    reader, _ = await register_client(
        "IPC", "ipc-audit", "reader", "client_secret_basic", ["audit", "ledger:read"]
    )
    assert reader.scopes == ["audit", "ledger:read"]


async def test_a_token_mixing_audit_and_write_is_refused_everywhere(
    client: httpx.AsyncClient, demo: Services
):
    # A client changed in the database behind registration's back: the guard refuses it.
    registered = await register(ministry="IPC", system="ipc-audit", scopes=("audit",))
    await ApiClient.filter(client_id=registered.client_id).update(scopes=["access:check", "audit"])
    token = await get_token(client, registered)
    headers = bearer(token)
    for path, body in WRITES[2:3]:
        response = await client.post(path, json=body, headers=headers)
        assert_problem(response, 403, "audit-read-only")
    assert_problem(await client.get(ENTRIES, headers=headers), 403, "audit-read-only")
    assert await AuditAccess.all().count() == 0
    row = await ApiClient.get(client_id=registered.client_id)
    assert row.auth_method == ClientAuthMethod.CLIENT_SECRET_BASIC


def test_the_commissioner_client_is_registered_from_a_fresh_seed(
    database: Database, tmp_path: Path
) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    environ.update(
        {
            "ONCEONLY_DATABASE_URL": database.url,
            "ONCEONLY_VAR_DIR": str(tmp_path / "var"),
            "ONCEONLY_DEMO": "true",
        }
    )

    def onceonly(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )

    assert onceonly("seed").returncode == 0
    common = ("clients", "add", "--ministry", "IPC", "--system", "ipc-audit")
    added = onceonly(*common, "--name", "Audit tools", "--scopes", "audit", "--auth",
                     "client_secret_basic")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "registered client ipc-audit-" in added.stdout
    mixed = onceonly(*common, "--name", "Mixed", "--scopes", "audit,access:check", "--auth",
                     "client_secret_basic")  # fmt: skip
    assert mixed.returncode == 1
    lines = mixed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in mixed.stderr
    assert lines[0] == (
        "onceonly: error: an audit client only reads: it cannot also hold access:check; "
        "register a separate client for those"
    )


# The evidence export ---------------------------------------------------------------------------


async def test_a_csv_export_of_a_slice(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    alex = demo.people.person(ALEX)
    response = await get(
        client, auditor, "/api/v1/audit/export", ministry="MTO", person=ALEX, format="csv"
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and ALEX not in disposition
    rows = list(csv.DictReader(io.StringIO(response.text)))
    own = set(await LedgerOpening.filter(pseudonym=alex).values_list("idx", flat=True))
    mto = await LedgerEntry.filter(actor_org="MTO", idx__in=list(own)).order_by("idx")
    assert [int(row["index"]) for row in rows] == [e.idx for e in mto]
    assert rows and {row["organisation"] for row in rows} == {"MTO"}
    assert [row["query_id"] for row in rows] == [e.query_id for e in mto]
    look = await AuditAccess.get(action="export")
    assert look.auditor == "api:" + auditor["client_id"]
    assert look.query == {"ministry": "MTO", "pseudonym": alex, "format": "csv"}
    assert ALEX not in str(look.query)


async def test_a_jsonl_export_and_bad_slices(
    client: httpx.AsyncClient, auditor: dict[str, Any], demo: Services
):
    export = "/api/v1/audit/export"
    lines = (await get(client, auditor, export, format="jsonl")).text.splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(await demo.ledger.size()))
    for params, field in (
        ({"from": "2025-02-30"}, "from"),
        ({"to": "tomorrow"}, "to"),
        ({"format": "pdf"}, "format"),
        ({"ministry": "no code"}, "ministry"),
        ({"person": ""}, "person"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "to"),
        ({"date": "2025-03-01"}, "date"),
    ):
        problem = assert_problem(await get(client, auditor, export, **params), 422, "validation")
        assert field in [e["field"] for e in problem["errors"]], (params, problem)
    assert await AuditAccess.filter(action="export").count() == 1
