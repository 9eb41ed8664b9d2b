"""2601 (冲正 by msgid) before and after its 2102 lands, and 2103 (结算撤销)."""

from __future__ import annotations

from typing import Any

from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer

from .conftest import CODE_A_A, P1, P2, P3, Wire, assert_invariants, balance, fen, msgid, rows
from .test_settle import ok


def _sale(wire: Wire, psn: str = P1, cnt: int = 20) -> dict[str, Any]:
    return ok(wire.settle(psn, [(CODE_A_A, cnt, 2000)]))  # P1, 20: own 200 + spouse 150


def test_2601_of_a_committed_2102_restores_every_balance(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    info = _sale(wire)
    assert balance(sandbox, P1) == 0 and balance(sandbox, P2) == 0
    ans = wire.reverse(P1, info["medins_setl_id"])
    assert ans["infcode"] == 0 and ans["output"] == {}
    assert balance(sandbox, P1) == 20000 and balance(sandbox, P2) == 15000
    [(kind, infno, acct, mulaid, orig)] = rows(
        sandbox, "SELECT kind, infno, acct_pay, acct_mulaid_pay, original_setl_id "
                 "FROM settlements WHERE kind = 'reversal'")
    assert (kind, infno, acct, mulaid, orig) == ("reversal", "2601", -35000, -15000,
                                                 info["setl_id"])
    # repeating the 2601 (a new msgid, or the same one) is harmless
    assert wire.reverse(P1, info["medins_setl_id"])["infcode"] == 0
    mid = msgid()
    first = wire.reverse(P1, info["medins_setl_id"], mid=mid)
    assert wire.reverse(P1, info["medins_setl_id"], mid=mid) == first
    assert balance(sandbox, P1) == 20000 and balance(sandbox, P2) == 15000
    outcomes = [r[0] for r in rows(sandbox, "SELECT outcome FROM messages WHERE infno = '2601' "
                                            "ORDER BY received_at")]
    assert sorted(outcomes) == ["already_reversed", "already_reversed", "reversed"]


def test_a_2102_resent_after_its_2601_is_refused_not_replayed(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    # The very same request resent: ``purchase`` stamps the time to the second, so a
    # request built again could differ (then it is refused as another input instead).
    mid, body = msgid(), wire.purchase(P1, [(CODE_A_A, 1, 1000)])
    region = wire.world.person(P1).insured_region
    ok(wire.call("2102", body, mid=mid, insuplc=region))
    wire.reverse(P1, mid)
    again = wire.call("2102", body, mid=mid, insuplc=region)
    assert again["infcode"] == -1 and "2601" in again["err_msg"]
    assert balance(sandbox, P1) == 20000


def test_2601_before_the_2102_lands_does_nothing_and_the_2102_still_commits(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    mid = msgid()
    ans = wire.reverse(P1, mid)
    assert ans["infcode"] == 0
    assert rows(sandbox, "SELECT outcome, omsgid FROM messages WHERE infno = '2601'") == [
        ("nothing", mid)]
    late = ok(wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid))  # as the real platform does
    assert late["medins_setl_id"] == mid and balance(sandbox, P1) == 19000


def test_2601_refusals_name_the_field(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    info = _sale(wire, cnt=1)
    bad = wire.call("2601", {"data": {"psn_no": P1, "omsgid": info["medins_setl_id"],
                                      "oinfno": "2207"}}, insuplc="110105")
    assert bad["infcode"] == -1 and "input.data.oinfno" in bad["err_msg"]
    other = wire.reverse(P2, info["medins_setl_id"])
    assert other["infcode"] == -1 and "input.data.psn_no" in other["err_msg"]
    missing = wire.call("2601", {"data": {"psn_no": P1, "oinfno": "2102"}}, insuplc="110105")
    assert "input.data.omsgid" in missing["err_msg"]
    assert balance(sandbox, P1) == 18000  # nothing reversed by the refusals


def test_2103_answers_negative_amounts_and_a_new_setl_id(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    info = _sale(wire)
    ans = wire.undo(P1, info["setl_id"], info["mdtrt_id"])
    assert ans["infcode"] == 0, ans["err_msg"]
    undo = ans["output"]["setlinfo"]
    assert_invariants(undo)
    assert fen(undo["medfee_sumamt"]) == -40000 and fen(undo["acct_pay"]) == -35000
    assert fen(undo["acct_mulaid_pay"]) == -15000 and fen(undo["psn_cash_pay"]) == -5000
    assert fen(undo["psn_part_amt"]) == -40000 and fen(undo["balc"]) == 20000
    assert undo["setl_id"] != info["setl_id"] and undo["mdtrt_id"] == info["mdtrt_id"]
    assert undo["medins_setl_id"] != info["medins_setl_id"]
    assert balance(sandbox, P1) == 20000 and balance(sandbox, P2) == 15000
    assert rows(sandbox, "SELECT status FROM settlements WHERE setl_id = ?",
                info["setl_id"]) == [("reversed",)]


def test_no_double_reversal(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    info = _sale(wire)
    assert wire.undo(P1, info["setl_id"], info["mdtrt_id"])["infcode"] == 0
    twice = wire.undo(P1, info["setl_id"], info["mdtrt_id"])
    assert twice["infcode"] == -1 and "撤销" in twice["err_msg"]
    # a 2601 of the undone 2102 finds nothing left to do
    assert wire.reverse(P1, info["medins_setl_id"])["infcode"] == 0
    assert balance(sandbox, P1) == 20000 and balance(sandbox, P2) == 15000
    # and a 2103 after a 2601 is refused the same way
    second = _sale(wire, cnt=1)
    wire.reverse(P1, second["medins_setl_id"])
    late = wire.undo(P1, second["setl_id"], second["mdtrt_id"])
    assert late["infcode"] == -1 and "input.data.setl_id" in late["err_msg"]
    assert rows(sandbox, "SELECT COUNT(*) FROM settlements WHERE kind = 'reversal'") == [(2,)]


def test_2103_is_idempotent_by_msgid(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    info = _sale(wire, cnt=1)
    mid = msgid()
    first = wire.undo(P1, info["setl_id"], info["mdtrt_id"], mid=mid)
    assert wire.undo(P1, info["setl_id"], info["mdtrt_id"], mid=mid) == first
    assert balance(sandbox, P1) == 20000


def test_2103_checks_the_ids_it_is_given(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    info = _sale(wire, psn=P3, cnt=1)
    for setl_id, mdtrt_id, psn, field in (
        ("110105000000000000000000009999", info["mdtrt_id"], P3, "setl_id"),
        (info["setl_id"], "110105000000000000000000009999", P3, "mdtrt_id"),
        (info["setl_id"], info["mdtrt_id"], P1, "psn_no"),
    ):
        ans = wire.undo(psn, setl_id, mdtrt_id)
        assert ans["infcode"] == -1 and f"input.data.{field}" in ans["err_msg"], field
    assert balance(sandbox, P1) == 18000  # P1 paid for P3; nothing undone
