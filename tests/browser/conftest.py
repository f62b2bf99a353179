"""Browser tests: a real server, Debian's Chromium driven by Playwright, axe-core.

They skip, saying how to get what is missing, when Chromium, Playwright or axe-core
(npm) is not installed; `.ci/run` installs Chromium in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ONCEONLY_TEST_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Chromium is not installed: apt-get install chromium chromium-driver"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed: make test installs it (pip install playwright)"
    if not AXE.exists():
        return "axe-core is not installed: install Node.js with npm and run make test"
    return None


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A demo server on a free loopback port, migrated and seeded; yields its URL."""
    missing = _missing()
    if missing:
        pytest.skip(missing)
    var = tmp_path_factory.mktemp("browser-var")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env.update({"ONCEONLY_VAR_DIR": str(var), "ONCEONLY_DEMO": "true", "ONCEONLY_BASE_URL": base})
    for command in (["migrate"], ["seed", "--demo"]):
        subprocess.run([sys.executable, "-m", "app.cli", *command], env=env, check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_ready(base, proc, timeout=30)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
async def browser_page(served: str):
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # axe-core is injected as a script: allow it past our strict CSP in tests only.
        context = await browser.new_context(bypass_csp=True, base_url=served)
        page = await context.new_page()
        try:
            yield page
        finally:
            await context.close()
            await browser.close()


def clean_artifacts() -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
