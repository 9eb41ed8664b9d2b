"""Fixtures: a real national-platform sandbox on 127.0.0.1 over a real SQLite file.

The tests speak the wire by hand (``Wire``: an envelope per NHSA.md §1, POSTed with
``requests``), not through the agent's client: the sandbox is the reference the
client is checked against, so its tests must not share the client's code.

After every test that used a sandbox: the double-entry audit must be clean and the
money conserved (every balance + receivables == the world's money).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer
from pos_plugin.ledger.nhsa.sandbox.store import personal_id
from pos_plugin.world import World, load_world

CODE_A, NAME_A, REGION_A = "H11010500001", "朝阳康宁大药房", "110105"
CODE_B, NAME_B, REGION_B = "H11010800002", "海淀仁和药店", "110108"

P1, P2, P3, P4, P5 = (f"{p}00000000000000000{n}" for p, n in
                      (("11", 1), ("11", 2), ("11", 3), ("11", 4), ("13", 5)))
P6, P7, P8, P9 = (f"1100000000000000000{n}" for n in (6, 7, 8, 9))
PA = {p: personal_id(p) for p in (P1, P2, P4, P5, P6, P7, P8, P9)}
CODE_A_A, CODE_B_B, CODE_C = "XA01AAA0001", "XB01BBB0001", "ZC01CCC0001"
CODE_LIMITED = "XA02AAA0002"  # class A, price limit 15.00 a unit

_seq = itertools.count(1)


def msgid(code: str = CODE_A) -> str:
    """A fresh, well-formed msgid: pharmacy code + yyyyMMddHHmmss + 4-digit sequence."""
    n = next(_seq)
    return f"{code}20260115{n // 10000 % 1000000:06d}{n % 10000:04d}"


def card_cert(world: World, psn_no: str) -> tuple[str, str, str]:
    """(mdtrt_cert_type, mdtrt_cert_no, card_sn) of the person's first card."""
    c = world.person(psn_no).cards[0]
    return "03", c.card_no, c.card_sn


def yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def fen(value: Any) -> int:
    """A yuan amount of an answer (a Decimal from the exact parse) as int fen."""
    d = Decimal(str(value))
    assert d == d.quantize(Decimal("0.01")), f"{value} is not whole fen"
    return int(d * 100)


def dumps(obj: Any) -> str:
    """Request JSON with yuan amounts as JSON numbers with 2 decimals (never floats)."""
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)


class Wire:
    """A hand-written national-interface caller for one pharmacy (tests only)."""

    def __init__(self, url: str, world: World, code: str = CODE_A, name: str = NAME_A,
                 region: str = REGION_A) -> None:
        self.url, self.world = url, world
        self.code, self.name, self.region = code, name, region
        self.sign_no = ""
        self.http = requests.Session()

    def envelope(self, infno: str, input_: dict[str, Any], *, mid: str | None = None,
                 insuplc: str = "", **over: Any) -> dict[str, Any]:
        env: dict[str, Any] = {
            "infno": infno, "msgid": mid or msgid(self.code), "mdtrtarea_admvs": self.region,
            "insuplc_admdvs": insuplc, "recer_sys_code": "YBXT", "dev_no": "",
            "dev_safe_info": "", "cainfo": "", "signtype": "", "infver": "V1.0",
            "opter_type": "1", "opter": "op1", "opter_name": "收银员一",
            "inf_time": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "fixmedins_code": self.code, "fixmedins_name": self.name,
            "sign_no": self.sign_no, "input": input_,
        }
        env.update(over)
        return env

    def post(self, env: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        r = self.http.post(self.url, data=dumps(env).encode("utf-8"), timeout=timeout,
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = json.loads(r.content, parse_float=Decimal)
        return body

    def call(self, infno: str, input_: dict[str, Any], **kw: Any) -> dict[str, Any]:
        timeout = kw.pop("timeout", 10.0)
        return self.post(self.envelope(infno, input_, **kw), timeout=timeout)

    def sign_in(self, opter: str = "op1") -> str:
        ans = self.call("9001", {"signIn": {"opter_no": opter, "mac": "00-11-22-33-44-55",
                                            "ip": "127.0.0.1"}})
        assert ans["infcode"] == 0, ans
        self.sign_no = ans["output"]["signinoutb"]["sign_no"]
        return self.sign_no

    def lookup_card(self, psn_no: str) -> dict[str, Any]:
        t, no, sn = card_cert(self.world, psn_no)
        return self.call("1101", {"data": {"mdtrt_cert_type": t, "mdtrt_cert_no": no,
                                           "card_sn": sn, "begntime": "", "psn_cert_type": "",
                                           "certno": "", "psn_name": ""}})

    def purchase(self, psn_no: str, lines: list[tuple[str, int, int]], flag: str = "2",
                 *, cert: tuple[str, str, str] | None = None) -> dict[str, Any]:
        """druginfo + drugdetail for ``lines`` of (med_list_codg, cnt, unit price fen)."""
        p = self.world.person(psn_no)
        t, no, sn = cert or card_cert(self.world, psn_no)
        now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        detail = [{
            "feedetl_sn": str(i + 1), "rxno": "", "rx_circ_flag": "0", "fee_ocur_time": now,
            "med_list_codg": code, "medins_list_codg": f"SKU{i + 1}",
            "det_item_fee_sumamt": yuan(cnt * price), "cnt": Decimal(cnt),
            "pric": yuan(price), "bilg_dr_codg": "", "bilg_dr_name": "",
        } for i, (code, cnt, price) in enumerate(lines)]
        info = {
            "psn_no": psn_no, "mdtrt_cert_type": t, "mdtrt_cert_no": no, "card_sn": sn,
            "psn_cert_type": "01", "certno": p.id_number, "psn_type": "11",
            "psn_name": p.name, "begntime": now,
            "medfee_sumamt": yuan(sum(c * pr for _, c, pr in lines)),
            "insutype": p.insurance_type.value, "acct_used_flag": flag, "med_type": "41",
        }
        return {"druginfo": info, "drugdetail": detail}

    def settle(self, psn_no: str, lines: list[tuple[str, int, int]], flag: str = "2",
               *, infno: str = "2102", mid: str | None = None, **kw: Any) -> dict[str, Any]:
        insuplc = self.world.person(psn_no).insured_region
        return self.call(infno, self.purchase(psn_no, lines, flag), mid=mid, insuplc=insuplc,
                         **kw)

    def undo(self, psn_no: str, setl_id: str, mdtrt_id: str, **kw: Any) -> dict[str, Any]:
        return self.call("2103", {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id,
                                           "psn_no": psn_no}},
                         insuplc=self.world.person(psn_no).insured_region, **kw)

    def reverse(self, psn_no: str, omsgid: str, **kw: Any) -> dict[str, Any]:
        return self.call("2601", {"data": {"psn_no": psn_no, "omsgid": omsgid,
                                           "oinfno": "2102"}},
                         insuplc=self.world.person(psn_no).insured_region, **kw)


def assert_invariants(setlinfo: dict[str, Any]) -> None:
    """NHSA.md §2 on one setlinfo: medfee = fund + psn_part + hosp; psn_part = acct + cash;
    acct_mulaid_pay within acct_pay; every amount a whole fen."""
    medfee, fund = fen(setlinfo["medfee_sumamt"]), fen(setlinfo["fund_pay_sumamt"])
    part, hosp = fen(setlinfo["psn_part_amt"]), fen(setlinfo.get("hosp_part_amt", 0))
    acct, cash = fen(setlinfo["acct_pay"]), fen(setlinfo["psn_cash_pay"])
    mulaid = fen(setlinfo["acct_mulaid_pay"])
    assert medfee == fund + part + hosp
    assert part == acct + cash
    assert abs(mulaid) <= abs(acct) and (mulaid == 0 or (mulaid > 0) == (acct > 0))
    assert setlinfo["medins_setl_id"]


@pytest.fixture
def world() -> World:
    return load_world()


@pytest.fixture
def sandbox(tmp_path: Path, world: World) -> Iterator[NhsaSandboxServer]:
    server = NhsaSandboxServer(str(tmp_path / "nhsa.db"), world)
    server.start()
    try:
        yield server
    finally:
        assert server.store is not None
        problems = server.store.audit()
        total = server.store.total_balance()
        server.stop()
    assert problems == []
    assert total == world.total_money()


@pytest.fixture
def wire(sandbox: NhsaSandboxServer, world: World) -> Wire:
    """A caller of pharmacy A, signed in."""
    w = Wire(sandbox.url, world)
    w.sign_in()
    return w


def balance(sandbox: NhsaSandboxServer, psn_no: str) -> int:
    assert sandbox.store is not None
    b = sandbox.store.balance(personal_id(psn_no))
    assert b is not None
    return b


def rows(sandbox: NhsaSandboxServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert sandbox.store is not None
    with sandbox.store.read() as tx:
        return tx.all(sql, *params)
