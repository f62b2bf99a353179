"""Each anomaly detector on data with the anomaly and on data without it: first the pure
detectors, then the page on the demo data with anomalies seeded in."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest

from app.audit import anomalies as a
from app.audit.models import HiddenReview
from app.auth.models import Dispute
from app.seed import DEMO_NAMESPACE, seed_demo, seed_reference
from app.services import Services
from consent.models import Consent, Holding, Ministry, System
from ledger.entry import Basis
from ledger.models import LedgerEntry
from tests.audit_support import AUDITOR, access_entry
from tests.portal_support import sign_in

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def window(**changes) -> a.ConsentWindow:
    fields = {
        "valid_from": NOW - 10 * DAY,
        "valid_until": NOW + 10 * DAY,
        "status": "active",
        "decided_at": NOW - 10 * DAY,
        "withdrawn_at": None,
    }
    fields.update(changes)
    return a.ConsentWindow(**fields)


def test_consent_accesses_inside_their_validity_are_not_findings() -> None:
    accesses = [a.ConsentAccess(1, NOW, "c1"), a.ConsentAccess(2, NOW + DAY, "c1")]
    checked, findings = a.consent_outside_validity(accesses, {"c1": window()})
    assert checked == 2 and findings == []


@pytest.mark.parametrize(
    ("consent", "problem"),
    [
        (None, "missing"),
        (window(status="refused"), "not_given"),
        (window(status="requested"), "not_given"),
        (window(decided_at=NOW + DAY), "not_given"),
        (window(valid_from=NOW + DAY), "not_yet_valid"),
        (window(valid_until=NOW - DAY, status="expired"), "expired"),
        (window(status="withdrawn", withdrawn_at=NOW - DAY), "withdrawn"),
    ],
)
def test_consent_accesses_outside_their_validity_are_findings(
    consent: a.ConsentWindow | None, problem: str
) -> None:
    consents = {"c1": consent} if consent else {}
    checked, findings = a.consent_outside_validity([a.ConsentAccess(7, NOW, "c1")], consents)
    assert checked == 1
    assert findings == [a.ConsentFinding(7, "c1", problem)]


def test_an_access_before_a_later_withdrawal_is_fine() -> None:
    consent = window(status="withdrawn", withdrawn_at=NOW + DAY)
    assert a.consent_outside_validity([a.ConsentAccess(1, NOW, "c")], {"c": consent})[1] == []


def _days(counts: list[tuple[int, int]], ministry: str = "FIN") -> list[a.DailyCount]:
    start = date(2025, 5, 1)
    return [
        a.DailyCount(start + timedelta(days=n), ministry, total, denied)
        for n, (total, denied) in enumerate(counts)
    ]


def test_steady_volume_is_no_spike() -> None:
    assert a.spikes(_days([(20, 1)] * 10 + [(50, 2)])) == []


def test_a_day_above_three_times_the_median_is_a_spike() -> None:
    found = a.spikes(_days([(20, 1)] * 10 + [(61, 1)]) + _days([(5, 0)] * 3, "MTO"))
    assert found == [a.Spike("FIN", date(2025, 5, 11), "volume", 61, 20.0)]


def test_a_spike_of_denials() -> None:
    found = a.spikes(_days([(20, 2)] * 10 + [(30, 12)]))
    assert found == [a.Spike("FIN", date(2025, 5, 11), "denials", 12, 2.0)]


def test_small_numbers_are_no_spike() -> None:
    assert a.spikes(_days([(1, 0)] * 10 + [(9, 0)])) == []


def test_hidden_entries_past_their_review_date() -> None:
    today = date(2025, 6, 1)
    still = a.HiddenEntry(1, "MTO", date(2025, 9, 1), "active-investigation")
    ended = a.HiddenEntry(2, "MTO", date(2025, 5, 1), "active-investigation")
    unreviewed = a.HiddenEntry(3, "MTO", date(2025, 9, 1), "active-investigation")
    reviews = {1: date(2025, 5, 20), 2: date(2025, 4, 1)}
    assert a.overdue_reviews([still, ended, unreviewed], reviews, today) == [
        a.OverdueReview(still, date(2025, 5, 20))
    ]
    assert a.overdue_reviews([still], {1: date(2025, 6, 2)}, today) == []


def test_holdings_without_an_authority() -> None:
    rows = [
        a.HoldingRow("MOH", "ohip", "health-number", "HIA-10"),
        a.HoldingRow("MTO", "driver-licensing", "address", None),
        a.HoldingRow("MTO", "driver-licensing", "address", None),
    ]
    assert a.holdings_without_authority(rows) == [
        a.UnfoundedHoldings("MTO", "driver-licensing", "address", 2)
    ]
    assert a.holdings_without_authority(rows[:1]) == []


def test_registered_systems_that_never_reported() -> None:
    registered = [("MTO", "driver-licensing"), ("MOH", "ohip")]
    assert a.silent_systems(registered, [("MTO", "driver-licensing")]) == [("MOH", "ohip")]
    assert a.silent_systems(registered, registered) == []


def test_disputes_open_too_long() -> None:
    old = a.OpenDispute(1, "MTO", 4, NOW - 45 * DAY, "open")
    recent = a.OpenDispute(2, "MTO", 5, NOW - 5 * DAY, "open")
    answered = a.OpenDispute(3, "MTO", 6, NOW - 90 * DAY, "answered")
    assert a.old_disputes([old, recent, answered], NOW) == [(old, 45)]
    assert a.old_disputes([old, recent], NOW, days=3) == [(old, 45), (recent, 5)]
    assert a.old_disputes([recent], NOW) == []


# The page, on the demo data -------------------------------------------------------------


@pytest.fixture
async def demo(services: Services) -> Services:
    await seed_reference()
    await seed_demo(services.settings, services.ledger)
    return services


async def test_the_demo_data_has_no_consent_anomaly_and_the_page_says_how_many_it_checked(
    client: httpx.AsyncClient, demo: Services
) -> None:
    await Holding.filter(authority_id=None).delete()  # the demo has one, on purpose
    await sign_in(client, AUDITOR)
    page = await client.get("/audit/anomalies")
    checked = await LedgerEntry.filter(entry_type="access.permitted", basis_kind="consent").count()
    assert checked >= 3
    assert f"{checked} accesses permitted by consent were checked" in page.text
    assert 'id="consent-ok"' in page.text and 'id="consent-findings"' not in page.text
    for table in ("spike", "overdue", "holding", "dispute"):
        assert f'id="{table}-findings"' not in page.text, table


async def test_the_page_shows_each_seeded_anomaly(
    client: httpx.AsyncClient, demo: Services
) -> None:
    # An access relying on Alex's withdrawn consent, after the withdrawal.
    withdrawn = uuid.uuid5(DEMO_NAMESPACE, "alex-mlitsd-employment")
    consent = await Consent.get(id=withdrawn)
    appended = await demo.ledger.append(
        *access_entry(pseudonym=consent.pseudonym, basis=Basis("consent", str(withdrawn)))
    )
    # A hidden entry whose required review date has passed.
    hidden = await LedgerEntry.filter(hidden_until__gt=date.today()).first()
    assert hidden is not None
    await HiddenReview.create(entry_index=hidden.idx, required_by="a", review_by=date.today() - DAY)
    # A holding with no authority, on a system that never reported.
    ministry = await Ministry.get(code="MTO")
    quiet = await System.create(
        ministry=ministry, code="quiet-system", name_en="Quiet", name_fr="Silencieux"
    )
    await Holding.create(pseudonym="p", system=quiet, category_id="address", retention="P1Y")
    # A dispute open for 40 days.
    dispute = await Dispute.create(pseudonym="p", entry_index=1, ministry="MTO", message="?")
    await Dispute.filter(id=dispute.id).update(created_at=datetime.now(UTC) - 40 * DAY)

    await sign_in(client, AUDITOR)
    page = (await client.get("/audit/anomalies")).text
    assert 'id="consent-findings"' in page
    link = f'<a href="/audit/ledger/{appended.index}">{appended.index}</a>'
    assert f"{link}</td><td>{withdrawn}</td><td>withdrawn" in page
    assert 'id="overdue-findings"' in page and f"/audit/ledger/{hidden.idx}" in page
    assert 'id="holding-findings"' in page and "quiet-system" in page
    assert 'id="coverage-findings"' in page
    assert 'id="dispute-findings"' in page
    assert 'id="dispute-findings"' not in (await client.get("/audit/anomalies?days=60")).text


async def test_the_page_shows_a_spike(client: httpx.AsyncClient, demo: Services) -> None:
    sam = (await Consent.get(id=uuid.uuid5(DEMO_NAMESPACE, "sam-ow-income"))).pseudonym
    # Noon, so that the twelve denials of yesterday stay on one day whatever the hour.
    now = datetime.combine(date.today(), time(12), UTC)
    entries = [
        access_entry(
            pseudonym=sam,
            basis=Basis("authority", "HTA-205"),
            entry_type="access.denied",
            actor="MNR",
            system="mnr-system",
            moment=now - timedelta(days=day),
        )
        for day in (5, 4, 3)
    ]
    entries += [
        access_entry(
            pseudonym=sam,
            basis=Basis("authority", "HTA-205"),
            entry_type="access.denied",
            actor="MNR",
            system="mnr-system",
            moment=now - timedelta(days=1, minutes=n),
        )
        for n in range(12)
    ]
    await demo.ledger.append_all(entries)
    await sign_in(client, AUDITOR)
    page = (await client.get("/audit/anomalies")).text
    assert 'id="spike-findings"' in page
    assert "<td>Denials</td><td>12</td>" in page
