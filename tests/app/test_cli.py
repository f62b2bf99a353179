"""The `onceonly` command through its real entry point, as an operator runs it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving import environment, start_serve


def onceonly(
    *args: str, var: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=environment(var, **env),
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("onceonly: error: ")
    assert text in lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_database_url_scheme(tmp_path: Path) -> None:
    result = onceonly("migrate", var=tmp_path, ONCEONLY_DATABASE_URL="mysql://x@db/onceonly")
    assert_one_line_error(result, "ONCEONLY_DATABASE_URL must start with")


def test_unreachable_postgres(tmp_path: Path) -> None:
    url = f"postgres://postgres@127.0.0.1:{free_port()}/onceonly"
    result = onceonly("migrate", var=tmp_path, ONCEONLY_DATABASE_URL=url)
    assert_one_line_error(result, "cannot connect to the database")


def test_unknown_database_host(tmp_path: Path) -> None:
    url = "postgres://postgres@no-such-host.invalid:5432/onceonly"
    result = onceonly("seed", var=tmp_path, ONCEONLY_DATABASE_URL=url)
    assert_one_line_error(result, "no-such-host.invalid")


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = onceonly("migrate", var=tmp_path, ONCEONLY_PORT="http")
    assert_one_line_error(result, "ONCEONLY_PORT")


def test_seed_before_migrate_says_what_to_do(tmp_path: Path) -> None:
    result = onceonly("seed", "--demo", var=tmp_path)
    assert_one_line_error(result, "run `onceonly migrate` first")


def test_migrate_seed_are_repeatable(tmp_path: Path) -> None:
    first = onceonly("migrate", var=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    again = onceonly("migrate", var=tmp_path)
    assert again.returncode == 0
    assert again.stdout.strip() == "database is up to date"

    seeded = onceonly("seed", "--demo", var=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    reseeded = onceonly("seed", "--demo", var=tmp_path)
    assert reseeded.returncode == 0, reseeded.stderr
    assert reseeded.stdout == seeded.stdout
    assert "ministries 13" in seeded.stdout  # 12 ministries and the IPC
    secret = tmp_path / "secrets" / "pseudonym.key"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    assert onceonly("migrate", var=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = onceonly("serve", "--port", str(port), var=tmp_path)
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use")


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = onceonly("serve", "--port", str(free_port()), var=tmp_path)
    assert_one_line_error(result, "onceonly migrate")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_serve_answers_then_stops_on_sigterm(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {}
    if kind == "postgres":
        env["ONCEONLY_DATABASE_URL"] = request.getfixturevalue("postgres_database_url")
    assert onceonly("migrate", var=tmp_path, **env).returncode == 0
    assert onceonly("seed", "--demo", var=tmp_path, **env).returncode == 0
    port = free_port()
    proc = start_serve(tmp_path, port, ONCEONLY_DEMO="true", **env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert ready.status_code == 200
        page = httpx.get(base + "/", timeout=5)
        assert page.status_code == 200
        assert 'href="/auth/sign-in"' in page.text
        assert "Demonstration" in page.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    # uvicorn finishes its graceful shutdown, then lets SIGTERM end the process.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert f"Onceonly is serving on http://127.0.0.1:{port}/" in out


def test_migrate_creates_the_var_folder(tmp_path: Path) -> None:
    var = tmp_path / "new" / "var"
    result = onceonly("migrate", var=var)
    assert result.returncode == 0, result.stderr
    assert (var / "onceonly.sqlite3").exists()


def test_unusable_var_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = onceonly("migrate", var=blocker / "var")
    assert_one_line_error(result, "cannot create the database folder")


def test_serve_refuses_a_key_for_another_log(tmp_path: Path) -> None:
    assert onceonly("migrate", var=tmp_path).returncode == 0
    assert onceonly("seed", var=tmp_path).returncode == 0  # creates the ledger key
    result = onceonly(
        "serve", "--port", str(free_port()), var=tmp_path, ONCEONLY_LOG_ORIGIN="other.example/log"
    )
    assert_one_line_error(result, "a log's origin never changes")


def test_serve_with_two_workers(tmp_path: Path) -> None:
    assert onceonly("migrate", var=tmp_path).returncode == 0
    assert onceonly("seed", var=tmp_path).returncode == 0
    port = free_port()
    proc = start_serve(tmp_path, port, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        answers = set()
        while len(answers) < 1:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                answers.add(r.status_code)
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert answers == {200}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "TypeError" not in err
