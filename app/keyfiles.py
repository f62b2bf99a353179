"""Secret files under ``var/secrets``: created on first use, readable by the owner only."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


class KeyFileError(RuntimeError):
    """A secret file exists but cannot be used (wrong permissions, unreadable, empty)."""


def load_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """Return the secret stored at ``path``, creating it with ``generate()`` if absent.

    The file is written atomically with mode 0600 in a 0700 directory, so two processes
    starting at once agree on one secret. Raises KeyFileError when an existing file is
    readable by others or empty.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(generate())
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() fails if another process won the race; then its secret is the one.
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def random_key(size: int = 32) -> Callable[[], bytes]:
    """A generator of ``size`` random bytes for load_or_create."""
    return lambda: secrets.token_bytes(size)


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    data = path.read_bytes()
    if not data:
        raise KeyFileError(f"{path} is empty; remove it to have a new secret generated")
    return data
