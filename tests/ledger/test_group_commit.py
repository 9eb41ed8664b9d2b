"""Group commit on both engines: jobs batched into one transaction stay all-or-nothing
each, a failed job harms none of its neighbours, and idempotency holds inside a batch.

Each test holds the writer on a first job (a gate) while the jobs under test queue up
behind it, so they are sure to share one transaction once the gate opens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pos_plugin.ledger.own.sandbox.service import Ledger, Rejection
from pos_plugin.ledger.own.sandbox.store import Store, Tx

from .conftest import CODE_A, P1, P2, PA, aid, own, sale


def balance(store: Store, account: str) -> int:
    with store.read() as tx:
        row = tx.one("SELECT balance FROM accounts WHERE account_id = ?", account)
    assert row is not None
    return int(row[0])


def in_one_batch(store: Store, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run each job in its own thread while the writer is held, so all of them queue
    and are committed together; returns each job's result or the exception it raised."""
    gate = threading.Event()
    held = threading.Thread(target=store.transact, args=(lambda tx: gate.wait(10),))
    held.start()
    queue = store._group()._queue
    deadline = time.monotonic() + 5
    while queue.qsize() and time.monotonic() < deadline:  # the writer took the gate job
        time.sleep(0.01)
    out: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            out[i] = jobs[i]()
        except Exception as exc:  # the outcome under test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    while queue.qsize() < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue.qsize() == len(jobs), "the jobs did not queue behind the gate"
    gate.set()
    for t in [held, *threads]:
        t.join(10)
    return out


def transfer(amount: int, entry: str) -> Callable[[Tx], str]:
    """A job moving ``amount`` from P1's to P2's account (balanced postings)."""

    def job(tx: Tx) -> str:
        tx.post([(entry, PA[P1], -amount), (entry, PA[P2], amount)])
        return entry

    return job


def test_a_job_failing_in_the_database_spares_its_batch(store: Store) -> None:
    # The middle job overdraws: the CHECK (balance >= 0) refuses its UPDATE. The error
    # must be the failing job's own, its writes undone (on PostgreSQL the transaction
    # is aborted until the rollback to its savepoint), the jobs around it committed.
    p1, p2 = balance(store, PA[P1]), balance(store, PA[P2])
    out = in_one_batch(store, [
        lambda: store.transact(transfer(100, "E1")),
        lambda: store.transact(transfer(p1 + 1, "E2")),
        lambda: store.transact(transfer(50, "E3")),
    ])  # fmt: skip
    assert out[0] == "E1" and out[2] == "E3", out
    assert isinstance(out[1], Exception) and "check" in str(out[1]).lower(), out[1]
    assert balance(store, PA[P1]) == p1 - 150
    assert balance(store, PA[P2]) == p2 + 150
    with store.read() as tx:
        entries = {str(r[0]) for r in tx.all("SELECT DISTINCT entry_id FROM postings")}
    assert entries == {"E1", "E3"}


def test_a_rejected_settlement_spares_its_batch(store: Store) -> None:
    ledger = Ledger(store)
    good = sale(P1, (own(P1, 300),), cash=5)
    too_much = sale(P1, (own(P1, 10**6),))
    wrong_binding = sale(P1, (aid(P2, "BND-0002", 100),))  # BND-0002 binds P2 to P3, not P1
    p1 = balance(store, PA[P1])
    out = in_one_batch(store, [
        lambda: ledger.settle(CODE_A, too_much.msgid, too_much),
        lambda: ledger.settle(CODE_A, good.msgid, good),
        lambda: ledger.settle(CODE_A, wrong_binding.msgid, wrong_binding),
    ])  # fmt: skip
    assert isinstance(out[0], Rejection) and out[0].code == "insufficient_funds", out[0]
    assert out[1][0] == 201, out[1]
    assert isinstance(out[2], Rejection) and out[2].code == "binding_not_allowed", out[2]
    assert balance(store, PA[P1]) == p1 - 300
    with store.read() as tx:
        msgids = {str(r[0]) for r in tx.all("SELECT msgid FROM idempotency")}
    assert msgids == {good.msgid}, "a rejection bound its msgid"


def test_two_copies_in_one_batch_settle_once(store: Store) -> None:
    # Same request twice in one transaction: the second is the first's replay.
    ledger = Ledger(store)
    req = sale(P1, (own(P1, 700),), cash=1)
    p1 = balance(store, PA[P1])
    first, second = in_one_batch(store, [lambda: ledger.settle(CODE_A, req.msgid, req)] * 2)
    assert first == second and first[0] == 201, (first, second)
    assert balance(store, PA[P1]) == p1 - 700
    with store.read() as tx:
        row = tx.one("SELECT COUNT(*) FROM entries WHERE msgid = ?", req.msgid)
    assert row is not None and int(row[0]) == 1
