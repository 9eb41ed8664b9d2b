"""Group commit for SQLite: one writer thread, many settlements per fsync.

Why: SQLite has one writer at a time and a durable commit (WAL,
``synchronous=FULL``) costs an fsync. Committing each settlement alone caps
the ledger at the disk's fsync rate divided by the pages each settlement
dirties. Instead, requests that arrive while a commit is in flight queue up,
and the writer runs the whole queue in ONE ``BEGIN IMMEDIATE`` transaction,
each job inside its own SAVEPOINT:
- a job that is rejected (409/403/422) rolls back to its savepoint only, so a
  rejection still writes nothing and never binds its idempotency key;
- every job's answer is released only after the COMMIT returned, so no till
  hears "settled" for something that is not durable;
- if the COMMIT fails, every job of the batch gets the error (and nothing of
  them is on disk); the client then resolves by msgid, as after any failure.
Atomicity of a settlement is unchanged: its legs are in one savepoint of one
transaction. Batching adds no waiting: a lone request is committed at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MAX_BATCH = 256


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommitter:
    """Runs write jobs on one SQLite connection in batched transactions."""

    def __init__(self, connect: Callable[[], Any], make_tx: Callable[[Any], Any]) -> None:
        self._connect = connect
        self._make_tx = make_tx
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tx)`` in the next batch; returns its result once durable."""
        job: _Job[T] = _Job(fn)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = self._connect()
        tx = self._make_tx(conn)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit(conn, tx, batch)
                if stop:
                    return
        finally:
            conn.close()

    @staticmethod
    def _commit(conn: Any, tx: Any, batch: list[_Job[Any]]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
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
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                if job.error is None:
                    job.error = exc
                    job.result = None
        finally:
            for job in batch:
                job.done.set()
