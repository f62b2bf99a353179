"""The public ledger API through HTTP: a mirror needs nothing but these answers."""

from __future__ import annotations

import base64

import httpx
import pytest

from app.services import Services
from ledger.checkpoint import open_checkpoint
from ledger.merkle import leaf_hash, root_from_leaves, verify_consistency, verify_inclusion
from ledger.note import parse_vkey
from ledger.proof import parse_proof, verify_receipt
from ledger.tiles import decode_bundle
from tests.factories import make_entry


async def fill(services: Services, count: int) -> None:
    await services.ledger.append_all([(make_entry(), None) for _ in range(count)])


async def opened_checkpoint(client: httpx.AsyncClient):
    vkey = (await client.get("/ledger/vkey")).text.strip()
    verifier = parse_vkey(vkey)
    r = await client.get("/ledger/checkpoint")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return open_checkpoint(r.content, verifier, origin=verifier.name), verifier


async def test_empty_log_has_a_signed_checkpoint(client: httpx.AsyncClient) -> None:
    checkpoint, verifier = await opened_checkpoint(client)
    assert checkpoint.size == 0
    assert verifier.name == "onceonly.localhost/ledger"


async def test_a_mirror_rebuilds_the_tree_from_tiles_alone(
    client: httpx.AsyncClient, services: Services
) -> None:
    await fill(services, 300)
    checkpoint, _ = await opened_checkpoint(client)
    assert checkpoint.size == 300
    full = await client.get("/ledger/tile/0/000")
    partial = await client.get("/ledger/tile/0/001.p/44")
    assert full.status_code == partial.status_code == 200
    assert full.headers["content-type"] == "application/octet-stream"
    assert len(full.content) == 256 * 32 and len(partial.content) == 44 * 32
    hashes = [
        data[i : i + 32]
        for data in (full.content, partial.content)
        for i in range(0, len(data), 32)
    ]
    assert root_from_leaves(hashes) == checkpoint.root_hash
    entries = decode_bundle((await client.get("/ledger/tile/entries/000")).content)
    entries += decode_bundle((await client.get("/ledger/tile/entries/001.p/44")).content)
    assert [leaf_hash(e) for e in entries] == hashes
    level1 = await client.get("/ledger/tile/1/000.p/1")
    assert level1.content == root_from_leaves(hashes[:256])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ledger/tile/0/1", 400),
        ("/ledger/tile/0/001.p/0", 400),
        ("/ledger/tile/0/x000/001", 400),
        ("/ledger/tile/0/001", 404),
        ("/ledger/tile/0/001.p/45", 404),
        ("/ledger/tile/0/002.p/1", 404),
        ("/ledger/tile/entries/001", 404),
    ],
)
async def test_bad_or_missing_tiles_are_problems(
    client: httpx.AsyncClient, services: Services, path: str, status: int
) -> None:
    await fill(services, 300)
    r = await client.get(path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == status


async def test_inclusion_and_consistency_proofs_verify(
    client: httpx.AsyncClient, services: Services
) -> None:
    await fill(services, 5)
    first, _ = await opened_checkpoint(client)
    await fill(services, 17)
    second, _ = await opened_checkpoint(client)
    r = await client.get("/ledger/proof/inclusion", params={"index": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["tree_size"] == second.size == 22
    proof = [base64.b64decode(h) for h in body["proof"]]
    leaf = base64.b64decode(body["entry"])
    assert base64.b64decode(body["leaf_hash"]) == leaf_hash(leaf)
    verify_inclusion(leaf_hash(leaf), 3, 22, proof, second.root_hash)
    at_old = (await client.get("/ledger/proof/inclusion?index=3&size=5")).json()
    verify_inclusion(
        leaf_hash(leaf), 3, 5, [base64.b64decode(h) for h in at_old["proof"]], first.root_hash
    )
    r = await client.get("/ledger/proof/consistency", params={"old": 5, "new": 22})
    assert r.status_code == 200
    proof = [base64.b64decode(h) for h in r.json()["proof"]]
    verify_consistency(5, 22, first.root_hash, second.root_hash, proof)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("/ledger/proof/inclusion", 400, "index"),
        ("/ledger/proof/inclusion?index=-1", 400, "index"),
        ("/ledger/proof/inclusion?index=01", 400, "index"),
        ("/ledger/proof/inclusion?index=99", 400, None),
        ("/ledger/proof/inclusion?index=0&size=999", 404, None),
        ("/ledger/proof/consistency?old=4", 400, "new"),
        ("/ledger/proof/consistency?old=4&new=2", 400, None),
        ("/ledger/proof/consistency?old=1&new=999", 404, None),
        ("/ledger/receipt/abc", 400, None),
        ("/ledger/receipt/999", 404, None),
    ],
)
async def test_bad_proof_requests_are_problems(
    client: httpx.AsyncClient, services: Services, query: str, status: int, field: str | None
) -> None:
    await fill(services, 5)
    r = await client.get(query)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"].startswith("https://")
    if field:
        assert body["errors"][0]["field"] == field


async def test_receipt_is_a_tlog_proof_that_verifies_offline(
    client: httpx.AsyncClient, services: Services
) -> None:
    await fill(services, 9)
    vkey = (await client.get("/ledger/vkey")).text.strip()
    r = await client.get("/ledger/receipt/4")
    assert r.status_code == 200
    assert r.text.startswith("c2sp.org/tlog-proof@v1\n")
    verifier = parse_vkey(vkey)
    leaf = parse_proof(r.content).extra
    verified = verify_receipt(r.content, verifier, origin=verifier.name, leaf=leaf)
    assert verified.proof.index == 4
    stored, _ = await services.ledger.entry(4)
    assert leaf == stored
