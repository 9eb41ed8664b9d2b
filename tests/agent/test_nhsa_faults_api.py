"""``POST /v1/simulator/faults`` on the national backend (issue 15): an integrator on
``serve --simulate --ledger-kind nhsa`` reaches ``failed``, a slow settlement and
``unknown`` through the POS API alone, and the lost answer is recovered exactly once.

Real parts: the agent on the simulator, the embedded reference platform over HTTP on
127.0.0.1 (its own fault hooks do slow and answer_lost), the journal file.
"""

from __future__ import annotations

import time

import pytest

from pos_plugin.agent import Agent
from tests.waiting import until

from .conftest import ZHANG_WEI, Pos, balances, item

pytestmark = pytest.mark.parametrize("ledger_kind", ["nhsa"], indirect=True)

COLD = [item("6901", "A", 2, 1850)]


@pytest.fixture
def sim_transport() -> str:
    return "socket"


def _calls(agent: Agent, infno: str) -> list[str | None]:
    """The omsgid of every ``infno`` message the platform received (2601: what it voids)."""
    with agent.ledger_sandbox.store.read() as tx:
        rows = tx.all("SELECT omsgid FROM messages WHERE infno = ? ORDER BY received_at", infno)
    return [r[0] for r in rows]


def test_answer_lost_is_unknown_then_voided_once_by_2601(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    status, body = pos.call("POST", "/v1/simulator/faults", {"ledger": "answer_lost", "times": 1})
    assert (status, body) == (200, {"ledger": "answer_lost", "times": 1, "delay": 0.0})
    status, body = pos.sale("NF1", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"], body["code"]) == (503, "unknown", "ledger_unavailable"), body
    msgid = body["msgid"]
    # The platform committed the 2102; the owed 2601 voids it, once, by itself.
    assert until(lambda: pos.call("GET", "/v1/sales/NF1")[1]["status"] != "unknown", 20)
    status, got = pos.call("GET", "/v1/sales/NF1")
    assert (got["status"], got["code"]) == ("failed", "cash_fallback"), got
    assert agent.service.journal.pending_reversals() == []
    # Recovery runs again (as it does every interval): nothing more is sent.
    assert agent.service.send_owed_reversals() == 0
    agent.service.recover_interrupted()
    agent.service.resolve_unsettled()
    assert _calls(agent, "2601") == [msgid]
    assert _calls(agent, "2102").count(None) == 1  # the 2102 was never re-sent
    assert balances(agent, "B11000001") == before  # net zero: the customer paid cash
    # The fault was used up: the next sale settles and is charged once.
    status, body = pos.sale("NF2", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"]) == (200, "settled"), body
    assert balances(agent, "B11000001")[ZHANG_WEI] == before[ZHANG_WEI] - 3700


def test_down_fails_the_sale_with_nothing_sent_and_slow_still_settles(
    pos: Pos, agent: Agent
) -> None:
    before = balances(agent, "B11000001")
    arrived = agent.ledger_sandbox.faults.calls  # every envelope the platform received
    sent = len(arrived)
    assert pos.call("POST", "/v1/simulator/faults", {"ledger": "down", "times": 1})[0] == 200
    status, body = pos.sale("ND1", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"], body["code"]) == (503, "failed", "ledger_unavailable"), body
    assert len(arrived) == sent  # nothing reached the platform
    assert balances(agent, "B11000001") == before

    status, body = pos.call(
        "POST", "/v1/simulator/faults", {"ledger": "slow", "delay": 1.0, "times": 1}
    )
    assert (status, body["ledger"], body["delay"]) == (200, "slow", 1.0)
    t0 = time.monotonic()
    status, body = pos.sale("NS1", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"]) == (200, "settled"), body
    assert time.monotonic() - t0 >= 1.0  # the platform held the 2102 that long
    assert arrived[sent:] == ["1101", "2102"]
    assert balances(agent, "B11000001")[ZHANG_WEI] == before[ZHANG_WEI] - 3700

    status, body = pos.call("POST", "/v1/simulator/faults", {"ledger": "down"})  # until none
    assert (status, body["times"]) == (200, None)
    for ref in ("ND2", "ND3"):
        assert pos.sale(ref, "B11000001", ZHANG_WEI, COLD)[1]["code"] == "ledger_unavailable"
    assert pos.call("POST", "/v1/simulator/faults", {"ledger": "none"})[1]["ledger"] == "none"
    assert pos.sale("ND4", "B11000001", ZHANG_WEI, COLD)[1]["status"] == "settled"
    assert agent.ledger_sandbox.faults.armed() == []
