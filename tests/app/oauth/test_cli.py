"""``onceonly clients`` through the real entry point, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.cli import main
from app.db import close_database, open_database
from app.oauth.clients import verify_secret
from app.oauth.models import ApiClient
from tests.conftest import Database
from tests.oauth_support import ensure_system, public_jwk
from tests.support import make_settings, run_sync

BASE_URL = "https://oo.example"


def onceonly(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def assert_one_line_error(stderr: str, text: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("onceonly: error: ")
    assert text in lines[0], lines[0]


def field(output: str, label: str) -> str:
    match = re.search(rf"^  {label}:\s+(\S+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


@pytest.fixture
def env(database: Database, tmp_path: Path) -> dict[str, str]:
    """The environment of a migrated database that has MTO and MOH and a system each."""
    values = {
        "ONCEONLY_DATABASE_URL": database.url,
        "ONCEONLY_VAR_DIR": str(tmp_path / "var"),
        "ONCEONLY_BASE_URL": BASE_URL,
    }

    async def seed() -> None:
        await open_database(make_settings(database.url, var_dir=tmp_path / "var"))
        try:
            await ensure_system("MTO", "driver-licensing")
            await ensure_system("MOH", "ohip")
        finally:
            await close_database()

    run_sync(seed())
    return values


def stored_client(env: dict[str, str], client_id: str) -> ApiClient:
    async def fetch() -> ApiClient:
        await open_database(make_settings(env["ONCEONLY_DATABASE_URL"]))
        try:
            return await ApiClient.get(client_id=client_id)
        finally:
            await close_database()

    return run_sync(fetch())


def test_add_list_disable(env: dict[str, str], tmp_path: Path) -> None:
    added = onceonly(
        "clients", "add", "--ministry", "MTO", "--system", "driver-licensing",
        "--name", "Licence renewals", "--scopes", "access:check,consent:request",
        "--auth", "client_secret_basic", "--webhook-url", "https://mto.example/hook",
        env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    out = added.stdout
    client_id = field(out, "client_id")
    secret = field(out, "client_secret")
    assert re.fullmatch(r"driver-licensing-[0-9a-f]{8}", client_id)
    assert len(secret) == 43 and out.count(secret) == 1
    assert field(out, "token endpoint") == BASE_URL + "/oauth/token"
    assert field(out, "issuer") == BASE_URL
    assert field(out, "audience") == BASE_URL + "/api/v1"
    assert field(out, "jwks_uri") == BASE_URL + "/oauth/jwks"
    assert "access:check consent:request" in out

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()))]}))
    keyed = onceonly(
        "clients", "add", "--ministry", "MOH", "--system", "ohip", "--name", "OHIP eligibility",
        "--scopes", "audit", "--auth", "private_key_jwt", "--jwks", str(jwks),
        env=env,
    )  # fmt: skip
    assert keyed.returncode == 0, keyed.stderr
    assert "client_secret" not in keyed.stdout
    keyed_id = field(keyed.stdout, "client_id")

    disabled = onceonly("clients", "disable", client_id, env=env)
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.startswith(f"disabled {client_id} (since ")

    listed = onceonly("clients", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["CLIENT_ID", "MINISTRY", "SYSTEM", "AUTH", "SCOPES", "STATUS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows[client_id][:5] == [
        "MTO",
        "driver-licensing",
        "client_secret_basic",
        "access:check,consent:request",
        "disabled",
    ]
    assert rows[keyed_id] == ["MOH", "ohip", "private_key_jwt", "audit", "active"]
    assert secret not in listed.stdout

    unknown = onceonly("clients", "disable", "nope", env=env)
    assert unknown.returncode == 1
    assert_one_line_error(unknown.stderr, "no client has the client_id 'nope'")

    # The secret is stored only as a salted scrypt hash.
    row = stored_client(env, client_id)
    assert row.secret_hash and secret not in row.secret_hash
    assert row.secret_hash.startswith("scrypt$") and verify_secret(secret, row.secret_hash)
    assert row.disabled_at is not None
    for path in (tmp_path / "var").glob("**/*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes()
    for path in tmp_path.glob("onceonly.sqlite3*"):
        assert secret.encode() not in path.read_bytes()


def test_mistakes_are_one_line(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same ``main`` as above, in this process (many cases, no process start-up)."""
    good = tmp_path / "good.json"
    key = public_jwk(ec.generate_private_key(ec.SECP256R1()))
    good.write_text(json.dumps({"keys": [key]}))
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [{**key, "d": "x"}]}))
    not_json = tmp_path / "not.json"
    not_json.write_text("{keys")
    assert main(["clients", "list"], env) == 0
    assert capsys.readouterr().out == "no clients\n"
    base = ["clients", "add", "--name", "N", "--scopes", "access:check"]
    mto = ["--ministry", "MTO", "--system", "driver-licensing"]
    basic = ["--auth", "client_secret_basic"]
    assert main([*base, *mto, *basic], env) == 0
    capsys.readouterr()
    cases = [
        (["--ministry", "XYZ", "--system", "ohip", *basic], "no ministry has the code 'XYZ'"),
        (["--ministry", "MTO", "--system", "ohip", *basic], "ministry MTO has no system 'ohip'"),
        ([*mto, *basic, "--scopes", "access:check,root"], "unknown scope 'root'"),
        ([*mto, "--jwks", str(private)], "private key material (d)"),
        ([*mto, "--jwks", str(tmp_path / "missing.json")], "cannot read the JWK Set"),
        ([*mto, "--jwks", str(not_json)], "is not JSON"),
        ([*mto], "needs --jwks FILE"),
        ([*mto, *basic, "--jwks", str(good)], "--jwks is for --auth private_key_jwt"),
        ([*mto, *basic], "already has an active client named 'N'"),
        ([*mto, *basic, "--name", "W", "--webhook-url", "http://x.example"], "must use https"),
    ]
    for args, text in cases:
        assert main([*base, *args], env) == 1, args
        captured = capsys.readouterr()
        assert captured.out == ""
        assert_one_line_error(captured.err, text)


def test_needs_a_migrated_database(tmp_path: Path) -> None:
    result = onceonly("clients", "list", env={"ONCEONLY_VAR_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "run `onceonly migrate` first")
