"""`onceonly witness` through the real entry point, and a real witness cosigning Onceonly.

The end-to-end test runs the witness's HTTP server in-process on a free loopback port,
with its own state directory, against the ledger on each database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from app import witness_cli
from app.cli import main
from app.main import create_app
from app.services import Services
from app.settings import Settings, SettingsError
from app.witnessing import Witness, WitnessingError, submit
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.errors import CheckpointError
from ledger.note import COSIGNATURE_V1, generate_signer, parse_vkey
from ledger.witness import format_request
from tests.app.test_cli import assert_one_line_error, onceonly
from tests.factories import make_entry


def test_init_writes_a_private_key_and_prints_its_vkey(tmp_path: Path) -> None:
    state = tmp_path / "witness"
    result = onceonly(
        "witness", "init", "--name", "ipc.test/w1", "--state", str(state), var=tmp_path
    )
    assert result.returncode == 0, result.stderr
    verifier = parse_vkey(result.stdout.strip())
    assert (verifier.name, verifier.key_type) == ("ipc.test/w1", COSIGNATURE_V1)
    assert stat.S_IMODE((state / "witness.key").stat().st_mode) == 0o600
    assert json.loads((state / "state.json").read_text()) == {"logs": {}}

    again = onceonly(
        "witness", "init", "--name", "ipc.test/w1", "--state", str(state), var=tmp_path
    )
    assert_one_line_error(again, "already holds a witness")


def test_add_log_trusts_a_log_key_and_refuses_a_bad_one(tmp_path: Path) -> None:
    state = tmp_path / "witness"
    assert (
        onceonly("witness", "init", "--name", "w", "--state", str(state), var=tmp_path).returncode
        == 0
    )
    vkey = generate_signer("onceonly.test/ledger").verifier().vkey
    result = onceonly("witness", "add-log", "--state", str(state), "--vkey", vkey, var=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "onceonly.test/ledger" in result.stdout
    logs = json.loads((state / "state.json").read_text())["logs"]
    assert logs["onceonly.test/ledger"]["vkey"] == vkey
    assert logs["onceonly.test/ledger"]["size"] == 0

    bad = onceonly("witness", "add-log", "--state", str(state), "--vkey", "nope", var=tmp_path)
    assert_one_line_error(bad, "malformed verifier key")
    other = generate_signer("onceonly.test/ledger").verifier().vkey
    clash = onceonly("witness", "add-log", "--state", str(state), "--vkey", other, var=tmp_path)
    assert_one_line_error(clash, "already trusted with another key")


def test_commands_on_an_uninitialised_directory_fail_in_one_line(tmp_path: Path) -> None:
    vkey = generate_signer("onceonly.test/ledger").verifier().vkey
    empty = str(tmp_path / "none")
    result = onceonly("witness", "add-log", "--state", empty, "--vkey", vkey, var=tmp_path)
    assert_one_line_error(result, "run `onceonly witness init` first")
    served = onceonly("witness", "serve", "--state", empty, var=tmp_path)
    assert_one_line_error(served, "run `onceonly witness init` first")


def test_witness_settings_are_parsed_strictly() -> None:
    vkey = _witness_vkey(Path("/nonexistent"), init=False)
    settings = Settings.from_env(
        {"ONCEONLY_WITNESSES": f"{vkey}=https://w.example/sub/", "ONCEONLY_WITNESS_QUORUM": "1"}
    )
    assert settings.witnesses == ((vkey, "https://w.example/sub"),)
    assert settings.witness_quorum == 1
    assert Settings.from_env({}).witnesses == () and Settings.from_env({}).witness_quorum == 0
    log_key = generate_signer("log").verifier().vkey
    for env in (
        {"ONCEONLY_WITNESSES": f"{vkey}=https://w.example,"},
        {"ONCEONLY_WITNESSES": f"{vkey}"},
        {"ONCEONLY_WITNESSES": f"{log_key}=https://w.example"},
        {"ONCEONLY_WITNESSES": f"{vkey}=ftp://w.example"},
        {"ONCEONLY_WITNESSES": f"{vkey}=https://a.example,{vkey}=https://b.example"},
        {"ONCEONLY_WITNESS_QUORUM": "1"},
        {"ONCEONLY_WITNESSES": f"{vkey}=https://w.example", "ONCEONLY_WITNESS_QUORUM": "-1"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env(env)


def _witness_vkey(directory: Path, *, init: bool = True) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.note import Cosigner

    if not init:
        return Cosigner("ipc.test/w1", Ed25519PrivateKey.generate()).verifier().vkey
    assert main(["witness", "init", "--name", "ipc.test/w1", "--state", str(directory)], {}) == 0
    return witness_cli.load_cosigner(directory).verifier().vkey


@pytest.fixture
async def witness_server(services: Services, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A witness trusting this installation's log, served on a free loopback port."""
    state = tmp_path / "witness"
    _witness_vkey(state)
    add = ["witness", "add-log", "--state", str(state), "--vkey", services.ledger.vkey]
    assert main(add, {}) == 0
    app = witness_cli.create_witness_app(state)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no "started" event
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.should_exit = True
        await task


async def fill(services: Services, count: int) -> None:
    await services.ledger.append_all([(make_entry(), None) for _ in range(count)])


async def test_a_witness_cosigns_and_the_checkpoint_is_published_cosigned(
    services: Services,
    witness_server: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, state_dir = witness_server
    vkey = witness_cli.load_cosigner(state_dir).verifier().vkey
    settings = dataclasses.replace(services.settings, witnesses=((vkey, url),), witness_quorum=1)
    app = create_app(settings, manage_services=False)
    app.state.services = services
    log_key = services.ledger.verifier
    witness_key = parse_vkey(vkey)
    origin = services.ledger.origin
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client,
        httpx.AsyncClient() as http,
    ):
        # Quorum 1 and nothing cosigned yet: nothing is published.
        assert (await client.get("/ledger/checkpoint")).status_code == 404

        await fill(services, 5)
        witness = Witness.from_setting(vkey, url)
        assert await submit(services.ledger, witness, http) is not None
        assert await submit(services.ledger, witness, http) is None  # already stored
        await fill(services, 300)
        line = await submit(services.ledger, witness, http)  # old 5, with a proof
        assert line is not None and witness.cosigned_size == 305

        response = await client.get("/ledger/checkpoint")
        assert response.status_code == 200
        note = response.content
        assert note.split(b"\n\n")[1].startswith(f"\N{EM DASH} {log_key.name} ".encode())
        assert note.endswith(line.encode())
        checkpoint = open_checkpoint(
            note, log_key, origin=origin, witnesses=[witness_key], quorum=1
        )
        assert checkpoint.size == 305

        # A fresh client knows nothing: it learns the witness's size from a 409.
        await fill(services, 2)
        newcomer = Witness.from_setting(vkey, url)
        assert await submit(services.ledger, newcomer, http) is not None
        assert newcomer.cosigned_size == 307
        published = (await client.get("/ledger/checkpoint")).content
        assert (
            open_checkpoint(
                published, log_key, origin=origin, witnesses=[witness_key], quorum=1
            ).size
            == 307
        )

        # The log's key signs another tree of the size the witness holds: a split view.
        forged = sign_checkpoint(Checkpoint(origin, 307, bytes(32)), services.ledger.signer)
        with caplog.at_level(logging.ERROR, logger="onceonly.witness"):
            refused = await http.post(
                f"{url}/add-checkpoint", content=format_request(307, [], forged)
            )
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("text/x.tlog.size")
        assert refused.text == "307\n"
        assert any("SPLIT VIEW" in r.getMessage() for r in caplog.records)
        saved = json.loads((state_dir / "state.json").read_text())["logs"][origin]
        assert saved["size"] == 307 and saved["split_view"] == forged.decode()

        # The witness now refuses the log altogether, and nothing new is published.
        await fill(services, 1)
        with pytest.raises(WitnessingError, match="403"):
            await submit(services.ledger, newcomer, http)
        with pytest.raises(CheckpointError):
            open_checkpoint(
                (await services.ledger.latest_checkpoint()).note,  # type: ignore[union-attr]
                log_key,
                origin=origin,
                witnesses=[witness_key],
                quorum=1,
            )
        still = (await client.get("/ledger/checkpoint")).content
        assert (
            open_checkpoint(still, log_key, origin=origin, witnesses=[witness_key], quorum=1).size
            == 307
        )


async def test_a_bad_cosignature_is_not_stored(
    services: Services, witness_server: tuple[str, Path]
) -> None:
    url, _ = witness_server
    # The right URL but another witness key: the cosignature does not verify.
    impostor = Witness.from_setting(_witness_vkey(Path(), init=False), url)
    async with httpx.AsyncClient() as http:
        with pytest.raises(WitnessingError, match="no valid cosignature"):
            await submit(services.ledger, impostor, http)
    rows = await services.ledger.db.fetch("SELECT COUNT(*) FROM ledger_cosignature")
    assert rows[0][0] == 0
