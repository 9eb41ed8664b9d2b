"""Every fault hook, through the Python API and ``POST /_sandbox/faults``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer
from pos_plugin.world import World

from .conftest import CODE_A_A, P1, P2, Wire, assert_invariants, balance, fen, msgid, rows


def _committed(sandbox: NhsaSandboxServer, mid: str) -> int:
    return int(rows(sandbox, "SELECT COUNT(*) FROM settlements WHERE msgid = ? AND "
                             "kind = 'sale'", mid)[0][0])


def test_lose_answer_close_commits_and_the_client_hears_nothing(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    sandbox.faults.lose_answer("2102", "close")
    mid = msgid()
    with pytest.raises(requests.ConnectionError):
        wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid)
    assert _committed(sandbox, mid) == 1 and balance(sandbox, P1) == 19000
    assert sandbox.faults.armed() == []  # one-shot
    # the 2601 the client then sends makes it net zero
    assert wire.reverse(P1, mid)["infcode"] == 0
    assert balance(sandbox, P1) == 20000


def test_lose_answer_hang_commits_past_the_clients_timeout(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    sandbox.faults.lose_answer("2102", "hang", seconds=1.5)
    mid = msgid()
    with pytest.raises(requests.ReadTimeout):
        wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid, timeout=0.4)
    assert _committed(sandbox, mid) == 1 and balance(sandbox, P1) == 19000
    assert wire.reverse(P1, mid)["infcode"] == 0 and balance(sandbox, P1) == 20000


def test_fail_next_answers_minus_one_and_does_nothing(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    sandbox.faults.fail_next("2102", "系统繁忙，请稍后再试")
    mid = msgid()
    ans = wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid)
    assert ans == {**ans, "infcode": -1, "err_msg": "系统繁忙，请稍后再试", "output": None}
    assert _committed(sandbox, mid) == 0 and balance(sandbox, P1) == 20000
    assert ok_settle(wire, mid)  # only the next one: the resend goes through
    sandbox.faults.fail_next("1101", "MBS-cn.hsa.ais.common.exception.HygeiaException: x",
                             times=2)
    assert wire.lookup_card(P1)["infcode"] == -1 and wire.lookup_card(P1)["infcode"] == -1
    assert wire.lookup_card(P1)["infcode"] == 0


def ok_settle(wire: Wire, mid: str) -> bool:
    return bool(wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid)["infcode"] == 0)


def test_delay_makes_a_2102_land_after_its_2601(wire: Wire, sandbox: NhsaSandboxServer
                                              ) -> None:
    """The race the spec leaves to 3202: the 2601 finds nothing, the slow 2102 then commits."""
    sandbox.faults.delay("2102", 1.0)
    mid = msgid()
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid, timeout=0.3)
        except requests.ReadTimeout as e:
            errors.append(e)

    t = threading.Thread(target=slow)
    t.start()
    t.join()
    assert errors and _committed(sandbox, mid) == 0  # the client gave up before the commit
    other = Wire(sandbox.url, wire.world)
    other.sign_no = wire.sign_no
    assert other.reverse(P1, mid)["infcode"] == 0  # nothing to reverse yet
    deadline = time.monotonic() + 5
    while _committed(sandbox, mid) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _committed(sandbox, mid) == 1 and balance(sandbox, P1) == 19000
    assert rows(sandbox, "SELECT outcome FROM messages WHERE omsgid = ?", mid) == [("nothing",)]


def test_delay_within_the_timeout_is_just_slow(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    sandbox.faults.delay("1101", 0.3)
    t0 = time.monotonic()
    assert wire.lookup_card(P1)["infcode"] == 0
    assert time.monotonic() - t0 >= 0.3


def test_expire_sign_in_makes_the_next_business_call_say_sign_in(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    sandbox.faults.expire_sign_in()
    ans = wire.lookup_card(P1)
    assert ans["infcode"] == -1 and "签到" in ans["err_msg"]
    fresh = wire.sign_in()  # a new sign-in (not the expired sign_no) works again
    assert wire.lookup_card(P1)["infcode"] == 0
    assert rows(sandbox, "SELECT expired FROM sign_ins WHERE sign_no = ?", fresh) == [(0,)]


@pytest.mark.parametrize("which", ["psn_part_amt", "medfee_sumamt", "acct_mulaid_pay"])
def test_break_invariants_breaks_the_answer_not_the_books(
    wire: Wire, sandbox: NhsaSandboxServer, which: str
) -> None:
    sandbox.faults.break_invariants(which)  # type: ignore[arg-type]
    mid = msgid()
    ans = wire.settle(P1, [(CODE_A_A, 20, 2000)], mid=mid)
    assert ans["infcode"] == 0
    with pytest.raises(AssertionError):
        assert_invariants(ans["output"]["setlinfo"])
    assert _committed(sandbox, mid) == 1  # it did commit: the client must 2601 it
    stored = rows(sandbox, "SELECT medfee_sumamt, acct_pay, acct_mulaid_pay, psn_cash_pay "
                           "FROM settlements WHERE msgid = ?", mid)
    assert stored == [(40000, 35000, 15000, 5000)]
    assert wire.reverse(P1, mid)["infcode"] == 0
    assert balance(sandbox, P1) == 20000 and balance(sandbox, P2) == 15000


@pytest.fixture
def open_sandbox(tmp_path: Path, world: World) -> Iterator[NhsaSandboxServer]:
    server = NhsaSandboxServer(str(tmp_path / "f.db"), world, faults=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _arm(server: NhsaSandboxServer, **body: Any) -> requests.Response:
    return requests.post(server.url + "/_sandbox/faults", json=body, timeout=5)


def test_faults_over_http(open_sandbox: NhsaSandboxServer, world: World) -> None:
    w = Wire(open_sandbox.endpoint, world)  # the real deployments' path
    w.sign_in()
    r = _arm(open_sandbox, kind="fail", infno="1101", err_msg="维护中")
    assert r.status_code == 200 and r.json()["armed"][0]["kind"] == "fail"
    assert w.lookup_card(P1)["err_msg"] == "维护中"
    assert _arm(open_sandbox, kind="lose_answer", infno="2102", mode="close").ok
    with pytest.raises(requests.ConnectionError):
        w.settle(P1, [(CODE_A_A, 1, 1000)])
    assert _arm(open_sandbox, kind="break_invariants").ok
    broken = w.settle(P1, [(CODE_A_A, 1, 1000)])["output"]["setlinfo"]
    assert fen(broken["psn_part_amt"]) != fen(broken["acct_pay"]) + fen(broken["psn_cash_pay"])
    assert _arm(open_sandbox, kind="expire_sign_in").ok
    assert "签到" in w.lookup_card(P1)["err_msg"]
    assert _arm(open_sandbox, kind="delay", infno="9001", seconds=0.1).ok
    assert _arm(open_sandbox, kind="clear").json()["armed"] == []
    for bad in ({"kind": "explode"}, {"kind": "fail", "infno": "21"},
                {"kind": "lose_answer", "infno": "2102", "mode": "slowly"}):
        assert _arm(open_sandbox, **bad).status_code == 422
    audit = requests.get(open_sandbox.url + "/_sandbox/audit", timeout=5).json()
    assert audit["problems"] == [] and audit["total_balance"] == audit["world_total"]
    bal = requests.get(open_sandbox.url + "/_sandbox/balances", timeout=5).json()
    assert bal["PA" + P1] == 20000 - 2000 and bal["RCVH11010500001"] == 2000
    assert Decimal(str(bal["PA" + P2])) == 15000


def test_no_test_endpoints_unless_asked(sandbox: NhsaSandboxServer) -> None:
    assert _arm(sandbox, kind="clear").status_code in (404, 405)
    assert requests.get(sandbox.url + "/_sandbox/audit", timeout=5).status_code == 404
