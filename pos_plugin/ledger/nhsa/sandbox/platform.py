"""The platform's transactions: 9001/9002, 1101, 2101/2102, 2103, 2601 (3201/3202 and
9101/9102 in ``daybook``).

``Platform.call`` takes one request envelope (already JSON-decoded with exact
decimals) and returns the answer envelope as JSON text. Every refusal is an
``infcode -1`` answer whose ``err_msg`` names the field; ID numbers are never
quoted in clear (``mask_id_number``), names and card numbers are masked too.

What it decides centrally, as the real platform does (NHSA.md §3):
- each line's class from the catalogue (甲/乙/丙 -> ``chrgitm_lv`` 01/02/03) and its
  price limit (the excess is 超限价自费);
- the account-payable part (class A and B lines, within the limit) and who pays
  it, from ``acct_used_flag``: 0 nobody, 1 the patient's own account, 2 the own
  account first and then the patient's bound family payers in binding order,
  each checked by the ledger-side rule (``ledger.own.sandbox.rules``);
- ``fund_pay_sumamt`` is 0: a pharmacy purchase here is paid by accounts and cash
  only (no 门诊统筹), so ``psn_part_amt = acct_pay + psn_cash_pay = medfee_sumamt``.

Idempotency: a 2102, 2103 or 2601 binds its msgid (table ``messages``) to the
hash of its cleaned input and answers a repeat with the first answer, byte for
byte; a different input under a used msgid is refused. A refusal binds nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pos_plugin.ledger.nhsa.sandbox import daybook, uploads, wire
from pos_plugin.ledger.nhsa.sandbox.store import Row, Store, Tx, personal_id, receivable_id
from pos_plugin.ledger.nhsa.sandbox.wire import F, Refused, fen_of, yuan
from pos_plugin.ledger.own.sandbox import rules
from pos_plugin.rules.identity import mask_card_no, mask_id_number, normalize_id_number

SHANGHAI = ZoneInfo("Asia/Shanghai")
INFNOS = ("9001", "9002", "1101", "1312", "2101", "2102", "2103", "2601", "3201", "3202",
          "3301", "3505", "3506", "9101", "9102")
BUSINESS = ("1101", "2101", "2102", "2103", "2601")
LINES_MAX = 1000  # drugdetail rows in one purchase: far more than a counter rings up
ZERO = Decimal("0.00")
MUNICIPALITIES = ("11", "12", "31", "50")  # one 统筹区 per city: Beijing, Tianjin, ...

NOT_SIGNED_IN = "未签到或签到已失效，请先调用【9001】签到 (not signed in: call 9001 first)"
UNKNOWN_PERSON = "请求失败,错误原因：本地查询错误:该参保人的基本信息为空 (no insured person)"
CARD_LOST = "该社会保障卡已挂失，不能使用 (the card is reported lost)"
CARD_EXPIRED = "该社会保障卡已超过有效期，不能使用 (the card is past its expiry date)"


def shanghai_now() -> dt.datetime:
    return dt.datetime.now(SHANGHAI)


# --------------------------------------------------------------------------- cascade
@dataclass(frozen=True)
class Payer:
    """An account that may pay: the patient's own (``binding_id`` None) or a family payer's."""

    account_id: str
    psn_no: str
    balance: int
    binding_id: str | None = None


def cascade(payable: int, own: Payer | None, family: Sequence[Payer], flag: str
            ) -> list[tuple[Payer, int]]:
    """Who pays how much of ``payable`` (fen): the own account first, then family in order.

    ``flag`` is ``acct_used_flag``: "0" nobody, "1" the own account only, "2" the own
    account then ``family`` (already filtered by the mutual-aid rule and ordered by
    binding order). Each payer pays what it can (``min(balance, rest)``); what no
    account covers is the patient's cash. Payers with nothing to pay are left out.
    """
    if payable < 0:
        raise ValueError("payable must not be negative")
    chain: list[Payer] = []
    if flag in ("1", "2") and own is not None:
        chain.append(own)
    if flag == "2":
        chain.extend(family)
    legs: list[tuple[Payer, int]] = []
    rest = payable
    for payer in chain:
        take = min(max(payer.balance, 0), rest)
        if take > 0:
            legs.append((payer, take))
            rest -= take
        if rest == 0:
            break
    return legs


# --------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class Person:
    psn_no: str
    name: str
    id_number: str
    insutype: str
    insured_region: str
    insurance_status: str

    @classmethod
    def of(cls, row: Row) -> Person:
        return cls(*(str(v) for v in row[:6]))


_PERSON_COLS = "psn_no, name, id_number, insutype, insured_region, insurance_status"


@dataclass(frozen=True)
class Line:
    """One drugdetail row after classification (fen)."""

    feedetl_sn: str
    amount: int
    cnt: Decimal
    pric: Decimal
    cls: str  # A / B / C
    limit: int | None  # unit price limit, fen
    overlmt: int  # 超限价金额
    fulamt_ownpay: int  # 全自费金额 (class C)
    inscp: int  # 符合政策范围金额: the account-payable part
    code: str


@dataclass(frozen=True)
class Priced:
    """A 2101/2102 worked out: the person, the lines, who pays what."""

    person: Person
    druginfo: dict[str, Any]
    lines: list[Line]
    medfee: int
    payable: int
    legs: list[tuple[Payer, int]]
    own_before: int | None  # the own balance before, None without an account
    digest: str

    @property
    def acct_pay(self) -> int:
        return sum(a for _, a in self.legs)

    @property
    def mulaid(self) -> int:
        return sum(a for p, a in self.legs if p.binding_id is not None)

    @property
    def own_paid(self) -> int:
        return self.acct_pay - self.mulaid


def _masked(value: str) -> str:
    return mask_id_number(value) if value else ""


def _gend_brdy_age(id_number: str, today: dt.date) -> tuple[str, str, Decimal]:
    """Sex, birth date and age from an 18-character resident ID (else unknown)."""
    n = normalize_id_number(id_number)
    if len(n) != 18 or not n[:17].isdigit():
        return "0", "", Decimal("0.0")
    try:
        born = dt.date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        return "0", "", Decimal("0.0")
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return ("1" if int(n[16]) % 2 else "2"), born.isoformat(), Decimal(max(years, 0)).quantize(
        Decimal("0.1"))


def _psn_type(insutype: str) -> str:
    return "11" if insutype == "310" else "15"  # 在职 / 居民（成年）: Hunan 表383


def _insu_stas(status: str) -> str:
    return {"active": "1", "suspended": "2", "terminated": "4"}.get(status, "1")


def _local_area(region: str) -> str:
    """The 统筹区 a region code belongs to: the city (4 digits), a municipality (2)."""
    return region[:2] if region[:2] in MUNICIPALITIES else region[:4]


def clr_type(insutype: str, insured_region: str, mdtrtarea: str) -> str:
    """41 local; {insutype}411 elsewhere in the province; {insutype}412 across provinces."""
    if _local_area(insured_region) == _local_area(mdtrtarea):
        return "41"
    return f"{insutype}{'411' if insured_region[:2] == mdtrtarea[:2] else '412'}"


def _digest(infno: str, cleaned: Any) -> str:
    text = json.dumps([infno, cleaned], sort_keys=True, separators=(",", ":"),
                      default=lambda d: str(d.normalize()) if isinstance(d, Decimal) else str(d))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Env:
    """The checked envelope of one call."""

    fields: dict[str, Any]
    input: Mapping[str, Any]
    pharmacy_region: str

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


class Platform:
    """The transactions over a ``Store``; one instance serves all threads."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = shanghai_now) -> None:
        self.store = store
        self.clock = clock
        with store.read() as tx:
            self._pharmacies = {str(c): (str(n), str(r)) for c, n, r in
                                tx.all("SELECT code, name, region FROM pharmacies")}
            row = tx.one("SELECT value FROM meta WHERE key = 'cross_province_pairs'")
        self._pairs = rules.opened_pairs(json.loads(row[0]) if row else [])
        self._refseq = itertools.count(1)
        self._reflock = threading.Lock()

    # ------------------------------------------------------------------ envelope
    def _now(self) -> dt.datetime:
        return self.clock().astimezone(SHANGHAI)

    def _answer(self, output: Any, region: str = "000000") -> str:
        now = self._now()
        stamp = now.strftime("%Y%m%d%H%M%S%f")[:17]
        with self._reflock:
            n = next(self._refseq)
        return wire.dumps({
            "infcode": 0, "inf_refmsgid": f"{region}{now:%Y%m%d%H%M%S}{n % 10**10:010d}",
            "refmsg_time": stamp, "respond_time": stamp, "err_msg": "", "warn_msg": "",
            "output": output,
        })

    def refusal(self, err_msg: str) -> str:
        """An ``infcode -1`` answer: output and inf_refmsgid null, as the real platform does."""
        stamp = self._now().strftime("%Y%m%d%H%M%S%f")[:17]
        return wire.dumps({
            "infcode": -1, "inf_refmsgid": None, "refmsg_time": stamp, "respond_time": stamp,
            "err_msg": err_msg[:200], "warn_msg": "", "output": None,
        })

    def check_envelope(self, body: Any) -> Env:
        """The §1 request table, the msgid's shape, the pharmacy, the input node."""
        if not isinstance(body, Mapping):
            raise Refused("报文应为JSON对象 (the envelope must be a JSON object)")
        env = wire.check_fields(body, wire.ENVELOPE, "")
        wire.one_of(env["infno"], INFNOS, "infno")
        code = env["fixmedins_code"]
        if code not in self._pharmacies:
            raise Refused("fixmedins_code 不是本平台的定点医药机构 (unknown pharmacy)",
                          "fixmedins_code")
        msgid = env["msgid"]
        if len(msgid) != 30 or not msgid.startswith(code):
            raise Refused("msgid 应为定点医药机构编号(12)+yyyyMMddHHmmss(14)+顺序号(4)，共30位 "
                          "(msgid must be fixmedins_code + time + 4 digits)", "msgid")
        try:
            dt.datetime.strptime(msgid[12:26], "%Y%m%d%H%M%S")
        except ValueError:
            raise Refused("msgid 第13-26位应为时间 yyyyMMddHHmmss (msgid time part)",
                          "msgid") from None
        if not msgid[26:].isdigit():
            raise Refused("msgid 末4位应为数字顺序号 (msgid sequence)", "msgid")
        region = self._pharmacies[code][1]
        if not (env["mdtrtarea_admvs"].isdigit() and len(env["mdtrtarea_admvs"]) == 6):
            raise Refused("mdtrtarea_admvs 应为6位区划代码", "mdtrtarea_admvs")
        if env["mdtrtarea_admvs"] != region:
            raise Refused("mdtrtarea_admvs 与定点医药机构所在医保区划不符 "
                          "(not the pharmacy's region)", "mdtrtarea_admvs")
        ins = env["insuplc_admdvs"]
        if ins and not (ins.isdigit() and len(ins) == 6):
            raise Refused("insuplc_admdvs 应为6位区划代码", "insuplc_admdvs")
        wire.one_of(env["opter_type"], ("1", "2", "3"), "opter_type")
        raw_input = body.get("input")
        if not isinstance(raw_input, Mapping):
            raise Refused("input 不能为空，应为JSON对象 (input must be a JSON object)", "input")
        if env["infno"] != "9101" and len(wire.dumps(raw_input)) > wire.INPUT_MAX:
            raise Refused(f"input 超出长度{wire.INPUT_MAX}", "input")
        return Env(env, raw_input, region)

    def call(self, body: Any) -> str:
        """One request envelope in, one answer envelope (JSON text) out."""
        try:
            env = self.check_envelope(body)
            return self._dispatch(env)
        except Refused as r:
            return self.refusal(r.err_msg)

    def _dispatch(self, env: Env) -> str:
        infno = env["infno"]
        if infno == "9001":
            return self._sign_in(env)
        self._check_sign_no(env["sign_no"], env["fixmedins_code"])
        if infno == "9002":
            return self._sign_out(env)
        if infno == "1101":
            return self._lookup(env)
        if infno == "2101":
            with self.store.read() as tx:
                priced = self._price(tx, env)
                return self._answer({"setlinfo": self._setlinfo(env, priced, None),
                                     "setldetail": _setldetail(priced),
                                     "detlcutinfo": _detlcutinfo(priced.lines)},
                                    env.pharmacy_region)
        if infno == "2102":
            return self._settle(env)
        if infno == "2103":
            return self._undo(env)
        if infno == "1312":
            return daybook.catalogue(self, env)
        if infno == "3201":
            return daybook.totals(self, env)
        if infno == "3505":
            return uploads.sales_upload(self, env)
        if infno == "3506":
            return uploads.sales_return(self, env)
        if infno == "3301":
            return uploads.catalogue_mapping(self, env)
        if infno == "3202":
            return daybook.detail(self, env)
        if infno == "9101":
            return daybook.upload(self, env)
        if infno == "9102":  # over ``call``: the file itself is ``download``'s
            daybook.download(self, env)
            return self._answer({}, env.pharmacy_region)
        return self._reverse_msg(env)

    def download(self, body: Any) -> bytes | str:
        """9102: the file's bytes, or the refusal envelope (JSON text) when it cannot be had."""
        try:
            env = self.check_envelope(body)
            if env["infno"] != "9102":
                raise Refused("infno 应为 9102", "infno")
            self._check_sign_no(env["sign_no"], env["fixmedins_code"])
            return daybook.download(self, env)
        except Refused as r:
            return self.refusal(r.err_msg)

    # ------------------------------------------------------------------ 9001 / 9002
    def expire_sign_ins(self) -> int:
        """Fault hook: every sign-in so far stops being valid."""
        with self.store.write() as tx:
            return tx.run("UPDATE sign_ins SET expired = 1 WHERE expired = 0")

    def _check_sign_no(self, sign_no: str, code: str) -> None:
        """A business call needs today's sign-in of this pharmacy, not signed out."""
        if not sign_no:
            raise Refused(NOT_SIGNED_IN, "sign_no")
        with self.store.read() as tx:
            row = tx.one("SELECT fixmedins_code, day, signed_out_at, expired FROM sign_ins "
                         "WHERE sign_no = ?", sign_no)
        if (row is None or row[0] != code or row[1] != self._now().date().isoformat()
                or row[2] is not None or row[3]):
            raise Refused(NOT_SIGNED_IN, "sign_no")

    def _sign_in(self, env: Env) -> str:
        data = wire.check_fields(env.input.get("signIn"), wire.SIGN_IN, "input.signIn")
        now = self._now()
        day = now.date().isoformat()
        code = env["fixmedins_code"]
        with self.store.write() as tx:
            row = tx.one("SELECT sign_no, sign_time FROM sign_ins WHERE fixmedins_code = ? AND "
                         "opter = ? AND day = ? AND signed_out_at IS NULL AND expired = 0",
                         code, data["opter_no"], day)
            if row is None:  # a repeated 9001 the same day keeps its sign_no
                n = tx.insert_id("INSERT INTO ids (at) VALUES (?)", now.isoformat())
                sign_no = f"{now:%Y%m%d}{code}{n:010d}"
                sign_time = f"{now:%Y-%m-%d %H:%M:%S}"
                tx.run("INSERT INTO sign_ins (sign_no, fixmedins_code, opter, day, sign_time) "
                       "VALUES (?, ?, ?, ?, ?)", sign_no, code, data["opter_no"], day, sign_time)
            else:
                sign_no, sign_time = str(row[0]), str(row[1])
        return self._answer({"signinoutb": {"sign_time": sign_time, "sign_no": sign_no}},
                            env.pharmacy_region)

    def _sign_out(self, env: Env) -> str:
        data = wire.check_fields(env.input.get("signOut"), wire.SIGN_OUT, "input.signOut")
        self._check_sign_no(data["sign_no"], env["fixmedins_code"])
        now = self._now()
        with self.store.write() as tx:
            tx.run("UPDATE sign_ins SET signed_out_at = ? WHERE sign_no = ?",
                   now.isoformat(), data["sign_no"])
        return self._answer({"signoutoutb": {"sign_time": f"{now:%Y-%m-%d %H:%M:%S}"}},
                            env.pharmacy_region)

    # ------------------------------------------------------------------ 1101
    def _resolve(self, tx: Tx, cert_type: str, cert_no: str, card_sn: str, where: str
                 ) -> Person:
        """The person a credential names; lost, expired or unknown ones refused."""
        wire.one_of(cert_type, ("01", "02", "03"), f"{where}.mdtrt_cert_type")
        if cert_type == "03":
            if not card_sn:
                raise Refused(f"{where}.card_sn 就诊凭证类型为03时必填 (required for a card)",
                              f"{where}.card_sn")
            row = tx.one("SELECT psn_no, card_sn, status, expiry_date FROM cards "
                         "WHERE card_no = ?", cert_no)
            if row is None or row[1] != card_sn:
                raise Refused(f"{UNKNOWN_PERSON}: 社会保障卡 {mask_card_no(cert_no)}")
            if row[2] == "lost":
                raise Refused(CARD_LOST)
            if row[2] == "expired" or dt.date.fromisoformat(row[3]) < self._now().date():
                raise Refused(CARD_EXPIRED)
            psn_no = str(row[0])
        elif cert_type == "01":
            row = tx.one("SELECT psn_no FROM vouchers WHERE token = ?", cert_no)
            if row is None:
                raise Refused(f"{UNKNOWN_PERSON}: 医保电子凭证令牌无效")
            psn_no = str(row[0])
        else:
            row = tx.one("SELECT psn_no FROM persons WHERE id_number = ?",
                         normalize_id_number(cert_no))
            if row is None:
                raise Refused(f"{UNKNOWN_PERSON}: 身份证 {_masked(cert_no)}")
            psn_no = str(row[0])
        person = tx.one(f"SELECT {_PERSON_COLS} FROM persons WHERE psn_no = ?", psn_no)
        assert person is not None
        return Person.of(person)

    def _lookup(self, env: Env) -> str:
        data = wire.check_fields(env.input.get("data"), wire.LOOKUP, "input.data")
        with self.store.read() as tx:
            p = self._resolve(tx, data["mdtrt_cert_type"], data["mdtrt_cert_no"],
                              data["card_sn"], "input.data")
            bal = tx.one("SELECT balance FROM accounts WHERE account_id = ?",
                         personal_id(p.psn_no))
        if data["certno"] and normalize_id_number(data["certno"]) != p.id_number:
            raise Refused("input.data.certno 与就诊凭证持有人的证件号码不符 "
                          "(not the credential holder's ID number)", "input.data.certno")
        gend, brdy, age = _gend_brdy_age(p.id_number, self._now().date())
        output = {
            "baseinfo": {"psn_no": p.psn_no, "psn_cert_type": "01", "certno": p.id_number,
                         "psn_name": p.name, "gend": gend, "naty": "01", "brdy": brdy,
                         "age": age, "exp_content": ""},
            "insuinfo": [{
                "balc": yuan(int(bal[0]) if bal else 0), "insutype": p.insutype,
                "psn_type": _psn_type(p.insutype),
                "psn_insu_stas": _insu_stas(p.insurance_status), "psn_insu_date": "",
                "paus_insu_date": "", "cvlserv_flag": "0",
                "insuplc_admdvs": p.insured_region, "emp_name": "",
            }],
            "idetinfo": [],
        }
        return self._answer(output, env.pharmacy_region)

    # ------------------------------------------------------------------ 2101 / 2102
    def _person_input(self, tx: Tx, env: Env, psn_no: str, where: str) -> Person:
        """The psn_no of an input, and the envelope's insuplc_admdvs that must go with it."""
        if not env["insuplc_admdvs"]:
            raise Refused("insuplc_admdvs 不能为空：交易输入含人员编号时必填，取自【1101】 "
                          "(required when the input carries psn_no)", "insuplc_admdvs")
        row = tx.one(f"SELECT {_PERSON_COLS} FROM persons WHERE psn_no = ?", psn_no)
        if row is None:
            raise Refused(f"{where}.psn_no 人员编号不存在 (unknown psn_no)", f"{where}.psn_no")
        p = Person.of(row)
        if env["insuplc_admdvs"] != p.insured_region:
            raise Refused("insuplc_admdvs 与该人员的参保地医保区划不符 "
                          "(not the person's insured region)", "insuplc_admdvs")
        return p

    def _clean_purchase(self, env: Env) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """The 2101/2102 input per 表59/60 (64/65), and the hash of it (idempotency)."""
        info = wire.check_fields(env.input.get("druginfo"), wire.DRUGINFO, "input.druginfo")
        rows = env.input.get("drugdetail")
        if not isinstance(rows, list) or not rows:
            raise Refused("input.drugdetail 不能为空 (at least one line)", "input.drugdetail")
        if len(rows) > LINES_MAX:
            raise Refused(f"input.drugdetail 最多{LINES_MAX}行", "input.drugdetail")
        details = [wire.check_fields(r, wire.DRUGDETAIL, f"input.drugdetail[{i}]")
                   for i, r in enumerate(rows)]
        return info, details, _digest(env["infno"].replace("2101", "2102"), [info, details])

    def _price(self, tx: Tx, env: Env,
               cleaned: tuple[dict[str, Any], list[dict[str, Any]], str] | None = None
               ) -> Priced:
        info, details, digest = cleaned or self._clean_purchase(env)
        w = "input.druginfo"
        p = self._person_input(tx, env, info["psn_no"], w)
        holder = self._resolve(tx, info["mdtrt_cert_type"], info["mdtrt_cert_no"],
                               info["card_sn"], w)
        if holder.psn_no != p.psn_no:
            raise Refused(f"{w}.mdtrt_cert_no 就诊凭证不是该人员本人的，不得冒用他人医保凭证 "
                          "(the credential is not the patient's own)", f"{w}.mdtrt_cert_no")
        if normalize_id_number(info["certno"]) != p.id_number:
            raise Refused(f"{w}.certno 与人员编号对应的证件号码不符 "
                          f"(expected {_masked(p.id_number)})", f"{w}.certno")
        if info["psn_name"] != p.name:
            raise Refused(f"{w}.psn_name 与人员编号对应的姓名不符", f"{w}.psn_name")
        if info["insutype"] != p.insutype:
            raise Refused(f"{w}.insutype 与该人员的险种类型不符 (the person's is {p.insutype})",
                          f"{w}.insutype")
        wire.one_of(info["med_type"], ("41",), f"{w}.med_type")
        flag = wire.one_of(info["acct_used_flag"], ("0", "1", "2"), f"{w}.acct_used_flag")
        lines = self._lines(tx, details)
        medfee = fen_of(info["medfee_sumamt"], f"{w}.medfee_sumamt")
        if medfee != sum(line.amount for line in lines):
            raise Refused(f"{w}.medfee_sumamt 与明细项目费用总额之和不等 "
                          "(must equal the sum of det_item_fee_sumamt)", f"{w}.medfee_sumamt")
        payable = sum(line.inscp for line in lines)
        own_row = tx.one("SELECT account_id, balance FROM accounts WHERE account_id = ?",
                         personal_id(p.psn_no))
        own = None if own_row is None else Payer(str(own_row[0]), p.psn_no, int(own_row[1]))
        family = self._family(tx, p) if flag == "2" else []
        return Priced(p, info, lines, medfee, payable, cascade(payable, own, family, flag),
                      None if own is None else own.balance, digest)

    def _lines(self, tx: Tx, details: list[dict[str, Any]]) -> list[Line]:
        seen: set[str] = set()
        out: list[Line] = []
        for i, d in enumerate(details):
            w = f"input.drugdetail[{i}]"
            sn = d["feedetl_sn"]
            if int(sn) <= 0:
                raise Refused(f"{w}.feedetl_sn 不能为0 (must be > 0)", f"{w}.feedetl_sn")
            if int(sn) in {int(s) for s in seen}:
                raise Refused(f"{w}.feedetl_sn 单次购药内不能重复 (unique per purchase)",
                              f"{w}.feedetl_sn")
            seen.add(sn)
            wire.one_of(d["rx_circ_flag"], ("0", "1"), f"{w}.rx_circ_flag")
            amount = fen_of(d["det_item_fee_sumamt"], f"{w}.det_item_fee_sumamt")
            cnt, pric = d["cnt"], d["pric"]
            if cnt <= 0:
                raise Refused(f"{w}.cnt 应大于0 (must be positive)", f"{w}.cnt")
            if pric < 0 or amount < 0:
                raise Refused(f"{w}.pric 不能为负 (must not be negative)", f"{w}.pric")
            if abs(wire.round_fen(cnt * pric) - amount) > 1:
                raise Refused(f"{w}.det_item_fee_sumamt 与数量×单价不符 (must be cnt x pric)",
                              f"{w}.det_item_fee_sumamt")
            row = tx.one("SELECT insurance_class, price_limit FROM catalogue "
                         "WHERE med_list_codg = ?", d["med_list_codg"])
            if row is None:
                raise Refused(f"{w}.med_list_codg 医疗目录编码 {d['med_list_codg']} 不存在 "
                              "(not in the catalogue)", f"{w}.med_list_codg")
            cls, limit = str(row[0]), None if row[1] is None else int(row[1])
            if cls == "C":
                out.append(Line(sn, amount, cnt, pric, cls, limit, 0, amount, 0,
                                d["med_list_codg"]))
                continue
            over = 0
            if limit is not None:
                over = max(0, amount - wire.round_fen(Decimal(limit) / 100 * cnt))
            out.append(Line(sn, amount, cnt, pric, cls, limit, over, 0, amount - over,
                            d["med_list_codg"]))
        return out

    def _family(self, tx: Tx, patient: Person) -> list[Payer]:
        """The patient's bound payers that may pay (DOMAIN.md), in binding order."""
        out: list[Payer] = []
        for b in tx.all(
            "SELECT b.binding_id, b.payer, b.relation, b.status, p.insutype, p.insured_region, "
            "a.account_id, COALESCE(a.balance, 0) FROM bindings b "
            "JOIN persons p ON p.psn_no = b.payer LEFT JOIN accounts a "
            "ON a.owner = b.payer AND a.kind = 'personal' WHERE b.patient = ? "
            "ORDER BY b.ord, b.binding_id",
            patient.psn_no,
        ):
            why = rules.refusal(
                binding_status=str(b[3]), relation=str(b[2]), payer_insurance_type=str(b[4]),
                payer_has_account=b[6] is not None, payer_region=str(b[5]),
                patient_insurance_type=patient.insutype,
                patient_insurance_status=patient.insurance_status,
                patient_region=patient.insured_region, pairs=self._pairs,
            )
            if why is None:
                out.append(Payer(str(b[6]), str(b[1]), int(b[7]), str(b[0])))
        return out

    def _setlinfo(self, env: Env, pr: Priced, ids: tuple[str, str] | None) -> dict[str, Any]:
        """表61/66: every field; ``ids`` (setl_id, mdtrt_id) for a 2102, None for a 2101."""
        p, now = pr.person, self._now()
        gend, brdy, age = _gend_brdy_age(p.id_number, now.date())
        cash = pr.medfee - pr.acct_pay
        balc = 0 if pr.own_before is None else pr.own_before - pr.own_paid
        head: dict[str, Any] = {}
        if ids is not None:
            head["setl_id"] = ids[0]
        head["mdtrt_id"] = ids[1] if ids is not None else "PRE" + env["msgid"][:27]
        fulamt = sum(line.fulamt_ownpay for line in pr.lines)
        over = sum(line.overlmt for line in pr.lines)
        return {
            **head,
            "psn_no": p.psn_no, "psn_name": p.name, "psn_cert_type": "01",
            "certno": p.id_number, "gend": gend, "naty": "01", "brdy": brdy, "age": age,
            "insutype": p.insutype, "psn_type": _psn_type(p.insutype), "cvlserv_flag": "0",
            "setl_time": f"{now:%Y-%m-%d %H:%M:%S}",
            "mdtrt_cert_type": pr.druginfo["mdtrt_cert_type"], "med_type": "41",
            "medfee_sumamt": yuan(pr.medfee), "fulamt_ownpay_amt": yuan(fulamt),
            "overlmt_selfpay": yuan(over), "preselfpay_amt": ZERO,
            "inscp_scp_amt": yuan(pr.payable), "act_pay_dedc": ZERO, "hifp_pay": ZERO,
            "pool_prop_selfpay": Decimal("0.0000"), "cvlserv_pay": ZERO, "hifes_pay": ZERO,
            "hifmi_pay": ZERO, "hifob_pay": ZERO, "maf_pay": ZERO, "oth_pay": ZERO,
            "fund_pay_sumamt": ZERO, "psn_part_amt": yuan(pr.acct_pay + cash),
            "acct_pay": yuan(pr.acct_pay), "psn_cash_pay": yuan(cash), "balc": yuan(balc),
            "acct_mulaid_pay": yuan(pr.mulaid), "medins_setl_id": env["msgid"],
            "clr_optins": p.insured_region, "clr_way": "1",
            "clr_type": clr_type(p.insutype, p.insured_region, env["mdtrtarea_admvs"]),
            "exp_content": "", "hosp_part_amt": ZERO, "hifdm_pay": ZERO,
        }

    def _new_id(self, tx: Tx, region: str) -> str:
        now = self._now()
        n = tx.insert_id("INSERT INTO ids (at) VALUES (?)", now.isoformat())
        return f"{region}{now:%Y%m%d%H%M%S}{n % 10**10:010d}"

    def _replay(self, tx: Tx, env: Env, digest: str) -> str | None:
        """The first answer under this msgid (same input), or None if the msgid is new."""
        row = tx.one("SELECT infno, request_hash, response FROM messages WHERE msgid = ?",
                     env["msgid"])
        if row is None:
            return None
        if row[0] != env["infno"] or row[1] != digest:
            raise Refused(f"msgid 已被交易【{row[0]}】使用，输入不同 (msgid already used "
                          "for another request: a new request needs a new msgid)", "msgid")
        if row[0] == "2102":
            undone = tx.one("SELECT r.infno FROM settlements s JOIN settlements r "
                            "ON r.original_setl_id = s.setl_id WHERE s.msgid = ?", env["msgid"])
            if undone is not None and undone[0] == "2601":
                raise Refused("该交易已被冲正【2601】，不能重复提交 (this msgid was reversed "
                              "by 2601: a new sale needs a new msgid)", "msgid")
        return str(row[2])

    def _settle(self, env: Env) -> str:
        cleaned = self._clean_purchase(env)
        with self.store.write() as tx:
            replay = self._replay(tx, env, cleaned[2])
            if replay is not None:
                return replay
            pr = self._price(tx, env, cleaned)
            code, region = env["fixmedins_code"], env.pharmacy_region
            mdtrt_id, setl_id = self._new_id(tx, region), self._new_id(tx, region)
            for payer, amount in pr.legs:
                if tx.run("UPDATE accounts SET balance = balance - ? WHERE account_id = ? "
                          "AND balance >= ?", amount, payer.account_id, amount) != 1:
                    raise AssertionError("balance moved inside the write lock")
            setlinfo = self._setlinfo(env, pr, (setl_id, mdtrt_id))
            detl = _detlcutinfo(pr.lines)
            now = self._now()
            legs = [{"account_id": p.account_id, "psn_no": p.psn_no,
                     "binding_id": p.binding_id, "amount": a} for p, a in pr.legs]
            tx.run(
                "INSERT INTO settlements (setl_id, msgid, kind, infno, fixmedins_code, psn_no, "
                "mdtrt_id, original_setl_id, status, insutype, clr_type, medfee_sumamt, "
                "fund_pay_sumamt, acct_pay, acct_mulaid_pay, psn_cash_pay, balc, setl_time, "
                "business_date, legs, setlinfo, detlcutinfo) VALUES (?, ?, 'sale', '2102', ?, ?, "
                "?, NULL, 'settled', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                setl_id, env["msgid"], code, pr.person.psn_no, mdtrt_id, pr.person.insutype,
                setlinfo["clr_type"], pr.medfee, pr.acct_pay, pr.mulaid,
                pr.medfee - pr.acct_pay, wire.fen_of(setlinfo["balc"], "balc"),
                setlinfo["setl_time"], now.date().isoformat(), json.dumps(legs),
                wire.dumps(setlinfo), wire.dumps(detl),
            )
            _post(tx, setl_id, [(p.account_id, -a) for p, a in pr.legs], code)
            text = self._answer({"setlinfo": setlinfo, "setldetail": _setldetail(pr),
                                 "detlcutinfo": detl}, region)
            tx.run("INSERT INTO messages (msgid, fixmedins_code, infno, request_hash, response, "
                   "received_at, omsgid, outcome) VALUES (?, ?, '2102', ?, ?, ?, NULL, "
                   "'settled')", env["msgid"], code, pr.digest, text, now.isoformat())
            return text

    # ------------------------------------------------------------------ 2103 / 2601
    def _reverse_entry(self, tx: Tx, env: Env, sale: Row, infno: str) -> dict[str, Any]:
        """Undo a committed sale: restore every leg, post the opposite, mark it reversed.

        Returns the 2103 setlinfo (表70): the sale's amounts negated, a new setl_id,
        ``balc`` the patient's own balance after, ``medins_setl_id`` this msgid.
        """
        (setl_id, psn_no, mdtrt_id, insutype, ctype, medfee, acct, mulaid, cash,
         legs_text) = sale
        code = env["fixmedins_code"]
        legs = json.loads(legs_text)
        for leg in legs:
            tx.run("UPDATE accounts SET balance = balance + ? WHERE account_id = ?",
                   int(leg["amount"]), leg["account_id"])
        own = tx.one("SELECT balance FROM accounts WHERE account_id = ?", personal_id(psn_no))
        balc = int(own[0]) if own else 0
        new_id = self._new_id(tx, env.pharmacy_region)
        now = self._now()
        setlinfo: dict[str, Any] = {
            "mdtrt_id": mdtrt_id, "setl_id": new_id, "clr_optins": "",
            "medfee_sumamt": yuan(-medfee), "setl_time": f"{now:%Y-%m-%d %H:%M:%S}",
            "fulamt_ownpay_amt": ZERO, "overlmt_selfpay": ZERO, "preselfpay_amt": ZERO,
            "inscp_scp_amt": ZERO, "act_pay_dedc": ZERO, "hifp_pay": ZERO,
            "pool_prop_selfpay": Decimal("0.0000"), "cvlserv_pay": ZERO, "hifes_pay": ZERO,
            "hifmi_pay": ZERO, "hifob_pay": ZERO, "maf_pay": ZERO, "oth_pay": ZERO,
            "fund_pay_sumamt": ZERO, "psn_part_amt": yuan(-(acct + cash)),
            "acct_pay": yuan(-acct), "psn_cash_pay": yuan(-cash), "balc": yuan(balc),
            "acct_mulaid_pay": yuan(-mulaid), "medins_setl_id": env["msgid"],
            "hifdm_pay": ZERO,
        }
        row = tx.one("SELECT setlinfo FROM settlements WHERE setl_id = ?", setl_id)
        orig = wire.loads(row[0]) if row else {}
        setlinfo["clr_optins"] = orig.get("clr_optins", "")
        for k in ("fulamt_ownpay_amt", "overlmt_selfpay", "inscp_scp_amt"):
            value = wire.decimal_of(orig.get(k, 0), k)
            setlinfo[k] = -value.quantize(wire.FEN) if value else ZERO
        tx.run(
            "INSERT INTO settlements (setl_id, msgid, kind, infno, fixmedins_code, psn_no, "
            "mdtrt_id, original_setl_id, status, insutype, clr_type, medfee_sumamt, "
            "fund_pay_sumamt, acct_pay, acct_mulaid_pay, psn_cash_pay, balc, setl_time, "
            "business_date, legs, setlinfo, detlcutinfo) VALUES (?, ?, 'reversal', ?, ?, ?, "
            "?, ?, 'settled', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, '[]')",
            new_id, env["msgid"], infno, code, psn_no, mdtrt_id, setl_id, insutype, ctype,
            -medfee, -acct, -mulaid, -cash, balc, setlinfo["setl_time"],
            now.date().isoformat(), legs_text, wire.dumps(setlinfo),
        )
        _post(tx, new_id, [(leg["account_id"], int(leg["amount"])) for leg in legs], code)
        tx.run("UPDATE settlements SET status = 'reversed' WHERE setl_id = ?", setl_id)
        return setlinfo

    _SALE_COLS = ("setl_id, psn_no, mdtrt_id, insutype, clr_type, medfee_sumamt, acct_pay, "
                  "acct_mulaid_pay, psn_cash_pay, legs")

    def _undo(self, env: Env) -> str:
        w = "input.data"
        data = wire.check_fields(env.input.get("data"), wire.UNDO, w)
        digest = _digest("2103", data)
        code = env["fixmedins_code"]
        with self.store.write() as tx:
            replay = self._replay(tx, env, digest)
            if replay is not None:
                return replay
            self._person_input(tx, env, data["psn_no"], w)
            sale = tx.one(f"SELECT {self._SALE_COLS}, status FROM settlements "
                          "WHERE setl_id = ? AND kind = 'sale' AND fixmedins_code = ?",
                          data["setl_id"], code)
            if sale is None:
                raise Refused(f"{w}.setl_id 结算信息不存在 (no such settlement)", f"{w}.setl_id")
            if sale[2] != data["mdtrt_id"]:
                raise Refused(f"{w}.mdtrt_id 与结算的就诊ID不符", f"{w}.mdtrt_id")
            if sale[1] != data["psn_no"]:
                raise Refused(f"{w}.psn_no 与结算的人员编号不符", f"{w}.psn_no")
            if sale[10] != "settled":
                raise Refused(f"{w}.setl_id 该结算已撤销，不能重复撤销 (already reversed)",
                              f"{w}.setl_id")
            setlinfo = self._reverse_entry(tx, env, sale[:10], "2103")
            setldetail = []
            if setlinfo["acct_pay"]:
                setldetail.append({"fund_pay_type": "310200", "inscp_scp_amt":
                                   setlinfo["inscp_scp_amt"], "crt_payb_lmt_amt": ZERO,
                                   "fund_payamt": setlinfo["acct_pay"],
                                   "fund_pay_type_name": "职工基本医疗保险个人账户基金",
                                   "setl_proc_info": ""})
            text = self._answer({"setlinfo": setlinfo, "setldetail": setldetail},
                                env.pharmacy_region)
            tx.run("INSERT INTO messages (msgid, fixmedins_code, infno, request_hash, response, "
                   "received_at, omsgid, outcome) VALUES (?, ?, '2103', ?, ?, ?, NULL, "
                   "'reversed')", env["msgid"], code, digest, text, self._now().isoformat())
            return text

    def _reverse_msg(self, env: Env) -> str:
        """2601: cancel the 2102 sent under ``omsgid`` if it committed; else nothing to do.

        A 2102 that arrives after its 2601 still commits (the platform keeps no
        tombstone; the day's 3202 detail reconciliation catches it, as in the spec).
        """
        w = "input.data"
        data = wire.check_fields(env.input.get("data"), wire.REVERSE, w)
        wire.one_of(data["oinfno"], ("2102",), f"{w}.oinfno")
        digest = _digest("2601", data)
        code = env["fixmedins_code"]
        with self.store.write() as tx:
            replay = self._replay(tx, env, digest)
            if replay is not None:
                return replay
            self._person_input(tx, env, data["psn_no"], w)
            sale = tx.one(f"SELECT {self._SALE_COLS}, status FROM settlements "
                          "WHERE msgid = ? AND kind = 'sale' AND fixmedins_code = ?",
                          data["omsgid"], code)
            outcome = "nothing"
            if sale is not None:
                if sale[1] != data["psn_no"]:
                    raise Refused(f"{w}.psn_no 与原交易的人员编号不符", f"{w}.psn_no")
                if sale[10] == "settled":
                    self._reverse_entry(tx, env, sale[:10], "2601")
                    outcome = "reversed"
                else:
                    outcome = "already_reversed"
            text = self._answer({}, env.pharmacy_region)
            tx.run("INSERT INTO messages (msgid, fixmedins_code, infno, request_hash, response, "
                   "received_at, omsgid, outcome) VALUES (?, ?, '2601', ?, ?, ?, ?, ?)",
                   env["msgid"], code, digest, text, self._now().isoformat(), data["omsgid"],
                   outcome)
            return text


def _post(tx: Tx, setl_id: str, member: list[tuple[str, int]], code: str) -> None:
    """Postings of one settlement: the member accounts and the receivable, summing to 0."""
    moved = sum(a for _, a in member)
    if not moved:
        return
    rcv = receivable_id(code)
    tx.run("UPDATE accounts SET balance = balance - ? WHERE account_id = ?", moved, rcv)
    for account_id, amount in member:
        tx.run("INSERT INTO postings (setl_id, account_id, amount) VALUES (?, ?, ?)",
               setl_id, account_id, amount)
    tx.run("INSERT INTO postings (setl_id, account_id, amount) VALUES (?, ?, ?)",
           setl_id, rcv, -moved)


def _detlcutinfo(lines: list[Line]) -> list[dict[str, Any]]:
    """表63/68: one row per line, with its class (chrgitm_lv) and the cut amounts."""
    out = []
    for line in lines:
        limit = (Decimal(line.limit) / 100).quantize(Decimal("0.000001")) \
            if line.limit is not None else line.pric.quantize(Decimal("0.000001"))
        out.append({
            "feedetl_sn": line.feedetl_sn, "det_item_fee_sumamt": yuan(line.amount),
            "cnt": line.cnt.quantize(Decimal("0.0001")),
            "pric": line.pric.quantize(Decimal("0.000001")), "pric_uplmt_amt": limit,
            "selfpay_prop": Decimal("1.0000") if line.cls == "C" else Decimal("0.0000"),
            "fulamt_ownpay_amt": yuan(line.fulamt_ownpay), "overlmt_amt": yuan(line.overlmt),
            "preselfpay_amt": ZERO, "inscp_scp_amt": yuan(line.inscp),
            "chrgitm_lv": {"A": "01", "B": "02", "C": "03"}[line.cls],
            "med_chrgitm_type": {"X": "09", "Z": "11"}.get(line.code[:1], "14"),
            "bas_medn_flag": "0", "hi_nego_drug_flag": "0", "chld_medc_flag": "0",
            "list_sp_item_flag": "0", "drt_reim_flag": "0", "memo": "",
            "hosp_part_amt": ZERO,
        })
    return out


def _setldetail(pr: Priced) -> list[dict[str, Any]]:
    """表62/67: the personal-account payment as fund type 310200 (own and family together).

    Why one row: the dictionary has no fund_pay_type for 共济 (NHSA.md §8); the family
    share is in ``acct_mulaid_pay`` and told apart here only in ``setl_proc_info``.
    """
    if not pr.acct_pay:
        return []
    return [{
        "fund_pay_type": "310200", "inscp_scp_amt": yuan(pr.payable),
        "crt_payb_lmt_amt": yuan(pr.own_before or 0), "fund_payamt": yuan(pr.acct_pay),
        "fund_pay_type_name": "职工基本医疗保险个人账户基金",
        "setl_proc_info": f"本人账户{yuan(pr.own_paid)}元，共济账户{yuan(pr.mulaid)}元",
    }]


__all__ = ["F", "Payer", "Platform", "cascade", "clr_type", "shanghai_now"]
