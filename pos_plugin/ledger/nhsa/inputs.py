"""The 2101/2102 input from a ``SettlementRequest`` and the person's 1101 answer.

Why these choices (docs/nhsa.md says more):
- only lines with a catalogue code (class A, B or C) are sent; a line without one
  (daily goods) is never settled through insurance (fund supervision hunts for that):
  it is cash outside the settlement, ``noncatalogue_fen``;
- ``acct_used_flag``: 0 when no sent line is account-payable (class A/B), 1 when the
  own balance from 1101 covers that part, else 2 (the platform may draw on the bound
  family accounts: only it knows the bindings);
- amounts are ``Decimal`` yuan with 2 decimals, counts ints, prices yuan (16,6).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.amounts import unit_price_yuan, yuan_of
from pos_plugin.ledger.own.schemas import Credential, SettlementRequest
from pos_plugin.models import InsuranceClass

MED_TYPE_PHARMACY = "41"  # 定点药店购药


@dataclass(frozen=True)
class Insured:
    """What a 1101 said about a person that the 2102/2601/2103 envelopes need again."""

    psn_no: str
    insuplc_admdvs: str
    insutype: str
    psn_type: str
    psn_cert_type: str
    certno: str
    psn_name: str
    mdtrt_cert_type: str
    mdtrt_cert_no: str
    card_sn: str
    balance: int | None  # own account, fen; None: the insutype has none


def cert_fields(credential: Credential) -> tuple[str, str, str]:
    """(mdtrt_cert_type, mdtrt_cert_no, card_sn): card 03 + number + card_sn; voucher 01."""
    if credential.kind == "card":
        return "03", credential.card_no or "", credential.card_sn or ""
    return "01", credential.token or "", ""


@dataclass(frozen=True)
class DrugInput:
    """The input of a 2101/2102 and what the answer is checked against."""

    data: dict[str, Any]
    medfee_fen: int  # the catalogue lines: what the platform settles
    noncatalogue_fen: int  # lines never sent: cash outside the settlement
    acct_used_flag: str


def acct_used_flag(account_payable: int, balance: int | None) -> str:
    """0 nothing account-payable; 1 the own balance covers it; 2 family accounts may pay."""
    if account_payable <= 0:
        return "0"
    if balance is not None and balance >= account_payable:
        return "1"
    return "2"


def _trace(n: int, line: Any, key: str) -> dict[str, Any]:
    """The row's 追溯码 node (2102 only): one entry per pack; none when nothing was scanned."""
    if not line.trace_codes:
        return {}
    flag = "1" if line.split_pack else "0"
    return {key: [{"feedetl_sn": str(n), "drug_trac_codg": c, "trdn_flag": flag}
                  for c in line.trace_codes]}  # fmt: skip


def drug_input(request: SettlementRequest, insured: Insured, *, now: dt.datetime,
               trace_key: str = "durg_trac_info") -> DrugInput:  # fmt: skip
    """``druginfo`` + ``drugdetail`` (one row per catalogue line, feedetl_sn 1, 2, ...);
    ``trace_key``: the spelling of the traceability node (``settings.trace_info_key``)."""
    when = now.astimezone(env.CHINA).strftime(env.INF_TIME)
    sent = [line for line in request.lines if line.catalogue_code]
    if not sent:
        raise e.InvalidRequest(
            "本笔没有医保目录内商品，无需医保结算 / no line has a catalogue code: there is "
            "nothing to settle through the national platform",
            field="lines",
        )
    medfee = sum(line.amount for line in sent)
    payable = sum(
        line.amount for line in sent
        if line.insurance_class in (InsuranceClass.A, InsuranceClass.B)
    )  # fmt: skip
    flag = acct_used_flag(payable, insured.balance)
    detail = [
        {
            "feedetl_sn": str(n),
            "rxno": line.prescription_ref or "",
            "rx_circ_flag": "0",
            "fee_ocur_time": when,
            "med_list_codg": line.catalogue_code,
            "medins_list_codg": line.sku,
            "det_item_fee_sumamt": yuan_of(line.amount),
            "cnt": line.quantity,
            "pric": yuan_of(line.unit_price) if line.unit_price is not None
            else unit_price_yuan(line.amount, line.quantity),
            "exp_content": "",
        }
        | _trace(n, line, trace_key)
        for n, line in enumerate(sent, start=1)
    ]
    info = {
        "psn_no": insured.psn_no,
        "mdtrt_cert_type": insured.mdtrt_cert_type,
        "mdtrt_cert_no": insured.mdtrt_cert_no,
        "card_sn": insured.card_sn,
        "psn_cert_type": insured.psn_cert_type,
        "certno": insured.certno,
        "psn_type": insured.psn_type,
        "psn_name": insured.psn_name[:20],
        "begntime": when,
        "medfee_sumamt": yuan_of(medfee),
        "insutype": insured.insutype,
        "dise_codg": "",
        "dise_name": "",
        "acct_used_flag": flag,
        "med_type": MED_TYPE_PHARMACY,
        "exp_content": "",
    }
    noncatalogue = sum(line.amount for line in request.lines if not line.catalogue_code)
    return DrugInput({"druginfo": info, "drugdetail": detail}, medfee, noncatalogue, flag)
