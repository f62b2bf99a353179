"""`onceonly keys`: rotating the checkpoint, token and receipt keys, end to end.

Through the real entry point (``app.cli.main``) and HTTP, on SQLite and PostgreSQL: what
an old key signed keeps verifying, what is signed after a rotation uses the new key,
and a key the verifier does not trust is refused. "Restart" closes the services and
opens them again on the same files, as a restarted worker does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from app import witness_cli
from app.cli import main
from app.keyfiles import Reloaded, replace_secret
from app.keys import ledger_keys, parse_time, receipt_key
from app.main import create_app
from app.oauth.clients import register_client
from app.oauth.keys import token_key_ring, token_signing_key
from app.seed import seed_reference
from app.services import Services, open_services
from app.settings import Settings
from consent.receipts import read_receipt_with_key_set
from ledger import witness
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.note import generate_signer
from tests.app.api.test_access_api import consent_request
from tests.factories import make_entry
from tests.ledger.test_tamper import tamper
from tests.ledger.test_witness import Tree


@pytest.fixture(autouse=True)
def follow_key_files_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation tests look at a worker right after ``keys rotate``: here it looks at
    its key files on every request (the once-a-second default is tested on its own)."""
    monkeypatch.setattr("app.keyfiles.RECHECK_SECONDS", 0.0)


def environment(settings: Settings) -> dict[str, str]:
    """The environment that gives the command these settings."""
    return {
        "ONCEONLY_VAR_DIR": str(settings.var_dir),
        "ONCEONLY_DATABASE_URL": settings.database_url,
        "ONCEONLY_DEMO": "true",
    }


def cli(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """Run ``onceonly ARGV``; return its exit status, standard output and error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv), environ=environment(settings))
    return status, out.getvalue(), err.getvalue()


async def acli(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """``cli`` from an async test (commands that run their own event loop)."""
    return await asyncio.to_thread(cli, settings, *argv)


@dataclass
class Served:
    services: Services
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Served]:
    """The application started on ``settings``' files, as one worker would run it."""
    services = await open_services(settings)
    app = create_app(settings, manage_services=False)
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as http:
            yield Served(services, http)
    finally:
        await services.close()


async def new_token(http: httpx.AsyncClient, client_id: str, secret: str) -> str:
    response = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


# --- keys list ------------------------------------------------------------------------


def test_list_rotate_and_retire_never_show_private_material(tmp_path: Path) -> None:
    settings = Settings.from_env({"ONCEONLY_VAR_DIR": str(tmp_path / "var")})
    status, out, _ = cli(settings, "keys", "list")
    assert (status, out) == (
        0,
        "no signing key yet: they are generated when the server first starts\n",
    )
    signer = ledger_keys(settings).signer
    token, receipt = token_signing_key(settings), receipt_key(settings)
    outputs = [cli(settings, "keys", "list")[1]]
    first = outputs[0].splitlines()
    assert first[0].split() == [
        "KIND",
        "KEY",
        "ID",
        "STATUS",
        "CREATED",
        "RETIRED",
        "VERIFIES",
        "UNTIL",
    ]
    assert [line.split()[:3] for line in first[1:]] == [
        ["checkpoint", f"{signer.key_id:08x}", "current"],
        ["token", token.kid, "current"],
        ["receipt", receipt.kid, "current"],
    ]
    secrets = [
        (tmp_path / "var/secrets" / name).read_text()
        for name in ("ledger-signer.key", "token-signing.pem", "receipt-signing.pem")
    ]
    for kind in ("checkpoint", "token", "receipt"):
        status, out, err = cli(settings, "keys", "rotate", kind)
        assert status == 0, err
        outputs.append(out)
    secrets += [
        (tmp_path / "var/secrets" / name).read_text()
        for name in ("ledger-signer.key", "token-signing.pem", "receipt-signing.pem")
    ]
    outputs.append(cli(settings, "keys", "retire", "token", token.kid)[1])
    outputs.append(cli(settings, "keys", "list")[1])
    listed = {tuple(line.split()[:3]) for line in outputs[-1].splitlines()[1:]}
    assert ("checkpoint", f"{signer.key_id:08x}", "cosigning") in listed
    assert ("token", token.kid, "removed") in listed
    assert ("receipt", receipt.kid, "retired") in listed
    assert sum(status == "current" for _, _, status in listed) == 3
    # No private key, in any encoding, in anything the command printed.
    text = "".join(outputs)
    assert "PRIVATE" not in text and "BEGIN" not in text
    for secret in secrets:
        if secret.startswith("PRIVATE+KEY+"):
            material = [secret.strip().split("+", 4)[4]]  # base64(type || seed)
        else:
            material = [line for line in secret.splitlines() if not line.startswith("-----")]
        assert material and all(len(piece) > 20 and piece not in text for piece in material)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(receipt.private_key))
    assert jwk["d"] not in text
    history = (tmp_path / "var/secrets/keys.json").read_text()
    assert "PRIVATE" not in history
    assert stat.S_IMODE((tmp_path / "var/secrets/keys.json").stat().st_mode) == 0o600


def test_a_key_history_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = Settings.from_env({"ONCEONLY_VAR_DIR": str(tmp_path / "var")})
    assert cli(settings, "keys", "rotate", "token")[0] == 0
    (tmp_path / "var/secrets/keys.json").chmod(0o644)
    status, _, err = cli(settings, "keys", "list")
    assert status == 1
    assert err.startswith("onceonly: error: ") and "readable by others" in err
    (tmp_path / "var/secrets/keys.json").chmod(0o600)
    (tmp_path / "var/secrets/keys.json").write_text("{}")
    status, _, err = cli(settings, "keys", "rotate", "receipt")
    assert status == 1 and "keys.json is malformed" in err


def test_rotation_mistakes_end_in_one_line(tmp_path: Path) -> None:
    settings = Settings.from_env({"ONCEONLY_VAR_DIR": str(tmp_path / "var")})
    assert cli(settings, "keys", "rotate", "checkpoint", "--retain", "1d")[0] == 1
    status, _, err = cli(settings, "keys", "rotate", "checkpoint")
    assert status == 0, err
    old = ledger_keys(settings).cosigners[0]
    status, _, err = cli(settings, "keys", "rotate", "checkpoint")
    assert status == 1
    assert f"retire checkpoint {old.key_id:08x}" in err
    current = f"{ledger_keys(settings).signer.key_id:08x}"
    status, _, err = cli(settings, "keys", "retire", "checkpoint", current)
    assert status == 1 and "is the current key" in err
    assert cli(settings, "keys", "retire", "checkpoint", f"{old.key_id:08x}")[0] == 0
    status, _, err = cli(settings, "keys", "retire", "checkpoint", f"{old.key_id:08x}")
    assert status == 1 and "never removed" in err
    status, _, err = cli(settings, "keys", "retire", "token", "nope")
    assert status == 1 and "no retired token key nope" in err
    with pytest.raises(SystemExit):
        cli(settings, "keys", "rotate", "token", "--retain", "soon")


# --- access tokens --------------------------------------------------------------------


async def test_token_key_rotation(settings: Settings) -> None:
    async with served(settings) as first:
        await seed_reference()
        registered, secret = await register_client(
            "MTO", "driver-licensing", "rotation test", "client_secret_basic", ["holdings:read"]
        )
        assert secret is not None
        before = await new_token(first.http, registered.client_id, secret)
        old_kid = kid(before)
        assert (await first.http.get("/api/v1/holdings", headers=bearer(before))).status_code == 200

        status, out, err = await acli(settings, "keys", "rotate", "token")
        assert status == 0, err
        new_kid = token_signing_key(settings).kid
        assert new_kid != old_kid and new_kid in out

        # The running worker follows at its next request: new tokens, old ones still good.
        during = await new_token(first.http, registered.client_id, secret)
        assert kid(during) == new_kid
        for token in (before, during):
            response = await first.http.get("/api/v1/holdings", headers=bearer(token))
            assert response.status_code == 200, response.text

    async with served(settings) as restarted:
        jwks = (await restarted.http.get("/oauth/jwks")).json()
        assert [key["kid"] for key in jwks["keys"]] == [new_kid, old_kid]
        assert all("d" not in key for key in jwks["keys"])
        after = await new_token(restarted.http, registered.client_id, secret)
        assert kid(after) == new_kid
        for token in (before, during, after):
            response = await restarted.http.get("/api/v1/holdings", headers=bearer(token))
            assert response.status_code == 200, response.text

        status, _, err = await acli(settings, "keys", "retire", "token", old_kid)
        assert status == 0, err
        jwks = (await restarted.http.get("/oauth/jwks")).json()
        assert [key["kid"] for key in jwks["keys"]] == [new_kid]
        refused = await restarted.http.get("/api/v1/holdings", headers=bearer(before))
        assert refused.status_code == 401
        assert "unknown key" in refused.headers["www-authenticate"]
        kept = await restarted.http.get("/api/v1/holdings", headers=bearer(after))
        assert kept.status_code == 200


async def test_a_retained_token_key_leaves_the_key_set_when_its_time_is_up(
    settings: Settings,
) -> None:
    old_kid = token_signing_key(settings).kid
    status, out, err = await acli(settings, "keys", "rotate", "token", "--retain", "30m")
    assert status == 0, err
    history = json.loads((settings.secrets_dir / "keys.json").read_text())["keys"]
    [old] = [record for record in history if record["id"] == old_kid]
    assert old["until"] in out
    until = parse_time(old["until"]).timestamp()
    assert [k.kid for k in token_key_ring(settings, now=until - 1).verification][1] == old_kid
    assert old_kid not in [k.kid for k in token_key_ring(settings, now=until).verification]


# --- consent receipts -----------------------------------------------------------------


async def test_receipt_key_rotation(settings: Settings) -> None:
    async with served(settings) as first:
        await seed_reference()
        registered, secret = await register_client(
            "MTO",
            "driver-licensing",
            "receipts",
            "client_secret_basic",
            ["consent:request", "consent:read"],
        )
        assert secret is not None
        headers = bearer(await new_token(first.http, registered.client_id, secret))
        response = await first.http.post(
            "/api/v1/consent-requests", json=consent_request(), headers=headers
        )
        assert response.status_code == 201, response.text
        consent_id = response.json()["id"]
        receipt_url = f"/api/v1/consents/{consent_id}/receipt"
        before = (await first.http.get(receipt_url, headers=headers)).text
        old_kid = kid(before)

        status, _, err = await acli(settings, "keys", "rotate", "receipt")
        assert status == 0, err
        during = (await first.http.get(receipt_url, headers=headers)).text
        new_kid = kid(during)
        assert new_kid != old_kid

    async with served(settings) as restarted:
        headers = bearer(await new_token(restarted.http, registered.client_id, secret))
        after = (await restarted.http.get(receipt_url, headers=headers)).text
        assert kid(after) == new_kid
        key_set = (await restarted.http.get("/api/v1/jwks")).json()
        assert [key["kid"] for key in key_set["keys"]] == [new_kid, old_kid]
        for receipt in (before, during, after):
            claims = read_receipt_with_key_set(receipt, key_set, settings.base_url)
            assert claims["consentReceiptID"] == consent_id

        status, _, err = await acli(settings, "keys", "retire", "receipt", old_kid)
        assert status == 0, err
        key_set = (await restarted.http.get("/api/v1/jwks")).json()
        assert [key["kid"] for key in key_set["keys"]] == [new_kid]
        with pytest.raises(jwt.InvalidTokenError, match="not in the key set"):
            read_receipt_with_key_set(before, key_set, settings.base_url)
        assert read_receipt_with_key_set(after, key_set, settings.base_url)


# --- checkpoints ----------------------------------------------------------------------


def signed_key_ids(note: bytes) -> list[int]:
    lines = note.decode().split("\n\n", 1)[1].splitlines()
    return [int.from_bytes(base64.b64decode(line.rsplit(" ", 1)[1])[:4], "big") for line in lines]


async def append(services: Services, count: int) -> None:
    await services.ledger.append_all([(make_entry(), None) for _ in range(count)])


async def test_checkpoint_key_rotation(settings: Settings, tmp_path: Path) -> None:
    async with served(settings) as first:
        await append(first.services, 5)
        old = first.services.ledger.signer

    status, out, err = await acli(settings, "keys", "rotate", "checkpoint")
    assert status == 0, err
    new = ledger_keys(settings).signer
    assert new.verifier().vkey in out and "--replace" in out

    # Until the restart the log signs with the old key; from it, with both.
    async with served(settings) as transition:
        ledger = transition.services.ledger
        assert (ledger.signer.key_id, [c.key_id for c in ledger.cosigners]) == (
            new.key_id,
            [old.key_id],
        )
        await append(transition.services, 300)
        latest = await ledger.latest_checkpoint()
        assert latest is not None
        assert signed_key_ids(latest.note) == [new.key_id, old.key_id]
        assert (await transition.http.get("/ledger/vkey")).text == new.verifier().vkey + "\n"
        vkeys = (await transition.http.get("/ledger/vkeys")).text
        assert vkeys == f"{new.verifier().vkey}\n{old.verifier().vkey}\n"

    status, _, err = await acli(settings, "keys", "retire", "checkpoint", f"{old.key_id:08x}")
    assert status == 0, err
    async with served(settings) as settled:
        assert settled.services.ledger.cosigners == ()
        await append(settled.services, 7)
        latest = await settled.services.ledger.latest_checkpoint()
        assert latest is not None and signed_key_ids(latest.note) == [new.key_id]
        vkeys = (await settled.http.get("/ledger/vkeys")).text
        assert vkeys == f"{new.verifier().vkey}\n{old.verifier().vkey}\n"

    # The whole log verifies with every key the installation has had...
    status, out, err = await acli(settings, "ledger", "verify")
    assert status == 0, out + err
    assert out.startswith("The ledger verifies: 312 entries")
    # ...with the keys /ledger/vkeys lists, given independently...
    status, out, _ = await acli(settings, "ledger", "verify", "--vkey", vkeys)
    assert status == 0, out
    # ...but not with the new key alone: the old checkpoints need the old one.
    status, out, _ = await acli(settings, "ledger", "verify", "--vkey", new.verifier().vkey)
    assert status == 1 and "checkpoint 0" in out

    bundle = tmp_path / "bundle"
    status, out, err = await acli(settings, "ledger", "export", str(bundle))
    assert status == 0, err
    assert (bundle / "vkey").read_text() == vkeys
    status, out, _ = await acli(settings, "ledger", "verify", "--bundle", str(bundle))
    assert status == 0, out
    status, out, _ = await acli(
        settings, "ledger", "verify", "--bundle", str(bundle), "--vkey", vkeys
    )
    assert status == 0, out
    status, out, _ = await acli(
        settings, "ledger", "verify", "--bundle", str(bundle), "--vkey", old.verifier().vkey
    )
    assert status == 1 and "is not the trusted key" in out

    # A checkpoint re-signed by a key the log never had fails verification.
    async with served(settings) as last:
        stored = await last.services.ledger.checkpoint(305)
        forged = sign_checkpoint(
            Checkpoint(settings.log_origin, 305, stored.root_hash),
            generate_signer(settings.log_origin),
        )
        sql = "UPDATE ledger_checkpoint SET note = ? WHERE size = ?"
        await tamper(last.services.ledger.db, "ledger_checkpoint", sql, forged.decode(), 305)
    status, out, _ = await acli(settings, "ledger", "verify")
    assert status == 1
    assert "checkpoint 305" in out and "no signature from a known key" in out


# --- witnesses ------------------------------------------------------------------------


async def test_a_witness_follows_the_logs_key_rotation(tmp_path: Path) -> None:
    settings = Settings.from_env({"ONCEONLY_VAR_DIR": str(tmp_path / "var")})
    state = tmp_path / "witness"
    old, new = generate_signer("example.test/log"), generate_signer("example.test/log")
    assert cli(settings, "witness", "init", "--name", "w.test/1", "--state", str(state))[0] == 0
    add = ("witness", "add-log", "--state", str(state), "--vkey")
    assert cli(settings, *add, old.verifier().vkey)[0] == 0
    tree = Tree(old, [f"entry {i}".encode() for i in range(20)])

    service = witness_cli.WitnessService(state)
    await service.add_checkpoint(tree.request(0, 5))
    tree.signer = [new, old]  # type: ignore[assignment]  # the transition: both sign
    await service.add_checkpoint(tree.request(5, 10))

    status, _, err = cli(settings, *add, new.verifier().vkey)
    assert status == 1 and "already trusted with another key" in err
    status, out, err = cli(settings, *add, new.verifier().vkey, "--replace")
    assert status == 0, err
    assert "at size 10" in out
    logs = json.loads((state / "state.json").read_text())["logs"]
    assert logs["example.test/log"]["vkey"] == new.verifier().vkey

    # The running witness follows the replaced state.json, no restart needed.
    await service.add_checkpoint(tree.request(10, 12))  # still co-signed
    tree.signer = new
    await service.add_checkpoint(tree.request(12, 15))
    tree.signer = old  # the retired key alone is no longer the log
    with pytest.raises(witness.Untrusted):
        await service.add_checkpoint(tree.request(15, 20))

    other = generate_signer("other.test/log").verifier().vkey
    status, _, err = cli(settings, *add, other, "--replace")
    assert status == 1 and "not trusted yet" in err


# --- reloading ------------------------------------------------------------------------


def test_reloaded_follows_replaced_files_and_retention_ends(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    replace_secret(path, b"one")
    loads: list[float] = []

    def load(now: float) -> tuple[bytes, float | None]:
        loads.append(now)
        return path.read_bytes(), 1000.0

    value = Reloaded([path, tmp_path / "absent"], load, recheck=0)
    assert value.get(now=10) == b"one"
    assert value.get(now=20) == b"one" and loads == [10]  # nothing changed: no reload
    replace_secret(path, b"two")
    assert value.get(now=30) == b"two" and loads == [10, 30]
    assert value.get(now=1000) == b"two" and loads == [10, 30, 1000]  # a key's time is up
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reloaded_looks_at_its_files_at_most_once_per_recheck(tmp_path: Path) -> None:
    """A worker looks at its key files at most every ``recheck`` seconds (one stat per
    file per request cost about 5% of an access check); a rotation reaches it within
    that time, and a key whose retention ends is dropped on time all the same."""
    path = tmp_path / "secret"
    replace_secret(path, b"one")
    loads: list[float] = []

    def load(now: float) -> tuple[bytes, float | None]:
        loads.append(now)
        return path.read_bytes(), 1000.0

    value = Reloaded([path], load, recheck=0.3)
    assert value.get(now=10) == b"one"
    replace_secret(path, b"two")
    assert value.get(now=11) == b"one"  # not looked at again yet
    time.sleep(0.35)
    assert value.get(now=12) == b"two" and loads == [10, 12]
    assert value.get(now=1000) == b"two" and loads == [10, 12, 1000]  # retention ends now
