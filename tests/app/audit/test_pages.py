"""The audit portal through HTTP, signed in as the demo auditor."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from app.audit.models import AuditAccess, HiddenReview, VerificationRun
from app.audit.views import wait_for_verifications
from app.seed import seed_demo, seed_reference
from app.services import Services
from ledger.models import LedgerEntry, LedgerOpening
from tests.app.portal.conftest import csrf_from
from tests.audit_support import ALEX, AUDIT_PAGES, AUDITOR
from tests.portal_support import application_of, sign_in


@pytest.fixture
async def demo(services: Services) -> Services:
    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    return services


async def test_anonymous_visitors_are_sent_to_sign_in(
    client: httpx.AsyncClient, demo: Services
) -> None:
    for path in AUDIT_PAGES:
        r = await client.get(path)
        assert r.status_code in (302, 303, 307), path
        assert r.headers["location"].startswith("/auth/sign-in"), path


async def test_citizens_cannot_reach_audit_pages(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, ALEX)
    for path in AUDIT_PAGES:
        assert (await client.get(path)).status_code == 403, path
    page = await client.get("/consents")
    token = csrf_from(page)
    assert (await client.post("/audit/verify", data={"csrf_token": token})).status_code == 403
    r = await client.post("/audit/hidden/0/review", data={"csrf_token": token})
    assert r.status_code == 403
    assert await VerificationRun.all().count() == 0
    assert await AuditAccess.all().count() == 0


async def test_the_auditor_reaches_every_page_and_writes_nothing_to_the_ledger(
    client: httpx.AsyncClient, demo: Services
) -> None:
    size = await demo.ledger.size()
    rows = await LedgerEntry.all().count()
    openings = await LedgerOpening.all().count()
    await sign_in(client, AUDITOR)
    home = await client.get("/")
    assert home.headers["location"] == "/audit"
    for path in AUDIT_PAGES:
        r = await client.get(path)
        assert r.status_code == 200, path
        assert "<script" not in r.text and " style=" not in r.text, path
    verify = await client.get("/audit/verify")
    r = await client.post("/audit/verify", data={"csrf_token": csrf_from(verify)})
    assert r.status_code == 303
    await wait_for_verifications(application_of(client))
    assert await demo.ledger.size() == size
    assert await LedgerEntry.all().count() == rows
    assert await LedgerOpening.all().count() == openings


async def test_searches_are_recorded(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, AUDITOR)
    r = await client.get("/audit/ledger", params={"ministry": "MTO", "purpose": "law-enforcement"})
    assert r.status_code == 200
    await client.get("/audit/ledger/3")
    looks = await AuditAccess.all().order_by("id")
    assert [a.action for a in looks] == ["ledger.search", "ledger.entry"]
    assert looks[0].query == {"ministry": "MTO", "purpose": "law-enforcement"}
    assert looks[1].query == {"index": "3"}
    assert len({a.auditor for a in looks}) == 1
    trail = await client.get("/audit/accesses")
    assert "ledger.search" in trail.text and "ministry=MTO" in trail.text


def _indices(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td><a href="/audit/ledger/(\d+)">', page)]


async def test_explorer_filters(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, AUDITOR)
    everything = _indices((await client.get("/audit/ledger")).text)
    size = await demo.ledger.size()
    assert everything == list(range(size - 1, -1, -1))
    mto = await LedgerEntry.filter(actor_org="MTO").values_list("idx", flat=True)
    page = await client.get("/audit/ledger", params={"ministry": "MTO"})
    assert sorted(_indices(page.text)) == sorted(mto)
    alex = demo.people.person(ALEX)
    own = await LedgerOpening.filter(pseudonym=alex).values_list("idx", flat=True)
    page = await client.get("/audit/ledger", params={"pseudonym": alex})
    assert sorted(_indices(page.text)) == sorted(own)
    denied = await client.get("/audit/ledger", params={"entry_type": "access.denied"})
    assert len(_indices(denied.text)) == 1
    law = await client.get(
        "/audit/ledger", params={"basis_kind": "authority", "basis_ref": "HTA-205"}
    )
    assert len(_indices(law.text)) == 1
    entry = await LedgerEntry.get(idx=everything[0])
    by_query = await client.get("/audit/ledger", params={"query_id": entry.query_id})
    assert _indices(by_query.text) == [entry.idx]
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert _indices((await client.get(f"/audit/ledger?since={future}")).text) == []
    recent = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    assert 0 < len(_indices((await client.get(f"/audit/ledger?since={recent}")).text)) < size
    nothing = await client.get("/audit/ledger", params={"case_id": "no-such-case"})
    assert "No entry matches." in nothing.text


async def test_explorer_pages_by_cursor(
    client: httpx.AsyncClient, demo: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.audit import queries

    monkeypatch.setattr(queries, "PAGE_SIZE", 5)
    await sign_in(client, AUDITOR)
    size = await demo.ledger.size()
    seen: list[int] = []
    url = "/audit/ledger?basis_kind=consent"
    while url:
        page = await client.get(url)
        found = _indices(page.text)
        assert len(found) <= 5
        seen += found
        older = re.search(r'<a href="(/audit/ledger\?[^"]*)">Older entries</a>', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    consent = await LedgerEntry.filter(basis_kind="consent").values_list("idx", flat=True)
    assert seen == sorted(consent, reverse=True)
    assert len(seen) > 5 and len(seen) < size


async def test_entry_detail_checks_its_inclusion_proof(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await sign_in(client, AUDITOR)
    hidden = await LedgerEntry.filter(hidden_until__isnull=False).order_by("-idx").first()
    assert hidden is not None
    r = await client.get(f"/audit/ledger/{hidden.idx}")
    assert r.status_code == 200
    assert "Inclusion proof verified." in r.text
    assert "still hidden from the person" in r.text
    assert "active-investigation" in r.text
    assert "The opening of the person commitment is kept (not shown)." in r.text
    opening = await LedgerOpening.get(idx=hidden.idx)
    assert opening.opening.hex() not in r.text
    await LedgerOpening.filter(idx=hidden.idx).delete()
    shredded = await client.get(f"/audit/ledger/{hidden.idx}")
    assert "No opening: the link to the person was erased." in shredded.text
    assert "Inclusion proof verified." in shredded.text
    assert (await client.get("/audit/ledger/999999")).status_code == 404
    assert (await client.get("/audit/ledger/abc")).status_code == 404


async def test_require_a_review_of_a_hidden_entry(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await sign_in(client, AUDITOR)
    hidden = await LedgerEntry.filter(hidden_until__gt=date.today()).first()
    assert hidden is not None
    page = await client.get("/audit/hidden")
    assert "active-investigation" in page.text and "Still hidden." in page.text
    without = await client.post(
        f"/audit/hidden/{hidden.idx}/review", data={"review_by": "2030-01-01"}
    )
    assert without.status_code == 403
    assert await HiddenReview.all().count() == 0
    token = csrf_from(page)
    bad = await client.post(
        f"/audit/hidden/{hidden.idx}/review", data={"csrf_token": token, "review_by": "soon"}
    )
    assert bad.status_code == 422 and "Give a date as YYYY-MM-DD." in bad.text
    r = await client.post(
        f"/audit/hidden/{hidden.idx}/review",
        data={"csrf_token": token, "review_by": "2030-01-01", "note": "Still needed?"},
    )
    assert r.status_code == 303
    review = await HiddenReview.get(entry_index=hidden.idx)
    assert review.review_by == date(2030, 1, 1) and review.note == "Still needed?"
    trail = await AuditAccess.get(action="hidden.review")
    assert review.required_by == trail.auditor
    after = await client.get(r.headers["location"])
    assert "The review was required." in after.text and "Still needed?" in after.text
    visible = await LedgerEntry.filter(hidden_until__isnull=True).first()
    assert visible is not None
    missing = await client.post(
        f"/audit/hidden/{visible.idx}/review", data={"csrf_token": token, "review_by": "2030-01-01"}
    )
    assert missing.status_code == 404


async def test_verify_now_runs_in_the_background_and_records_the_result(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await sign_in(client, AUDITOR)
    page = await client.get("/audit/verify")
    assert "No verification has been run yet." in page.text
    r = await client.post("/audit/verify", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 303
    await wait_for_verifications(application_of(client))
    run = await VerificationRun.get()
    assert run.status == "ok"
    assert run.checked == await demo.ledger.size() == run.total
    assert run.report is not None and run.report["ok"] is True
    assert run.finished_at is not None
    shown = await client.get("/audit/verify")
    assert "Verified" in shown.text
    assert await AuditAccess.filter(action="verify").count() == 1


async def test_disputes_page(client: httpx.AsyncClient, demo: Services) -> None:
    from app.auth.models import Dispute

    await Dispute.create(pseudonym="p", entry_index=2, ministry="MTO", message="Why did MTO look?")
    await Dispute.create(
        pseudonym="p",
        entry_index=3,
        ministry="FIN",
        message="And FIN?",
        status="answered",
        answer="For your benefit renewal.",
    )
    await sign_in(client, AUDITOR)
    r = await client.get("/audit/disputes")
    assert "Why did MTO look?" in r.text and "For your benefit renewal." in r.text
    only_open = await client.get("/audit/disputes?status=open")
    assert "Why did MTO look?" in only_open.text and "And FIN?" not in only_open.text


async def test_pages_in_french(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, AUDITOR)
    for path, text in (
        ("/audit?lang=fr", "Vérifier le registre"),
        ("/audit/ledger", "Explorateur du registre"),
        ("/audit/statistics", "Statistiques"),
        ("/audit/anomalies", "Anomalies"),
        ("/audit/hidden", "Entrées masquées"),
        ("/audit/verify", "Vérifier maintenant"),
    ):
        r = await client.get(path)
        assert '<html lang="fr">' in r.text, path
        assert text in r.text, path


async def test_statistics_have_charts_and_tables(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, AUDITOR)
    r = await client.get("/audit/statistics")
    assert r.text.count('<svg role="img"') == 5
    assert r.text.count("<table") == 5
    assert '<title id="ministries-title">' in r.text
    assert "Ministry of Finance" in r.text or "FIN" in r.text
