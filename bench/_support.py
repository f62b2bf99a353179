"""What the HTTP benchmarks share: running the `onceonly` command, and a served
Onceonly in a process session of its own that starts, reports and stops whole."""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
#: The benchmarks measure throughput from one address and one client, not the rate
#: limits (app.ratelimit): served Onceonly runs with them off unless the env says.
NO_RATE_LIMITS = {
    f"ONCEONLY_RATE_LIMIT_{name}": "0"
    for name in ("SIGN_IN", "TOKEN", "TOKEN_IP", "TOKEN_FAILURES", "ACCESS_CHECKS")
}


class BenchError(Exception):
    """The bench could not set up or run; the message says what failed."""


class ServerFailed(BenchError):
    """The server did not become ready."""


def note(message: str) -> None:
    """A progress line on standard error (figures go to standard output)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def onceonly(env: dict[str, str], *args: str, check: bool = True, timeout: float = 180) -> str:
    """Run ``python -m app.cli ARGS``; return its standard output.

    Raises BenchError with the command's last error line when it fails (``check``).
    """
    command = [sys.executable, "-m", "app.cli", *args]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"onceonly {' '.join(args)} took more than {timeout:.0f} s") from None
    if check and done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise BenchError(f"onceonly {' '.join(args)} failed: {lines[-1]}")
    return done.stdout


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants from /proc; NaN where there is none."""
    try:
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    text = (entry / "stat").read_text()
                    fields = text[text.rfind(")") + 2 :].split()
                    stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except OSError:
        return math.nan
    tree, grew = {pid}, True
    while grew:
        more = {p for p, (parent, _) in stats.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    ticks = sum(stats[p][1] for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


class ServedOnceonly:
    """``onceonly serve`` in a session of its own, so that it and its workers stop together."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path, workers: int = 1) -> None:
        self.env = env
        self.port = port
        self.workers = workers
        self.base_url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start serving and wait for /readyz. Raises ServerFailed with the server's words."""
        command = [sys.executable, "-m", "app.cli", "serve", "--host", HOST]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**NO_RATE_LIMITS, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"the server exited ({self.last_words()})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise ServerFailed(f"the server was not ready after {READY_TIMEOUT:.0f} s")

    def last_words(self) -> str:
        """The last line of the server's log that names an error, else its last line."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines if "error" in line.lower()] or lines or ["no output"]
        return errors[-1].strip()

    def stop(self) -> None:
        """SIGTERM (a graceful stop drains the ledger), then SIGKILL for what is left."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                note(f"the server did not stop in {STOP_TIMEOUT:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its session: workers left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self.process = None

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server and its worker processes (Linux)."""
        if self.process is None:
            return math.nan
        return process_tree_cpu(self.process.pid)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` from 0 to 1) of an ascending sequence; NaN for none."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages at the start: other work skews the figures."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns sized to fit; the first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [str(first).ljust(widths[0])]
        parts += [str(cell).rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def finite(value: Any) -> Any:
    """The report with NaN (a figure that could not be measured) as null, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value
