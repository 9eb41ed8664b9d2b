"""The crash matrix: the agent SIGKILLed at every journal transition of a sale, and the
ledger SIGKILLed under a settlement in flight, each as its own process.

Every crash is on one till (one journal, as a till that crashes again and again: a
msgid is unique per till, so two journals for one till index in one second would
collide). After each crash the agent is restarted on that journal and left to recover; then
money is checked three ways: the ledger's balances (the patient's account moved by
exactly what the journal says was kept), the ledger's entries (double entry sound,
the world's money conserved, at most one settlement per msgid), and the journal (its
hash chain verifies, the sale is in a final state, and that state agrees with the
ledger: settled <-> a live settlement, reversed <-> a reversed one, failed <-> none).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from pos_plugin.journal.journal import FINAL_STATES, Journal
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.store import Store
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.world import load_world

from .conftest import ZHANG_WEI, item
from .procs import free_port, start_agent_process, start_ledger_process, stop

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only: SIGKILL")

TOKEN = load_world().pharmacies[0].api_token
PRICE = 100  # 1.00 a sale: the matrix draws on one account many times
CRASHER = "tests.agent.crashing_agent"

# (kill point, how the first settlement turns out for the agent)
AGENT_KILLS = [
    ("after:received", "normal"),
    ("after:settling", "normal"),
    ("sent:settle", "normal"),
    ("after:settled", "normal"),
    ("after:unknown", "unknown-committed"),
    ("after:unknown", "unknown-unsent"),
    ("sent:reverse", "unknown-committed"),
    ("after:reversed", "unknown-committed"),
    ("sent:void", "unknown-unsent"),
    ("after:failed", "unknown-unsent"),
]


@dataclass
class Matrix:
    """One ledger process for the whole matrix, and what the matrix has counted."""

    db: Path
    port: int
    proc: Any
    opening_total: int
    till: Path  # one till's folder (its journal) for every crash: one msgid clock
    kills: int = 0
    sales: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart_ledger(self) -> None:
        self.proc = start_ledger_process(self.db, self.port)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    db = tmp_path_factory.mktemp("ledger") / "ledger.sqlite3"
    port = free_port()
    proc = start_ledger_process(db, port)
    store = Store(str(db))
    m = Matrix(db, port, proc, store.total_balance(), tmp_path_factory.mktemp("till"))
    store.close()
    yield m
    stop(m.proc)
    print(f"\ncrash matrix: {m.kills} kills, {m.sales} sales, {len(m.violations)} violations")


def _account(client: HttpLedgerClient) -> int:
    card = load_world().person(ZHANG_WEI).cards[0]
    pa = client.lookup(Credential.card(card.card_no, card.card_sn)).personal_account
    assert pa is not None
    return pa.balance


def _sell(url: str, token: str, ref: str) -> None:
    """The POS: present the card and sell; the answer may never come (the agent dies)."""
    auth = {"Authorization": f"Bearer {token}"}
    card = load_world().person(ZHANG_WEI).cards[0]
    r = requests.post(f"{url}/v1/simulator/present", json={"card_no": card.card_no},
                      headers=auth, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    sale = {"sale_ref": ref, "items": [item("6901", "A", 1, PRICE)], "credential": "card"}
    with contextlib.suppress(requests.RequestException):  # killed under the request
        requests.post(f"{url}/v1/sales", json=sale, headers=auth, timeout=30)


def _recovered(url: str, token: str, ref: str) -> dict[str, Any]:
    """Wait until the restarted agent has concluded the sale and owes nothing."""
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:
        health = requests.get(f"{url}/v1/health", timeout=5).json()
        got = requests.get(f"{url}/v1/sales/{ref}", headers=auth, timeout=5).json()
        settled = got.get("status") in ("settled", "failed", "refused", "reversed")
        if settled and not health["reversals_owed"] and not health["unresolved_settlements"]:
            return dict(got)
        if time.monotonic() > deadline:
            raise AssertionError(f"not recovered: {got} {health}")
        time.sleep(0.1)


def _check(m: Matrix, work: Path, ref: str, got: dict[str, Any], before: int) -> None:
    """Conservation three ways; violations are collected (and the test fails on any)."""
    client = HttpLedgerClient(m.url, TOKEN)
    bad = m.violations
    msgid = got.get("msgid")
    found = client.get_settlement(msgid) if msgid else None
    kept = PRICE if got["status"] == "settled" else 0
    # 1. the ledger's balances: the account moved by exactly what the journal kept
    if _account(client) != before - kept:
        bad.append(f"{ref}: account {before} -> {_account(client)}, journal kept {kept}")
    # 2. the ledger's entries: sound books, conserved money, one settlement per msgid
    store = Store(str(m.db))
    try:
        bad.extend(f"{ref}: {p}" for p in store.audit())
        if store.total_balance() != m.opening_total:
            bad.append(f"{ref}: the world's money is {store.total_balance()}, "
                       f"not {m.opening_total}")  # fmt: skip
        with store.read() as tx:
            (n,) = tx.one("SELECT count(*) FROM entries WHERE msgid = ? AND kind = 'sale'",
                          msgid or "")  # fmt: skip
        if n > 1:
            bad.append(f"{ref}: {n} settlements under msgid {msgid}")
    finally:
        store.close()
    # 3. the journal: verifies, final, and says what the ledger holds
    journal = Journal(work / "journal.sqlite3", hmac_key=(work / "journal.key").read_bytes(),
                      pharmacy_code="H11010500001", terminal_id="T01")  # fmt: skip
    try:
        report = journal.verify()
        if not report.ok:
            bad.append(f"{ref}: journal verify: {report.problems}")
        row = journal.get(ref)
        if row is None or row.state not in FINAL_STATES:
            bad.append(f"{ref}: journal row {row and row.state} is not final")
        expected = {"settled": "settled", "reversed": "reversed"}.get(got["status"])
        holds = found.status if found is not None else None
        if holds != expected:
            bad.append(f"{ref}: POS told {got['status']}/{got.get('code')}, ledger holds {holds}")
    finally:
        journal.close()


@pytest.mark.parametrize(("point", "outcome"), AGENT_KILLS,
                         ids=[f"{p}-{o}" for p, o in AGENT_KILLS])  # fmt: skip
def test_agent_sigkilled_at_every_transition(matrix: Matrix, point: str, outcome: str) -> None:
    work, port = matrix.till, free_port()
    url = f"http://127.0.0.1:{port}"
    before = _account(HttpLedgerClient(matrix.url, TOKEN))
    ref = "K-" + secrets.token_hex(4)
    proc, tokens = start_agent_process(work, matrix.url, port, module=CRASHER,
                                       extra=("--kill-at", point, "--outcome", outcome))  # fmt: skip
    try:
        _sell(url, tokens["pos"], ref)
        assert proc.wait(30) == -signal.SIGKILL, f"the agent never reached {point}"
        matrix.kills += 1
    finally:
        stop(proc)
    proc, tokens = start_agent_process(work, matrix.url, port, module=CRASHER)
    try:
        got = _recovered(url, tokens["pos"], ref)
        matrix.sales += 1
    finally:
        stop(proc)
    _check(matrix, work, ref, got, before)
    assert matrix.violations == []


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.05])
def test_ledger_sigkilled_under_a_settlement_in_flight(matrix: Matrix, delay: float) -> None:
    """The ledger dies while the till's settlement is on its way (``delay`` s after it
    left: before or after its commit, the timing decides; each must come out right) and
    comes back."""
    work, port = matrix.till, free_port()
    url = f"http://127.0.0.1:{port}"
    before = _account(HttpLedgerClient(matrix.url, TOKEN))
    ref = "L-" + secrets.token_hex(4)
    marker = work / "settle-sending"
    marker.unlink(missing_ok=True)  # the last scenario's
    proc, tokens = start_agent_process(work, matrix.url, port, module=CRASHER,
                                       extra=("--kill-at", "marker:settle"))  # fmt: skip
    try:
        sale = threading.Thread(target=_sell, args=(url, tokens["pos"], ref))
        sale.start()
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        assert marker.exists(), "the settlement never left"
        time.sleep(delay)
        os.kill(matrix.proc.pid, signal.SIGKILL)
        matrix.proc.wait(10)
        matrix.kills += 1
        time.sleep(0.3)
        matrix.restart_ledger()
        sale.join(40)
        got = _recovered(url, tokens["pos"], ref)
        matrix.sales += 1
    finally:
        stop(proc)
    _check(matrix, work, ref, got, before)
    assert matrix.violations == []
