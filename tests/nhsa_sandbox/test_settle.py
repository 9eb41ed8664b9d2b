"""2101 preview and 2102 settlement: classification, the central family cascade,
idempotency by msgid; the §2 invariants checked on every answer, balances on the books."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer
from pos_plugin.world import World

from .conftest import (
    CODE_A_A,
    CODE_B_B,
    CODE_C,
    CODE_LIMITED,
    P1,
    P2,
    P3,
    P4,
    P5,
    P9,
    Wire,
    assert_invariants,
    balance,
    fen,
    msgid,
    rows,
)


def ok(ans: dict[str, Any]) -> dict[str, Any]:
    """The setlinfo of a successful answer, after checking the §2 invariants on it."""
    assert ans["infcode"] == 0, ans["err_msg"]
    info: dict[str, Any] = ans["output"]["setlinfo"]
    assert_invariants(info)
    assert fen(info["fund_pay_sumamt"]) == 0 and fen(info["hosp_part_amt"]) == 0
    return info


def split(info: dict[str, Any]) -> tuple[int, int, int, int]:
    """(acct_pay, acct_mulaid_pay, psn_cash_pay, balc) in fen."""
    return (fen(info["acct_pay"]), fen(info["acct_mulaid_pay"]), fen(info["psn_cash_pay"]),
            fen(info["balc"]))


def test_own_account_covers_the_basket(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    info = ok(wire.settle(P1, [(CODE_A_A, 2, 1500)]))
    assert split(info) == (3000, 0, 0, 17000)
    assert balance(sandbox, P1) == 17000 and balance(sandbox, P2) == 15000
    assert info["setl_id"] and info["mdtrt_id"] and info["setl_id"] != info["mdtrt_id"]
    assert info["clr_type"] == "41" and info["insutype"] == "310"
    [(kind, status, acct, cash)] = rows(
        sandbox, "SELECT kind, status, acct_pay, psn_cash_pay FROM settlements")
    assert (kind, status, acct, cash) == ("sale", "settled", 3000, 0)


def test_family_pays_in_binding_order_and_the_spouses_parent_is_skipped(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    # P1: own 200.00, then spouse P2 (order 1); P4 is P1's spouse's parent (order 2,
    # never a payer) and P5 is in Hebei (order 3, cross-province not opened).
    info = ok(wire.settle(P1, [(CODE_A_A, 20, 2000)]))  # 400.00
    assert split(info) == (35000, 15000, 5000, 0)
    assert balance(sandbox, P1) == 0 and balance(sandbox, P2) == 0
    assert balance(sandbox, P4) == 50000 and balance(sandbox, P5) == 30000


def test_the_cascade_shows_in_setldetail_and_the_receivable(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    ans = wire.settle(P1, [(CODE_A_A, 20, 2000)])
    [row] = ans["output"]["setldetail"]
    assert row["fund_pay_type"] == "310200" and fen(row["fund_payamt"]) == 35000
    assert "共济账户150.00元" in row["setl_proc_info"]
    assert sandbox.store is not None
    assert sandbox.store.balance("RCVH11010500001") == 35000


def test_a_resident_without_an_account_is_paid_for_by_family(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    info = ok(wire.settle(P3, [(CODE_B_B, 10, 2500)]))  # 250.00, class B
    assert split(info) == (25000, 25000, 0, 0)  # all of it mutual aid; balc 0: no account
    assert balance(sandbox, P1) == 0 and balance(sandbox, P2) == 10000
    assert info["insutype"] == "390" and info["psn_type"] == "15"
    [lv] = [d["chrgitm_lv"] for d in wire.settle(P3, [(CODE_B_B, 1, 100)], "1")
            ["output"]["detlcutinfo"]]
    assert lv == "02"


def test_acct_used_flag_1_is_the_own_account_only_and_0_is_cash(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    assert split(ok(wire.settle(P3, [(CODE_A_A, 1, 1000)], "1"))) == (0, 0, 1000, 0)
    assert split(ok(wire.settle(P1, [(CODE_A_A, 30, 1000)], "1"))) == (20000, 0, 10000, 0)
    assert balance(sandbox, P2) == 15000  # flag 1: family never asked
    assert split(ok(wire.settle(P2, [(CODE_A_A, 1, 1000)], "0"))) == (0, 0, 1000, 15000)
    assert balance(sandbox, P2) == 15000


def test_empty_and_not_allowed_payers_are_skipped(wire: Wire, sandbox: NhsaSandboxServer
                                                 ) -> None:
    # P2: own 150.00, then P9 (sibling, balance 0), P3 (child on 390: no account),
    # then P4 (parent) pays the rest.
    info = ok(wire.settle(P2, [(CODE_A_A, 20, 1000)]))
    assert split(info) == (20000, 5000, 0, 0)
    assert balance(sandbox, P4) == 45000 and balance(sandbox, P9) == 0


def test_class_c_and_above_the_price_limit_are_cash(wire: Wire) -> None:
    info = ok(wire.settle(P1, [(CODE_C, 1, 800), (CODE_LIMITED, 2, 1800), (CODE_A_A, 1, 500)]))
    # C 8.00 all self-paid; limited 2 x 18.00 with limit 15.00: 6.00 over the limit.
    assert fen(info["fulamt_ownpay_amt"]) == 800 and fen(info["overlmt_selfpay"]) == 600
    assert fen(info["inscp_scp_amt"]) == 3000 + 500
    assert split(info) == (3500, 0, 1400, 16500)
    cut = {d["feedetl_sn"]: d for d in wire.settle(
        P1, [(CODE_C, 1, 800), (CODE_LIMITED, 2, 1800)], "1")["output"]["detlcutinfo"]}
    assert cut["1"]["chrgitm_lv"] == "03" and fen(cut["1"]["fulamt_ownpay_amt"]) == 800
    assert cut["2"]["chrgitm_lv"] == "01" and fen(cut["2"]["overlmt_amt"]) == 600
    assert str(cut["2"]["pric_uplmt_amt"]) == "15.000000"


@pytest.fixture
def opened(tmp_path: Path, world: World) -> Iterator[tuple[NhsaSandboxServer, Wire]]:
    w = world.model_copy(update={"cross_province_pairs": ("11-13",)})
    server = NhsaSandboxServer(str(tmp_path / "open.db"), w)
    server.start()
    try:
        caller = Wire(server.url, w)
        caller.sign_in()
        yield server, caller
        assert server.store is not None and server.store.audit() == []
    finally:
        server.stop()


def test_cross_province_mutual_aid_only_where_opened(
    opened: tuple[NhsaSandboxServer, Wire]
) -> None:
    server, wire = opened
    info = ok(wire.settle(P1, [(CODE_A_A, 20, 2000)]))
    # own 200, spouse 150, spouse's parent skipped, the Hebei parent pays the last 50.
    assert split(info) == (40000, 20000, 0, 0)
    assert balance(server, P5) == 25000 and balance(server, P4) == 50000


def test_a_patient_insured_in_another_province_settles_as_cross_province(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    info = ok(wire.settle(P5, [(CODE_A_A, 1, 1000)]))
    assert info["clr_type"] == "310412" and info["clr_optins"] == "130102"
    assert split(info) == (1000, 0, 0, 29000)
    wrong = wire.call("2102", wire.purchase(P5, [(CODE_A_A, 1, 1000)]), insuplc="110105")
    assert wrong["infcode"] == -1 and "insuplc_admdvs" in wrong["err_msg"]


# ------------------------------------------------------------------ 2101
def test_2101_previews_and_changes_nothing(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    assert sandbox.store is not None
    before = sandbox.store.balances()
    mid = msgid()
    pre = ok(wire.settle(P1, [(CODE_A_A, 20, 2000)], infno="2101", mid=mid))
    assert "setl_id" not in pre and pre["mdtrt_id"]
    assert split(pre) == (35000, 15000, 5000, 0)
    assert sandbox.store.balances() == before
    for table in ("settlements", "postings", "messages"):
        assert rows(sandbox, f"SELECT COUNT(*) FROM {table}") == [(0,)]
    # the 2102 that follows (under its own msgid) answers what the preview said
    real = ok(wire.settle(P1, [(CODE_A_A, 20, 2000)]))
    assert split(real) == split(pre)


# ------------------------------------------------------------------ idempotency
def test_the_same_msgid_and_input_answers_the_first_answer(
    wire: Wire, sandbox: NhsaSandboxServer
) -> None:
    # The very same input resent (``purchase`` stamps the time to the second: built
    # again, it could be another input); only the envelope's operator differs.
    mid, body = msgid(), wire.purchase(P1, [(CODE_A_A, 2, 1500)])
    region = wire.world.person(P1).insured_region
    first = wire.call("2102", body, mid=mid, insuplc=region)
    again = wire.call("2102", body, mid=mid, insuplc=region, opter="op2")
    assert again == first
    assert balance(sandbox, P1) == 17000
    assert rows(sandbox, "SELECT COUNT(*) FROM settlements WHERE msgid = ?", mid) == [(1,)]
    other = wire.settle(P1, [(CODE_A_A, 3, 1500)], mid=mid)
    assert other["infcode"] == -1 and "msgid" in other["err_msg"]
    assert balance(sandbox, P1) == 17000


def test_a_refused_2102_binds_nothing(wire: Wire, sandbox: NhsaSandboxServer) -> None:
    mid = msgid()
    bad = wire.settle(P1, [("XZ99ZZZ9999", 1, 100)], mid=mid)
    assert bad["infcode"] == -1 and "input.drugdetail[0].med_list_codg" in bad["err_msg"]
    assert "XZ99ZZZ9999" in bad["err_msg"]
    good = ok(wire.settle(P1, [(CODE_A_A, 1, 100)], mid=mid))
    assert good["medins_setl_id"] == mid


# ------------------------------------------------------------------ refusals
def test_the_credential_must_be_the_patients_own(wire: Wire, world: World,
                                                 sandbox: NhsaSandboxServer) -> None:
    body = wire.purchase(P3, [(CODE_A_A, 1, 100)])
    c = world.person(P1).cards[0]
    body["druginfo"].update(mdtrt_cert_no=c.card_no, card_sn=c.card_sn)
    ans = wire.call("2102", body, insuplc="110105")
    assert ans["infcode"] == -1 and "input.druginfo.mdtrt_cert_no" in ans["err_msg"]
    assert balance(sandbox, P1) == 20000


def test_a_lost_card_cannot_settle(wire: Wire, world: World) -> None:
    lost = world.person("11000000000000000007")
    body = wire.purchase(lost.psn_no, [(CODE_A_A, 1, 100)])
    ans = wire.call("2102", body, insuplc=lost.insured_region)
    assert ans["infcode"] == -1 and "挂失" in ans["err_msg"]


def test_person_fields_must_match_the_psn_no(wire: Wire, world: World) -> None:
    for field, value in (("certno", world.person(P2).id_number), ("psn_name", "王二"),
                         ("insutype", "390"), ("med_type", "14"), ("acct_used_flag", "3"),
                         ("medfee_sumamt", "999.00")):
        body = wire.purchase(P1, [(CODE_A_A, 1, 100)])
        body["druginfo"][field] = value
        ans = wire.call("2102", body, insuplc="110105")
        assert ans["infcode"] == -1 and f"input.druginfo.{field}" in ans["err_msg"], field
        assert world.person(P2).id_number not in ans["err_msg"]


def test_insuplc_admdvs_is_required_when_the_input_has_psn_no(wire: Wire) -> None:
    ans = wire.call("2102", wire.purchase(P1, [(CODE_A_A, 1, 100)]))
    assert ans["infcode"] == -1 and "insuplc_admdvs" in ans["err_msg"]
