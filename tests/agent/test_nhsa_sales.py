"""The sale flow on the national platform's interface, where it differs from our own
ledger: the 2102 answer that never comes (one 2601, net zero, the POS told the truth),
a 2601 that fails and later succeeds, a refusal (infcode -1), an expired sign-in, an
answer that breaks the spec's invariants, and the call sequence of a sale.

Real parts: the agent on the simulator, the reference platform (sandbox-nhsa) over HTTP
on 127.0.0.1 with its fault hooks, the journal file.
"""

from __future__ import annotations

from typing import Any

import pytest

from pos_plugin.agent import Agent
from tests.waiting import until

from .conftest import ZHANG_WEI, Pos, balances, item

pytestmark = pytest.mark.parametrize("ledger_kind", ["nhsa"], indirect=True)

COLD = [item("6901", "A", 2, 1850)]


@pytest.fixture
def sim_transport() -> str:
    return "socket"  # one serial line is enough here: the subject is the platform


def _platform(agent: Agent) -> Any:
    return agent.ledger_sandbox


def _calls(agent: Agent) -> list[tuple[str, str | None, str]]:
    """(infno, omsgid, outcome) of every message the platform received, in order."""
    with _platform(agent).store.read() as tx:
        rows = tx.all("SELECT infno, omsgid, outcome FROM messages ORDER BY received_at, msgid")
    return [(str(r[0]), r[1], str(r[2])) for r in rows]


def _settlements(agent: Agent, kind: str) -> list[tuple[str, str]]:
    with _platform(agent).store.read() as tx:
        rows = tx.all("SELECT msgid, status FROM settlements WHERE kind = ?", kind)
    return [(str(r[0]), str(r[1])) for r in rows]


def test_a_sale_is_one_1101_and_one_2102_after_the_days_9001(pos: Pos, agent: Agent) -> None:
    """The contract: 9001 once a day before the first business call; 1101 then 2102 per
    sale with presettle off (2 round trips a sale)."""
    for ref in ("SEQ-1", "SEQ-2"):
        status, body = pos.sale(ref, "B11000001", ZHANG_WEI, COLD)
        assert status == 200 and body["status"] == "settled", body
    # (simulate mode downloads the catalogue by 1312 when the agent starts)
    assert _platform(agent).faults.calls == ["9001", "1312", "1101", "2102", "1101", "2102"]


def test_a_lost_2102_answer_is_one_2601_net_zero_and_the_truth(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    _platform(agent).faults.lose_answer("2102", mode="close")
    status, body = pos.sale("LOST-1", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"], body["code"]) == (503, "unknown", "ledger_unavailable"), body
    assert "cash" in body["message"]
    msgid = body["msgid"]
    # The platform had committed it; the owed 2601 reverses it, once.
    assert until(lambda: not agent.service.journal.pending_reversals(), 15)
    reversals = [c for c in _calls(agent) if c[0] == "2601"]
    assert len(reversals) == 1 and reversals[0][1] == msgid
    assert [infno for infno, _, _ in _calls(agent)].count("2102") == 1  # never re-sent
    assert balances(agent, "B11000001") == before
    status, got = pos.call("GET", "/v1/sales/LOST-1")
    assert (got["status"], got["code"]) == ("failed", "cash_fallback"), got
    row = agent.service.journal.get("LOST-1")
    assert row is not None and row.state == "failed" and row.refusal_code == "cash_fallback"


def test_a_failing_2601_is_retried_until_it_succeeds(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    faults = _platform(agent).faults
    faults.lose_answer("2102", mode="close")
    faults.fail_next("2601", "系统繁忙，请稍后再试", times=1)
    status, body = pos.sale("LOST-2", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"]) == (503, "unknown")
    assert until(lambda: any(p.attempts for p in agent.service.journal.pending_reversals()), 15)
    (owed,) = agent.service.journal.pending_reversals()
    assert owed.last_error and "系统繁忙" in owed.last_error
    later = agent.service.settings.today()  # the next attempt is due after a backoff:
    import datetime as dt

    assert agent.service.send_owed_reversals(
        dt.datetime.combine(later, dt.time(23, 59), tzinfo=dt.UTC)
    ) == 1
    assert agent.service.journal.pending_reversals() == []
    assert balances(agent, "B11000001") == before


def test_a_platform_refusal_is_a_clear_failure_and_nothing_moves(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    _platform(agent).faults.fail_next("2102", "该参保人110105198005120319本月已达限额")
    status, body = pos.sale("REFUSED-1", "B11000001", ZHANG_WEI, COLD)
    assert status == 409 and body["status"] == "failed", body
    assert "110105198005120319" not in body["message"]  # the err_msg's ID number is masked
    assert balances(agent, "B11000001") == before
    assert _settlements(agent, "sale") == []
    row = agent.service.journal.get("REFUSED-1")
    assert row is not None and row.state == "failed"


def test_an_expired_sign_in_is_renewed_once_and_the_sale_goes_through(
    pos: Pos, agent: Agent
) -> None:
    status, _ = pos.sale("SIGN-1", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    _platform(agent).faults.expire_sign_in()
    status, body = pos.sale("SIGN-2", "B11000001", ZHANG_WEI, COLD)
    assert status == 200 and body["status"] == "settled", body
    assert _platform(agent).faults.calls.count("9001") == 2


def test_an_answer_breaking_the_invariants_is_not_a_sale(pos: Pos, agent: Agent) -> None:
    """psn_part_amt != acct_pay + psn_cash_pay: a bad response, so an unknown outcome
    (cash, and the 2601 undoes what the platform may have booked)."""
    before = balances(agent, "B11000001")
    _platform(agent).faults.break_invariants("psn_part_amt")
    status, body = pos.sale("BROKEN-1", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"]) == (503, "unknown"), body
    assert until(lambda: not agent.service.journal.pending_reversals(), 15)
    assert balances(agent, "B11000001") == before


def test_a_lost_or_expired_card_at_1101_is_refused_with_the_rules_codes(
    pos: Pos, agent: Agent
) -> None:
    assert agent.world is not None
    lost = agent.world.card_owner("B11000007")[0].psn_no
    expired = agent.world.card_owner("B11000008")[0].psn_no
    status, body = pos.sale("CARD-1", "B11000007", lost, COLD)
    assert (status, body["code"]) == (422, "card_reported_lost")
    status, body = pos.sale("CARD-2", "B11000008", expired, COLD)
    assert (status, body["code"]) == (422, "card_expired")
    assert [infno for infno, _, _ in _calls(agent)].count("2102") == 0


def test_a_manager_reversal_is_a_2103_with_negative_amounts_journaled(
    pos: Pos, agent: Agent
) -> None:
    before = balances(agent, "B11000001")
    status, body = pos.sale("REV-1", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    status, rev = pos.call("POST", "/v1/sales/REV-1/reversal", {"reason": "退货"}, role="manager")
    assert status == 200 and rev["status"] == "reversed", rev
    assert balances(agent, "B11000001") == before
    assert [infno for infno, _, _ in _calls(agent)][-1] == "2103"
    assert _settlements(agent, "sale") == [(body["msgid"], "reversed")]
