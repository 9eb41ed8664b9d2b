"""Every sale scenario end to end: HTTP -> agent -> pyserial on the simulator's line ->
the ledger, through both backends: our own ledger API and the national platform's
interface (where the family cascade runs centrally: the answer then gives the family
share, ``mutual_aid``, without naming each payer)."""

from __future__ import annotations

import threading
import time

import pytest

from pos_plugin.agent import Agent
from pos_plugin.rules.identity import mask_id_number

from .conftest import (
    LI_NA,
    WANG_FANG,
    WANG_JIANGUO,
    XIAOMING,
    ZHANG_WEI,
    Pos,
    balances,
    item,
    on_nhsa,
)

pytestmark = pytest.mark.parametrize("ledger_kind", ["own", "nhsa"], indirect=True)

COLD = [item("6901", "A", 2, 1850)]


def family_paid(agent: Agent, body: dict[str, object], expected: list[tuple[str, str, int]]) -> None:
    """The family share as the backend reports it: each payer on our own ledger; the
    total only (``mutual_aid``) on the national platform, which does not name them."""
    assert body["mutual_aid"] == sum(amount for _, _, amount in expected)
    family = body["family"]
    assert isinstance(family, list)
    if on_nhsa(agent):
        assert family == []
    else:
        assert [(f["name"], f["relation"], f["amount"]) for f in family] == expected


def test_own_card_settles_from_the_personal_account(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    status, body = pos.sale("R1", "B11000001", ZHANG_WEI, COLD)
    assert status == 200, body
    assert body["status"] == "settled"
    assert (body["total"], body["personal_account"], body["cash"]) == (3700, 3700, 0)
    assert body["family"] == []
    assert len(body["msgid"]) == 30 and body["msgid"].startswith("H11010500001")
    after = balances(agent, "B11000001")
    assert after[ZHANG_WEI] == before[ZHANG_WEI] - 3700
    row = agent.service.journal.get("R1")
    assert row is not None and row.state == "settled" and row.msgid == body["msgid"]
    assert row.personal_account == 3700 and row.cash == 0
    assert row.patient_id_masked == "110105********0319"
    assert any("¥37.00" in line for line in body["receipt"])
    # The POS that lost the answer gets the same one.
    status, again = pos.call("GET", "/v1/sales/R1")
    assert status == 200 and again == body


def test_someone_elses_card_is_refused_and_nothing_moves(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000002")
    status, body = pos.sale("R2", "B11000002", ZHANG_WEI, COLD)
    assert status == 422
    assert (body["status"], body["code"]) == ("refused", "card_not_patients_own")
    assert "patient's own" in body["message"]
    assert balances(agent, "B11000002") == before
    row = agent.service.journal.get("R2")
    assert row is not None and row.state == "refused" and row.msgid is None


def test_proxy_with_both_documents_settles_and_keeps_masked_evidence(
    pos: Pos, agent: Agent
) -> None:
    proxy = {"role": "proxy", "id_document": pos.doc(LI_NA)}
    status, body = pos.sale("R3", "B11000001", ZHANG_WEI, COLD, buyer=proxy)
    assert status == 200 and body["status"] == "settled"
    row = agent.service.journal.get("R3")
    assert row is not None and row.proxy and row.evidence is not None
    assert row.evidence["buyer"]["number_masked"] == "110101********0262"
    assert row.evidence["patient"]["number_masked"] == "110105********0319"
    assert len(row.evidence["buyer"]["number_hmac"]) == 64


def test_proxy_missing_the_buyers_document_is_refused(pos: Pos, agent: Agent) -> None:
    status, body = pos.sale("R4", "B11000001", ZHANG_WEI, COLD, buyer={"role": "proxy"})
    assert status == 422 and body["code"] == "proxy_evidence_missing"


def test_cascade_over_two_family_payers_with_cash_rest(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000003")
    assert (before[ZHANG_WEI], before[WANG_FANG]) == (20000, 15000)
    basket = [item("8801", "A", 10, 4500), item("7702", "none", 1, 2500)]
    status, body = pos.sale("R5", "B11000003", XIAOMING, basket)
    assert status == 200, body
    assert body["personal_account"] == 0  # residents' insurance: no own account
    family_paid(agent, body, [("张*", "parent", 20000), ("王*", "parent", 15000)])
    assert body["cash"] == 45000 - 35000 + 2500
    assert body["total"] == 47500 and body["account_payable"] == 45000
    after = balances(agent, "B11000003")
    assert (after[ZHANG_WEI], after[WANG_FANG]) == (0, 0)


def test_spouse_parent_and_cross_province_payer_are_skipped(pos: Pos, agent: Agent) -> None:
    status, body = pos.sale("R6", "B11000001", ZHANG_WEI, [item("8802", "B", 10, 5000)])
    assert status == 200, body
    assert body["personal_account"] == 20000
    family_paid(agent, body, [("王*", "spouse", 15000)])
    if not on_nhsa(agent):  # the agent's own plan names who could not pay, and why
        assert [(s["relation"], s["reason_code"]) for s in body["skipped"]] == [
            ("spouse_parent", "spouse_parent_not_close_relative"),
            ("parent", "cross_province"),
        ]
    assert body["cash"] == 50000 - 35000
    assert balances(agent, "B11000001")[WANG_JIANGUO] == 50000  # untouched


def test_wrong_pin_then_right_settles(pos: Pos, agent: Agent) -> None:
    status, body = pos.sale("R7", "B11000002", WANG_FANG, COLD, pin=["wrong", "correct"])
    assert status == 200 and body["status"] == "settled"


def test_wrong_pin_twice_is_refused_with_tries_left(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000002")
    status, body = pos.sale("R8", "B11000002", WANG_FANG, COLD, pin=["wrong", "wrong"])
    assert status == 422 and body["code"] == "pin_wrong"
    assert "1 tries left" in body["message"]
    assert balances(agent, "B11000002") == before


def test_blocked_pin_is_refused(pos: Pos) -> None:
    status, body = pos.sale("R9", "B11000002", WANG_FANG, COLD, pin="blocked")
    assert status == 422 and body["code"] == "pin_blocked"


def test_lost_and_expired_cards_are_refused(pos: Pos, agent: Agent) -> None:
    assert agent.world is not None
    lost = agent.world.card_owner("B11000007")[0].psn_no
    expired = agent.world.card_owner("B11000008")[0].psn_no
    status, body = pos.sale("R10", "B11000007", lost, COLD)
    assert (status, body["code"]) == (422, "card_reported_lost")
    status, body = pos.sale("R11", "B11000008", expired, COLD)
    assert (status, body["code"]) == (422, "card_expired")


def test_prescription_and_ephedrine_rules_stop_the_sale_before_the_card(pos: Pos) -> None:
    status, body = pos.sale("R12", None, ZHANG_WEI, [item("rx", "A", 1, 100, prescription=True)])
    assert (status, body["code"]) == (422, "prescription_required")
    eph = [item("e", "B", 3, 100, ephedrine_compound=True)]
    status, body = pos.sale("R13", None, ZHANG_WEI, eph)
    assert (status, body["code"]) == (422, "ephedrine_limit")
    status, body = pos.call(
        "POST",
        "/v1/sales",
        {"sale_ref": "R14", "items": [item("e", "B", 1, 100, ephedrine_compound=True)]},
    )
    assert (status, body["code"]) == (422, "ephedrine_id_required")


def test_invalid_patient_id_is_refused(pos: Pos) -> None:
    bad = {"doc_type": "resident_id", "number": "110105198005120318"}
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "R15", "items": COLD, "patient": bad})
    assert (status, body["code"]) == (422, "invalid_id_number")
    assert "check character" in body["message"]


def test_same_sale_ref_is_idempotent_and_a_different_body_is_refused(
    pos: Pos, agent: Agent
) -> None:
    status, first = pos.sale("R16", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    before = balances(agent, "B11000001")
    status, again = pos.sale("R16", None, ZHANG_WEI, COLD)
    assert status == 200 and again["msgid"] == first["msgid"]
    assert balances(agent, "B11000001") == before  # not charged twice
    status, body = pos.sale("R16", None, ZHANG_WEI, [item("x", "A", 1, 1)])
    assert (status, body["code"]) == (409, "sale_ref_reused")


def test_cancel_while_waiting_for_the_card(pos: Pos, agent: Agent) -> None:
    answers: list[tuple[int, dict[str, object]]] = []
    t = threading.Thread(target=lambda: answers.append(pos.sale("R17", None, ZHANG_WEI, COLD)))
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, body = pos.call("POST", "/v1/sales/R17/cancel")
        if status == 200:
            break
        time.sleep(0.05)
    t.join(10)
    assert answers, "the sale did not return after cancel"
    status, body = answers[0]
    assert (status, body["code"]) == (409, "cancelled")
    row = agent.service.journal.get("R17")
    assert row is not None and row.state == "failed" and row.msgid is None


def test_no_card_times_out_with_a_clear_code(pos: Pos) -> None:
    status, body = pos.sale("R18", None, ZHANG_WEI, COLD)
    assert (status, body["code"]) == (504, "device_timeout")


def test_balance_inquiry(pos: Pos) -> None:
    pos.present("B11000002")
    try:
        status, body = pos.call("POST", "/v1/balance-inquiries", {"credential": "card"})
    finally:
        pos.remove()
    assert status == 200
    assert body == {
        "holder": "王*",
        "has_personal_account": True,
        "balance": 15000,
        "balance_yuan": "¥150.00",
    }


def test_reversal_by_manager_restores_the_balance(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    status, _ = pos.sale("R19", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    status, body = pos.call("POST", "/v1/sales/R19/reversal", {"reason": "returned"})
    assert (status, body["code"]) == (403, "forbidden")
    status, body = pos.call(
        "POST", "/v1/sales/R19/reversal", {"reason": "returned"}, role="manager"
    )
    assert status == 200 and body["status"] == "reversed"
    assert balances(agent, "B11000001") == before
    status, body = pos.call("POST", "/v1/sales/R19/reversal", {}, role="manager")
    assert status == 200 and body["status"] == "reversed"  # repeat is harmless
    assert balances(agent, "B11000001") == before
    row = agent.service.journal.get("R19")
    assert row is not None and row.state == "reversed" and row.reversal_id


def test_api_errors_are_json_with_codes(pos: Pos) -> None:
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "R20", "items": []})
    assert status == 422 and body["code"] == "invalid_request" and body["field"] == "items"
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "R21", "items": COLD}, role="nope")
    assert (status, body["code"]) == (401, "unauthorised")
    status, body = pos.call("GET", "/v1/sales/none")
    assert (status, body["code"]) == (404, "not_found")
    status, body = pos.call(
        "POST", "/v1/sales", {"sale_ref": "R22", "items": [item("a", "A", 1, 1.5)]}
    )
    assert status == 422 and body["field"].endswith("unit_price")  # no float money


def test_nothing_unmasked_in_answers_or_journal(pos: Pos, agent: Agent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proxy = {"role": "proxy", "id_document": pos.doc(LI_NA)}
    _, body = pos.sale("R23", "B11000001", ZHANG_WEI, COLD, buyer=proxy)
    assert agent.world is not None
    text = str(body)
    for p in agent.world.persons:
        assert p.id_number not in text
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("journal.sqlite3*"))
    for p in agent.world.persons:
        assert p.id_number.encode() not in raw, mask_id_number(p.id_number)
    assert agent.service.journal.verify().ok


def test_electronic_voucher_sale_needs_no_pin(pos: Pos, agent: Agent) -> None:
    status, body = pos.call("POST", "/v1/simulator/present", {"evoucher_token": "EV-ZHANGWEI-0001"})
    assert status == 200
    status, body = pos.call(
        "POST",
        "/v1/sales",
        {"sale_ref": "EV1", "items": COLD, "patient": pos.doc(ZHANG_WEI), "credential": "evoucher"},
    )
    assert status == 200 and body["status"] == "settled", body
    assert body["personal_account"] == 3700


def test_someone_elses_voucher_is_refused(pos: Pos) -> None:
    pos.call("POST", "/v1/simulator/present", {"evoucher_token": "EV-LINA-0006"})
    status, body = pos.call(
        "POST",
        "/v1/sales",
        {"sale_ref": "EV2", "items": COLD, "patient": pos.doc(ZHANG_WEI), "credential": "evoucher"},
    )
    assert (status, body["code"]) == (422, "card_not_patients_own")


def test_reader_unplugged_gives_device_unavailable_and_charges_nothing(
    pos: Pos, agent: Agent
) -> None:
    before = balances(agent, "B11000001")
    assert agent.simulator is not None
    agent.simulator.unplug()
    try:
        status, body = pos.sale("UNPLUG-1", None, ZHANG_WEI, COLD)
    finally:
        agent.simulator.replug()
    assert (status, body["code"], body["status"]) == (503, "device_unavailable", "failed")
    assert "cable" in body["message"] or "reader" in body["message"]
    assert balances(agent, "B11000001") == before
    # Re-plugged: the driver reconnects by itself and the next sale goes through.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = pos.sale(
            f"UNPLUG-{deadline - time.monotonic():.3f}", "B11000001", ZHANG_WEI, COLD
        )
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200 and body["status"] == "settled", body
    status, health = pos.call("GET", "/v1/health")
    assert status == 200 and "terminal" in health["devices"]


def test_a_closed_day_refuses_new_sales_but_answers_old_ones(pos: Pos, agent: Agent) -> None:
    from pos_plugin.reconcile.cli import close_day_main

    status, first = pos.sale("BEFORE-CLOSE", "B11000001", ZHANG_WEI, COLD)
    assert status == 200
    assert agent.world is not None
    ledger = agent.service.ledger
    day = agent.service.settings.today().isoformat()
    if on_nhsa(agent):  # the day by 3201 and the 3202 file exchange
        where = ["--ledger-kind", "nhsa", "--ledger-url", ledger.transport.url]  # type: ignore[attr-defined]
    else:
        where = ["--ledger-url", ledger.base_url, "--token", agent.world.pharmacies[0].api_token]  # type: ignore[attr-defined]
    # Today, right after a sale: the shift is still selling (and on the national backend
    # the sale's 3505 may be owed), so the close is forced with a reason.
    force = ["--force", "--reason", "test: closing right after the last sale"]
    code = close_day_main(["--date", day, "--journal", agent.service.journal.path, *where, *force])
    assert code == 0
    before = balances(agent, "B11000001")
    status, body = pos.sale("AFTER-CLOSE", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["code"]) == (409, "day_closed")
    assert balances(agent, "B11000001") == before
    assert agent.service.journal.get("AFTER-CLOSE") is None
    status, again = pos.call("GET", "/v1/sales/BEFORE-CLOSE")
    assert status == 200 and again["msgid"] == first["msgid"]
