"""Group commit: one writer thread, many settlements per durable commit.

Why: a durable commit costs an fsync (SQLite: WAL with ``synchronous=FULL``;
PostgreSQL: the WAL flush of ``synchronous_commit=on``). Committing each
settlement alone caps the ledger at the disk's fsync rate divided by the pages
each settlement dirties, and on PostgreSQL every settlement also paid a thread
hop and a round trip for its own BEGIN and COMMIT. Instead, requests that arrive
while a commit is in flight queue up, and the writer runs the whole queue in ONE
transaction:
- the fast pass runs the jobs one after another with no savepoint: a job checks
  everything that can refuse it (idempotency, credential, bindings, balances under
  row lock) before its first write, so a refusal (409/403/422) leaves nothing to
  undo and never binds its idempotency key. On PostgreSQL the pass runs in
  psycopg's pipeline mode: writes are sent without waiting for their answers, and
  travel with the next job's reads (one round trip per settlement, not ten);
- if a job fails after it wrote, or a statement fails in the database (an error
  the checks did not foresee: a CHECK, a lost race with another writer), the
  whole transaction is rolled back and the batch is run again, the careful pass,
  each job inside its own SAVEPOINT: that job alone rolls back and gets its error;
- every job's answer is released only after the COMMIT returned, so no till
  hears "settled" for something that is not durable;
- if the COMMIT fails, every job of the batch gets the error (and nothing of
  them is on disk); the client then resolves by msgid, as after any failure. A
  connection that broke is reported as ``WriterUnavailable`` (the HTTP layer's 503
  ``ledger_unavailable``) and the writer connects anew for the next batch.
Atomicity of a settlement is unchanged: its legs are in one transaction, and a
job's writes are either all committed or all rolled back with it. Batching adds
no waiting: a lone request is committed at once.

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


class WriterUnavailable(Exception):
    """The writer's database connection broke during a batch: the batch's outcome is
    unknown to its callers (the writer reconnects for the next batch)."""


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
    ``pipeline``: a context in which the connection sends statements without waiting
    for each answer (psycopg's pipeline mode); a read waits, a write does not.
    ``is_broken``: whether the connection is lost (then the writer opens a new one).

    A job's ``tx`` must carry a ``dirty`` flag that its statements set when they
    write or fail: that is how the fast pass knows a refusal left nothing to undo.
    A job may run twice (the careful pass runs the batch again after a rollback), so
    it must act only through ``tx``.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        make_tx: Callable[[Any], Any],
        lock_path: str | None = None,
        *,
        begin: tuple[str, ...] = ("BEGIN IMMEDIATE",),
        max_batch: int = MAX_BATCH,
        pipeline: Callable[[Any], contextlib.AbstractContextManager[Any]] = (
            lambda _conn: contextlib.nullcontext()
        ),
        is_broken: Callable[[Any], bool] = lambda _conn: False,
    ) -> None:
        self._connect = connect
        self._make_tx = make_tx
        self._lock_path = lock_path
        self._begin = begin
        self._max_batch = max_batch
        self._pipeline = pipeline
        self._is_broken = is_broken
        self._conn: Any = None
        self._tx: Any = None
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
                    self._commit(batch)
                else:
                    portalocker.lock(lock_file, portalocker.LOCK_EX)  # sleeps without the GIL
                    try:
                        self._commit(batch)
                    finally:
                        portalocker.unlock(lock_file)
                self._release(batch)
                if stop:
                    return
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):  # closing at shutdown: nothing else to do
                    self._conn.close()
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

    def _connection(self) -> tuple[Any, Any]:
        """The writer's connection, opened anew if there is none or it broke."""
        if self._conn is not None and self._is_broken(self._conn):
            with contextlib.suppress(Exception):  # already gone: nothing to close
                self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = self._connect()
            self._tx = self._make_tx(self._conn)
        return self._conn, self._tx

    def _commit(self, batch: list[_Job[Any]]) -> None:
        """The batch in one transaction: first without savepoints (the fast pass); if a
        job failed after it wrote, or in the database, the batch is rolled back and run
        again with each job in its own savepoint, so that job alone fails."""
        try:
            conn, tx = self._connection()
        except Exception as exc:  # the database is down: nothing of the batch was sent
            self._fail(batch, exc, broken=True)
            return
        with contextlib.suppress(Exception):  # a failure here: the careful pass reports it
            if self._fast_pass(conn, tx, batch):
                return
        with contextlib.suppress(Exception):  # nothing to roll back, or the link is gone
            conn.execute("ROLLBACK")
        if self._is_broken(conn):
            self._fail(batch, ConnectionError("the connection broke"), broken=True)
            return
        for job in batch:
            job.result, job.error = None, None
        try:
            self._careful_pass(conn, tx, batch)
        except Exception as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            self._fail(batch, exc, broken=self._is_broken(conn))

    def _fast_pass(self, conn: Any, tx: Any, batch: list[_Job[Any]]) -> bool:
        """The batch with no savepoint, statements sent without waiting where the engine
        can (``pipeline``): a job refused before its first write leaves nothing to undo.
        False (nothing committed) as soon as a job fails after writing or in the database."""
        with self._pipeline(conn):
            for sql in self._begin:
                conn.execute(sql)
            for job in batch:
                tx.dirty = False
                try:
                    job.result = job.fn(tx)
                except BaseException as exc:
                    if tx.dirty:
                        return False
                    job.error = exc  # a refusal before any write: nothing to undo
            commit = conn.execute("COMMIT")
        # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, not an error.
        return getattr(commit, "statusmessage", "COMMIT") == "COMMIT"

    def _careful_pass(self, conn: Any, tx: Any, batch: list[_Job[Any]]) -> None:
        """The batch with each job in its own savepoint: a failing job is undone alone."""
        for sql in self._begin:
            conn.execute(sql)
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(tx)
            except BaseException as exc:  # a rejection or a failure: undo this job only
                job.error = exc
                conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
        conn.execute("COMMIT")

    @staticmethod
    def _fail(batch: list[_Job[Any]], exc: BaseException, *, broken: bool) -> None:
        """Every job of a batch that did not commit gets the error; a broken connection
        is said as such (``WriterUnavailable``: retry, resolving by msgid)."""
        error: BaseException = exc
        if broken:
            error = WriterUnavailable(
                "the ledger lost its database connection; nothing of this request is known "
                "to be committed: resolve it by msgid, then retry"
            )
            error.__cause__ = exc
        for job in batch:
            if job.error is None:  # a refusal stands: it wrote nothing
                job.error, job.result = error, None
