"""The PostgreSQL writer survives losing its connection.

A backend ended by ``pg_terminate_backend`` (a restart, a failover, an operator)
must cost only the batch in flight: its jobs get a clear retryable error (503
``ledger_unavailable`` at the HTTP layer), nothing of that batch is committed, and
the next batch runs on a new connection. Before, every later write failed.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from pos_plugin.ledger.own.sandbox.group_commit import WriterUnavailable
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.ledger.own.sandbox.service import Ledger
from pos_plugin.ledger.own.sandbox.store import Store, Tx
from pos_plugin.world import World

from .conftest import CODE_A, P1, PA, PG_BASE, TOKEN_A, make_client, own, pg_schema_url, sale
from .test_group_commit import balance, in_one_batch

pytestmark = pytest.mark.postgres


@pytest.fixture
def db_url() -> Iterator[str]:
    """PostgreSQL only (overrides the two-engine fixture): the SQLite writer has no link
    to lose."""
    yield from pg_schema_url()


def writer_pid(store: Store) -> int:
    row = store.transact(lambda tx: tx.one("SELECT pg_backend_pid()"))
    assert row is not None
    return int(row[0])


def terminate(pid: int) -> None:
    """End a backend from outside, as an operator would, and wait until it is gone."""
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        (ok,) = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() or (False,)
        assert ok, f"backend {pid} not terminated"
        deadline = time.monotonic() + 5
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} still there"
            time.sleep(0.01)


def settled(store: Store, msgid: str) -> int:
    with store.read() as tx:
        row = tx.one("SELECT COUNT(*) FROM idempotency WHERE msgid = ?", msgid)
    return int(row[0]) if row else -1


def test_the_batch_after_a_terminated_backend_fails_retryably_then_the_writer_reconnects(
    store: Store,
) -> None:
    ledger = Ledger(store)
    first = sale(P1, (own(P1, 100),))
    assert ledger.settle(CODE_A, first.msgid, first)[0] == 201
    old = writer_pid(store)
    terminate(old)
    p1 = balance(store, PA[P1])

    req = sale(P1, (own(P1, 250),), cash=3)
    with pytest.raises(WriterUnavailable, match="resolve it by msgid"):
        ledger.settle(CODE_A, req.msgid, req)
    assert balance(store, PA[P1]) == p1 and settled(store, req.msgid) == 0

    status, text = ledger.settle(CODE_A, req.msgid, req)  # the till retries, same msgid
    assert status == 201 and json.loads(text)["balances_after"] == {PA[P1]: p1 - 250}
    assert balance(store, PA[P1]) == p1 - 250 and settled(store, req.msgid) == 1
    assert writer_pid(store) != old


def test_a_backend_terminated_mid_batch_fails_the_whole_batch_and_commits_none_of_it(
    store: Store,
) -> None:
    # The middle job ends the writer's own backend after the first job has written:
    # the batch's transaction dies with it, so all three jobs hear the same retryable
    # error and none of them is on disk; each then settles once on the new connection.
    ledger = Ledger(store)
    writer_pid(store)  # the writer is connected
    a, b = sale(P1, (own(P1, 10),)), sale(P1, (own(P1, 20),))
    p1 = balance(store, PA[P1])

    def suicide(tx: Tx) -> None:
        tx.one("SELECT pg_terminate_backend(pg_backend_pid())")

    out = in_one_batch(store, [
        lambda: ledger.settle(CODE_A, a.msgid, a),
        lambda: store.transact(suicide),
        lambda: ledger.settle(CODE_A, b.msgid, b),
    ])  # fmt: skip
    assert all(isinstance(x, WriterUnavailable) for x in out), out
    assert balance(store, PA[P1]) == p1
    assert settled(store, a.msgid) == 0 and settled(store, b.msgid) == 0

    assert ledger.settle(CODE_A, a.msgid, a)[0] == 201
    assert ledger.settle(CODE_A, b.msgid, b)[0] == 201
    assert balance(store, PA[P1]) == p1 - 30


def test_over_http_the_till_hears_503_ledger_unavailable_and_its_retry_settles_once(
    db_url: str, world: World
) -> None:
    srv = SandboxServer(db_url, world)
    srv.start()
    try:
        assert srv.store is not None
        writer_pid(srv.store)
        terminate(writer_pid(srv.store))
        req = sale(P1, (own(P1, 400),))
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", "/v1/settlements", req.model_dump_json(),
                     {"Authorization": f"Bearer {TOKEN_A}", "Idempotency-Key": req.msgid,
                      "Content-Type": "application/json"})  # fmt: skip
        answer = conn.getresponse()
        body = json.loads(answer.read())
        conn.close()
        assert answer.status == 503 and body["code"] == "ledger_unavailable", body
        assert settled(srv.store, req.msgid) == 0

        p1 = balance(srv.store, PA[P1])
        done = make_client(srv.url).settle(req)  # the agent's own client, same msgid
        assert done.msgid == req.msgid and done.total == 400
        assert balance(srv.store, PA[P1]) == p1 - 400 and settled(srv.store, req.msgid) == 1
        assert srv.store.total_balance() == world.total_money() and srv.store.audit() == []
    finally:
        srv.stop()
