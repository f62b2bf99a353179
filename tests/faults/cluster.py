"""A throwaway PostgreSQL cluster for the fault tests, made with initdb and pg_ctl on a
free loopback port, so that a test may stop and start it. The shared test server is
never touched.

initdb refuses to run as root: as root the cluster is made and run as the ``postgres``
user (``runuser``), in a directory it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.faults.support import HOST, free_port


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server's bin directory, or None when there is none."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bin_dir in reversed(found):
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


class ClusterUnavailable(Exception):
    """No throwaway cluster can be made here; the message says why."""


class Cluster:
    """A PostgreSQL cluster of its own: ``url`` reaches its ``postgres`` database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.run_as: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable("running as root and there is no postgres user") from None
            runuser = shutil.which("runuser")
            if runuser is None:
                raise ClusterUnavailable("running as root and runuser is not installed")
            self.run_as = [runuser, "-u", "postgres", "--"]
        # Outside the test's tmp_path, which the postgres user may not enter.
        self.base = Path(tempfile.mkdtemp(prefix="onceonly-faults-pg-"))
        if owner is not None:
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.url = f"postgres://postgres@{HOST}:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self.run_as, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def create(self) -> None:
        initdb = str(self.bin_dir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories={self.base} "
            "-c max_connections=60 -c shared_buffers=16MB"
        )
        pg_ctl = str(self.bin_dir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def ensure_running(self) -> None:
        """Start the cluster unless it is running (after a test stopped it)."""
        if not self.running():
            self.start()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.base, ignore_errors=True)
