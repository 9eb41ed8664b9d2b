"""Group commit: one writer thread, many settlements per durable commit.

Why: a durable commit costs an fsync (SQLite: WAL with ``synchronous=FULL``;
PostgreSQL: the WAL flush of ``synchronous_commit=on``). Committing each
settlement alone caps the ledger at the disk's fsync rate divided by the pages
each settlement dirties, and on PostgreSQL every settlement also paid a thread
hop and a round trip for its own BEGIN and COMMIT. Instead, requests that arrive
while a commit is in flight queue up, and the writer runs the whole queue in ONE
transaction, each job inside its own SAVEPOINT:
- a job that is rejected (409/403/422) or fails rolls back to its savepoint only,
  so a rejection still writes nothing and never binds its idempotency key;
- every job's answer is released only after the COMMIT returned, so no till
  hears "settled" for something that is not durable;
- if the COMMIT fails, every job of the batch gets the error (and nothing of
  them is on disk); the client then resolves by msgid, as after any failure.
Atomicity of a settlement is unchanged: its legs are in one savepoint of one
transaction. Batching adds no waiting: a lone request is committed at once.

Two ways to wait for a job: ``submit`` blocks the calling thread (tests, the
CLI), ``submit_async`` returns to the event loop and is woken by the writer with
one ``call_soon_threadsafe`` per batch. Why the async way: an HTTP handler on
the event loop otherwise needs a thread-pool hop per request only to block on
the writer, and on a 2-core machine those hops (thread wake-ups, GIL hand-offs)
cost more CPU than the settlement itself.

Several server processes on one database take turns, one batch at a time:
- SQLite: an optional lock file serialises the writers with a blocking OS file
  lock (portalocker: ``flock`` on POSIX, ``LockFileEx`` / ``msvcrt.locking`` on
  Windows): a blocked writer sleeps in the kernel and wakes the moment the other
  commits, instead of SQLite's busy handler polling with growing sleeps (1, 2, 5,
  ... 100 ms) that wreck latency. (filelock was the other candidate; its blocking
  acquire polls every 50 ms, which is the very latency this lock exists to avoid.)
- PostgreSQL: the store's ``begin`` statements take a transaction-level advisory
  lock, so two batches never hold row locks the other one waits for (within one
  batch the jobs run one after another, so they cannot deadlock each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import IO, Any, Generic, TypeVar

import portalocker

T = TypeVar("T")

MAX_BATCH = 256


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "future", "loop", "result")

    def __init__(
        self,
        fn: Callable[[Any], T],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[T] | None = None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.done = threading.Event() if future is None else None
        self.result: T | None = None
        self.error: BaseException | None = None


def _settle_futures(jobs: list[_Job[Any]]) -> None:
    """On the event loop: hand each job's outcome to its awaiting handler."""
    for job in jobs:
        fut = job.future
        if fut is None or fut.done():  # the handler was cancelled: the outcome stands
            continue
        if job.error is not None:
            fut.set_exception(job.error)
        else:
            fut.set_result(job.result)


class GroupCommitter:
    """Runs write jobs on one connection in batched transactions.

    ``begin``: the statements that open a batch's transaction (SQLite ``BEGIN
    IMMEDIATE``; PostgreSQL ``BEGIN`` and the writers' advisory lock).
    ``max_batch``: jobs per transaction at most.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        make_tx: Callable[[Any], Any],
        lock_path: str | None = None,
        *,
        begin: tuple[str, ...] = ("BEGIN IMMEDIATE",),
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._connect = connect
        self._make_tx = make_tx
        self._lock_path = lock_path
        self._begin = begin
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tx)`` in the next batch; returns its result once durable."""
        job: _Job[T] = _Job(fn)
        self._queue.put(job)
        assert job.done is not None
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    async def submit_async(self, fn: Callable[[Any], T]) -> T:
        """Like ``submit`` but awaits on the running event loop instead of blocking it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, loop, fut))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = self._connect()
        tx = self._make_tx(conn)
        lock_file: IO[bytes] | None = open(self._lock_path, "a+b") if self._lock_path else None  # noqa: SIM115
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                if lock_file is None:
                    self._commit(conn, tx, batch)
                else:
                    portalocker.lock(lock_file, portalocker.LOCK_EX)  # sleeps without the GIL
                    try:
                        self._commit(conn, tx, batch)
                    finally:
                        portalocker.unlock(lock_file)
                self._release(batch)
                if stop:
                    return
        finally:
            conn.close()
            if lock_file is not None:
                lock_file.close()

    @staticmethod
    def _release(batch: list[_Job[Any]]) -> None:
        """Wake every waiter of a committed (or failed) batch: one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = defaultdict(list)
        for job in batch:
            if job.done is not None:
                job.done.set()
            elif job.loop is not None:
                by_loop[job.loop].append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown: nobody waits
                loop.call_soon_threadsafe(_settle_futures, jobs)

    def _commit(self, conn: Any, tx: Any, batch: list[_Job[Any]]) -> None:
        try:
            for sql in self._begin:
                conn.execute(sql)
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(tx)
                except BaseException as exc:  # a rejection: undo this job only
                    job.error = exc
                    conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):  # nothing to roll back, or the link is gone
                conn.execute("ROLLBACK")
            for job in batch:
                if job.error is None:
                    job.error = exc
                    job.result = None
