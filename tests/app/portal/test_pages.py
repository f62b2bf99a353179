"""The citizen portal through HTTP, signed in through the built-in OpenID provider."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.auth.models import AlertSubscription, Dispute
from app.seed import DEMO_NAMESPACE
from app.services import Services
from consent.identity import Actor
from consent.lifecycle import ConsentTerms, create_request
from consent.models import Consent, ConsentStatus
from ledger.models import LedgerOpening
from ledger.persons import compact
from ledger.receipts import check_personal_receipt
from tests.app.portal.conftest import csrf_from
from tests.portal_support import sign_in

ALEX = "demo-resident-alex"
SAM = "demo-resident-sam"


async def ask_alex(services: Services, **overrides) -> Consent:
    fields = {
        "person_id": ALEX,
        "sources": frozenset({"MPBSDP"}),
        "categories": frozenset({"address"}),
        "purpose": "licence-renewal",
        "valid_from": datetime.now(UTC),
        "valid_until": datetime.now(UTC) + timedelta(days=30),
        "one_time": True,
        "notice_text": "MTO asks for your address from ServiceOntario, once, to renew it.",
        "return_url": "https://mto.example/renew/back",
        "state": "st-1",
    }
    fields.update(overrides)
    consent, _ = await create_request(
        services.ledger,
        services.people,
        Actor("MTO", "driver-licensing", "c"),
        ConsentTerms(**fields),
    )
    return consent


async def test_pages_need_sign_in(client: httpx.AsyncClient, demo: Services) -> None:
    welcome = await client.get("/")
    assert welcome.status_code == 200
    assert 'href="/auth/sign-in"' in welcome.text
    for path in ("/requests", "/consents", "/activity", "/alerts"):
        r = await client.get(path)
        assert r.status_code in (302, 303, 307), path
        assert r.headers["location"].startswith("/auth/sign-in")


async def test_home_shows_holdings_flows_and_consents(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await sign_in(client, ALEX)
    r = await client.get("/")
    assert r.status_code == 200
    assert "Ontario Health Insurance Plan (OHIP)" in r.text
    assert "Health Insurance Act, s. 10" in r.text
    assert "10 years" in r.text
    assert "<svg" in r.text and "Flows of your data" in r.text
    assert "Withdraw this consent" in r.text
    french = await client.get("/?lang=fr")
    assert "Qui détient mes données" in french.text


async def test_approve_a_request_end_to_end(client: httpx.AsyncClient, demo: Services) -> None:
    consent = await ask_alex(demo)
    await sign_in(client, ALEX)
    page = await client.get(f"/requests/{consent.id}")
    assert page.status_code == 200
    assert "MTO asks for your address from ServiceOntario" in page.text
    assert "Once only" in page.text
    size = await demo.ledger.size()
    r = await client.post(
        f"/requests/{consent.id}", data={"answer": "approve", "csrf_token": csrf_from(page)}
    )
    assert r.status_code == 303
    done = await client.get(r.headers["location"])
    assert "You agreed" in done.text
    back = re.search(r'href="(https://mto\.example/renew/back\?[^"]+)"', done.text)
    assert back is not None
    assert "outcome=approved" in back.group(1) and "state=st-1" in back.group(1)
    assert (await Consent.get(id=consent.id)).status == ConsentStatus.ACTIVE
    assert await demo.ledger.size() == size + 1


async def test_refuse_a_request(client: httpx.AsyncClient, demo: Services) -> None:
    consent = await ask_alex(demo)
    await sign_in(client, ALEX)
    page = await client.get(f"/requests/{consent.id}")
    r = await client.post(
        f"/requests/{consent.id}", data={"answer": "refuse", "csrf_token": csrf_from(page)}
    )
    done = await client.get(r.headers["location"])
    assert "You refused" in done.text
    assert "outcome=refused" in done.text
    assert (await Consent.get(id=consent.id)).status == ConsentStatus.REFUSED


async def test_withdraw_in_two_clicks_from_home(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, ALEX)
    home = await client.get("/")
    link = re.search(r'href="(/consents/[0-9a-f-]+/withdraw)"', home.text)
    assert link is not None
    confirm = await client.get(link.group(1))
    assert "can no longer receive" in confirm.text
    r = await client.post(link.group(1), data={"csrf_token": csrf_from(confirm)})
    assert r.status_code == 303
    consent_id = link.group(1).split("/")[2]
    assert (await Consent.get(id=consent_id)).status == ConsentStatus.WITHDRAWN


async def test_activity_in_plain_language_with_hidden_entries(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await sign_in(client, ALEX)
    r = await client.get("/activity")
    assert r.status_code == 200
    osap = "Ministry of Colleges, Universities, Research Excellence and Security"
    assert f"{osap} received your income from Ministry of Finance" in r.text
    # One statutory access was hidden until two days ago: it shows, saying so and why.
    assert "This access was hidden from you until" in r.text
    assert "active-investigation" in r.text
    # The other is still hidden: nothing of it shows.
    assert r.text.count("This access was hidden from you until") == 1
    filtered = await client.get("/activity", params={"basis": "authority"})
    assert "with your consent" not in filtered.text
    french = await client.get("/activity?lang=fr")
    assert "a reçu vos données" in french.text


async def test_activity_receipt_verifies_offline(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, ALEX)
    page = await client.get("/activity")
    link = re.search(r'href="(/activity/(\d+)/receipt)"', page.text)
    assert link is not None
    r = await client.get(link.group(1))
    assert r.status_code == 200
    checked = check_personal_receipt(r.content, demo.ledger.vkey)
    assert checked.index == int(link.group(2))
    assert checked.pseudonym == demo.people.person(ALEX)


async def test_question_an_access(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, ALEX)
    page = await client.get("/activity")
    index = re.search(r'href="/activity/(\d+)/question"', page.text).group(1)
    form = await client.get(f"/activity/{index}/question")
    empty = await client.post(
        f"/activity/{index}/question", data={"message": " ", "csrf_token": csrf_from(form)}
    )
    assert empty.status_code == 422
    r = await client.post(
        f"/activity/{index}/question",
        data={"message": "Why did you need my address?", "csrf_token": csrf_from(form)},
    )
    assert r.status_code == 303
    dispute = await Dispute.get(entry_index=int(index))
    assert dispute.pseudonym == demo.people.person(ALEX)


async def test_alert_subscription(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, ALEX)
    page = await client.get("/alerts")
    bad = await client.post("/alerts", data={"email": "nope", "csrf_token": csrf_from(page)})
    assert bad.status_code == 422
    r = await client.post(
        "/alerts", data={"email": "alex@example.com", "csrf_token": csrf_from(page)}
    )
    assert r.status_code == 303
    subscription = await AlertSubscription.get(pseudonym=demo.people.person(ALEX))
    assert subscription.email == "alex@example.com"


async def test_give_a_standing_consent(client: httpx.AsyncClient, demo: Services) -> None:
    await sign_in(client, SAM)
    page = await client.get("/consents")
    r = await client.post(
        "/consents/offers/mto-address-serviceontario", data={"csrf_token": csrf_from(page)}
    )
    assert r.status_code == 303
    consents = await Consent.filter(pseudonym=demo.people.person(SAM), recipient__code="MTO")
    assert [c.status for c in consents] == [ConsentStatus.ACTIVE]


async def test_forms_refuse_a_missing_csrf_token(client: httpx.AsyncClient, demo: Services) -> None:
    consent = await ask_alex(demo)
    await sign_in(client, ALEX)
    r = await client.post(f"/requests/{consent.id}", data={"answer": "approve"})
    assert r.status_code == 403
    assert "text/html" in r.headers["content-type"]
    assert (await Consent.get(id=consent.id)).status == ConsentStatus.REQUESTED


async def test_person_a_reaches_nothing_of_person_b(
    client: httpx.AsyncClient, demo: Services
) -> None:
    alex_request = await ask_alex(demo)
    alex_consent = uuid.uuid5(DEMO_NAMESPACE, "alex-osap-income")
    alex_entries = [o.idx for o in await LedgerOpening.filter(pseudonym=demo.people.person(ALEX))]
    await sign_in(client, SAM)
    own = await client.get("/consents")
    token = csrf_from(own)
    for method, path, data in [
        ("GET", f"/requests/{alex_request.id}", None),
        ("POST", f"/requests/{alex_request.id}", {"answer": "approve", "csrf_token": token}),
        ("GET", f"/consents/{alex_consent}/withdraw", None),
        ("POST", f"/consents/{alex_consent}/withdraw", {"csrf_token": token}),
        ("GET", f"/consents/{alex_consent}/receipt", None),
        ("GET", f"/activity/{alex_entries[0]}/receipt", None),
        ("GET", f"/activity/{alex_entries[0]}/question", None),
        ("POST", f"/activity/{alex_entries[0]}/question", {"message": "x", "csrf_token": token}),
    ]:
        r = await client.request(method, path, data=data)
        assert r.status_code == 404, (method, path, r.status_code)
    assert (await Consent.get(id=alex_request.id)).status == ConsentStatus.REQUESTED
    assert (await Consent.get(id=alex_consent)).status == ConsentStatus.ACTIVE
    activity = await client.get("/activity")
    assert (
        "Ministry of Colleges, Universities, Research Excellence and Security received"
        not in activity.text
    )
    assert not await Dispute.exists()


@pytest.mark.parametrize("lang", ["en", "fr"])
async def test_error_pages_in_the_persons_language(
    client: httpx.AsyncClient, demo: Services, lang: str
) -> None:
    await sign_in(client, ALEX)
    r = await client.get(f"/consents/not-a-uuid/withdraw?lang={lang}")
    assert r.status_code == 404
    assert ("Page not found" if lang == "en" else "Page introuvable") in r.text


async def test_activity_is_the_same_once_the_person_index_is_compacted(
    client: httpx.AsyncClient, demo: Services
) -> None:
    """The activity page finds a person's entries through the person index's runs as it
    did in the unindexed tail (ledger.persons), and never another person's."""

    async def shown(person: str) -> set[int]:
        await sign_in(client, person)
        page = await client.get("/activity")
        assert page.status_code == 200
        return {int(n) for n in re.findall(r'href="/activity/(\d+)/receipt"', page.text)}

    before = {person: await shown(person) for person in (ALEX, SAM)}
    assert before[ALEX] and before[SAM] and not before[ALEX] & before[SAM]
    async with demo.ledger.db.write() as tx:
        await compact(tx, flush_rows=1, merge_runs=99)  # everything into a level-0 run
    await ask_alex(demo)  # one entry more, in the tail
    async with demo.ledger.db.write() as tx:
        await compact(tx, flush_rows=1, merge_runs=2)  # a second run; both merged
    runs = await demo.ledger.db.fetch("SELECT level FROM ledger_person_run")
    assert [int(row[0]) for row in runs] == [1]
    after = {person: await shown(person) for person in (ALEX, SAM)}
    assert after[SAM] == before[SAM]
    assert before[ALEX] < after[ALEX]  # the request shows too
    assert not after[ALEX] & after[SAM]
