"""Exactly once where real networks and crashes put it to the test (issue 11, findings 1,
2 and 6): a sale is "not charged" only when the ledger has promised its msgid can no
longer commit; GET and a replayed POST tell the truth in every state.

Real parts: the sandbox ledger over HTTP, the device simulator on a pty, the agent's
journal file, and a TCP proxy between agent and ledger that delays or holds requests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from pos_plugin.agent import Agent, start_simulated
from pos_plugin.journal import journal as J
from pos_plugin.journal.journal import Journal
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.ledger.own.schemas import Credential, SettlementRequest
from pos_plugin.models import Leg, LegKind
from pos_plugin.sale.models import SaleRequest
from pos_plugin.sale.service import request_hash
from pos_plugin.world import load_world
from tests.waiting import until

from .conftest import ZHANG_WEI, Pos, balances, item
from .holdproxy import HoldProxy
from .procs import free_port, start_agent_process, stop

PHARMACY = "H11010500001"
TOKEN = load_world().pharmacies[0].api_token
BASKET = [item("6901", "A", 2, 1850)]  # 37.00, all account-payable


def _proxy_client(agent: Agent, **kw: Any) -> tuple[HoldProxy, HttpLedgerClient]:
    real = agent.service.ledger
    assert isinstance(real, HttpLedgerClient)
    u = urlparse(real.base_url)
    proxy = HoldProxy(u.hostname or "127.0.0.1", u.port or 80)
    client = HttpLedgerClient(proxy.url, TOKEN, **kw)
    agent.service.ledger = client
    return proxy, real


def _settlements(client: HttpLedgerClient, msgid: str) -> list[str]:
    day = dt.date(int(msgid[12:16]), int(msgid[16:18]), int(msgid[18:20]))
    return [r.msgid for r in client.statement(PHARMACY, day).rows if r.msgid == msgid]


def test_a_slow_ledger_commit_is_never_concluded_under_the_sale(pos: Pos, agent: Agent) -> None:
    """Finding 1a: the ledger commits 3 s after the request left (inside the 10 s read
    timeout) while the recovery loop runs every 0.5 s: the loop must leave the sale alone."""
    proxy, real = _proxy_client(agent)
    proxy.delay_settlements = 3.0
    before = balances(agent, "B11000001", real)
    watcher = Pos(agent)
    states: list[str] = []
    answers: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            row = agent.service.journal.get("SLOW-1")
            if row is not None:
                states.append(row.state)
                if row.state == J.SETTLING:
                    answers.append(watcher.call("GET", "/v1/sales/SLOW-1")[1])
            time.sleep(0.1)

    t = threading.Thread(target=watch)
    t.start()
    try:
        status, body = pos.sale("SLOW-1", "B11000001", ZHANG_WEI, BASKET)
    finally:
        done.set()
        t.join()
        proxy.close()
    assert status == 200 and body["status"] == "settled", body
    assert J.SETTLING in states and J.FAILED not in states, states
    # a GET racing the commit may already see "settled"; never anything concluded under it
    assert answers and answers[0]["status"] == "in_progress", answers
    assert {a["status"] for a in answers} <= {"in_progress", "settled"}, answers
    assert balances(agent, "B11000001", real)[ZHANG_WEI] == before[ZHANG_WEI] - 3700
    assert _settlements(real, body["msgid"]) == [body["msgid"]]
    row = agent.service.journal.get("SLOW-1")
    assert row is not None and row.state == J.SETTLED and row.personal_account == 3700


posix_kill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only: SIGKILL")


@posix_kill
@pytest.mark.parametrize("lands", ["after_restart", "before_restart"])
def test_a_request_held_in_the_network_across_a_sigkill(tmp_path: Path, lands: str) -> None:
    """Finding 1b: the agent dies while its settlement request is still in the network.

    Lands after the restart: the restarted agent voids the msgid, so the late request
    is refused and nothing is ever charged: the till's "not charged" is the truth.
    Lands before: the restart finds the settlement and journals it. Either way one
    truth on both sides, and at most one settlement for the msgid.
    """
    world = load_world()
    sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
    ledger_url = sandbox.start()
    u = urlparse(ledger_url)
    proxy = HoldProxy(u.hostname or "127.0.0.1", u.port or 80)
    proxy.hold_requests = True
    direct = HttpLedgerClient(ledger_url, TOKEN)
    card = world.person(ZHANG_WEI).cards[0]
    credential = Credential.card(card.card_no, card.card_sn)
    before = direct.lookup(credential).personal_account
    work, port = tmp_path / "agent", free_port()
    url = f"http://127.0.0.1:{port}"
    proc, tokens = start_agent_process(work, proxy.url, port)
    try:
        auth = {"Authorization": f"Bearer {tokens['pos']}"}
        r = requests.post(f"{url}/v1/simulator/present", json={"card_no": card.card_no},
                          headers=auth, timeout=10)  # fmt: skip
        assert r.status_code == 200
        sale = {"sale_ref": "HELD-1", "items": BASKET, "credential": "card"}
        threading.Thread(
            target=lambda: _quietly(requests.post, f"{url}/v1/sales", json=sale, headers=auth,
                                    timeout=30),
            daemon=True,
        ).start()  # fmt: skip
        deadline = time.monotonic() + 20
        while not proxy.held and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.held, "the settlement request never left the agent"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        late: list[bytes] = []
        if lands == "before_restart":
            late = proxy.release()
        proc, tokens = start_agent_process(work, proxy.url, port)
        auth = {"Authorization": f"Bearer {tokens['pos']}"}
        if lands == "after_restart":
            late = proxy.release()
        (answer,) = late
        got = requests.get(f"{url}/v1/sales/HELD-1", headers=auth, timeout=10).json()
        msgid = got["msgid"]
        assert msgid
        after = direct.lookup(credential).personal_account
        assert before is not None and after is not None
        if lands == "after_restart":
            assert answer.startswith(b"HTTP/1.1 409") and b"msgid_voided" in answer, answer
            assert (got["status"], got["code"]) == ("failed", "not_charged"), got
            assert direct.get_settlement(msgid) is None and _settlements(direct, msgid) == []
            assert after.balance == before.balance
        else:
            assert answer.startswith(b"HTTP/1.1 201"), answer
            assert (got["status"], got["personal_account"]) == ("settled", 3700), got
            assert _settlements(direct, msgid) == [msgid]
            assert after.balance == before.balance - 3700
        # A replayed POST answers what GET says, and changes nothing.
        replay = requests.post(f"{url}/v1/sales", json=sale, headers=auth, timeout=10)
        assert replay.json() == got
        assert replay.status_code == (409 if lands == "after_restart" else 200)
    finally:
        stop(proc)
        proxy.close()
        sandbox.stop()


def _quietly(fn: Any, *args: Any, **kw: Any) -> None:
    with contextlib.suppress(requests.RequestException):  # the agent dies under it
        fn(*args, **kw)


# --------------------------------------------------------------------------- crash points


def _sale_request(ref: str) -> SaleRequest:
    return SaleRequest.model_validate({"sale_ref": ref, "items": BASKET, "credential": "card"})


def _plan(leg: Leg) -> dict[str, Any]:
    return {"total": 3700, "account_payable": 3700, "cash": 0, "cash_only": 0,
            "legs": [leg.model_dump(mode="json")], "skipped": [], "notices": []}  # fmt: skip


def _left_by_a_crash(journal: Journal, ledger: HttpLedgerClient, ref: str, point: str) -> str:
    """Journal a sale as a crash at ``point`` leaves it; commit it at the ledger where the
    request had landed. Returns the msgid ("" for a sale that had none yet)."""
    journal.begin_sale(ref, request_hash(_sale_request(ref)))
    if point == "received":
        return ""
    card = load_world().person(ZHANG_WEI).cards[0]
    leg = Leg(kind=LegKind.PERSONAL_ACCOUNT, account_id=f"PA{ZHANG_WEI}", payer_psn_no=ZHANG_WEI,
              amount=3700)  # fmt: skip
    row = journal.update(ref, J.SETTLING, new_msgid=True, plan=_plan(leg))
    assert row.msgid
    if point in ("settling_sent", "unknown_sent"):
        ledger.settle(SettlementRequest(
            msgid=row.msgid, pharmacy_code=PHARMACY, terminal_id="T01", operator="cashier",
            patient_psn_no=ZHANG_WEI, credential=Credential.card(card.card_no, card.card_sn),
            legs=(leg,), cash=0, total=3700,
        ))  # fmt: skip
    if point.startswith("unknown"):
        journal.owe_reversal(ref, row.msgid)
    return row.msgid


# point -> (HTTP status of a replayed POST, status, code) once the agent has restarted
EXPECTED = {
    "received": (409, "failed", "interrupted"),
    "settling_not_sent": (409, "failed", "not_charged"),
    "settling_sent": (200, "settled", None),
    "unknown_not_sent": (409, "failed", "cash_fallback"),
    "unknown_sent": (409, "reversed", "cash_fallback"),
}


def _journal_for(work: Path) -> Journal:
    work.mkdir(parents=True, exist_ok=True)
    key = work / "journal.key"
    key.write_bytes(secrets.token_bytes(32))
    return Journal(work / "journal.sqlite3", hmac_key=key.read_bytes(), pharmacy_code=PHARMACY,
                   terminal_id="T01")  # fmt: skip


def test_get_and_a_replayed_post_after_every_crash_point(tmp_path: Path) -> None:
    """Finding 2: after a restart, each crash point's sale answers the truth at GET and at
    a replayed POST (same body, the status it is concluded with); money matches."""
    world = load_world()
    sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
    ledger_url = sandbox.start()
    direct = HttpLedgerClient(ledger_url, TOKEN)
    card = world.person(ZHANG_WEI).cards[0]
    credential = Credential.card(card.card_no, card.card_sn)
    opening = direct.lookup(credential).personal_account
    journal = _journal_for(tmp_path / "agent")
    msgids = {point: _left_by_a_crash(journal, direct, f"CRASH-{point}", point)
              for point in EXPECTED}  # fmt: skip
    journal.close()
    agent = start_simulated(workdir=tmp_path / "agent", ledger_url=ledger_url,
                            recovery_interval=0.2)  # fmt: skip
    pos = Pos(agent)
    try:
        assert until(lambda: not agent.service.journal.pending_reversals())
        for point, (http_status, status, code) in EXPECTED.items():
            ref = f"CRASH-{point}"
            got_status, got = pos.call("GET", f"/v1/sales/{ref}")
            assert got_status == 200 and (got["status"], got["code"]) == (status, code), (point, got)
            body = _sale_request(ref).model_dump(mode="json")
            for _ in range(2):  # the same answer every time
                replay_status, replay = pos.call("POST", "/v1/sales", body)
                assert (replay_status, replay) == (http_status, got), point
            row = agent.service.journal.get(ref)
            assert row is not None and row.state in J.FINAL_STATES, (point, row)
            if msgids[point]:
                assert got["msgid"] == msgids[point]
        # Exactly one sale stayed charged: the one whose request had landed and was kept.
        assert opening is not None
        after = direct.lookup(credential).personal_account
        assert after is not None and after.balance == opening.balance - 3700
        late = direct.get_settlement(msgids["unknown_sent"])
        assert late is not None and late.status == "reversed"
        for point in ("settling_not_sent", "unknown_not_sent"):  # voided: a late arrival fails
            assert direct.get_settlement(msgids[point]) is None
    finally:
        agent.stop()
        sandbox.stop()


def test_an_open_outcome_stays_open_while_the_ledger_is_away(tmp_path: Path) -> None:
    """No ledger, no conclusion: the row stays settling and says so (202 outcome_pending),
    then settles when the ledger is back."""
    world = load_world()
    sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
    ledger_url = sandbox.start()
    direct = HttpLedgerClient(ledger_url, TOKEN)
    journal = _journal_for(tmp_path / "agent")
    msgid = _left_by_a_crash(journal, direct, "AWAY-1", "settling_sent")
    journal.close()
    u = urlparse(ledger_url)
    proxy = HoldProxy(u.hostname or "127.0.0.1", u.port or 80)
    proxy.down = True
    agent = start_simulated(workdir=tmp_path / "agent", ledger_url=proxy.url,
                            recovery_interval=0.2)  # fmt: skip
    agent.service.ledger = HttpLedgerClient(proxy.url, TOKEN, connect_timeout=0.3,
                                            read_timeout=0.3, retries=0)  # fmt: skip
    pos = Pos(agent)
    try:
        time.sleep(0.5)  # a few recovery rounds against the unreachable ledger
        get_status, got = pos.call("GET", "/v1/sales/AWAY-1")
        assert get_status == 200
        assert (got["status"], got["code"], got["msgid"]) == ("in_progress", "outcome_pending",
                                                              msgid)  # fmt: skip
        replay_status, replay = pos.call(
            "POST", "/v1/sales", _sale_request("AWAY-1").model_dump(mode="json")
        )
        assert (replay_status, replay) == (202, got)
        row = agent.service.journal.get("AWAY-1")
        assert row is not None and row.state == J.SETTLING
        proxy.down = False
        assert until(lambda: pos.call("GET", "/v1/sales/AWAY-1")[1]["status"] == "settled")
    finally:
        agent.stop()
        proxy.close()
        sandbox.stop()


def test_an_older_ledger_without_voids_leaves_the_outcome_open(tmp_path: Path) -> None:
    """A ledger that cannot void (404 on the route) never lets a 404 mean "not charged"."""
    world = load_world()
    sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
    ledger_url = sandbox.start()
    journal = _journal_for(tmp_path / "agent")
    _left_by_a_crash(journal, HttpLedgerClient(ledger_url, TOKEN), "OLD-1", "settling_not_sent")
    journal.close()

    u = urlparse(ledger_url)
    proxy = HoldProxy(u.hostname or "127.0.0.1", u.port or 80)
    proxy.older_ledger = True
    agent = start_simulated(workdir=tmp_path / "agent", ledger_url=proxy.url,
                            recovery_interval=60)  # fmt: skip
    try:
        assert agent.service.resolve_unsettled() == 0
        row = agent.service.journal.get("OLD-1")
        assert row is not None and row.state == J.SETTLING
        status = agent.service.status_of("OLD-1")
        assert status is not None and status.code == "outcome_pending"
    finally:
        agent.stop()
        proxy.close()
        sandbox.stop()


# --------------------------------------------------------------------------- replays


def test_a_replayed_failure_answers_its_first_status_and_body(pos: Pos, agent: Agent) -> None:
    """Finding 6: 409 cancelled stays 409 (was 503), 504 device_timeout stays 504."""
    sale = {"sale_ref": "CANCEL-1", "items": BASKET, "credential": "card"}
    answers: list[tuple[int, dict[str, Any]]] = []
    t = threading.Thread(target=lambda: answers.append(pos.call("POST", "/v1/sales", sale)))
    t.start()
    other = Pos(agent)
    assert until(lambda: other.call("POST", "/v1/sales/CANCEL-1/cancel")[0] == 200)
    t.join(20)
    ((first_status, first),) = answers
    assert (first_status, first["status"], first["code"]) == (409, "failed", "cancelled"), first
    for _ in range(2):
        assert pos.call("POST", "/v1/sales", sale) == (409, first)
    assert pos.call("GET", "/v1/sales/CANCEL-1") == (200, first)

    sale = {"sale_ref": "TIMEOUT-1", "items": BASKET, "credential": "card"}
    first_status, first = pos.call("POST", "/v1/sales", sale)  # nobody presents a card
    assert (first_status, first["code"]) == (504, "device_timeout"), first
    assert pos.call("POST", "/v1/sales", sale) == (504, first)
    assert pos.call("GET", "/v1/sales/TIMEOUT-1") == (200, first)
