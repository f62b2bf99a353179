"""Starting an ``onceonly serve`` from a test, and waiting until it is ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
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


def environment(var_dir: Path, **env: str) -> dict[str, str]:
    """The environment of an ``onceonly`` command a test runs: ``ONCEONLY_VAR_DIR`` set
    to ``var_dir`` and ``env`` added, and none of the other ``ONCEONLY_*`` variables of
    the test's own environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    environ.update({"ONCEONLY_VAR_DIR": str(var_dir), **env})
    return environ


def start_serve(var_dir: Path, port: int, *args: str, **env: str) -> subprocess.Popen[str]:
    """``onceonly serve --port PORT ARGS...`` as a subprocess with text pipes, in
    environment(var_dir, **env)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(var_dir, **env),
    )
