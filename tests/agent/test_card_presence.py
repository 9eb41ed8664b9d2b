"""A card or voucher pays only the sale it was presented to (issue 11, findings 3 and 5).

Real HTTP to the agent, real pyserial on the simulator's pty, the real sandbox
ledger. The simulated customer of ``present_card`` / ``scan_voucher`` acts when
the pad asks (at the next WAIT_CREDENTIAL); ``at_once=True`` puts the card in
the reader (or the code in the scanner) right now, which is how a card left by
the previous customer, or a stray scan, looks to the next sale.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import requests

from pos_plugin.agent import Agent
from tests.waiting import until

from .conftest import LI_NA, ZHANG_WEI, Pos, balances, item

COLD = [item("6901", "A", 2, 1850)]  # 37.00, all payable from the account
TAKE_CARD = "请取卡"
STALE_PROMPT = ("请取出卡片 重新插卡", "Remove card, insert again")


def sale_body(pos: Pos, ref: str, patient: str, credential: str = "card") -> dict[str, Any]:
    return {
        "sale_ref": ref,
        "items": COLD,
        "patient": pos.doc(patient),
        "buyer": {"role": "self"},
        "credential": credential,
    }


def health(agent: Agent) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(agent.url + "/v1/health", timeout=10).json()
    return body


def settle_and_leave_card(pos: Pos, agent: Agent, ref: str = "P1") -> dict[str, int]:
    """Li Na pays with her own card and walks away without taking it."""
    pos.present("B11000006")
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, ref, LI_NA))
    assert (status, body["status"]) == (200, "settled"), body
    assert agent.simulator is not None
    assert agent.simulator.firmware.chip is not None  # still in the reader
    return balances(agent, "B11000006")


def test_card_left_in_reader_does_not_pay_the_next_sale(pos: Pos, agent: Agent) -> None:
    after_first = settle_and_leave_card(pos, agent)
    agent.service.settings.card_timeout = 1.5
    sim = agent.simulator
    assert sim is not None
    reads = sim.event_count("read_card")
    t0 = time.monotonic()
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, "P2", LI_NA))
    assert (status, body["code"]) == (409, "card_not_presented"), body
    assert "重新插卡" in body["message"] and "insert it again" in body["message"]
    assert time.monotonic() - t0 >= 1.4  # it waited for a re-insertion, then gave up
    assert balances(agent, "B11000006") == after_first  # nothing charged
    row = agent.service.journal.get("P2")
    assert row is not None and (row.state, row.refusal_code) == ("failed", "card_not_presented")
    assert row.msgid is None  # no settlement was ever sent
    assert sim.event_count("read_card") == reads  # the old card's files were not even read
    assert sim.display == STALE_PROMPT


def test_card_left_in_reader_does_not_answer_a_balance_inquiry(pos: Pos, agent: Agent) -> None:
    settle_and_leave_card(pos, agent)
    agent.service.settings.card_timeout = 1.0
    status, body = pos.call("POST", "/v1/balance-inquiries", {"credential": "card"})
    assert (status, body["code"]) == (409, "card_not_presented"), body
    assert "balance" not in body


def test_remove_and_reinsert_pays_the_waiting_sale(pos: Pos, agent: Agent) -> None:
    after_first = settle_and_leave_card(pos, agent)
    sim = agent.simulator
    assert sim is not None
    answer: list[tuple[int, dict[str, Any]]] = []
    th = threading.Thread(
        target=lambda: answer.append(pos.call("POST", "/v1/sales", sale_body(pos, "P2", LI_NA)))
    )
    th.start()
    try:
        assert until(lambda: sim.display == STALE_PROMPT, 5), sim.display
        assert not answer  # the sale waits: the stale card did not pay it
        sim.remove_card()
        sim.present_card("B11000006")
    finally:
        th.join(timeout=30)
    status, body = answer[0]
    assert (status, body["status"]) == (200, "settled"), body
    assert balances(agent, "B11000006")[LI_NA] == after_first[LI_NA] - 3700  # charged once


def test_voucher_scanned_while_nothing_waits_is_discarded(pos: Pos, agent: Agent) -> None:
    sim = agent.simulator
    assert sim is not None
    before = balances(agent, "B11000001")
    sim.scan_voucher("EV-ZHANGWEI-0001", at_once=True)  # scanned with no sale waiting
    time.sleep(0.05)
    agent.service.settings.card_timeout = 1.0
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, "V1", ZHANG_WEI, "evoucher"))
    assert (status, body["code"]) == (504, "device_timeout"), body
    assert balances(agent, "B11000001") == before
    row = agent.service.journal.get("V1")
    assert row is not None and (row.state, row.refusal_code) == ("failed", "device_timeout")
    # ... and it is gone: it does not pay the sale after that either.
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, "V2", ZHANG_WEI, "evoucher"))
    assert (status, body["code"]) == (504, "device_timeout"), body
    assert balances(agent, "B11000001") == before


def test_pad_asks_to_take_the_card_and_the_wait_for_removal_is_bounded(
    pos: Pos, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    sim = agent.simulator
    assert sim is not None
    agent.service.settings.card_removal_timeout = 0.6
    removal_waits = sim.event_count("wait_removed")
    with caplog.at_level(logging.WARNING, logger="pos_plugin.sale.service"):
        settle_and_leave_card(pos, agent)
        # The outcome frame follows the POS's answer (it does not hold the answer up).
        assert until(
            lambda: TAKE_CARD in sim.display[0] and "take your card" in sim.display[1].lower(), 5
        ), sim.display
        assert sim.wait_for("wait_removed", 5, after=removal_waits)  # the agent watches the slot
        assert until(lambda: health(agent)["card_left_in_reader"] is True, 5)
    assert any("not taken" in r.getMessage() for r in caplog.records)
    # The notice clears once the card is gone and the next customer's card is read.
    sim.remove_card()
    status, body = pos.sale("P2", "B11000006", LI_NA, COLD)
    assert (status, body["status"]) == (200, "settled"), body
    assert until(lambda: health(agent)["card_left_in_reader"] is False, 5)


def test_the_outcome_frame_follows_the_pos_answer(
    pos: Pos, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cashier gets the answer before any cosmetic frame goes to the pad (issue 17):
    the API says when the answer is sent, and only then is "paid, take your card" shown;
    a caller that never says so has the frame held back, then shown anyway."""
    from pos_plugin.sale.models import SaleRequest
    from pos_plugin.sale.service import ANSWER_FIRST_WAIT

    sim, svc = agent.simulator, agent.service
    assert sim is not None
    order: list[str] = []
    answer_sent, show = svc.answer_sent, svc.devices.show
    monkeypatch.setattr(svc, "answer_sent", lambda ref: (order.append("answered"), answer_sent(ref)))
    monkeypatch.setattr(
        svc.devices, "show", lambda *lines: (order.append("show " + lines[0]), show(*lines))
    )
    status, body = pos.sale("O1", "B11000006", LI_NA, COLD)
    assert (status, body["status"]) == (200, "settled"), body
    assert until(lambda: "show 交易成功 请取卡" in order, 5), order
    assert order == ["answered", "show 交易成功 请取卡"]

    order.clear()
    sim.present_card("B11000006", "correct")
    req = SaleRequest.model_validate(sale_body(pos, "O2", LI_NA))
    assert svc.sell(req, answer_first=True)[1].status == "settled"
    time.sleep(ANSWER_FIRST_WAIT / 4)
    assert order == []  # held back: nobody said the POS has it
    assert until(lambda: order == ["show 交易成功 请取卡"], ANSWER_FIRST_WAIT + 5), order
    sim.remove_card()


def test_pad_asks_to_take_the_card_after_a_failed_sale_too(pos: Pos, agent: Agent) -> None:
    sim = agent.simulator
    assert sim is not None
    pos.present("B11000002", ["wrong", "wrong"])
    removal_waits = sim.event_count("wait_removed")
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, "F1", "11000000000000000002"))
    assert (status, body["code"]) == (422, "pin_wrong"), body
    # Like the outcome of a settled sale, the frame follows the POS's answer.
    take = ("交易未完成 请取卡", "Please take your card")
    assert until(lambda: sim.display == take, 5), sim.display
    assert sim.wait_for("wait_removed", 5, after=removal_waits)
    pos.remove()


def test_balance_inquiry_shows_the_balance_and_asks_to_take_the_card(
    pos: Pos, agent: Agent
) -> None:
    sim = agent.simulator
    assert sim is not None
    displays = sim.event_count("display")
    pos.present("B11000006")
    status, body = pos.call("POST", "/v1/balance-inquiries", {"credential": "card"})
    assert status == 200 and body["balance"] == 8000, body
    assert "¥80.00" in sim.display[0] + sim.display[1] and TAKE_CARD in sim.display[0]
    # Only the balance-and-take-card frame: the pad prompts for the PIN itself, and
    # there is no separate take-card frame
    assert sim.event_count("display") - displays == 1
    pos.remove()


def test_card_sale_refuses_a_scanned_voucher(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    pos.call("POST", "/v1/simulator/present", {"evoucher_token": "EV-ZHANGWEI-0001"})
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, "C1", ZHANG_WEI, "card"))
    assert (status, body["code"]) == (422, "credential_mismatch"), body
    assert "社保卡" in body["message"] and "card" in body["message"]
    assert balances(agent, "B11000001") == before
    row = agent.service.journal.get("C1")
    assert row is not None and (row.state, row.refusal_code) == ("refused", "credential_mismatch")


def test_voucher_sale_refuses_an_inserted_card(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    sim = agent.simulator
    assert sim is not None
    pins = sim.event_count("pin_entry")
    pos.present("B11000001")
    status, body = pos.call("POST", "/v1/sales", sale_body(pos, "C2", ZHANG_WEI, "evoucher"))
    pos.remove()
    assert (status, body["code"]) == (422, "credential_mismatch"), body
    assert "电子凭证" in body["message"] and "voucher" in body["message"]
    assert sim.event_count("pin_entry") == pins  # refused before the customer types a PIN
    assert balances(agent, "B11000001") == before
    row = agent.service.journal.get("C2")
    assert row is not None and (row.state, row.refusal_code) == ("refused", "credential_mismatch")


def test_card_put_in_before_the_inquiry_began_is_not_read(pos: Pos, agent: Agent) -> None:
    sim = agent.simulator
    assert sim is not None
    status, _ = pos.call(
        "POST", "/v1/simulator/present", {"card_no": "B11000006", "at_once": True}
    )
    assert status == 200 and sim.firmware.chip is not None
    time.sleep(0.05)
    agent.service.settings.card_timeout = 0.8
    status, body = pos.call("POST", "/v1/balance-inquiries", {"credential": "card"})
    assert (status, body["code"]) == (409, "card_not_presented"), body
    assert sim.event_count("read_card") == 0 and sim.event_count("pin_entry") == 0


def test_voucher_balance_inquiry_refuses_a_card(pos: Pos, agent: Agent) -> None:
    pos.present("B11000006")
    status, body = pos.call("POST", "/v1/balance-inquiries", {"credential": "evoucher"})
    pos.remove()
    assert (status, body["code"]) == (422, "credential_mismatch"), body
    assert "balance" not in body
