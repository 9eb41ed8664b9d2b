"""The agent end to end on a shared PostgreSQL journal: HTTP -> agent -> simulator -> sandbox.

The same agent as test_sales.py (real pyserial on a pty, real sandbox ledger), its
journal a fresh schema of the real PostgreSQL server (skipped when none answers).
"""

from __future__ import annotations

import json
import time

import pytest

from pos_plugin.agent import Agent
from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.journal.journal import FAILED, GENESIS, SETTLING, Journal
from tests.pgschema import sql

from .conftest import ZHANG_WEI, Pos, balances, item

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("agent", ["postgres"], indirect=True),
]

COLD = [item("6901", "A", 2, 1850)]


def _url(agent: Agent) -> str:
    """The journal's URL (the tests' URLs hold no password, so the shown one is the real one)."""
    journal = agent.service.journal
    assert journal.is_shared
    return journal.path


def _linear_chain(url: str, terminal: str) -> list[str]:
    rows = sql(
        url, "SELECT prev_hash, hash FROM events WHERE terminal_id = %s ORDER BY seq", terminal
    )
    prev = GENESIS
    for prev_hash, hash_ in rows:
        assert prev_hash == prev
        prev = str(hash_)
    return [str(h) for _, h in rows]


def test_sale_and_reversal_are_journaled_in_postgres(pos: Pos, agent: Agent) -> None:
    url = _url(agent)
    before = balances(agent, "B11000001")
    status, body = pos.sale("R1", "B11000001", ZHANG_WEI, COLD)
    assert status == 200 and body["status"] == "settled", body
    assert balances(agent, "B11000001")[ZHANG_WEI] == before[ZHANG_WEI] - 3700
    rows = sql(url, "SELECT pharmacy_code, terminal_id, state, msgid, personal_account FROM sales")
    assert rows == [("H11010500001", "T01", "settled", body["msgid"], 3700)]

    status, rev = pos.call("POST", "/v1/sales/R1/reversal", {"reason": "returned"}, role="manager")
    assert status == 200 and rev["status"] == "reversed"
    assert balances(agent, "B11000001") == before
    ((state, reversal_id),) = sql(url, "SELECT state, reversal_id FROM sales")
    assert state == "reversed" and reversal_id
    heads = _linear_chain(url, "T01")
    assert len(heads) >= 4
    report = agent.service.journal.verify()
    assert report.ok and report.sales == 1 and report.events == len(heads)

    # The manager's reconciliation reads the shared journal (the agent's whole store).
    day = agent.service.settings.today().isoformat()
    status, rec = pos.call("GET", f"/v1/reconciliation?date={day}", role="manager")
    assert status == 200, rec
    assert rec["balanced"] is True
    assert (rec["journal"]["sales_count"], rec["journal"]["reversals_count"]) == (1, 1)
    assert rec["journal"]["net"]["total"] == rec["ledger"]["net"]["total"] == 0
    assert [t["terminal_id"] for t in rec["terminals"]] == ["T01"]


def test_a_closed_day_refuses_later_sales_on_a_shared_journal(pos: Pos, agent: Agent) -> None:
    from pos_plugin.reconcile.cli import close_day_main

    url = _url(agent)
    status, first = pos.sale("BEFORE-CLOSE", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    assert agent.world is not None
    day = agent.service.settings.today().isoformat()
    token = agent.world.pharmacies[0].api_token
    ledger_url = agent.service.ledger.base_url  # type: ignore[attr-defined]
    args = ["--date", day, "--journal", url, "--ledger-url", ledger_url, "--token", token,
            "--force", "--reason", "test: closing right after the last sale"]  # still selling
    assert close_day_main(args) == 0
    ((code, closed_day, chain_head, balanced),) = sql(
        url, "SELECT pharmacy_code, business_date, chain_head, balanced FROM closed_days"
    )
    assert (code, closed_day, balanced) == ("H11010500001", day, 1)
    assert json.loads(chain_head) == {"T01": _linear_chain(url, "T01")[-1]}
    assert is_day_closed(agent.service.journal, day)
    assert not is_day_closed(url, day, pharmacy_code="H11010800002")  # another store's day

    before = balances(agent, "B11000001")
    status, body = pos.sale("AFTER-CLOSE", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["code"]) == (409, "day_closed")
    assert balances(agent, "B11000001") == before
    assert sql(url, "SELECT count(*) FROM sales WHERE sale_ref = 'AFTER-CLOSE'") == [(0,)]
    status, again = pos.call("GET", "/v1/sales/BEFORE-CLOSE")
    assert status == 200 and again["msgid"] == first["msgid"]
    assert close_day_main(args) == 1  # closed once


def test_an_intent_left_by_a_second_process_is_resolved_by_the_running_agent(
    pos: Pos, agent: Agent
) -> None:
    """Another process for T01 (a crashed helper, a second agent by mistake) wrote an
    intent whose request never left: the running agent's recovery marks it failed,
    and the till's chain stays one line."""
    url = _url(agent)
    status, _ = pos.sale("R1", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    other = Journal(url, hmac_key=b"other", pharmacy_code="H11010500001", terminal_id="T01")
    try:
        other.begin_sale("ORPHAN", "h")
        orphan = other.update("ORPHAN", SETTLING, new_msgid=True, plan={"legs": [], "total": 1})
    finally:
        other.close()
    deadline = time.monotonic() + 10
    row = agent.service.journal.get("ORPHAN")
    while row is not None and row.state != FAILED and time.monotonic() < deadline:
        time.sleep(0.1)
        row = agent.service.journal.get("ORPHAN")
    assert row is not None and row.state == FAILED and row.refusal_code == "not_charged"
    assert row.msgid == orphan.msgid
    _linear_chain(url, "T01")
    assert agent.service.journal.verify().ok
