"""追溯码 scanned at the counter, end to end: the POS flags lines ``scan_trace``, the agent
asks the device's scanner for one code per pack before the card, checks them as it checks
codes the POS sends, and the national platform's 2102 carries them.

Real parts: the POS API over HTTP, the agent on the simulator through pyserial (pty and
socket for the sale that settles, the socket for the failures), the reference platform
(sandbox-nhsa) over HTTP on 127.0.0.1, the journal file. The packs come off the example
world's shelf (catalogue ``trace_codes``)."""

from __future__ import annotations

from typing import Any

import pytest

from pos_plugin.agent import Agent
from tests.waiting import until

from .conftest import ZHANG_WEI, Pos, balances, item

pytestmark = pytest.mark.parametrize("ledger_kind", ["nhsa"], indirect=True)

AMOX, CEF = "XA01AAA0001", "XB01BBB0001"  # the A and B lines' catalogue codes
ONE_LINE = [item("6901", "A", 2, 1850, scan_trace=True)]
socket_only = pytest.mark.parametrize("sim_transport", ["socket"])


@pytest.fixture
def sent(agent: Agent) -> list[dict[str, Any]]:
    """Every envelope the till sent to the platform, as it left (over real HTTP)."""
    envelopes: list[dict[str, Any]] = []
    transport = agent.service.ledger.transport  # type: ignore[attr-defined]
    post = transport.post

    def spy(infno: str, envelope: dict[str, Any], **kw: Any) -> Any:
        envelopes.append(envelope)
        return post(infno, envelope, **kw)

    transport.post = spy
    return envelopes


def _2102_codes(sent: list[dict[str, Any]]) -> list[list[str]]:
    (env,) = [e for e in sent if e["infno"] == "2102"]
    key = "durg_trac_info"  # the default spelling (NhsaSettings.trace_info_key)
    return [[t["drug_trac_codg"] for t in row.get(key, [])] for row in env["input"]["drugdetail"]]


def _card_asked(agent: Agent) -> int:
    assert agent.simulator is not None
    return int(agent.simulator.event_count("wait_credential"))


def test_scanned_packs_settle_and_reach_2102_journal_and_3505(
    pos: Pos, agent: Agent, sent: list[dict[str, Any]]
) -> None:
    sim = agent.simulator
    amox, cef = sim.packs_left(AMOX), sim.packs_left(CEF)
    lines = [item("6901", "A", 2, 1850, scan_trace=True),
             item("6902", "B", 3, 500, scan_trace=True, split_pack=True)]  # fmt: skip
    status, body = pos.sale("SCAN-1", "B11000001", ZHANG_WEI, lines)
    assert status == 200 and body["status"] == "settled", body
    # one code per pack: 2 packs of the first line, the one opened pack of the split line
    assert _2102_codes(sent) == [amox[:2], cef[:1]]
    assert sim.packs_left(AMOX) == amox[2:] and sim.packs_left(CEF) == cef[1:]
    journal = agent.service.journal
    assert journal.trace_codes_sold([*amox[:2], cef[0], amox[2]]) == {*amox[:2], cef[0]}
    row = journal.get("SCAN-1")
    assert row is not None and row.plan is not None
    assert [ln["trace_codes"] for ln in row.plan["lines"]] == [amox[:2], cef[:1]]
    # the platform's own record of the sale's upload (3505) carries the same packs
    assert _until_uploaded(agent, "SCAN-1") == [amox[:2], cef[:1]]


def _until_uploaded(agent: Agent, ref: str) -> list[list[str]]:
    import json
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        agent.service.send_owed_uploads()
        with agent.ledger_sandbox.store.read() as tx:
            rows = tx.all("SELECT lines FROM sales_uploads WHERE rtal_docno = ?", ref)
        if rows:
            return [ln["trace_codes"] for ln in json.loads(rows[0][0])]
        time.sleep(0.2)
    raise AssertionError("no 3505 arrived")


@socket_only
def test_a_misread_and_a_pack_scanned_twice_are_asked_again(
    pos: Pos, agent: Agent, sent: list[dict[str, Any]]
) -> None:
    sim = agent.simulator
    amox = sim.packs_left(AMOX)
    sim.script_scans(["garbled", "pack", "repeat", "pack"])
    status, body = pos.sale("SCAN-2", "B11000001", ZHANG_WEI, ONE_LINE)
    assert status == 200 and body["status"] == "settled", body
    assert _2102_codes(sent) == [amox[:2]]  # the misread and the second scan were not taken
    assert sim.event_count("trace_garbled") == 1 and sim.event_count("trace_repeat") == 1


@socket_only
def test_the_same_pack_again_and_again_is_refused_naming_the_line(
    pos: Pos, agent: Agent, sent: list[dict[str, Any]]
) -> None:
    before = balances(agent, "B11000001")
    agent.simulator.script_scans(["pack", "repeat", "repeat", "repeat"])
    status, body = pos.sale("SCAN-3", "B11000001", ZHANG_WEI, ONE_LINE)
    assert (status, body["code"]) == (422, "trace_code_repeated"), body
    assert "line 1 药品6901 (6901)" in body["message"] and "pack 2" in body["message"]
    assert _card_asked(agent) == 0 and not [e for e in sent if e["infno"] == "2102"]
    assert balances(agent, "B11000001") == before
    row = agent.service.journal.get("SCAN-3")
    assert row is not None and row.state == "refused"
    # the POS asks the same sale again: the first answer, nothing scanned again
    again = pos.call("POST", "/v1/sales", {
        "sale_ref": "SCAN-3", "items": ONE_LINE, "patient": pos.doc(ZHANG_WEI),
        "buyer": {"role": "self"}, "credential": "card"})  # fmt: skip
    assert again[1]["code"] == "trace_code_repeated", again
    assert agent.simulator.event_count("trace_pack") == 1  # no second round of scans


@socket_only
def test_a_pack_the_store_sold_before_is_refused_before_the_card(
    pos: Pos, agent: Agent
) -> None:
    sim = agent.simulator
    first = sim.packs_left(AMOX)[0]
    agent.service.journal.claim_trace_codes("EARLIER", "M0", [first])  # 回流: back on the shelf
    status, body = pos.sale("SCAN-4", "B11000001", ZHANG_WEI, ONE_LINE)
    assert (status, body["code"]) == (422, "trace_code_sold_before"), body
    assert first in body["message"] and "line 1" in body["message"]
    assert _card_asked(agent) == 0


@socket_only
def test_cancel_on_the_pad_cancels_the_sale_before_the_card(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    first = agent.simulator.packs_left(AMOX)[0]
    agent.simulator.script_scans(["pack", "cancel"])
    status, body = pos.sale("SCAN-5", "B11000001", ZHANG_WEI, ONE_LINE)
    assert (status, body["code"]) == (409, "cancelled"), body
    assert _card_asked(agent) == 0 and balances(agent, "B11000001") == before
    assert first not in agent.simulator.packs_left(AMOX)  # it was scanned...
    assert agent.service.journal.trace_codes_sold([first]) == set()  # ...but not sold
    row = agent.service.journal.get("SCAN-5")
    assert row is not None and row.state == "failed"


@socket_only
def test_nothing_scanned_times_out_naming_the_line(pos: Pos, agent: Agent) -> None:
    agent.simulator.script_scans(["none"])
    status, body = pos.sale("SCAN-6", "B11000001", ZHANG_WEI, ONE_LINE)
    assert (status, body["code"]) == (504, "device_timeout"), body
    assert "line 1" in body["message"]
    assert _card_asked(agent) == 0


@socket_only
def test_codes_from_the_pos_and_scanned_codes_are_one_basket(
    pos: Pos, agent: Agent, sent: list[dict[str, Any]]
) -> None:
    """A line with POS-sent codes and a scanned line: a scan of a pack the POS already
    sent is a repeat (asked again), and both lines' codes reach 2102."""
    amox = agent.simulator.packs_left(AMOX)
    lines = [item("6901", "A", 1, 1850, trace_codes=[amox[0]]),
             item("6903", "A", 1, 1850, scan_trace=True)]  # fmt: skip
    status, body = pos.sale("SCAN-7", "B11000001", ZHANG_WEI, lines)
    assert status == 200 and body["status"] == "settled", body
    assert _2102_codes(sent) == [amox[:1], amox[1:2]]


@socket_only
def test_codes_and_scan_trace_on_one_line_is_an_invalid_request(pos: Pos, agent: Agent) -> None:
    line = item("6901", "A", 1, 1850, scan_trace=True, trace_codes=["80100000000000000001"])
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "SCAN-8", "items": [line]})
    assert (status, body["code"]) == (422, "invalid_request"), body
    assert "not both" in body["message"] and body["field"] == "items.0.scan_trace"
    assert pos.call("GET", "/v1/sales/SCAN-8")[0] == 404  # nothing journaled


@socket_only
def test_the_pos_sees_the_scanning_stage_and_can_cancel_it(pos: Pos, agent: Agent) -> None:
    import threading

    agent.simulator.script_scans(["none"])  # the cashier has not scanned yet
    answer: dict[str, Any] = {}
    body = {"sale_ref": "SCAN-9", "items": ONE_LINE, "patient": pos.doc(ZHANG_WEI)}
    worker = threading.Thread(target=lambda: answer.update(r=Pos(agent).call(
        "POST", "/v1/sales", body)))  # fmt: skip
    worker.start()
    import time

    deadline = time.monotonic() + 10
    seen: dict[str, Any] = {}
    while seen.get("stage") is None and time.monotonic() < deadline:  # 404 until it starts
        seen = pos.call("GET", "/v1/sales/SCAN-9?wait=1")[1]
    assert seen["stage"] == "scanning_trace_codes", seen
    assert pos.call("POST", "/v1/sales/SCAN-9/cancel")[0] == 200
    worker.join(10)
    assert answer["r"][0] == 409 and answer["r"][1]["code"] == "cancelled", answer
    assert _card_asked(agent) == 0


@socket_only
def test_a_sale_the_rules_refuse_scans_nothing(pos: Pos, agent: Agent) -> None:
    """A patient document that is not valid refuses the sale before the cashier is asked
    to scan a single pack."""
    doc = pos.doc(ZHANG_WEI) | {"number": "110105198005120310"}  # wrong check character
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "SCAN-10", "items": ONE_LINE,
                                                  "patient": doc})  # fmt: skip
    assert (status, body["code"]) == (422, "invalid_id_number"), body
    assert agent.simulator.event_count("scan_trace") == 0


@socket_only
@pytest.mark.parametrize("refusal", ["cancel on the pad", "someone else's card"])
def test_the_packs_of_a_refused_sale_are_sold_by_the_next(
    pos: Pos, agent: Agent, sent: list[dict[str, Any]], refusal: str
) -> None:
    """A sale refused once its packs were scanned, at the scan or after the card: the pad
    says the packs go back, the cashier puts them back, and the next sale scans and sells
    the same packs (the shelf does not run dry)."""
    from pos_plugin.sale.service import NOT_SOLD_AFTER_SCAN, TAKE_CARD_NOT_SOLD

    sim = agent.simulator
    amox = sim.packs_left(AMOX)
    if refusal == "cancel on the pad":
        sim.script_scans(["pack", "cancel"])
        status, body = pos.sale("SCAN-11", None, ZHANG_WEI, ONE_LINE)
        assert (status, body["code"]) == (409, "cancelled"), body
        said = NOT_SOLD_AFTER_SCAN
    else:
        status, body = pos.sale("SCAN-11", "B11000002", ZHANG_WEI, ONE_LINE)
        assert (status, body["code"]) == (422, "card_not_patients_own"), body
        said = TAKE_CARD_NOT_SOLD
    assert until(lambda: sim.display == said, 5), sim.display
    assert agent.service.journal.trace_codes_sold(amox) == set()
    status, body = pos.sale("SCAN-12", "B11000001", ZHANG_WEI, ONE_LINE)
    assert status == 200 and body["status"] == "settled", body
    assert _2102_codes(sent) == [amox[:2]]
    assert sim.packs_left(AMOX) == amox[2:]
    assert agent.service.journal.trace_codes_sold(amox) == set(amox[:2])
