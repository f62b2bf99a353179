"""Secret files under ``var/secrets``: created on first use, readable by the owner only.

Files are only ever replaced whole (write a new file, then rename it over the old one),
so a process reading a key file sees the old key or the new one, never a mixture; a
running server notices a replaced file by its inode and modification time
(``Reloaded``).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


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


def read_secret(path: Path) -> bytes:
    """The secret stored at ``path``.

    Raises FileNotFoundError when there is none, KeyFileError when it is readable by
    others or empty.
    """
    return _read(path)


def replace_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600), atomically replacing any file there.

    The new file is complete on disk before the rename, and the rename is made durable,
    so a crash leaves the old file or the new one.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_directory(path.parent)


def remove_secret(path: Path) -> None:
    """Delete the file at ``path`` (if any), durably."""
    path.unlink(missing_ok=True)
    if path.parent.is_dir():
        _sync_directory(path.parent)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory/.lock`` (two rotations never interleave)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def file_stamp(paths: Sequence[Path]) -> tuple[tuple[int, int, int] | None, ...]:
    """For each path its (inode, size, mtime in ns), or None when it does not exist."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            stamps.append(None)
            continue
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


#: Seconds a worker goes without looking at its key files again (a rotated key reaches
#: every worker within this long).
RECHECK_SECONDS = 1.0


class Reloaded(Generic[T]):
    """A value loaded from files, loaded again when one of them is replaced or changed.

    ``load(now)`` returns the value and the POSIX time after which it must be loaded again
    even if no file changed (a key leaving the key set at the end of its retention), or
    None. Checking costs one ``stat`` per file, made at most once every ``recheck``
    seconds, so ``get()`` may be called per request: every worker of a server then
    follows the same files within ``recheck`` seconds (by default RECHECK_SECONDS). A
    ``stat`` on every request cost about 5% of an access check's CPU.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        load: Callable[[float], tuple[T, float | None]],
        *,
        recheck: float | None = None,
    ) -> None:
        self._paths = tuple(paths)
        self._load = load
        self._recheck = recheck  # None: RECHECK_SECONDS as it is when asked
        self._checked = -math.inf  # time.monotonic() of the last look at the files
        self._stamp: tuple[tuple[int, int, int] | None, ...] | None = None
        self._value: T | None = None
        self._until: float | None = None

    def get(self, now: float | None = None) -> T:
        """The value, loaded again first if a file changed. Raises what ``load`` raises."""
        now = time.time() if now is None else now
        looked = time.monotonic()
        if (
            self._value is not None
            and looked - self._checked
            < (RECHECK_SECONDS if self._recheck is None else self._recheck)
            and (self._until is None or now < self._until)
        ):
            return self._value
        self._checked = looked
        # Stamp before reading: a file replaced while loading is noticed next time.
        stamp = file_stamp(self._paths)
        if (
            self._value is None
            or stamp != self._stamp
            or (self._until is not None and now >= self._until)
        ):
            self._value, self._until = self._load(now)
            self._stamp = stamp
        return self._value


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
