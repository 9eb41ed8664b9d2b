"""Crashes and races: the agent SIGKILLed mid-settlement, a payer drained by another till."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from pos_plugin.agent import Agent
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.ledger.own.schemas import Credential, SettlementRequest
from pos_plugin.models import Leg, LegKind
from pos_plugin.world import load_world

from .conftest import WANG_FANG, XIAOMING, ZHANG_WEI, Pos, balances, item
from .holdproxy import HoldProxy
from .procs import free_port
from .procs import start_agent_process as _start_agent


class DrainingLedger(HttpLedgerClient):
    """The real client; after the first lookup another till drains a family payer.

    This is not a mock: the second till's settlement is a real request to the same
    sandbox, timed to land between this agent's lookup and its settlement.
    """

    drained = False

    def lookup(self, credential: Credential) -> Any:
        result = super().lookup(credential)
        if not self.drained:
            self.drained = True
            world = load_world()
            other = HttpLedgerClient(self.base_url, world.pharmacies[0].api_token)
            zhang = world.person(ZHANG_WEI)
            card = zhang.cards[0]
            other.settle(
                SettlementRequest(
                    msgid="H11010500001" + dt.datetime.now().strftime("%Y%m%d%H%M%S") + "9999",
                    pharmacy_code="H11010500001",
                    terminal_id="T02",
                    operator="other-till",
                    patient_psn_no=ZHANG_WEI,
                    credential=Credential.card(card.card_no, card.card_sn),
                    legs=(
                        Leg(
                            kind=LegKind.PERSONAL_ACCOUNT,
                            account_id=f"PA{ZHANG_WEI}",
                            payer_psn_no=ZHANG_WEI,
                            amount=15000,
                        ),
                    ),
                    cash=0,
                    total=15000,
                )
            )
        return result


def test_payer_drained_between_lookup_and_settlement_is_replanned(pos: Pos, agent: Agent) -> None:
    real = agent.service.ledger
    assert isinstance(real, HttpLedgerClient)
    agent.service.ledger = DrainingLedger(real.base_url, load_world().pharmacies[0].api_token)
    basket = [item("8801", "A", 10, 4500)]
    status, body = pos.sale("RACE-1", "B11000003", XIAOMING, basket)
    assert status == 200, body
    # Zhang Wei had 200.00; the other till took 150.00; the agent re-planned.
    assert [(f["name"], f["amount"]) for f in body["family"]] == [("张*", 5000), ("王*", 15000)]
    assert body["cash"] == 45000 - 20000
    after = balances(agent, "B11000003")
    assert (after[ZHANG_WEI], after[WANG_FANG]) == (0, 0)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_sigkill_after_the_request_left_is_resolved_on_restart(tmp_path: Path) -> None:
    world = load_world()
    sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
    ledger_url = sandbox.start()
    u = urlparse(ledger_url)
    proxy = HoldProxy(u.hostname or "127.0.0.1", u.port or 80)
    proxy.hold_settlements = True
    work = tmp_path / "agent"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, tokens = _start_agent(work, proxy.url, port)
    direct = HttpLedgerClient(ledger_url, world.pharmacies[0].api_token)
    try:
        auth = {"Authorization": f"Bearer {tokens['pos']}"}
        r = requests.post(
            f"{url}/v1/simulator/present", json={"card_no": "B11000001"}, headers=auth, timeout=10
        )
        assert r.status_code == 200
        sale = {"sale_ref": "CRASH-1", "items": [item("6901", "A", 2, 1850)], "credential": "card"}
        import threading

        answers: list[Any] = []

        def post() -> None:
            try:
                answers.append(
                    requests.post(f"{url}/v1/sales", json=sale, headers=auth, timeout=60)
                )
            except requests.RequestException as e:
                answers.append(e)

        t = threading.Thread(target=post)
        t.start()
        # Wait until the ledger has committed the settlement the agent will never hear of.
        journal = work / "journal.sqlite3"
        msgid = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proxy.settlements_forwarded and journal.exists():
                row = (
                    sqlite3.connect(journal)
                    .execute("SELECT msgid, state FROM sales WHERE sale_ref = 'CRASH-1'")
                    .fetchone()
                )
                if row and row[0] and direct.get_settlement(row[0]) is not None:
                    msgid = row[0]
                    assert row[1] == "settling"
                    break
            time.sleep(0.05)
        assert msgid is not None, "the settlement never reached the ledger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t.join(10)
        assert answers and not isinstance(answers[0], requests.Response)  # the POS heard nothing
    finally:
        if proc.poll() is None:
            proc.kill()
    # Restart: the agent resolves the settling row by msgid before serving.
    proxy.hold_settlements = False
    proc, tokens = _start_agent(work, proxy.url, port)
    try:
        r = requests.get(
            f"{url}/v1/sales/CRASH-1",
            headers={"Authorization": f"Bearer {tokens['pos']}"},
            timeout=10,
        )
        body = r.json()
        assert r.status_code == 200 and body["status"] == "settled", body
        assert body["msgid"] == msgid and body["personal_account"] == 3700
        statement = direct.statement(
            "H11010500001",
            dt.date.fromisoformat(msgid[12:20][:4] + "-" + msgid[16:18] + "-" + msgid[18:20]),
        )
        assert [row.msgid for row in statement.rows if row.kind == "sale"] == [msgid]
        card = world.person(ZHANG_WEI).cards[0]
        lookup = direct.lookup(Credential.card(card.card_no, card.card_sn))
        assert (
            lookup.personal_account is not None and lookup.personal_account.balance == 20000 - 3700
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        proxy.close()
        sandbox.stop()


def test_ledger_vanishing_mid_settlement_means_cash_and_an_automatic_reversal(
    pos: Pos, agent: Agent
) -> None:
    real = agent.service.ledger
    assert isinstance(real, HttpLedgerClient)
    u = urlparse(real.base_url)
    proxy = HoldProxy(u.hostname or "127.0.0.1", u.port or 80)
    token = load_world().pharmacies[0].api_token
    agent.service.ledger = HttpLedgerClient(
        proxy.url, token, connect_timeout=0.5, read_timeout=0.5, retries=1, backoff_base=0.01
    )
    before = balances(agent, "B11000001", real)
    try:
        proxy.vanish_after_settlement = True
        status, body = pos.sale("GONE-1", "B11000001", ZHANG_WEI, [item("6901", "A", 2, 1850)])
        assert status == 503, body
        assert (body["status"], body["code"]) == ("unknown", "ledger_unavailable")
        assert "cash" in body["message"]
        row = agent.service.journal.get("GONE-1")
        assert row is not None and row.state == "unknown" and row.msgid
        # The ledger did commit it: the customer would be charged twice without a reversal.
        assert real.get_settlement(row.msgid) is not None
        assert balances(agent, "B11000001", real)[ZHANG_WEI] == before[ZHANG_WEI] - 3700
        (owed,) = agent.service.journal.pending_reversals()
        assert owed.msgid == row.msgid
        # While the ledger is away, an attempt fails and is rescheduled, not lost.
        assert agent.service.send_owed_reversals() == 0
        (owed,) = agent.service.journal.pending_reversals()
        assert owed.attempts == 1 and owed.last_error
        status, body = pos.call("GET", "/v1/sales/GONE-1")
        assert body["status"] == "unknown"
        # The ledger returns; the owed reversal goes out (the next due attempt).
        proxy.down = False
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        assert agent.service.send_owed_reversals(later) == 1
        assert agent.service.journal.pending_reversals() == []
        assert balances(agent, "B11000001", real) == before
        found = real.get_settlement(row.msgid)
        assert found is not None and found.status == "reversed"
        row = agent.service.journal.get("GONE-1")
        assert row is not None and row.state == "reversed"
    finally:
        proxy.close()
