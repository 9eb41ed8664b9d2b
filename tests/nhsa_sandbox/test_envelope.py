"""Envelope and field validation: every refusal is ``infcode -1`` naming the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests

from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer

from .conftest import CODE_A, CODE_A_A, P1, Wire, balance, msgid, rows


def _refused(ans: dict[str, Any], field: str) -> None:
    assert ans["infcode"] == -1, ans
    assert field in ans["err_msg"], (field, ans["err_msg"])
    assert ans["output"] is None and ans["inf_refmsgid"] is None
    assert len(ans["err_msg"]) <= 200


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"msgid": ""}, "msgid"),
        ({"msgid": CODE_A + "2026011510000"}, "msgid"),  # too short
        ({"msgid": "H11010800002202601151000000001"}, "msgid"),  # another pharmacy's prefix
        ({"msgid": CODE_A + "20261315100000" + "0001"}, "msgid"),  # month 13
        ({"msgid": CODE_A + "20260115100000" + "00A1"}, "msgid"),
        ({"msgid": CODE_A + "2026011510000000001"}, "msgid"),  # 31 characters
        ({"inf_time": "2026/01/15 10:00:00"}, "inf_time"),
        ({"inf_time": "2026-02-30 10:00:00"}, "inf_time"),
        ({"infver": "V1.0.0.0"}, "infver"),
        ({"infver": "null"}, "infver"),
        ({"opter_type": "4"}, "opter_type"),
        ({"opter": ""}, "opter"),
        ({"opter_name": "x" * 51}, "opter_name"),
        ({"recer_sys_code": ""}, "recer_sys_code"),
        ({"fixmedins_name": "x" * 21}, "fixmedins_name"),
        ({"fixmedins_code": "H99999999999"}, "fixmedins_code"),
        ({"mdtrtarea_admvs": "110108"}, "mdtrtarea_admvs"),
        ({"mdtrtarea_admvs": "11010"}, "mdtrtarea_admvs"),
        ({"insuplc_admdvs": "1101050"}, "insuplc_admdvs"),
        ({"infno": "1102"}, "infno"),
        ({"infno": 1101}, "infno"),
        ({"input": "{\"data\": {}}"}, "input"),
        ({"input": None}, "input"),
    ],
)
def test_the_envelope_table_is_enforced(wire: Wire, override: dict[str, Any],
                                        field: str) -> None:
    env = wire.envelope("1101", {"data": {"mdtrt_cert_type": "01",
                                          "mdtrt_cert_no": "EV-ZHANGWEI-0001"}})
    env.update(override)
    _refused(wire.post(env), field)


def test_a_missing_envelope_field_is_named(wire: Wire) -> None:
    for field in ("infno", "msgid", "mdtrtarea_admvs", "recer_sys_code", "infver",
                  "opter_type", "opter", "opter_name", "inf_time", "fixmedins_code",
                  "fixmedins_name", "input"):
        env = wire.envelope("1101", {"data": {"mdtrt_cert_type": "01",
                                              "mdtrt_cert_no": "EV-ZHANGWEI-0001"}})
        del env[field]
        _refused(wire.post(env), field)


def test_tolerated_spellings(wire: Wire) -> None:
    """Empty optional fields as "null"/"NULL" (the platform's own sample), opter_type 1."""
    env = wire.envelope("1101", {"data": {"mdtrt_cert_type": "01",
                                          "mdtrt_cert_no": "EV-ZHANGWEI-0001",
                                          "card_sn": "NULL"}},
                        dev_no="null", cainfo="null", opter_type=1, unknown_key="x")
    ans = wire.post(env)
    assert ans["infcode"] == 0 and ans["output"]["baseinfo"]["psn_no"] == P1


def _detail(wire: Wire, **over: Any) -> dict[str, Any]:
    body = wire.purchase(P1, [(CODE_A_A, 2, 1000)])
    body["drugdetail"][0].update(over)
    return body


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"det_item_fee_sumamt": Decimal("20.001")}, "det_item_fee_sumamt"),
        ({"det_item_fee_sumamt": "20.001"}, "det_item_fee_sumamt"),
        ({"det_item_fee_sumamt": "abc"}, "det_item_fee_sumamt"),
        ({"det_item_fee_sumamt": True}, "det_item_fee_sumamt"),
        ({"det_item_fee_sumamt": Decimal("1" * 15)}, "det_item_fee_sumamt"),
        ({"det_item_fee_sumamt": Decimal("25.00")}, "det_item_fee_sumamt"),  # not cnt x pric
        ({"cnt": Decimal("0")}, "cnt"),
        ({"cnt": Decimal("1.00001")}, "cnt"),
        ({"pric": Decimal("10.0000001")}, "pric"),
        ({"feedetl_sn": "0"}, "feedetl_sn"),
        ({"feedetl_sn": "1a"}, "feedetl_sn"),
        ({"feedetl_sn": "1" * 16}, "feedetl_sn"),
        ({"fee_ocur_time": "2026-01-15"}, "fee_ocur_time"),
        ({"rx_circ_flag": "2"}, "rx_circ_flag"),
        ({"rx_circ_flag": ""}, "rx_circ_flag"),
        ({"medins_list_codg": ""}, "medins_list_codg"),
        ({"med_list_codg": "x" * 51}, "med_list_codg"),
        ({"rxno": "x" * 31}, "rxno"),
    ],
)
def test_drugdetail_fields_are_checked(wire: Wire, sandbox: NhsaSandboxServer,
                                       over: dict[str, Any], field: str) -> None:
    ans = wire.call("2102", _detail(wire, **over), insuplc="110105")
    _refused(ans, f"input.drugdetail[0].{field}")
    assert balance(sandbox, P1) == 20000
    assert rows(sandbox, "SELECT COUNT(*) FROM messages") == [(0,)]


def test_druginfo_and_lines_as_a_whole(wire: Wire) -> None:
    body = wire.purchase(P1, [(CODE_A_A, 1, 1000), (CODE_A_A, 1, 500)])
    body["drugdetail"][1]["feedetl_sn"] = "1"
    _refused(wire.call("2102", body, insuplc="110105"), "input.drugdetail[1].feedetl_sn")
    body = wire.purchase(P1, [(CODE_A_A, 1, 1000)])
    body["drugdetail"] = []
    _refused(wire.call("2102", body, insuplc="110105"), "input.drugdetail")
    for field in ("psn_no", "mdtrt_cert_type", "mdtrt_cert_no", "psn_cert_type", "certno",
                  "psn_type", "psn_name", "begntime", "medfee_sumamt", "insutype",
                  "acct_used_flag", "med_type"):
        body = wire.purchase(P1, [(CODE_A_A, 1, 1000)])
        del body["druginfo"][field]
        _refused(wire.call("2102", body, insuplc="110105"), f"input.druginfo.{field}")
    body = wire.purchase(P1, [(CODE_A_A, 1, 1000)])
    body["druginfo"]["card_sn"] = ""
    _refused(wire.call("2102", body, insuplc="110105"), "input.druginfo.card_sn")


def test_amounts_as_numeric_strings_and_integers_are_accepted(wire: Wire) -> None:
    body = wire.purchase(P1, [(CODE_A_A, 2, 1000)])
    body["druginfo"]["medfee_sumamt"] = "20.00"
    body["drugdetail"][0].update(det_item_fee_sumamt=20, cnt="2", pric="10.000000",
                                 feedetl_sn=1)
    ans = wire.call("2102", body, insuplc="110105")
    assert ans["infcode"] == 0 and ans["output"]["setlinfo"]["acct_pay"] == Decimal("20.00")


def test_not_json_or_not_json_content(sandbox: NhsaSandboxServer) -> None:
    for data, ctype in ((b"{not json", "application/json"), (b"\xff\xfe", "application/json"),
                        (b"[]", "application/json"), (b"{}", "application/xml")):
        r = requests.post(sandbox.url, data=data, headers={"Content-Type": ctype}, timeout=5)
        assert r.status_code == 200
        body = r.json()
        assert body["infcode"] == -1 and body["err_msg"]


def test_text_plain_is_accepted_like_guangdongs_gateway(wire: Wire) -> None:
    from .conftest import dumps

    env = wire.envelope("1101", {"data": {"mdtrt_cert_type": "01",
                                          "mdtrt_cert_no": "EV-ZHANGWEI-0001"}})
    r = requests.post(wire.url + "/fsi/api/rsfComIfsService/callService",
                      data=dumps(env).encode(), timeout=5,
                      headers={"Content-Type": "text/plain; charset=utf-8"})
    assert r.json()["infcode"] == 0
    assert r.headers["content-type"].startswith("application/json")
    assert "balc\":200.00" in r.text  # amounts are JSON numbers with 2 decimals


def test_a_used_msgid_cannot_serve_another_transaction(wire: Wire) -> None:
    mid = msgid()
    assert wire.settle(P1, [(CODE_A_A, 1, 1000)], mid=mid)["infcode"] == 0
    ans = wire.call("2601", {"data": {"psn_no": P1, "omsgid": mid, "oinfno": "2102"}},
                    insuplc="110105", mid=mid)
    _refused(ans, "msgid")
