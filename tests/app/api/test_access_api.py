"""The ministry API through HTTP with real tokens: consent requests, access checks,
holdings, notifications, isolation, idempotency and problem documents."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.services import Services
from consent.lifecycle import answer_request, withdraw
from ledger.entry import decode_entry
from ledger.merkle import leaf_hash
from tests.app.api.conftest import TokenFactory

IN_90_DAYS = (datetime.now(UTC) + timedelta(days=90)).isoformat()


def consent_request(**overrides) -> dict:
    body = {
        "person_id": "resident-42",
        "sources": ["MPBSDP"],
        "categories": ["address"],
        "purpose": "licence-renewal",
        "valid_until": IN_90_DAYS,
        "one_time": False,
        "notice_text": "The Ministry of Transportation asks for your address to renew it.",
        "return_url": "https://mto.example/renewal/done",
        "state": "opaque-123",
    }
    body.update(overrides)
    return body


def access_check(**overrides) -> dict:
    body = {
        "person_id": "resident-42",
        "recipient": "MTO",
        "categories": ["address"],
        "purpose": "licence-renewal",
        "query_id": f"q-{uuid.uuid4().hex[:12]}",
    }
    body.update(overrides)
    return body


async def test_once_only_journey_through_the_api(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    mto = await auth("MTO", "driver-licensing")
    serviceontario = await auth("MPBSDP", "serviceontario")

    r = await client.post("/api/v1/consent-requests", json=consent_request(), headers=mto)
    assert r.status_code == 201, r.text
    consent = r.json()
    assert consent["status"] == "requested"
    assert consent["request_url"].endswith(f"/requests/{consent['id']}")
    assert r.headers["location"] == f"/api/v1/consents/{consent['id']}"

    r = await client.post("/api/v1/access-checks", json=access_check(), headers=serviceontario)
    assert r.status_code == 200, r.text
    assert (r.json()["decision"], r.json()["reasons"]) == ("deny", ["consent_pending"])

    pseudonym = seeded.people.person("resident-42")
    await answer_request(seeded.ledger, pseudonym, consent["id"], approve=True)

    r = await client.post("/api/v1/access-checks", json=access_check(), headers=serviceontario)
    decision = r.json()
    assert decision["decision"] == "permit"
    assert decision["basis"] == {"kind": "consent", "ref": consent["id"]}
    leaf, stored_hash = await seeded.ledger.entry(decision["ledger"]["index"])
    assert base64.b64decode(decision["ledger"]["leaf_hash"]) == stored_hash == leaf_hash(leaf)
    assert decode_entry(leaf).type == "access.permitted"
    receipt = await client.get(decision["ledger"]["receipt_url"])
    assert receipt.status_code == 200

    await withdraw(seeded.ledger, pseudonym, consent["id"])
    r = await client.post("/api/v1/access-checks", json=access_check(), headers=serviceontario)
    assert (r.json()["decision"], r.json()["reasons"]) == ("deny", ["consent_withdrawn"])

    r = await client.get("/api/v1/notifications", headers=mto)
    notices = r.json()["items"]
    assert [n["event"] for n in notices] == ["consent.withdrawn"]
    ack = await client.post(f"/api/v1/notifications/{notices[0]['id']}/ack", headers=mto)
    assert ack.json()["acknowledged_at"] is not None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"purpose": "research"}, "purpose_mismatch"),
        ({"categories": ["address", "income"]}, "category_not_covered"),
        ({"recipient": "MCCSS"}, "recipient_mismatch"),
    ],
)
async def test_deny_reasons_through_http(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory, change: dict, reason: str
) -> None:
    mto = await auth("MTO", "driver-licensing")
    serviceontario = await auth("MPBSDP", "serviceontario")
    r = await client.post("/api/v1/consent-requests", json=consent_request(), headers=mto)
    await answer_request(seeded.ledger, seeded.people.person("resident-42"), r.json()["id"], True)
    r = await client.post(
        "/api/v1/access-checks", json=access_check(**change), headers=serviceontario
    )
    assert r.status_code == 200, r.text
    assert reason in r.json()["reasons"]


async def test_no_consent_and_statute(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    mto = await auth("MTO", "driver-licensing")
    r = await client.post(
        "/api/v1/access-checks", json=access_check(recipient="MCCSS"), headers=mto
    )
    assert r.json()["reasons"] == ["no_consent"]
    r = await client.post(
        "/api/v1/access-checks",
        json=access_check(
            recipient="SOLGEN",
            categories=["driver-licence"],
            purpose="law-enforcement",
            authority="HTA-205",
            case_id="case-1",
            hidden_until=(datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
            hidden_reason="active-investigation",
        ),
        headers=mto,
    )
    assert r.json()["decision"] == "permit"
    assert r.json()["basis"] == {"kind": "authority", "ref": "HTA-205"}


async def test_one_time_consent_used_through_http(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    mto = await auth("MTO", "driver-licensing")
    serviceontario = await auth("MPBSDP", "serviceontario")
    r = await client.post(
        "/api/v1/consent-requests", json=consent_request(one_time=True), headers=mto
    )
    await answer_request(seeded.ledger, seeded.people.person("resident-42"), r.json()["id"], True)
    first = await client.post("/api/v1/access-checks", json=access_check(), headers=serviceontario)
    second = await client.post("/api/v1/access-checks", json=access_check(), headers=serviceontario)
    assert first.json()["decision"] == "permit"
    assert second.json()["reasons"] == ["one_time_consent_used"]


async def test_batch_check_is_one_bulk_job(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    serviceontario = await auth("MPBSDP", "serviceontario")
    body = {
        "recipient": "MTO",
        "categories": ["address"],
        "purpose": "licence-renewal",
        "persons": [{"person_id": f"p-{n}", "query_id": f"q-{n}"} for n in range(30)],
    }
    r = await client.post("/api/v1/access-checks/batch", json=body, headers=serviceontario)
    assert r.status_code == 200, r.text
    result = r.json()
    assert len(result["results"]) == 30
    indices = [x["ledger"]["index"] for x in result["results"]]
    assert indices == list(range(indices[0], indices[0] + 30))
    leaf, _ = await seeded.ledger.entry(indices[5])
    assert decode_entry(leaf).bulk_job_id == result["bulk_job_id"]


async def test_idempotent_retry_records_nothing_more(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    serviceontario = await auth("MPBSDP", "serviceontario")
    headers = {**serviceontario, "Idempotency-Key": "retry-1"}
    body = access_check()
    first = await client.post("/api/v1/access-checks", json=body, headers=headers)
    size = await seeded.ledger.size()
    again = await client.post("/api/v1/access-checks", json=body, headers=headers)
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert await seeded.ledger.size() == size
    other = await client.post("/api/v1/access-checks", json=access_check(), headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


async def test_ministries_are_isolated(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    mto = await auth("MTO", "driver-licensing")
    moh = await auth("MOH", "ohip")
    r = await client.post("/api/v1/consent-requests", json=consent_request(), headers=mto)
    consent_id = r.json()["id"]
    assert (await client.get(f"/api/v1/consents/{consent_id}", headers=mto)).status_code == 200
    assert (await client.get(f"/api/v1/consents/{consent_id}", headers=moh)).status_code == 404
    assert (
        await client.get(f"/api/v1/consents/{consent_id}/receipt", headers=moh)
    ).status_code == 404
    assert (await client.get("/api/v1/consents", headers=moh)).json()["items"] == []
    assert len((await client.get("/api/v1/consents", headers=mto)).json()["items"]) == 1
    # The body cannot name another ministry as the actor: unknown fields are refused.
    r = await client.post(
        "/api/v1/access-checks", json={**access_check(), "source": "MTO"}, headers=moh
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "source"


async def test_scopes_are_enforced(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    reader = await auth("MTO", "driver-licensing", scopes=["consent:read"])
    r = await client.post("/api/v1/access-checks", json=access_check(), headers=reader)
    assert r.status_code == 403
    r = await client.post("/api/v1/access-checks", json=access_check())
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"person_id": "x"}, "recipient"),
        (access_check(categories=[]), "categories"),
        (access_check(query_id="has space"), "query_id"),
        (access_check(extra="field"), "extra"),
        (
            access_check(hidden_until="2026-13-40", hidden_reason="x", authority="HTA-205"),
            "hidden_until",
        ),
        (access_check(categories=["shoe-size"]), "categories"),
    ],
)
async def test_bad_input_is_a_problem_and_records_nothing(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory, body: dict, field: str
) -> None:
    serviceontario = await auth("MPBSDP", "serviceontario")
    size = await seeded.ledger.size()
    r = await client.post("/api/v1/access-checks", json=body, headers=serviceontario)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in r.json()["errors"]}
    assert await seeded.ledger.size() == size


async def test_malformed_oversized_and_wrong_type_bodies(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    serviceontario = await auth("MPBSDP", "serviceontario")
    headers = {**serviceontario, "Content-Type": "application/json"}
    r = await client.post("/api/v1/access-checks", content=b"{nope", headers=headers)
    assert (r.status_code, r.json()["type"].rsplit("/", 1)[1]) == (400, "malformed-json")
    r = await client.post("/api/v1/access-checks", content=b"x" * 70_000, headers=headers)
    assert r.status_code == 413
    r = await client.post(
        "/api/v1/access-checks",
        content=b"a=b",
        headers={**serviceontario, "Content-Type": "text/plain"},
    )
    assert r.status_code == 415


async def test_holdings_bulk_and_listing(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    ohip = await auth("MOH", "ohip")
    body = {
        "holdings": [
            {
                "person_id": f"p-{n}",
                "category": "health-number",
                "authority": "HIA-10",
                "retention": "P10Y",
            }
            for n in range(120)
        ]
    }
    r = await client.post("/api/v1/holdings", json=body, headers=ohip)
    assert r.json() == {"created": 120, "updated": 0}
    r = await client.post("/api/v1/holdings", json=body, headers=ohip)
    assert r.json() == {"created": 0, "updated": 120}
    seen, cursor = [], None
    while True:
        params = {"limit": "50", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/holdings", params=params, headers=ohip)).json()
        seen += [h["id"] for h in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 120
    bad = {"holdings": [{**body["holdings"][0], "category": "nope"}, body["holdings"][1]]}
    r = await client.post("/api/v1/holdings", json=bad, headers=ohip)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "holdings/0/category"
    mto = await auth("MTO", "driver-licensing")
    assert (await client.get("/api/v1/holdings", headers=mto)).json()["items"] == []
    r = await client.get("/api/v1/holdings", params={"cursor": "garbage"}, headers=ohip)
    assert r.status_code == 400


async def test_consent_receipt_is_signed(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    import jwt

    from consent.receipts import read_receipt

    mto = await auth("MTO", "driver-licensing")
    r = await client.post("/api/v1/consent-requests", json=consent_request(), headers=mto)
    consent_id = r.json()["id"]
    r = await client.get(f"/api/v1/consents/{consent_id}/receipt", headers=mto)
    assert r.headers["content-type"].startswith("application/jwt")
    keys = (await client.get("/api/v1/jwks")).json()["keys"]
    public = jwt.algorithms.ECAlgorithm.from_jwk(keys[0])
    claims = read_receipt(r.text, public, seeded.settings.base_url)
    assert claims["consentReceiptID"] == consent_id
    assert claims["piiControllers"][0]["piiControllerId"] == "MTO"
    assert claims["services"][0]["purposes"][0]["piiCategory"] == ["address"]
    tampered = r.text[:-3] + ("AAA" if not r.text.endswith("AAA") else "BBB")
    with pytest.raises(jwt.InvalidTokenError):
        read_receipt(tampered, public, seeded.settings.base_url)


async def test_openapi_document_and_reference_page(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/v1/access-checks" in doc["paths"]
    page = await client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "POST /api/v1/access-checks" in page.text
