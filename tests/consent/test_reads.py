"""consent.reads: the access check's one read, on both databases. Each person gets
exactly their own consents; on PostgreSQL concurrent reads share one query, and when
that query fails every one of them fails (none is left waiting)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.services import Services
from consent.identity import Pseudonymizer
from consent.lifecycle import answer_request, create_request
from consent.reads import consent_states
from ledger.database import LedgerUnavailable
from tests.consent.test_lifecycle import MTO, terms


async def consents_of(seeded: Services, people: Pseudonymizer, count: int) -> list[str]:
    """``count`` people: person-0 with no consent, the others with one active each."""
    pseudonyms = [people.person(f"person-{n}") for n in range(count)]
    for n in range(1, count):
        consent, _ = await create_request(
            seeded.ledger, people, MTO, terms(person_id=f"person-{n}")
        )
        await answer_request(seeded.ledger, pseudonyms[n], consent.id, approve=True)
    return pseudonyms


async def test_each_person_gets_their_own_consents(seeded: Services, people: Pseudonymizer) -> None:
    pseudonyms = await consents_of(seeded, people, 4)
    found = await consent_states(pseudonyms, seeded.ledger.db)
    assert pseudonyms[0] not in found
    for pseudonym in pseudonyms[1:]:
        (state,) = found[pseudonym]
        assert (state.status, state.recipient, state.purpose) == (
            "active",
            "MTO",
            "licence-renewal",
        )
        assert state.sources == {"MPBSDP"} and state.categories == {"address"}
        assert state.valid_from.tzinfo is not None and not state.used
    alone = await consent_states([pseudonyms[2]], seeded.ledger.db)
    assert alone == {pseudonyms[2]: found[pseudonyms[2]]}
    assert await consent_states([], seeded.ledger.db) == {}


class CountingFetch:
    def __init__(self, fetch: Any, fail: bool = False) -> None:
        self.fetch = fetch
        self.fail = fail
        self.calls = 0

    async def __call__(self, sql: str, *args: Any) -> Any:
        self.calls += 1
        if self.fail:
            raise LedgerUnavailable("the database went away")
        return await self.fetch(sql, *args)


async def test_concurrent_reads_share_one_query_on_postgresql(
    seeded: Services, people: Pseudonymizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if seeded.ledger.db.kind != "postgres":
        pytest.skip("reads are coalesced on PostgreSQL only (SQLite reads in place)")
    pseudonyms = await consents_of(seeded, people, 6)
    counting = CountingFetch(seeded.ledger.db.fetch)
    monkeypatch.setattr(seeded.ledger.db, "fetch", counting)
    answers = await asyncio.gather(
        *(consent_states([p], seeded.ledger.db) for p in pseudonyms),
        consent_states(pseudonyms[1:3], seeded.ledger.db),
    )
    assert counting.calls == 1
    assert answers[0] == {}
    for pseudonym, answer in zip(pseudonyms[1:], answers[1:6], strict=True):
        assert list(answer) == [pseudonym] and len(answer[pseudonym]) == 1
    assert sorted(answers[6]) == sorted(pseudonyms[1:3])

    counting.fail = True
    failed = await asyncio.gather(
        *(consent_states([p], seeded.ledger.db) for p in pseudonyms), return_exceptions=True
    )
    assert all(isinstance(outcome, LedgerUnavailable) for outcome in failed)
