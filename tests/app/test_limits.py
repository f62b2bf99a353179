"""Size and time limits: bodies (413, 408) through the application, headers and slow
clients against uvicorn with Onceonly's protocol, and a slow client against a real
``onceonly serve``.

Nothing here measures speed; the waits are the few seconds of the small deadlines the
tests configure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.limits import GuardedH11Protocol, GuardedHttpToolsProtocol, ServerConfig
from app.problems import PROBLEM_BASE
from app.services import Services
from app.settings import Limits, Settings, SettingsError
from tests.conftest import Database
from tests.oauth_support import bearer, token_for
from tests.support import make_settings

MAX_FORM = 2048
MAX_BODY = 4096


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return make_settings(
        database.url,
        var_dir=tmp_path / "var",
        ONCEONLY_MAX_FORM_BYTES=str(MAX_FORM),
        ONCEONLY_MAX_BODY_BYTES=str(MAX_BODY),
        ONCEONLY_BODY_TIMEOUT="1",
    )


class Trickle:
    """A request body sent in 1 KiB chunks, counting the chunks the server pulled."""

    def __init__(self, chunks: int, pause: float = 0.0) -> None:
        self.chunks = chunks
        self.pause = pause
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            if self.sent and self.pause:
                await asyncio.sleep(self.pause)
            self.sent += 1
            yield b"a" * 1024


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- bodies, through the application -----------------------------------------------------


async def test_an_oversized_form_gets_a_413_page_in_the_persons_language(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/auth/sign-out",
        data={"csrf_token": "x", "pad": "a" * MAX_FORM},
        headers={"Accept-Language": "fr"},
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "La demande n'a pas pu être reçue" in answer.text
    assert answer.headers["connection"] == "close"


async def test_a_chunked_form_over_the_cap_is_refused_before_it_is_all_read(
    client: httpx.AsyncClient,
) -> None:
    body = Trickle(chunks=200)
    answer = await client.post("/auth/sign-out", content=body, headers=FORM)
    assert answer.status_code == 413
    assert answer.headers["connection"] == "close"
    assert body.sent <= MAX_FORM // 1024 + 1  # read up to the cap, not the 200 KiB


async def test_the_demo_provider_and_the_token_endpoint_forms_are_capped(
    client: httpx.AsyncClient,
) -> None:
    provider = await client.post("/dev-oidc/authorize", content=Trickle(50), headers=FORM)
    assert provider.status_code == 413
    token = await client.post("/oauth/token", content=Trickle(50), headers=FORM)
    assert token.status_code == 413
    assert token.headers["content-type"] == "application/problem+json"
    assert token.json()["type"] == PROBLEM_BASE + "too-large"


async def test_an_oversized_json_body_gets_a_413_problem(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = bearer(await token_for(client))
    declared = await client.post(
        "/api/v1/access-checks", json={"person_id": "a" * MAX_BODY}, headers=headers
    )
    chunked = await client.post(
        "/api/v1/access-checks",
        content=Trickle(200),
        headers={**headers, "Content-Type": "application/json"},
    )
    for answer in (declared, chunked):
        assert answer.status_code == 413
        assert answer.json()["type"] == PROBLEM_BASE + "too-large"
        assert answer.headers["connection"] == "close"


async def test_a_body_that_arrives_too_slowly_gets_408(client: httpx.AsyncClient) -> None:
    page = await client.post("/auth/sign-out", content=Trickle(2, pause=3), headers=FORM)
    assert page.status_code == 408
    assert page.headers["content-type"].startswith("text/html")
    assert "The request could not be received" in page.text
    assert page.headers["connection"] == "close"
    api = await client.post("/oauth/token", content=Trickle(2, pause=3), headers=FORM)
    assert api.status_code == 408
    assert api.json()["type"] == PROBLEM_BASE + "request-timeout"


async def test_an_answer_before_the_body_was_read_closes_the_connection(
    client: httpx.AsyncClient,
) -> None:
    unread = await client.post("/api/v1/access-checks", json={"person_id": "x"})
    assert unread.status_code == 401
    assert unread.headers["connection"] == "close"
    read = await client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert read.status_code == 401
    assert "connection" not in read.headers
    assert "connection" not in (await client.get("/")).headers


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_BODY_BYTES", "10", "ONCEONLY_MAX_BODY_BYTES must be a number from 1024"),
        ("MAX_FORM_BYTES", "lots", "ONCEONLY_MAX_FORM_BYTES"),
        ("MAX_HEADER_BYTES", "9999999", "ONCEONLY_MAX_HEADER_BYTES"),
        ("HEADER_TIMEOUT", "0", "ONCEONLY_HEADER_TIMEOUT must be a number from 1 to 3600"),
        ("BODY_TIMEOUT", "1.5", "ONCEONLY_BODY_TIMEOUT"),
        ("KEEP_ALIVE_TIMEOUT", "-5", "ONCEONLY_KEEP_ALIVE_TIMEOUT"),
        ("MAX_CONNECTIONS", "x", "ONCEONLY_MAX_CONNECTIONS must be a number from 0"),
        ("BACKLOG", "70000", "ONCEONLY_BACKLOG"),
    ],
)
def test_bad_limits_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({f"ONCEONLY_{name}": value})


def test_the_server_configuration_carries_the_limits_to_every_worker() -> None:
    limits = Settings.from_env(
        {
            "ONCEONLY_MAX_HEADER_BYTES": "8192",
            "ONCEONLY_HEADER_TIMEOUT": "7",
            "ONCEONLY_KEEP_ALIVE_TIMEOUT": "9",
            "ONCEONLY_MAX_CONNECTIONS": "0",
            "ONCEONLY_BACKLOG": "100",
            "ONCEONLY_TRUSTED_PROXIES": "10.0.0.0/8",
        }
    ).limits
    config = ServerConfig("app.asgi:app", limits=limits)
    # Worker processes receive the configuration pickled.
    for seen in (config, pickle.loads(pickle.dumps(config))):  # noqa: S301 - our own bytes
        assert seen.http is GuardedHttpToolsProtocol
        assert seen.h11_max_incomplete_event_size == 8192
        assert seen.header_timeout == 7
        assert seen.timeout_keep_alive == 9
        assert seen.limit_concurrency is None
        assert seen.backlog == 100
        assert seen.forwarded_allow_ips == ["10.0.0.0/8"]
    default = ServerConfig("app.asgi:app", limits=Limits())
    assert (default.limit_concurrency, default.forwarded_allow_ips) == (
        1000,
        ["127.0.0.1/32", "::1/128"],
    )


# --- headers and slow clients, against uvicorn ----------------------------------------------


async def hello(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """A tiny ASGI app: reads the whole body, answers "ok"."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


class Served:
    """uvicorn serving ``hello`` with Onceonly's ServerConfig, in a thread."""

    def __init__(self, protocol: type, limits: Limits) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = ServerConfig(
            hello,
            limits=limits,
            http=protocol,
            host="127.0.0.1",
            port=self.port,
            log_level="critical",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def trickle(sock: socket.socket, data: bytes, pause: float) -> threading.Thread:
    """Send ``data`` a byte at a time in the background, until the server hangs up."""

    def run() -> None:
        with contextlib.suppress(OSError):
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


PROTOCOLS = [
    pytest.param(GuardedHttpToolsProtocol, id="httptools"),
    pytest.param(GuardedH11Protocol, id="h11"),
]
GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(params=PROTOCOLS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    with Served(request.param, Limits(max_header_bytes=2048, header_timeout=1)) as server:
        yield server


def test_headers_over_the_cap_are_refused(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * 4096 + b"\r\n\r\n")
        answer = read_answer(sock)
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer
    with served.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * 1500 + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_headers_sent_byte_by_byte_end_with_408_while_others_are_served(served: Served) -> None:
    with served.connect() as slow:
        sender = trickle(slow, b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 1000, 0.05)
        with served.connect() as other:
            other.sendall(GET)
            assert other.recv(65536).startswith(b"HTTP/1.1 200 ")
        answer = read_answer(slow)
        sender.join(timeout=30)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_each_request_of_a_kept_alive_connection_has_the_deadline(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sender = trickle(sock, GET, 0.3)  # the third request's headers take 9 s
        answer = read_answer(sock)
        sender.join(timeout=30)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


# --- a real `onceonly serve` ---------------------------------------------------------------


def test_slow_clients_cannot_hold_a_served_onceonly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env.update(
        {
            "ONCEONLY_VAR_DIR": str(tmp_path),
            "ONCEONLY_DEMO": "true",
            "ONCEONLY_HEADER_TIMEOUT": "2",
            "ONCEONLY_BODY_TIMEOUT": "2",
            "ONCEONLY_LOG_LEVEL": "warning",
        }
    )
    command = [sys.executable, "-m", "app.cli"]
    subprocess.run([*command, "migrate"], env=env, check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.1)
        slow_headers = socket.create_connection(("127.0.0.1", port), timeout=30)
        sender = trickle(
            slow_headers, b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 500, 0.1
        )
        slow_body = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow_body.sendall(
            b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"grant_type="
        )
        # Both hold a connection; the server still answers everyone else.
        assert httpx.get(base + "/readyz", timeout=10).status_code == 200
        with slow_headers, slow_body:
            headers_answer = read_answer(slow_headers)
            body_answer = read_answer(slow_body)
        sender.join(timeout=30)
        assert headers_answer.startswith(b"HTTP/1.1 408 "), headers_answer
        head, _, document = body_answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), body_answer
        assert b"connection: close" in head.lower()
        assert PROBLEM_BASE.encode() + b"request-timeout" in document
        assert httpx.get(base + "/readyz", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)
