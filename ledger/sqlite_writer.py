"""The connection that writes to a SQLite file, on a thread of its own.

SQLite works while it is called, so the event loop hands the writer's work to one
thread and waits on futures, as aiosqlite does. Unlike aiosqlite, a whole transaction
can be handed over at once (one crossing, not one per statement), and a committed
transaction's answer can be held back until the next transaction is written (see
SqliteWriter).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.turns import WriterTurns


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


@dataclass
class _Job:
    future: asyncio.Future[Any]
    run: Callable[[sqlite3.Connection], Any]
    #: A whole transaction (see SqliteWriter.transact): the writer commits it and may
    #: hand the answer back late.
    transaction: bool = False


#: How long a committed transaction's result waits for the next transaction, at most.
_NEXT_TRANSACTION_WAIT = 0.002
_NOTHING_YET = object()


class SqliteWriter:
    """The connection that writes to the SQLite file, on a thread of its own.

    Jobs run one at a time in the order submitted. An ordinary job's result (``call``)
    is handed back as soon as it is known. A transaction's result (``transact``), when
    another transaction is queued behind it or about to be, is handed back once that next
    transaction has written its rows and is about to commit: the event loop then works
    through the result (answering callers, who append again) while this thread waits
    for the disk, rather than each waiting for the other. Either way a result is handed
    back only after its commit. ``commit(connection)`` commits, raising when it cannot.
    """

    def __init__(
        self,
        path: str,
        pragmas: Sequence[str],
        commit: Callable[[sqlite3.Connection], None],
        *,
        cached_statements: int = 128,
        turns: WriterTurns | None = None,
    ) -> None:
        self._path = path
        self._cached_statements = cached_statements
        self._turns = turns
        self._pragmas = pragmas
        self._commit = commit
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: Set by the event loop while another transaction is about to be submitted.
        self.more_coming = False

    async def start(self) -> None:
        """Open the connection on a new thread. Raises what opening it raises."""
        self._loop = asyncio.get_running_loop()
        ready = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._work, args=(ready,), name="ledger-sqlite-writer", daemon=True
        )
        self._thread.start()
        await ready

    async def stop(self) -> None:
        """Close the connection after every job submitted so far, and end the thread."""
        if self._thread is None:
            return
        with contextlib.suppress(sqlite3.Error):
            await self.call(lambda conn: conn.close())
        self._jobs.put(None)  # stops the thread
        self._thread = None

    def call(self, run: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Run ``run(connection)`` on the writer's thread; the future holds its result."""
        return self._submit(_Job(self._new_future(), run))

    def transact(self, run: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Run a transaction that ``run`` begins and fills; commit it when ``run`` says so.

        ``run`` rolls back and returns something false to write nothing; anything true
        is committed. The future's result is what ``run`` returned, once committed.
        """
        return self._submit(_Job(self._new_future(), run, transaction=True))

    def _new_future(self) -> asyncio.Future[Any]:
        if self._thread is None or self._loop is None:
            raise RuntimeError("the SQLite writer is not running")
        return self._loop.create_future()

    def _submit(self, job: _Job) -> asyncio.Future[Any]:
        self._jobs.put(job)
        return job.future

    def _hand_back(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            self._loop.call_soon_threadsafe(_settle, future, ok, value)

    def _next_job(self, *, keep_waiting: bool) -> Any:
        """Wait a little for the next job when it is on its way; else _NOTHING_YET."""
        if keep_waiting:
            with contextlib.suppress(queue.Empty):
                return self._jobs.get(timeout=_NEXT_TRANSACTION_WAIT)
        return _NOTHING_YET

    def _work(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = sqlite3.connect(
                self._path, isolation_level=None, cached_statements=self._cached_statements
            )
            for pragma in self._pragmas:
                conn.execute(f"PRAGMA {pragma}")
        except (sqlite3.Error, OSError) as exc:
            self._hand_back(ready, False, exc)
            return
        self._hand_back(ready, True, None)
        held: tuple[asyncio.Future[Any], bool, Any] | None = None
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                job = self._next_job(keep_waiting=held is not None and self.more_coming)
                if job is _NOTHING_YET:
                    if held is not None:
                        self._hand_back(*held)
                        held = None
                    job = self._jobs.get()
            if job is None:
                break
            if not job.transaction:
                if held is not None:
                    self._hand_back(*held)
                    held = None
                self._hand_back(job.future, *_run(job.run, conn))
                continue
            if held is not None and self._turns is not None and not self._turns.try_take():
                # Another process writes first: hand the last result back now rather than
                # after waiting for it (job.run waits for the turn).
                self._hand_back(*held)
                held = None
            ok, value = _run(job.run, conn)
            if held is not None:
                # This transaction is written: hand the last one back while committing it.
                self._hand_back(*held)
                held = None
            if ok and value:
                committed, error = _run(self._commit, conn)
                if not committed:
                    ok, value = False, error
            if self._jobs.empty() and not self.more_coming:
                self._hand_back(job.future, ok, value)
            else:
                held = (job.future, ok, value)
        if held is not None:
            self._hand_back(*held)
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _run(run: Callable[[sqlite3.Connection], Any], conn: sqlite3.Connection) -> tuple[bool, Any]:
    try:
        return True, run(conn)
    except BaseException as exc:  # handed to the caller, whatever it is
        return False, exc
