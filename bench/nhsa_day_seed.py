"""One store day written straight into both sandboxes and the tills' journals.

For ``bench_nhsa_day.py``: 100,000 real settlements through 1101/2102 would take
many minutes, so the same sales are written directly, in the shapes the real code
writes them (taken from a sale made through the real flow); the sales are
``day_sales.py``'s, the same day as bench_reconcile.py's:

- each till's journal ``sales`` row as ``SaleService._record_settled`` leaves it on the
  national backend: amounts, plan (and the ``legs`` column the journal derives from
  it), and the ``result`` document with its 2102 ``ledger_detail`` (setlinfo in fen,
  detlcutinfo) and the receipt, about 4 KB a row;
  a reversed sale carries its 2103's msgid and setl_id;
- the national sandbox's ``settlements`` (the 2102, and the 2103 of a reversed sale,
  amounts negative), with their setlinfo/detlcutinfo text as the platform keeps it;
- the own sandbox ledger's ``entries`` for the same msgids and amounts (the setl_id as
  the entry id), so the own-API reconciliation of the same day runs beside it.

Not written: the sandboxes' postings and balances (neither 3201/3202 nor the statement
reads them). 1% of the sales are reversed the same day on every side.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from day_sales import DAY, day_sales

from pos_plugin.journal.journal import Journal
from pos_plugin.journal.legs import legs_column
from pos_plugin.ledger.nhsa.sandbox.store import Store as NhsaStore
from pos_plugin.ledger.own.sandbox.store import Store as OwnStore
from pos_plugin.world import load_world


@dataclass(frozen=True)
class SeededDay:
    own_db: str
    nhsa_db: str
    journals: list[str]
    code: str
    name: str
    region: str
    token: str
    settlements: int  # sales + reversals


def _yuan(fen: int) -> str:
    """Fen as the platform's JSON writes yuan (a number with 2 decimals)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _setlinfo_fen(setl_id: str, mdtrt_id: str, psn: str, insutype: str, region: str,
                  msgid: str, when: str, total: int, acct: int, mulaid: int
                  ) -> dict[str, Any]:  # fmt: skip
    """The journaled setlinfo (``answers.setlinfo_fen``: amounts in fen, names masked)."""
    cash = total - acct
    return {
        "acct_mulaid_pay": mulaid, "acct_pay": acct, "act_pay_dedc": 0, "balc": 10_000,
        "brdy": "1980-05-12", "certno": "110105********0319", "clr_optins": region,
        "clr_type": "41", "clr_way": "1", "cvlserv_flag": "0", "cvlserv_pay": 0,
        "fulamt_ownpay_amt": 0, "fund_pay_sumamt": 0, "gend": "1", "hifdm_pay": 0,
        "hifes_pay": 0, "hifmi_pay": 0, "hifob_pay": 0, "hifp_pay": 0, "hosp_part_amt": 0,
        "inscp_scp_amt": total, "insutype": insutype, "maf_pay": 0, "mdtrt_cert_type": "03",
        "mdtrt_id": mdtrt_id, "med_type": "41", "medfee_sumamt": total,
        "medins_setl_id": msgid, "naty": "01", "oth_pay": 0, "overlmt_selfpay": 0,
        "pool_prop_selfpay": "0.0000", "preselfpay_amt": 0, "psn_cash_pay": cash,
        "psn_cert_type": "01", "psn_name": "张*", "psn_no": psn, "psn_part_amt": total,
        "psn_type": "11" if insutype == "310" else "15", "setl_id": setl_id,
        "setl_time": when,
    }  # fmt: skip


def _cut(total: int) -> list[dict[str, Any]]:
    return [{"bas_medn_flag": "0", "chld_medc_flag": "0", "chrgitm_lv": "01", "cnt": "1.000000",
             "det_item_fee_sumamt": total, "drt_reim_flag": "0", "feedetl_sn": "1",
             "fulamt_ownpay_amt": 0, "hi_nego_drug_flag": "0", "inscp_scp_amt": total,
             "list_sp_item_flag": "0", "med_chrgitm_type": "09", "overlmt_amt": 0,
             "preselfpay_amt": 0, "pric": f"{_yuan(total)}0000", "pric_uplmt_amt": None,
             "selfpay_prop": "0.0000"}]  # fmt: skip


def _result(ref: str, msgid: str, till: str, code: str, setl: dict[str, Any], total: int,
            pa: int, ma: int, cash: int, region: str, when: str) -> str:  # fmt: skip
    """The journal's ``result`` document of a settled national sale (receipt included)."""
    receipt = [f"{code:>30}", f"{'医保结算单':>27}", "-" * 48, f"药店{code:>44}",
               f"终端{till:>44}", f"时间{when:>44}", f"单号{ref:>44}", f"流水{msgid:>44}",
               f"凭证{'社保卡':>41}", "-" * 48, "-" * 48, f"合计{'¥' + _yuan(total):>44}",
               f"医保可付{'¥' + _yuan(pa + ma):>40}", f"个人账户支付{'¥' + _yuan(pa):>36}",
               f"家庭共济{'¥' + _yuan(ma):>40}", f"现金支付{'¥' + _yuan(cash):>40}",
               "-" * 48, f"{'请妥善保管 谢谢惠顾':>24}"]  # fmt: skip
    doc = {
        "account_payable": pa + ma, "cash": cash, "code": None, "family": [],
        "http_status": 200,
        "ledger_detail": {"acct_used_flag": "1", "detlcutinfo": _cut(total),
                          "insuplc_admdvs": region, "mdtrt_id": setl["mdtrt_id"],
                          "msgid": msgid, "noncatalogue_cash": 0, "setlinfo": setl,
                          "terminal_id": till, "total": total},
        "message": None, "msgid": msgid, "mutual_aid": ma, "notices": [],
        "personal_account": pa, "receipt": receipt,
        "receipt_detail": {"account_payable": pa + ma, "at": when, "cash": cash,
                           "credential": "card", "kind": "sale", "msgid": msgid,
                           "mutual_aid": ma, "personal_account": pa, "pharmacy_code": code,
                           "sale_ref": ref, "settlement_id": setl["setl_id"],
                           "terminal_id": till, "total": total},
        "reversal": None, "sale_ref": ref, "settlement_id": setl["setl_id"], "skipped": [],
        "stage": None, "status": "settled", "total": total,
    }  # fmt: skip
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _platform_setlinfo(setl: dict[str, Any]) -> str:
    """setlinfo as the platform stores it (yuan numbers, unmasked as it is the centre's)."""
    out = {k: (_yuan(v) if isinstance(v, int) else v) for k, v in setl.items()}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def seed_day(work: Path, n: int, tills: int) -> SeededDay:
    """Write the day (module docstring); returns where it is."""
    world = load_world()
    ph = world.pharmacies[0]
    own_db, nhsa_db = str(work / "own-ledger.sqlite3"), str(work / "nhsa.sqlite3")
    OwnStore(own_db).init(world)
    NhsaStore(nhsa_db).init(world)
    own_rows: list[tuple[Any, ...]] = []
    nhsa_rows: list[tuple[Any, ...]] = []
    journal_rows: dict[str, list[tuple[Any, ...]]] = {f"T{t:02d}": [] for t in range(1, tills + 1)}
    iso, region, code = DAY.isoformat(), ph.region, ph.code
    for d in day_sales(code, n, tills):
        i, till, t, stamp, msgid, psn = d.i, d.till, d.at, d.stamp, d.msgid, d.psn
        total, pa, ma, cash, legs, rev = d.total, d.pa, d.ma, d.cash, d.legs, d.reversal
        when = t.strftime("%Y-%m-%d %H:%M:%S")
        insutype = "310" if d.who % 3 else "390"
        mdtrt_id, setl_id = f"{region}{stamp}{3 * i:010d}", f"{region}{stamp}{3 * i + 1:010d}"
        setl = _setlinfo_fen(setl_id, mdtrt_id, psn, insutype, region, msgid, when, total,
                             pa + ma, ma)  # fmt: skip
        created = t.isoformat(timespec="milliseconds")
        own_rows.append((setl_id, msgid, "sale", code, till, "op", psn, None,
                         "reversed" if rev else "settled", total, pa, ma, cash, 0,
                         created, iso, json.dumps(legs), "{}", "[]", ""))  # fmt: skip
        nhsa_rows.append((setl_id, msgid, "sale", "2102", code, psn, mdtrt_id, None,
                          "reversed" if rev else "settled", insutype, "41", total, 0,
                          pa + ma, ma, cash, 10_000, when, iso, json.dumps(legs),
                          _platform_setlinfo(setl), json.dumps(_cut(total))))  # fmt: skip
        rmsgid = rid = None
        if rev:
            rmsgid, rid = rev.msgid, f"{region}{rev.stamp}{3 * i + 2:010d}"
            rwhen = rev.at.strftime("%Y-%m-%d %H:%M:%S")
            own_rows.append((rid, rmsgid, "reversal", code, till, "op", psn, setl_id,
                             "settled", -total, -pa, -ma, -cash, 0,
                             rev.at.isoformat(timespec="milliseconds"), iso, json.dumps(legs),
                             "{}", "[]", "returned"))  # fmt: skip
            rsetl = {"mdtrt_id": mdtrt_id, "setl_id": rid, "clr_optins": region,
                     "medfee_sumamt": -total, "acct_pay": -(pa + ma), "psn_cash_pay": -cash,
                     "acct_mulaid_pay": -ma, "fund_pay_sumamt": 0, "setl_time": rwhen,
                     "medins_setl_id": rmsgid}  # fmt: skip
            nhsa_rows.append((rid, rmsgid, "reversal", "2103", code, psn, mdtrt_id, setl_id,
                              "settled", insutype, "41", -total, 0, -(pa + ma), -ma, -cash,
                              10_000, rwhen, iso, json.dumps(legs), _platform_setlinfo(rsetl),
                              "[]"))  # fmt: skip
        ref = f"S{i}"
        plan = {"total": total, "account_payable": pa + ma, "cash": cash, "cash_only": 0,
                "legs": legs, "skipped": [], "notices": [],
                "lines": [{"sku": "SKU-1", "name": "药品", "catalogue_code": "XA01AAA0001",
                           "quantity": 1, "unit_price": total, "prescription": False,
                           "trace_codes": [], "split_pack": False}]}  # fmt: skip
        journal_rows[till].append((
            ref, "h", "reversed" if rev else "settled", msgid, setl_id, iso,
            t.isoformat(), t.isoformat(), till, psn, "110105********0319", total, pa + ma, pa,
            ma, cash, json.dumps(plan, ensure_ascii=False), legs_column(plan),
            _result(ref, msgid, till, code, setl, total, pa, ma, cash, region, when),
            rmsgid, rid,
        ))  # fmt: skip
    con = sqlite3.connect(own_db)
    con.executemany(
        "INSERT INTO entries (entry_id, msgid, kind, pharmacy_code, terminal_id, operator, "
        "patient_psn_no, original_id, status, total, personal_account, mutual_aid, cash, proxy, "
        "created_at, business_date, legs, balances_after, lines, reason) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        own_rows,
    )
    con.commit()
    con.close()
    con = sqlite3.connect(nhsa_db)
    con.executemany(
        "INSERT INTO settlements (setl_id, msgid, kind, infno, fixmedins_code, psn_no, "
        "mdtrt_id, original_setl_id, status, insutype, clr_type, medfee_sumamt, "
        "fund_pay_sumamt, acct_pay, acct_mulaid_pay, psn_cash_pay, balc, setl_time, "
        "business_date, legs, setlinfo, detlcutinfo) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        nhsa_rows,
    )
    con.commit()
    con.close()
    paths = []
    for till, rows in journal_rows.items():
        path = work / f"journal-{till}.sqlite3"
        Journal(path, hmac_key=b"k", pharmacy_code=code, terminal_id=till).close()
        jc = sqlite3.connect(path)
        jc.executemany(
            "INSERT INTO sales (sale_ref, request_hash, state, msgid, settlement_id, "
            "business_date, created_at, updated_at, terminal_id, patient_psn_no, "
            "patient_id_masked, total, account_payable, personal_account, mutual_aid, cash, "
            "plan, legs, result, reversal_msgid, reversal_id) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        jc.commit()
        jc.close()
        paths.append(str(path))
    return SeededDay(own_db, nhsa_db, paths, code, ph.name[:20], region, ph.api_token,
                     len(own_rows))  # fmt: skip
