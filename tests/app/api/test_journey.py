"""The whole once-only journey across both audiences, through HTTP only: a ministry
asks, the resident approves in the portal, the ministry is let through, the resident
withdraws, the ministry's next check is denied; every step is in the ledger."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from app.seed import seed_demo
from app.services import Services
from ledger.entry import decode_entry
from tests.app.api.conftest import TokenFactory
from tests.app.portal.conftest import csrf_from
from tests.portal_support import sign_in

ALEX = "demo-resident-alex"


async def test_request_approve_check_withdraw_check(
    client: httpx.AsyncClient, seeded: Services, auth: TokenFactory
) -> None:
    await seed_demo(seeded.settings, seeded.ledger)
    mto = await auth("MTO", "driver-licensing")
    serviceontario = await auth("MPBSDP", "serviceontario")
    r = await client.post(
        "/api/v1/consent-requests",
        headers=mto,
        json={
            "person_id": ALEX,
            "sources": ["MPBSDP"],
            "categories": ["phone"],
            "purpose": "licence-renewal",
            "valid_until": (datetime.now(UTC) + timedelta(days=60)).isoformat(),
            "notice_text": "We would like your phone number from ServiceOntario.",
            "return_url": "https://mto.example/back",
            "state": "xyz-42",
        },
    )
    assert r.status_code == 201, r.text
    request = r.json()
    path = urlsplit(request["request_url"]).path

    await sign_in(client, ALEX)
    page = await client.get(path)
    assert "We would like your phone number from ServiceOntario." in page.text
    answer = await client.post(path, data={"answer": "approve", "csrf_token": csrf_from(page)})
    done = await client.get(answer.headers["location"])
    back = re.search(r'href="(https://mto\.example/back\?[^"]+)"', done.text)
    assert back is not None
    query = parse_qs(urlsplit(back.group(1).replace("&amp;", "&")).query)
    assert query == {"outcome": ["approved"], "consent_id": [request["id"]], "state": ["xyz-42"]}

    check = {
        "person_id": ALEX,
        "recipient": "MTO",
        "categories": ["phone"],
        "purpose": "licence-renewal",
        "query_id": "q-journey-1",
    }
    r = await client.post("/api/v1/access-checks", json=check, headers=serviceontario)
    assert (r.json()["decision"], r.json()["basis"]["ref"]) == ("permit", request["id"])

    confirm = await client.get(f"/consents/{request['id']}/withdraw")
    await client.post(
        f"/consents/{request['id']}/withdraw", data={"csrf_token": csrf_from(confirm)}
    )
    r = await client.post(
        "/api/v1/access-checks", json={**check, "query_id": "q-journey-2"}, headers=serviceontario
    )
    denied = r.json()
    assert (denied["decision"], denied["reasons"]) == ("deny", ["consent_withdrawn"])
    leaf, _ = await seeded.ledger.entry(denied["ledger"]["index"])
    assert decode_entry(leaf).reasons == ("consent_withdrawn",)

    kinds = []
    for index in range(denied["ledger"]["index"] + 1):
        entry = decode_entry((await seeded.ledger.entry(index))[0])
        if entry.basis.ref == request["id"]:
            kinds.append(entry.type)
    assert kinds == [
        "consent.requested",
        "consent.given",
        "access.permitted",
        "consent.withdrawn",
        "access.denied",
    ]
    notices = (await client.get("/api/v1/notifications", headers=mto)).json()["items"]
    assert [n["payload"]["consent_id"] for n in notices] == [request["id"]]
