"""Consent lifecycle and access checks with the real database and ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.services import Services
from consent.access import AccessCheck, CheckTerms, check_access
from consent.errors import Conflict, Invalid, NotFound
from consent.identity import Actor, Pseudonymizer
from consent.lifecycle import ConsentTerms, answer_request, create_request, expire_due, withdraw
from consent.models import Consent, ConsentStatus, Notification
from ledger.entry import decode_entry

MTO = Actor("MTO", "driver-licensing", "mto-client")
SERVICEONTARIO = Actor("MPBSDP", "serviceontario", "so-client")
NOW = datetime.now(UTC)


def terms(**overrides) -> ConsentTerms:
    fields = {
        "person_id": "person-1",
        "sources": frozenset({"MPBSDP"}),
        "categories": frozenset({"address"}),
        "purpose": "licence-renewal",
        "valid_from": NOW,
        "valid_until": NOW + timedelta(days=90),
        "one_time": False,
        "notice_text": "MTO asks for your address from ServiceOntario to renew your licence.",
        "return_url": "https://mto.example/back",
        "state": "xyz",
    }
    fields.update(overrides)
    return ConsentTerms(**fields)


def check_terms(**overrides) -> CheckTerms:
    fields = {
        "recipient": "MTO",
        "categories": frozenset({"address"}),
        "purpose": "licence-renewal",
    }
    fields.update(overrides)
    return CheckTerms(**fields)


async def entry_at(services: Services, index: int):
    leaf, _ = await services.ledger.entry(index)
    return decode_entry(leaf)


async def ask(services: Services, people: Pseudonymizer, person: str = "person-1"):
    outcome = await check_access(
        services.ledger, people, SERVICEONTARIO, check_terms(), [AccessCheck(person, "q-1")]
    )
    return outcome[0]


async def test_request_approve_check_withdraw_check(
    seeded: Services, people: Pseudonymizer
) -> None:
    consent, requested = await create_request(seeded.ledger, people, MTO, terms())
    assert consent.status == ConsentStatus.REQUESTED
    assert (await entry_at(seeded, requested.index)).type == "consent.requested"
    denied = await ask(seeded, people)
    assert not denied.decision.permit
    assert denied.decision.reasons == ("consent_pending",)

    pseudonym = people.person("person-1")
    consent, given = await answer_request(seeded.ledger, pseudonym, consent.id, approve=True)
    assert consent.status == ConsentStatus.ACTIVE
    assert (await entry_at(seeded, given.index)).type == "consent.given"

    permitted = await ask(seeded, people)
    assert permitted.decision.permit
    assert permitted.decision.basis_ref == str(consent.id)
    recorded = await entry_at(seeded, permitted.appended.index)
    assert recorded.type == "access.permitted"
    assert recorded.basis.ref == str(consent.id)
    assert recorded.query_id == "q-1"

    _, withdrawn = await withdraw(seeded.ledger, pseudonym, consent.id)
    assert (await entry_at(seeded, withdrawn.index)).type == "consent.withdrawn"
    after = await ask(seeded, people)
    assert after.decision.reasons == ("consent_withdrawn",)
    assert (await entry_at(seeded, after.appended.index)).reasons == ("consent_withdrawn",)
    notified = {n.payload["recipient"] for n in await Notification.all()}
    assert notified == {"MTO"}
    ministries = {(await n.ministry).code for n in await Notification.all()}
    assert ministries == {"MTO", "MPBSDP"}


async def test_refuse_and_no_second_answer(seeded: Services, people: Pseudonymizer) -> None:
    consent, _ = await create_request(seeded.ledger, people, MTO, terms())
    pseudonym = people.person("person-1")
    consent, refused = await answer_request(seeded.ledger, pseudonym, consent.id, approve=False)
    assert consent.status == ConsentStatus.REFUSED
    assert (await entry_at(seeded, refused.index)).type == "consent.refused"
    with pytest.raises(Conflict):
        await answer_request(seeded.ledger, pseudonym, consent.id, approve=True)
    assert (await ask(seeded, people)).decision.reasons == ("consent_refused",)


async def test_another_person_cannot_answer(seeded: Services, people: Pseudonymizer) -> None:
    consent, _ = await create_request(seeded.ledger, people, MTO, terms())
    with pytest.raises(NotFound):
        await answer_request(seeded.ledger, people.person("someone-else"), consent.id, True)
    assert (await Consent.get(id=consent.id)).status == ConsentStatus.REQUESTED


async def test_one_time_consent_is_used_once_even_concurrently(
    seeded: Services, people: Pseudonymizer
) -> None:
    consent, _ = await create_request(seeded.ledger, people, MTO, terms(one_time=True))
    await answer_request(seeded.ledger, people.person("person-1"), consent.id, True)
    results = await asyncio.gather(*(ask(seeded, people) for _ in range(5)))
    permits = [r for r in results if r.decision.permit]
    assert len(permits) == 1
    denied = [r.decision.reasons for r in results if not r.decision.permit]
    assert denied == [("one_time_consent_used",)] * 4


async def test_expiry_of_requests_and_consents(seeded: Services, people: Pseudonymizer) -> None:
    unanswered, _ = await create_request(
        seeded.ledger, people, MTO, terms(answer_by=NOW + timedelta(hours=1))
    )
    lapsing, _ = await create_request(
        seeded.ledger, people, MTO, terms(person_id="person-2", valid_until=NOW + timedelta(days=2))
    )
    await answer_request(seeded.ledger, people.person("person-2"), lapsing.id, True)
    assert await expire_due(seeded.ledger, now=NOW + timedelta(minutes=30)) == 0
    assert await expire_due(seeded.ledger, now=NOW + timedelta(days=3)) == 2
    assert (await Consent.get(id=unanswered.id)).status == ConsentStatus.EXPIRED
    assert (await Consent.get(id=lapsing.id)).status == ConsentStatus.EXPIRED
    assert await expire_due(seeded.ledger, now=NOW + timedelta(days=4)) == 0
    events = [n.event for n in await Notification.all()]
    assert events == ["consent.expired", "consent.expired"]  # the lapsed one, to MTO and MPBSDP


async def test_unknown_codes_are_refused_and_nothing_recorded(
    seeded: Services, people: Pseudonymizer
) -> None:
    size = await seeded.ledger.size()
    with pytest.raises(Invalid) as info:
        await create_request(
            seeded.ledger, people, MTO, terms(categories=frozenset({"shoe-size"}), purpose="fun")
        )
    fields = {e["field"] for e in info.value.errors}
    assert fields == {"categories", "purpose"}
    with pytest.raises(Invalid):
        await check_access(
            seeded.ledger,
            people,
            SERVICEONTARIO,
            check_terms(recipient="NOPE"),
            [AccessCheck("p", "q")],
        )
    assert await seeded.ledger.size() == size
    assert await Consent.all().count() == 0


async def test_statutory_access_can_be_hidden(seeded: Services, people: Pseudonymizer) -> None:
    until = (NOW + timedelta(days=60)).date()
    outcome = await check_access(
        seeded.ledger,
        people,
        Actor("MTO", "driver-licensing"),
        check_terms(
            recipient="SOLGEN",
            categories=frozenset({"driver-licence"}),
            purpose="law-enforcement",
            authority="HTA-205",
            case_id="case-77",
            hidden_until=until,
            hidden_reason="active-investigation",
        ),
        [AccessCheck("person-1", "q-9")],
    )
    assert outcome[0].decision.permit
    entry = await entry_at(seeded, outcome[0].appended.index)
    assert (entry.hidden_until, entry.hidden_reason) == (until.isoformat(), "active-investigation")
    assert entry.case_id == "case-77"


async def test_bulk_check_records_one_entry_per_person(
    seeded: Services, people: Pseudonymizer
) -> None:
    checks = [AccessCheck(f"person-{n}", f"q-{n}") for n in range(25)]
    outcomes = await check_access(
        seeded.ledger, people, SERVICEONTARIO, check_terms(), checks, bulk_job_id="bulk-1"
    )
    indices = [o.appended.index for o in outcomes]
    assert indices == list(range(indices[0], indices[0] + 25))
    for outcome in outcomes:
        entry = await entry_at(seeded, outcome.appended.index)
        assert entry.bulk_job_id == "bulk-1"
        assert entry.query_id == outcome.query_id


async def test_return_location_echoes_state(seeded: Services, people: Pseudonymizer) -> None:
    from urllib.parse import parse_qs, urlsplit

    from consent.lifecycle import return_location

    consent, _ = await create_request(
        seeded.ledger,
        people,
        MTO,
        terms(return_url="https://mto.example/back?step=2", state="s&t=1"),
    )
    consent, _ = await answer_request(seeded.ledger, people.person("person-1"), consent.id, True)
    location = return_location(consent)
    assert location is not None
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "mto.example", "/back")
    assert parse_qs(parts.query) == {
        "step": ["2"],
        "outcome": ["approved"],
        "consent_id": [str(consent.id)],
        "state": ["s&t=1"],
    }
