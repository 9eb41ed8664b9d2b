"""A small scripted platform for the client's tests, until (and beside) N2's sandbox.

It keeps just enough state to answer like the interface: sign-ins, persons, a
catalogue, settlements idempotent by msgid, 2601 and 2103. ``before`` replies replace
the next answer of an infno (nothing committed); ``after`` replies replace it after
committing (a lost answer). ``strings=True`` answers the way some provinces do:
amounts and infcode as strings, empty fields as "null".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.nhsa.replay import Reply

CATALOGUE = {"XA01AAA0001": "A", "XB01BBB0001": "B", "ZC01CCC0001": "C"}
ID_1 = "11010519491231002X"


@dataclass
class Person:
    psn_no: str
    name: str
    certno: str
    insutype: str
    balance: int  # fen
    family: int = 0  # fen the bound family accounts can pay
    region: str = "110105"


@dataclass
class FakePlatform:
    strings: bool = False
    cards: dict[str, Person] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    before: dict[str, list[Reply]] = field(default_factory=dict)
    after: dict[str, list[Reply]] = field(default_factory=dict)
    sign_nos: set[str] = field(default_factory=set)
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)  # msgid -> record
    reversed_: set[str] = field(default_factory=set)  # setl_ids
    voided: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.cards:
            self.cards = {
                "C001": Person("PSN001", "张三", ID_1, "310", 10_000),
                "EC-TOKEN-0002": Person("PSN002", "李四", "110105198001010011", "390", 0, 5_000),
                "C003": Person("PSN003", "王五", "110105197001010013", "310", 500, 20_000),
            }
            self.lost, self.expired = {"C404"}, {"C405"}

    # ------------------------------------------------------------------ helpers
    def money(self, fen: int) -> Any:
        value = (Decimal(fen) / 100).quantize(Decimal("0.01"))
        return str(value) if self.strings else value

    def ok(self, output: dict[str, Any]) -> dict[str, Any]:
        return {"infcode": "0" if self.strings else 0, "inf_refmsgid": "110105" + "2" * 24,
                "refmsg_time": "20261201101010123", "respond_time": "20261201101010200",
                "err_msg": "null" if self.strings else None, "output": output}  # fmt: skip

    @staticmethod
    def fail(err_msg: str) -> dict[str, Any]:
        return {"infcode": -1, "inf_refmsgid": None, "err_msg": err_msg, "output": None}

    def person(self, psn_no: str) -> Person:
        return next(p for p in self.cards.values() if p.psn_no == psn_no)

    # ------------------------------------------------------------------ the call
    def __call__(self, env: dict[str, Any]) -> Reply:
        infno = env["infno"]
        if self.before.get(infno):
            return self.before[infno].pop(0)
        if infno == "9001":
            sign_no = f"SIGN{len(self.sign_nos) + 1:04d}"
            self.sign_nos.add(sign_no)
            return self.ok({"signinoutb": {"sign_time": "2026-12-01 08:00:00", "sign_no": sign_no}})
        if env.get("sign_no") not in self.sign_nos:
            return self.fail("未签到或签到已失效，请先签到")
        if infno == "9002":
            self.sign_nos.discard(env["sign_no"])
            return self.ok({"sign_time": "2026-12-01 20:00:00"})
        answer = getattr(self, f"t{infno}")(env["input"], env)
        if self.after.get(infno):
            return self.after[infno].pop(0)
        return answer

    def t1101(self, data: dict[str, Any], env: dict[str, Any]) -> Reply:
        no = data["data"]["mdtrt_cert_no"]
        if no in self.lost:
            return self.fail("该社会保障卡已挂失，不能使用")
        if no in self.expired:
            return self.fail("社会保障卡已超过有效期")
        p = self.cards.get(no)
        if p is None:
            return self.fail(f"MBS-cn.hsa.ais.common.exception.HygeiaException: 请求失败,"
                             f"错误原因：本地查询错误:证件{ID_1}该参保人的基本信息为空null")
        empty = "null" if self.strings else ""
        return self.ok({
            "baseinfo": {"psn_no": p.psn_no, "psn_cert_type": "01", "certno": p.certno,
                         "psn_name": p.name, "gend": "1", "naty": "01", "brdy": "1949-12-31",
                         "age": Decimal("76.9"), "expContent": empty},
            "insuinfo": [{"balc": self.money(p.balance), "insutype": p.insutype,
                          "psn_type": "11" if p.insutype == "310" else "31",
                          "psn_insu_stas": "1", "psn_insu_date": "2000-01-01",
                          "paus_insu_date": empty, "cvlserv_flag": "0",
                          "insuplc_admdvs": p.region, "emp_name": empty}],
            "idetinfo": [],
        })  # fmt: skip

    def _split(self, data: dict[str, Any]) -> dict[str, Any]:
        info = data["druginfo"]
        p = self.person(info["psn_no"])
        medfee = payable = 0
        for row in data["drugdetail"]:
            cls = CATALOGUE.get(row["med_list_codg"])
            if cls is None:
                raise KeyError(row["med_list_codg"])
            fen = int(Decimal(row["det_item_fee_sumamt"]) * 100)
            medfee += fen
            payable += fen if cls in "AB" else 0
        flag = info["acct_used_flag"]
        own = min(p.balance, payable) if flag in "12" else 0
        family = min(p.family, payable - own) if flag == "2" else 0
        return {"p": p, "medfee": medfee, "own": own, "family": family,
                "cash": medfee - own - family}  # fmt: skip

    def setlinfo(self, s: dict[str, Any], msgid: str, sign: int = 1) -> dict[str, Any]:
        p, acct = s["p"], s["own"] + s["family"]
        m = self.money
        return {
            "setl_id": s.get("setl_id", "S" + msgid[-12:]), "mdtrt_id": "M" + msgid[-12:],
            "psn_no": p.psn_no, "psn_name": p.name, "psn_cert_type": "01", "certno": p.certno,
            "insutype": p.insutype, "setl_time": "2026-12-01 10:10:10", "med_type": "41",
            "medfee_sumamt": m(sign * s["medfee"]), "fulamt_ownpay_amt": m(0),
            "fund_pay_sumamt": m(0), "psn_part_amt": m(sign * s["medfee"]),
            "acct_pay": m(sign * acct), "psn_cash_pay": m(sign * s["cash"]),
            "acct_mulaid_pay": m(sign * s["family"]), "balc": m(p.balance),
            "hosp_part_amt": m(0), "pool_prop_selfpay": Decimal("0.0000"),
            "medins_setl_id": msgid, "clr_type": "41", "clr_way": "1",
            "unknown_new_field": "ignored",
        }  # fmt: skip

    def _settle(self, data: dict[str, Any], msgid: str, commit: bool) -> Reply:
        try:
            s = self._split(data)
        except KeyError as exc:
            return self.fail(f"医疗目录编码{exc.args[0]}不存在")
        if commit:
            if msgid in self.settled:
                s = self.settled[msgid]
            else:
                s["p"].balance -= s["own"]
                s["p"].family -= s["family"]
                self.settled[msgid] = s
        cuts = [{"feedetl_sn": r["feedetl_sn"], "det_item_fee_sumamt": r["det_item_fee_sumamt"],
                 "cnt": r["cnt"], "pric": r["pric"], "pric_uplmt_amt": Decimal("0"),
                 "chrgitm_lv": {"A": "01", "B": "02", "C": "03"}[CATALOGUE[r["med_list_codg"]]],
                 "med_chrgitm_type": "09"} for r in data["drugdetail"]]  # fmt: skip
        info = self.setlinfo(s, msgid)
        if not commit:
            del info["setl_id"]
        return self.ok({"setlinfo": info, "setldetail": [], "detlcutinfo": cuts})

    def t2101(self, data: dict[str, Any], env: dict[str, Any]) -> Reply:
        return self._settle(data, env["msgid"], commit=False)

    def t2102(self, data: dict[str, Any], env: dict[str, Any]) -> Reply:
        return self._settle(data, env["msgid"], commit=True)

    def _undo(self, s: dict[str, Any]) -> None:
        s["p"].balance += s["own"]
        s["p"].family += s["family"]
        self.reversed_.add("S" + next(k for k, v in self.settled.items() if v is s)[-12:])

    def t2601(self, data: dict[str, Any], env: dict[str, Any]) -> Reply:
        omsgid = data["data"]["omsgid"]
        self.voided.append(omsgid)
        s = self.settled.get(omsgid)
        if s is not None and "S" + omsgid[-12:] not in self.reversed_:
            self._undo(s)
        return self.ok({})

    def t2103(self, data: dict[str, Any], env: dict[str, Any]) -> Reply:
        setl_id = data["data"]["setl_id"]
        found = [(k, v) for k, v in self.settled.items() if "S" + k[-12:] == setl_id]
        if not found:
            return self.fail(f"结算ID{setl_id}不存在")
        if setl_id in self.reversed_:
            return self.fail("该结算已撤销，不能重复撤销")
        _msgid, s = found[0]
        self._undo(s)
        info = self.setlinfo({**s, "setl_id": "R" + env["msgid"][-12:]}, env["msgid"], sign=-1)
        return self.ok({"setlinfo": info, "setldetail": []})
