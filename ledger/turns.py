"""Turns at writing one SQLite file, between the server processes that share it.

SQLite lets one connection write at a time. A second one that finds the file locked
sleeps in its busy handler (1, 2, 5, 10 ms and longer between tries), so with several
processes appending to the ledger a batch often waits far longer than the transaction
it waits for: with two workers at 1,000 access checks/s that made a p99 of about 70 ms.
The ledger's writers therefore take turns first, with two ``flock`` locks on small
files beside the database:

- the *turn* (``<database>-turn.lock``) is held from BEGIN until COMMIT or ROLLBACK;
- the *gate* (``<database>-gate.lock``) is held only while waiting for the turn.

A writer takes the gate, then the turn, then lets the gate go. Whoever waits for the
turn holds the gate, so the writer that just finished cannot take the turn straight
back: it waits at the gate, and writers alternate. The kernel wakes a waiter as soon as
a lock is released, so the next transaction starts at once.

The turn only orders the ledger's own writers; SQLite's lock stays what guarantees one
writer at a time (other writers, such as the ORM's, still meet it). ``flock`` locks
belong to an open file, so two ledgers of one process (as in tests) take turns too.
Where the lock files cannot be opened (a read-only folder, an in-memory database),
writers go without turns and SQLite's own waiting applies.
"""

from __future__ import annotations

import fcntl
import os


class WriterTurns:
    """The writer turns of one SQLite file; take() and give_back() on the writer's thread."""

    def __init__(self, database_path: str) -> None:
        self._fds: tuple[int, int] | None = None
        self._held = False
        if database_path in ("", ":memory:"):
            return  # no file, so no other process
        opened: list[int] = []
        try:
            for name in ("gate", "turn"):
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                opened.append(os.open(f"{database_path}-{name}.lock", flags, 0o600))
        except OSError:
            for fd in opened:
                os.close(fd)
            return  # no turns: SQLite's busy timeout does the waiting
        self._fds = (opened[0], opened[1])

    @property
    def enabled(self) -> bool:
        return self._fds is not None

    def take(self) -> None:
        """Wait for this ledger's turn to write (blocking: call it off the event loop)."""
        if self._fds is None or self._held:
            return
        gate, turn = self._fds
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        self._held = True

    def try_take(self) -> bool:
        """Take the turn if no other writer holds or awaits it; whether this ledger has it."""
        if self._fds is None or self._held:
            return True
        gate, turn = self._fds
        try:
            fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        self._held = True
        return True

    def give_back(self) -> None:
        """End this ledger's turn (nothing when it holds none)."""
        if self._fds is None or not self._held:
            return
        self._held = False
        fcntl.flock(self._fds[1], fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fds is not None:
            self.give_back()
            for fd in self._fds:
                os.close(fd)
            self._fds = None
