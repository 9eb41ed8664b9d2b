"""9001/9002 sign-in rules and 1101 by card, voucher and ID card, over real HTTP."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pos_plugin.ledger.nhsa.sandbox.platform import SHANGHAI
from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer
from pos_plugin.world import World

from .conftest import (
    CODE_B,
    NAME_B,
    P1,
    P3,
    P5,
    P7,
    P8,
    REGION_B,
    Wire,
    fen,
    rows,
)

LOST_CARD = ("03", "B11000007", "E09D594C56D237B5A148D13F1FE43685")
EXPIRED_CARD = ("03", "B11000008", "D604E8CC4CB9FB7968A4AF4C161A045A")


def _lookup(w: Wire, t: str, no: str, sn: str = "", **data: str) -> dict[str, object]:
    return w.call("1101", {"data": {"mdtrt_cert_type": t, "mdtrt_cert_no": no, "card_sn": sn,
                                    "psn_cert_type": "", "certno": "", "psn_name": "", **data}})


# ------------------------------------------------------------------ sign-in
def test_a_business_call_before_sign_in_says_sign_in(sandbox: NhsaSandboxServer,
                                                     world: World) -> None:
    w = Wire(sandbox.url, world)
    ans = w.lookup_card(P1)
    assert ans["infcode"] == -1 and "签到" in str(ans["err_msg"])
    assert ans["output"] is None and ans["inf_refmsgid"] is None
    w.sign_no = "2026011599999999999999999999"  # a sign_no never issued
    assert "签到" in str(w.lookup_card(P1)["err_msg"])


def test_sign_in_is_per_pharmacy_and_operator_and_reused_the_same_day(
    sandbox: NhsaSandboxServer, world: World
) -> None:
    a = Wire(sandbox.url, world)
    first = a.sign_in("op1")
    assert len(first) <= 30 and a.sign_in("op1") == first  # a repeat keeps the sign_no
    other_opter = a.sign_in("op2")
    assert other_opter != first
    assert a.lookup_card(P1)["infcode"] == 0  # op2's sign_no serves op1's envelope too
    b = Wire(sandbox.url, world, CODE_B, NAME_B, REGION_B)
    b.sign_no = first  # pharmacy A's sign_no is not pharmacy B's
    assert "签到" in str(b.lookup_card(P1)["err_msg"])
    assert rows(sandbox, "SELECT COUNT(*) FROM sign_ins") == [(2,)]


def test_sign_out_ends_the_sign_no_and_needs_a_sign_in(wire: Wire) -> None:
    ans = wire.call("9002", {"signOut": {"sign_no": wire.sign_no, "opter_no": "op1"}})
    assert ans["infcode"] == 0 and ans["output"]["signoutoutb"]["sign_time"]
    assert "签到" in str(wire.lookup_card(P1)["err_msg"])
    again = wire.call("9002", {"signOut": {"sign_no": wire.sign_no, "opter_no": "op1"}})
    assert again["infcode"] == -1 and "签到" in str(again["err_msg"])
    fresh = wire.sign_in()
    assert wire.lookup_card(P1)["infcode"] == 0 and fresh


def test_a_sign_in_expires_with_the_china_day(tmp_path: Path, world: World) -> None:
    now = [dt.datetime(2026, 1, 15, 23, 59, 0, tzinfo=SHANGHAI)]
    server = NhsaSandboxServer(str(tmp_path / "n.db"), world, clock=lambda: now[0])
    server.start()
    try:
        w = Wire(server.url, world)
        w.sign_in()
        assert w.lookup_card(P1)["infcode"] == 0
        now[0] = dt.datetime(2026, 1, 16, 0, 0, 1, tzinfo=SHANGHAI)
        assert "签到" in str(w.lookup_card(P1)["err_msg"])
        w.sign_in()
        assert w.lookup_card(P1)["infcode"] == 0
    finally:
        server.stop()


def test_sign_in_input_fields_are_checked(sandbox: NhsaSandboxServer, world: World) -> None:
    w = Wire(sandbox.url, world)
    ans = w.call("9001", {"signIn": {"opter_no": "op1", "mac": "", "ip": "127.0.0.1"}})
    assert ans["infcode"] == -1 and "input.signIn.mac" in str(ans["err_msg"])
    ans = w.call("9001", {})
    assert ans["infcode"] == -1 and "input.signIn" in str(ans["err_msg"])


# ------------------------------------------------------------------ 1101
def test_1101_by_card_gives_baseinfo_insuinfo_idetinfo(wire: Wire, world: World) -> None:
    ans = wire.lookup_card(P1)
    assert ans["infcode"] == 0 and ans["err_msg"] == ""
    out = ans["output"]
    p = world.person(P1)
    assert out["baseinfo"]["psn_no"] == P1 and out["baseinfo"]["certno"] == p.id_number
    assert out["baseinfo"]["psn_name"] == p.name and out["baseinfo"]["gend"] == "1"
    assert out["baseinfo"]["brdy"] == "1980-05-12"
    [insu] = out["insuinfo"]
    assert insu["insutype"] == "310" and fen(insu["balc"]) == 20000
    assert insu["insuplc_admdvs"] == "110105" and insu["psn_insu_stas"] == "1"
    assert str(insu["balc"]) == "200.00"  # a JSON number with 2 decimals
    assert out["idetinfo"] == []


def test_1101_by_voucher_and_by_id_card(wire: Wire, world: World) -> None:
    ans = _lookup(wire, "01", "EV-XIAOMING-0003")
    assert ans["infcode"] == 0 and ans["output"]["baseinfo"]["psn_no"] == P3
    [insu] = ans["output"]["insuinfo"]
    assert insu["insutype"] == "390" and fen(insu["balc"]) == 0  # residents: no account
    by_id = _lookup(wire, "02", world.person(P5).id_number)
    assert by_id["output"]["baseinfo"]["psn_no"] == P5
    assert by_id["output"]["insuinfo"][0]["insuplc_admdvs"] == "130102"


def test_1101_lost_expired_and_unknown_answers(wire: Wire, world: World) -> None:
    lost = _lookup(wire, *LOST_CARD)
    assert lost["infcode"] == -1 and "挂失" in str(lost["err_msg"]) and lost["output"] is None
    expired = _lookup(wire, *EXPIRED_CARD)  # expiry 2025-01-01: past today
    assert expired["infcode"] == -1 and "有效期" in str(expired["err_msg"])
    for t, no, sn in (("03", "B99999999", "X" * 32), ("03", "B11000001", "0" * 32),
                      ("01", "EV-NOBODY", ""), ("02", "110105199001011234", "")):
        ans = _lookup(wire, t, no, sn)
        assert ans["infcode"] == -1 and "基本信息为空" in str(ans["err_msg"])
        assert "挂失" not in str(ans["err_msg"]) and "有效期" not in str(ans["err_msg"])
    assert "110105199001011234" not in str(ans["err_msg"])  # the ID is masked
    assert world.person(P7).cards[0].card_no == LOST_CARD[1]
    assert world.person(P8).cards[0].card_no == EXPIRED_CARD[1]


def test_1101_names_the_missing_field_and_never_quotes_an_id(wire: Wire, world: World) -> None:
    ans = _lookup(wire, "03", "B11000001")
    assert ans["infcode"] == -1 and "input.data.card_sn" in str(ans["err_msg"])
    ans = _lookup(wire, "04", "B11000001")
    assert "input.data.mdtrt_cert_type" in str(ans["err_msg"])
    ans = wire.call("1101", {"data": {"mdtrt_cert_type": "03"}})
    assert "input.data.mdtrt_cert_no" in str(ans["err_msg"])
    t, no, sn = "03", "B11000001", world.person(P1).cards[0].card_sn
    other = world.person(P5).id_number
    ans = _lookup(wire, t, no, sn, certno=other)
    assert ans["infcode"] == -1 and "input.data.certno" in str(ans["err_msg"])
    assert other not in str(ans["err_msg"])
