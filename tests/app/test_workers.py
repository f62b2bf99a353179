"""``onceonly serve --workers N``: every worker listens on a socket of its own
(SO_REUSEPORT), so connections opened in a burst spread over the workers."""

from __future__ import annotations

import json
import signal
import socket
from collections import Counter
from pathlib import Path

import pytest

from app.workers import bind_shared, reuse_port_supported
from tests.app.test_cli import assert_one_line_error, free_port, onceonly
from tests.serving import start_serve, wait_until_ready

pytestmark = pytest.mark.skipif(not reuse_port_supported(), reason="no SO_REUSEPORT here")


def test_shared_sockets_share_a_port_that_others_cannot_take() -> None:
    first = bind_shared(socket.AF_INET, ("127.0.0.1", 0))
    address = first.getsockname()
    second = bind_shared(socket.AF_INET, address)
    try:
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(address)  # only sockets that ask to share the port may join
    finally:
        first.close()
        second.close()


def test_serve_with_workers_reports_a_port_in_use(tmp_path: Path) -> None:
    assert onceonly("migrate", var=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = onceonly("serve", "--port", str(port), "--workers", "2", var=tmp_path)
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use")


def test_connections_opened_at_once_spread_over_the_workers(tmp_path: Path) -> None:
    """64 keep-alive connections opened together, as a client's pool does: each worker
    answers at least a quarter of them (one shared socket gave one worker 15 of 64)."""
    assert onceonly("migrate", var=tmp_path).returncode == 0
    port = free_port()
    proc = start_serve(tmp_path, port, "--workers", "2", ONCEONLY_LOG_FORMAT="json")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, proc, timeout=60)
        # All 64 connect first, then each sends one request: a burst, as a pool opens.
        burst = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(64)]
        try:
            for sock in burst:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: onceonly\r\n\r\n")
            for sock in burst:
                assert sock.recv(64).startswith(b"HTTP/1.1 200")
        finally:
            for sock in burst:
                sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    answered = Counter(
        line["pid"]
        for line in map(json.loads, (raw for raw in err.splitlines() if raw.startswith("{")))
        if line.get("logger") == "onceonly.access" and line.get("path") == "/healthz"
    )
    assert sum(answered.values()) >= 64
    assert len(answered) == 2, answered
    assert min(answered.values()) >= 16, answered
