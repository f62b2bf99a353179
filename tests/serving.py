"""Waiting for an ``onceonly serve`` started by a test."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx


def wait_until_ready(base_url: str, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Return once ``base_url``/readyz answers 200. Fails the test when the server
    exits first or is not ready within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "the server exited before it was ready"
        assert time.monotonic() < deadline, f"the server was not ready after {timeout:.0f} s"
        time.sleep(0.1)
