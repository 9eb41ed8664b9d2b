"""The shared PostgreSQL journal: several tills in one database, each with its own chain.

Real PostgreSQL (skipped when no server answers), one schema per test.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest

from pos_plugin.cli import main as cli_main
from pos_plugin.journal.journal import GENESIS, RECEIVED, SETTLED, SETTLING, SHANGHAI, Journal
from tests.pgschema import fresh_schema, sql

pytestmark = pytest.mark.postgres

PHARMACY = "H11010500001"
OTHER_PHARMACY = "H11010800002"
T = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=SHANGHAI)


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as u:
        yield u


def till(url: str, terminal: str, index: int, code: str = PHARMACY) -> Journal:
    return Journal(
        url, hmac_key=b"k" * 32, pharmacy_code=code, terminal_id=terminal, till_index=index
    )


def settle(j: Journal, ref: str, total: int, now: dt.datetime = T) -> str:
    """received -> settling (intent, msgid) -> settled, as the sale service does."""
    j.begin_sale(ref, "h-" + ref, now=now)
    row = j.update(ref, SETTLING, new_msgid=True, plan={"legs": [], "total": total})
    j.update(ref, SETTLED, settlement_id="S-" + ref, total=total, personal_account=total, cash=0)
    assert row.msgid is not None
    return row.msgid


def chain(url: str, code: str, terminal: str) -> list[tuple[object, ...]]:
    """(seq, prev_hash, hash) of one till's events, in order."""
    return sql(
        url,
        "SELECT seq, prev_hash, hash FROM events WHERE pharmacy_code = %s AND terminal_id = %s "
        "ORDER BY seq",
        code,
        terminal,
    )


def assert_linear(events: list[tuple[object, ...]]) -> None:
    prev = GENESIS
    for _seq, prev_hash, hash_ in events:
        assert prev_hash == prev
        prev = str(hash_)


def test_two_tills_share_one_journal_each_with_its_own_chain(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    t1, t2 = till(url, "T01", 1), till(url, "T02", 2)
    msgids = {}
    for n in range(3):  # interleaved, and both tills use the same refs (the POS's own numbers)
        msgids["T01", n] = settle(t1, f"R{n}", 1000 + n)
        msgids["T02", n] = settle(t2, f"R{n}", 2000 + n)

    # Rows: keyed per till, each journal sees its own.
    rows = sql(url, "SELECT terminal_id, sale_ref, state, total FROM sales ORDER BY 1, 2")
    assert rows == [("T01", f"R{n}", "settled", 1000 + n) for n in range(3)] + [
        ("T02", f"R{n}", "settled", 2000 + n) for n in range(3)
    ]
    r1, r2 = t1.get("R1"), t2.get("R1")
    assert r1 is not None and r2 is not None
    assert (r1.terminal_id, r1.total, r2.terminal_id, r2.total) == ("T01", 1001, "T02", 2001)
    assert [r.sale_ref for r in t1.sales_on(T.date())] == ["R0", "R1", "R2"]
    # msgids: globally unique, each with its till's digit.
    assert len(set(msgids.values())) == 6
    assert {m[26] for (t, _), m in msgids.items() if t == "T01"} == {"1"}
    assert {m[26] for (t, _), m in msgids.items() if t == "T02"} == {"2"}

    # Chains: one per till, each starting at genesis, 3 events per sale.
    c1, c2 = chain(url, PHARMACY, "T01"), chain(url, PHARMACY, "T02")
    assert len(c1) == len(c2) == 9
    assert_linear(c1)
    assert_linear(c2)
    assert {h for *_, h in c1}.isdisjoint({h for *_, h in c2})
    # ... interleaved in the table: T02's first event comes between T01's.
    assert c1[0][0] < c2[0][0] < c1[-1][0]
    r1_ok, r2_ok = t1.verify(), t2.verify()
    assert (r1_ok.ok, r1_ok.events, r1_ok.sales) == (True, 9, 3)
    assert (r2_ok.ok, r2_ok.events, r2_ok.sales) == (True, 9, 3)

    # A row edited by hand shows in that till's verify only.
    sql(url, "UPDATE sales SET cash = 1 WHERE terminal_id = 'T02' AND sale_ref = 'R1'")
    assert t1.verify().ok
    assert t2.verify().problems == ("sale R1: the row was changed outside the journal",)
    # An event edited by hand breaks that till's chain only.
    sql(url, "UPDATE events SET detail = '{}' WHERE seq = %s", c1[4][0])
    bad = t1.verify()
    assert not bad.ok and f"event {c1[4][0]} (R1): the hash chain is broken" in bad.problems

    # The CLI verifies every till of the shared journal and says which is tampered.
    assert cli_main(["journal", "verify", url]) == 1
    out = capsys.readouterr().out
    assert f"{PHARMACY} T01: 3 sales, 9 events: TAMPERED" in out
    assert f"{PHARMACY} T02: 3 sales, 9 events: TAMPERED" in out
    sql(url, "UPDATE sales SET cash = 0 WHERE terminal_id = 'T02' AND sale_ref = 'R1'")
    assert cli_main(["journal", "verify", url, "--terminal", "T02"]) == 0
    assert f"{PHARMACY} T02: 3 sales, 9 events: chain intact" in capsys.readouterr().out


def test_two_pharmacies_with_the_same_terminal_id_stay_apart(url: str) -> None:
    a, b = till(url, "T01", 0), till(url, "T01", 0, OTHER_PHARMACY)
    ma, mb = settle(a, "R1", 500), settle(b, "R1", 700)
    assert ma.startswith(PHARMACY) and mb.startswith(OTHER_PHARMACY)
    ra, rb = a.get("R1"), b.get("R1")
    assert ra is not None and rb is not None and (ra.total, rb.total) == (500, 700)
    assert a.by_msgid(mb) is None  # a till never reads another pharmacy's rows
    assert len(chain(url, PHARMACY, "T01")) == len(chain(url, OTHER_PHARMACY, "T01")) == 3
    assert a.verify().ok and b.verify().ok


def test_two_processes_for_one_till_keep_one_linear_chain(url: str) -> None:
    """The installer started the agent twice for T01: the advisory lock serialises them."""
    first, second = till(url, "T01", 1), till(url, "T01", 1)
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def run(j: Journal, prefix: str) -> None:
        try:
            go.wait()
            for n in range(25):
                settle(j, f"{prefix}{n}", 100 + n, now=dt.datetime.now(SHANGHAI))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(j, p)) for j, p in ((first, "A"), (second, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    events = chain(url, PHARMACY, "T01")
    assert len(events) == 150
    assert_linear(events)
    msgids = [m for (m,) in sql(url, "SELECT msgid FROM sales")]
    assert len(msgids) == len(set(msgids)) == 50
    report = till(url, "T01", 1).verify()
    assert (report.ok, report.sales, report.events) == (True, 50, 150)


def test_msgid_clock_survives_restarts_and_a_shared_till_index(url: str) -> None:
    j = till(url, "T01", 3)
    first = [j.next_msgid(T) for _ in range(2)]
    j.close()
    j = till(url, "T01", 3)  # restart within the same second, then the clock set back
    later = [j.next_msgid(T), j.next_msgid(T - dt.timedelta(hours=1))]
    assert first + later == [f"{PHARMACY}20261123100000300{n}" for n in range(4)]
    # T02 was configured with T01's index by mistake: it shares the counter, no collision.
    other = till(url, "T02", 3)
    assert other.next_msgid(T) == f"{PHARMACY}202611231000003004"
    rows = sql(url, "SELECT pharmacy_code, till_index, stamp, seq FROM msgid_clock")
    assert rows == [(PHARMACY, 3, "20261123100000", 4)]


def test_only_the_received_step_commits_without_waiting_for_the_wal(url: str) -> None:
    j = till(url, "T01", 0)
    assert j._pg is not None
    db = j._pg
    seen: list[str] = []
    original = db.execute

    def spy(statement: str, params: object = (), /) -> object:
        if statement == "COMMIT":
            seen.append(original("SHOW synchronous_commit").fetchone()["synchronous_commit"])
        return original(statement, params)  # type: ignore[arg-type]

    db.execute = spy  # type: ignore[method-assign]
    j.begin_sale("R1", "h")
    j.update("R1", SETTLING, msgid="M1")
    j.update("R1", SETTLED)
    assert seen == ["off", "on", "on"]  # off for received only; the intent and outcome wait
    assert original("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"


def test_a_dropped_connection_is_reopened_between_transactions(url: str) -> None:
    j = till(url, "T01", 0)
    settle(j, "R1", 100)
    assert j._pg is not None
    pid = j._pg.conn.info.backend_pid
    sql(url, "SELECT pg_terminate_backend(%s)", pid)  # a database restart, as the till sees it
    with pytest.raises(Exception):  # noqa: B017  # the statement in flight fails...
        j.get("R1")
    row = j.get("R1")  # ...the next one runs on a new connection
    assert row is not None and row.state == SETTLED
    settle(j, "R2", 200)
    assert j._pg.conn.info.backend_pid != pid
    assert j.verify().ok and j.verify().sales == 2


def test_pending_reversals_are_per_till(url: str) -> None:
    t1, t2 = till(url, "T01", 1), till(url, "T02", 2)
    t1.queue_reversal("R1", "M1", "M2")
    t1.queue_reversal("R1", "M1", "M2")  # queued once
    t2.queue_reversal("R9", "M9", "M10")
    assert [p.msgid for p in t1.pending_reversals()] == ["M1"]
    assert [p.msgid for p in t2.pending_reversals()] == ["M9"]
    later = dt.datetime.now(SHANGHAI) + dt.timedelta(minutes=5)
    t1.reversal_attempt_failed("M1", "unreachable", later, escalate=True)
    t2.reversal_done("M1")  # another till cannot close T01's debt
    (p,) = t1.pending_reversals(due_at=later)
    assert (p.attempts, p.escalated, p.last_error) == (1, True, "unreachable")
    t1.reversal_done("M1")
    assert t1.pending_reversals() == [] and len(t2.pending_reversals()) == 1


def test_received_rows_and_a_sale_ref_reused_on_the_shared_journal(url: str) -> None:
    j = till(url, "T01", 0)
    assert j.begin_sale("R1", "h1") is None
    again = j.begin_sale("R1", "h1")
    assert again is not None and again.state == RECEIVED
    from pos_plugin.journal.journal import SaleRefReused

    with pytest.raises(SaleRefReused):
        j.begin_sale("R1", "h2")
    assert till(url, "T02", 1).begin_sale("R1", "h2") is None  # another till's R1 is its own


def test_a_till_role_without_create_privilege_opens_the_existing_journal(url: str) -> None:
    """A chain creates the schema once as its owner and gives the tills' role DML only."""
    from tests.pgschema import PG_BASE

    settle(till(url, "T01", 1), "R1", 100)  # the owner (postgres) created the tables
    schema = url.rsplit("%3D", 1)[1]
    role = f"till_{uuid.uuid4().hex[:8]}"
    sql(PG_BASE, f"CREATE ROLE {role} LOGIN")
    try:
        sql(url, f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        sql(url, f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        role_url = url.replace("postgres@", f"{role}@")
        with pytest.raises(Exception, match="permission denied"):
            sql(role_url, "CREATE TABLE nothing_here (a int)")  # the role really cannot create
        t2 = till(role_url, "T02", 2)
        settle(t2, "R1", 200)
        assert t2.verify().ok and t2.verify().sales == 1
        t2.close()
    finally:
        sql(url, f"DROP OWNED BY {role}")
        sql(PG_BASE, f"DROP ROLE {role}")
