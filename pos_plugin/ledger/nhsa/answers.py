"""Answers read into the agent's shapes, and the spec's invariants checked on them.

Why check: an answer is only a sale if its sums hold (setlinfo, NHSA.md §2):
medfee_sumamt = fund_pay_sumamt + psn_part_amt + hosp_part_amt; psn_part_amt =
acct_pay + psn_cash_pay; 0 <= acct_mulaid_pay <= acct_pay (the family share is inside
acct_pay); medfee_sumamt = the catalogue lines we sent; medins_setl_id = our msgid.
An answer breaking one is ``bad_response``: the flow treats it as an unknown outcome
(a 2601 follows), never as a sale to print. Amounts become int fen; ID numbers and
names are masked before anything is kept (the detail is journaled).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.amounts import AmountError, fen_from_yuan, price_of, ratio_of
from pos_plugin.ledger.nhsa.envelope import Answer, text
from pos_plugin.models import (
    InsuranceStatus,
    InsuranceType,
    PersonalAccount,
    PersonLookup,
)
from pos_plugin.rules.identity import mask_id_number, mask_name

SETL_AMOUNTS = (
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
    "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "cvlserv_pay", "hifes_pay", "hifmi_pay",
    "hifob_pay", "maf_pay", "oth_pay", "fund_pay_sumamt", "psn_part_amt", "acct_pay",
    "psn_cash_pay", "balc", "acct_mulaid_pay", "hosp_part_amt", "hifdm_pay",
)  # fmt: skip
SETL_TEXTS = (
    "setl_id", "mdtrt_id", "psn_no", "psn_cert_type", "gend", "naty", "brdy", "insutype",
    "psn_type", "cvlserv_flag", "setl_time", "mdtrt_cert_type", "med_type",
    "medins_setl_id", "clr_optins", "clr_way", "clr_type", "exp_content",
)  # fmt: skip
_ALIASES = {"psn_pay": "psn_part_amt", "cash_payamt": "psn_cash_pay",
            "cash_payment": "psn_cash_pay"}  # older copies of the tables  # fmt: skip
CUT_AMOUNTS = ("det_item_fee_sumamt", "fulamt_ownpay_amt", "overlmt_amt", "preselfpay_amt",
               "inscp_scp_amt")  # fmt: skip
CUT_DECIMALS = {"cnt": "count", "pric": "price", "pric_uplmt_amt": "price",
                "selfpay_prop": "ratio"}  # fmt: skip
CUT_TEXTS = ("feedetl_sn", "chrgitm_lv", "med_chrgitm_type", "bas_medn_flag",
             "hi_nego_drug_flag", "chld_medc_flag", "list_sp_item_flag", "drt_reim_flag",
             "memo")  # fmt: skip
_STATUS = {"1": InsuranceStatus.ACTIVE, "2": InsuranceStatus.SUSPENDED}


def bad(why: str) -> e.LedgerError:
    return e.LedgerError(
        f"医保平台的应答不合规范 / the platform's answer breaks the interface: {why}",
        code="bad_response",
    )


def _rows(node: Any) -> list[dict[str, Any]]:
    """A list node (a single object where one row is meant tolerated)."""
    if isinstance(node, dict):
        return [node]
    if isinstance(node, list):
        return [r for r in node if isinstance(r, dict)]
    return []


def _pick_insurance(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The row the sale settles under: 310/390 only; normal status first, 310 first."""
    usable = [r for r in rows if text(r, "insutype") in ("310", "390")]
    if not usable:
        raise e.LedgerError(
            "此人无职工或居民医保参保信息 / the person has no employee (310) or resident "
            "(390) insurance the agent can settle",
            code="insutype_unsupported",
        )
    return sorted(usable, key=lambda r: (text(r, "psn_insu_stas") != "1",
                                         text(r, "insutype") != "310"))[0]  # fmt: skip


def lookup_from_1101(answer: Answer) -> tuple[PersonLookup, dict[str, str]]:
    """``PersonLookup`` from baseinfo + the chosen insuinfo row; and that row's codes."""
    base = answer.node("baseinfo")
    if not isinstance(base, dict) or not text(base, "psn_no") or not text(base, "certno"):
        raise bad("1101 has no baseinfo with psn_no and certno")
    row = _pick_insurance(_rows(answer.node("insuinfo")))
    psn_no, insutype = text(base, "psn_no"), text(row, "insutype")
    try:
        balance = fen_from_yuan(row.get("balc") if row.get("balc") is not None else 0, "balc")
        account = (
            PersonalAccount(account_id=f"PA{psn_no}", balance=balance)
            if insutype == InsuranceType.EMPLOYEE.value else None
        )  # fmt: skip
        lookup = PersonLookup.model_validate({
            "person": {
                "psn_no": psn_no, "name": text(base, "psn_name"), "id_number": text(base, "certno"),
                "insurance_type": insutype,
                "insured_region": text(row, "insuplc_admdvs") or text(base, "insuplc_admdvs"),
                "insurance_status": _STATUS.get(text(row, "psn_insu_stas"),
                                                InsuranceStatus.TERMINATED
                                                if text(row, "psn_insu_stas") else
                                                InsuranceStatus.ACTIVE),
            },
            "personal_account": account,
        })  # fmt: skip
    except (AmountError, ValidationError) as exc:
        raise bad(f"1101: {_short(exc)}") from None
    codes = {"insutype": insutype, "psn_type": text(row, "psn_type"),
             "psn_cert_type": text(base, "psn_cert_type") or "01"}  # fmt: skip
    return lookup, codes


def _short(exc: Exception) -> str:
    """An exception's text without the offending values (they may be ID numbers)."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['type']}" for err in exc.errors())
    return str(exc)[:200]


def _setlinfo(answer: Answer) -> dict[str, Any]:
    node = answer.node("setlinfo")
    if isinstance(node, list) and len(node) == 1:
        node = node[0]
    if not isinstance(node, dict):
        raise bad("no setlinfo")
    for old, new in _ALIASES.items():
        if node.get(new) is None and node.get(old) is not None:
            node = {**node, new: node[old]}
    return node


def _fen(node: dict[str, Any], keys: Iterable[str]) -> dict[str, int]:
    try:
        return {k: fen_from_yuan(node[k], k) for k in keys if node.get(k) is not None}
    except AmountError as exc:
        raise bad(str(exc)) from None


def setlinfo_fen(
    answer: Answer, medfee_fen: int, *, msgid: str | None, psn_no: str
) -> dict[str, Any]:
    """setlinfo with amounts as fen, checked (module docstring). ``msgid`` None: a 2101
    preview (no setl_id yet)."""
    node = _setlinfo(answer)
    required = ["medfee_sumamt", "fund_pay_sumamt", "psn_part_amt", "acct_pay", "psn_cash_pay"]
    missing = [k for k in required if node.get(k) is None]
    if msgid is not None:
        missing += [k for k in ("setl_id", "mdtrt_id") if not text(node, k)]
    if missing:
        raise bad(f"setlinfo lacks {', '.join(missing)}")
    out: dict[str, Any] = {k: text(node, k) for k in SETL_TEXTS if text(node, k)}
    out |= {k: 0 for k in ("hosp_part_amt", "acct_mulaid_pay")} | _fen(node, SETL_AMOUNTS)
    if node.get("pool_prop_selfpay") is not None:
        out["pool_prop_selfpay"] = _decimal_text(node["pool_prop_selfpay"], "ratio")
    if text(node, "certno"):
        out["certno"] = mask_id_number(text(node, "certno"))
    if text(node, "psn_name"):
        out["psn_name"] = mask_name(text(node, "psn_name"))
    negative = [k for k in SETL_AMOUNTS if k in out and out[k] < 0]
    if negative:
        raise bad(f"negative {', '.join(negative)} in a settlement")
    check_sums(out)
    if out["medfee_sumamt"] != medfee_fen:
        raise bad(f"medfee_sumamt {out['medfee_sumamt']} fen is not the {medfee_fen} fen sent")
    if msgid is not None and out.get("medins_setl_id", msgid) != msgid:
        raise bad("medins_setl_id is not our msgid")
    if out.get("psn_no", psn_no) != psn_no:
        raise bad("setlinfo names another psn_no")
    return out


def check_sums(s: dict[str, Any]) -> None:
    """The three sums of the module docstring (signs as they come: a 2103 is negative)."""
    if s["medfee_sumamt"] != s["fund_pay_sumamt"] + s["psn_part_amt"] + s["hosp_part_amt"]:
        raise bad("medfee_sumamt != fund_pay_sumamt + psn_part_amt + hosp_part_amt")
    if s["psn_part_amt"] != s["acct_pay"] + s["psn_cash_pay"]:
        raise bad("psn_part_amt != acct_pay + psn_cash_pay")
    if not (0 <= abs(s["acct_mulaid_pay"]) <= abs(s["acct_pay"])) or (
        s["acct_mulaid_pay"] * s["acct_pay"] < 0
    ):
        raise bad("acct_mulaid_pay is not part of acct_pay")


def _decimal_text(value: Any, kind: str) -> str:
    try:
        return str(price_of(value) if kind == "price" else ratio_of(value) if kind == "ratio"
                   else value)  # fmt: skip
    except AmountError as exc:
        raise bad(str(exc)) from None


def cut_rows(answer: Answer) -> list[dict[str, Any]]:
    """detlcutinfo rows: amounts as fen, counts/prices/ratios as decimal text."""
    rows = []
    for row in _rows(answer.node("detlcutinfo")):
        out: dict[str, Any] = {k: text(row, k) for k in CUT_TEXTS if text(row, k)}
        out |= _fen(row, CUT_AMOUNTS)
        for k, kind in CUT_DECIMALS.items():
            if row.get(k) is not None:
                out[k] = _decimal_text(row[k], "price" if kind == "count" else kind)
        rows.append(out)
    return rows


def reversal_amounts(answer: Answer, detail: dict[str, Any]) -> dict[str, Any]:
    """A 2103 answer as ``ReversalResult`` amounts (negative; a system that answers them
    positive is read as meaning the same), its new setl_id and setl_time."""
    node = _setlinfo(answer)
    if not text(node, "setl_id"):
        raise bad("2103 setlinfo has no setl_id")
    s: dict[str, Any] = {k: 0 for k in ("hosp_part_amt", "acct_mulaid_pay", "fund_pay_sumamt")}
    s |= _fen(node, SETL_AMOUNTS)
    missing = [k for k in ("medfee_sumamt", "psn_part_amt", "acct_pay", "psn_cash_pay")
               if k not in s]  # fmt: skip
    if missing:
        raise bad(f"2103 setlinfo lacks {', '.join(missing)}")
    for k in SETL_AMOUNTS:
        if k in s and k != "balc":
            s[k] = -abs(s[k])
    check_sums(s)
    original = (detail.get("setlinfo") or {}).get("medfee_sumamt")
    if isinstance(original, int) and -s["medfee_sumamt"] != original:
        raise bad("2103 reversed another amount than the settlement's")
    noncatalogue = int(detail.get("noncatalogue_cash") or 0)
    total = detail.get("total")
    return {
        "setl_id": text(node, "setl_id"),
        "setl_time": text(node, "setl_time") or None,
        "personal_account": s["acct_pay"] - s["acct_mulaid_pay"],
        "mutual_aid": s["acct_mulaid_pay"],
        "cash": s["psn_cash_pay"] - noncatalogue,
        "total": -int(total) if isinstance(total, int) else s["medfee_sumamt"] - noncatalogue,
    }
