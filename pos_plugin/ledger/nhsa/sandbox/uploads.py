"""The sandbox's uploads from the pharmacy: 3505 sales, 3506 returns, 3301 SKU mappings.

Why each is kept the way it is:
- **3505** (商品销售) keeps a sale's lines and their 追溯码 once per receipt number
  (``rtal_docno``): a resend after a lost answer is success and stores nothing twice.
- **3506** (商品销售退货) keeps a return once per (the sale's ``setl_id``,
  ``medins_prod_sel_no``), and refuses the return of a sale no 3505 reported: the
  platform cannot take back what it was never told was sold.
- **3301** (目录对照上传) keeps the pharmacy's SKU -> national code mapping, one row per
  SKU (``fixmedins_hilist_id``): a re-upload replaces it (a mapping is corrected, not
  added to). Every row of a call is checked before any is kept (``input.data[n]`` named
  in the refusal); an unknown ``med_list_codg`` is refused like a 2102's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pos_plugin.ledger.nhsa.sandbox import wire
from pos_plugin.ledger.nhsa.sandbox.wire import F, Refused

if TYPE_CHECKING:
    from pos_plugin.ledger.nhsa.sandbox.platform import Env, Platform

# --------------------------------------------------------------------------- 3505
SELINFO = (  # 表165 (the fields checked; the rest are kept as sent)
    F("med_list_codg", "str", 50, True),
    F("fixmedins_hilist_id", "str", 30, True),
    F("fixmedins_hilist_name", "str", 200, True),
    F("rx_flag", "code", 3, True),
    F("trdn_flag", "code", 3, True),
    F("finl_trns_pric", "num", (16, 6)),
    F("rtal_docno", "str", 40, True),
    F("sel_retn_cnt", "num", (16, 4), True),
    F("sel_retn_time", "datetime", 0, True),
    F("setl_id", "str", 30),
    F("mdtrt_setl_type", "code", 3),
)


def sales_upload(platform: Platform, env: Env) -> str:
    """3505: keep a sale's lines and their 追溯码, once per receipt number (``rtal_docno``):
    a repeat (a resend after a lost answer) is success and stores nothing twice."""
    w = "input.selinfo"
    raw = env.input.get("selinfo")
    rows = raw if isinstance(raw, list) else [raw]
    cleaned = [wire.check_fields(r, SELINFO, f"{w}[{n}]") for n, r in enumerate(rows)]
    if not cleaned:
        raise Refused(f"{w} 不能为空 (is required)", w)
    docno = cleaned[0]["rtal_docno"]
    if any(r["rtal_docno"] != docno for r in cleaned):
        raise Refused(f"{w}.rtal_docno 同一次上传应为同一零售单据号", f"{w}.rtal_docno")
    codes = [[str(t.get("drug_trac_codg", "")) for t in (r.get("drugtracinfo") or [])
              if isinstance(t, dict)] for r in rows if isinstance(r, dict)]  # fmt: skip
    with platform.store.write() as tx:
        tx.run("INSERT INTO sales_uploads (fixmedins_code, rtal_docno, setl_id, msgid, lines, "
               "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
               env["fixmedins_code"], docno, cleaned[0]["setl_id"], env["msgid"],
               wire.dumps([{"med_list_codg": r["med_list_codg"], "trace_codes": c}
                           for r, c in zip(cleaned, codes, strict=False)]),
               platform._now().isoformat())  # fmt: skip
    return platform._answer({}, env.pharmacy_region)


# --------------------------------------------------------------------------- 3506
RETURN_SELINFO = (  # 3506 商品销售退货 (the fields checked; the rest are kept as sent)
    F("med_list_codg", "str", 50, True),
    F("fixmedins_hilist_id", "str", 30, True),
    F("fixmedins_hilist_name", "str", 200, True),
    F("trdn_flag", "code", 3, True),
    F("finl_trns_pric", "num", (16, 6)),
    F("sel_retn_cnt", "num", (16, 4), True),
    F("sel_retn_time", "datetime", 0, True),
    F("sel_retn_opter_name", "str", 50, True),
    F("setl_id", "str", 30, True),
    F("medins_prod_sel_no", "str", 50),
    F("mdtrt_sn", "str", 30),
)


def sales_return(platform: Platform, env: Env) -> str:
    """3506: keep a return's lines and their 追溯码, once per return (the sale's
    ``setl_id`` + ``medins_prod_sel_no``): a repeat is success and stores nothing twice.
    A return of a sale no 3505 reported is refused: the platform cannot take back what
    it was never told was sold."""
    w = "input.selinfo"
    raw = env.input.get("selinfo")
    rows = raw if isinstance(raw, list) else [raw]
    cleaned = [wire.check_fields(r, RETURN_SELINFO, f"{w}[{n}]") for n, r in enumerate(rows)]
    if not cleaned:
        raise Refused(f"{w} 不能为空 (is required)", w)
    setl_id, sel_no = cleaned[0]["setl_id"], cleaned[0].get("medins_prod_sel_no") or ""
    if any(r["setl_id"] != setl_id or (r.get("medins_prod_sel_no") or "") != sel_no
           for r in cleaned):  # fmt: skip
        raise Refused(f"{w}.setl_id 同一次退货上传应为同一结算ID与销售流水号", f"{w}.setl_id")
    codes = [[str(t.get("drug_trac_codg", "")) for t in (r.get("drugtracinfo") or [])
              if isinstance(t, dict)] for r in rows if isinstance(r, dict)]  # fmt: skip
    code = env["fixmedins_code"]
    with platform.store.write() as tx:
        if tx.one("SELECT 1 FROM sales_uploads WHERE fixmedins_code = ? AND setl_id = ?",
                  code, setl_id) is None:  # fmt: skip
            raise Refused(f"{w}.setl_id 未找到对应的商品销售记录(3505) (no 3505 of this sale)",
                          f"{w}.setl_id")  # fmt: skip
        tx.run("INSERT INTO sales_returns (fixmedins_code, setl_id, medins_prod_sel_no, msgid, "
               "lines, received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
               code, setl_id, sel_no, env["msgid"],
               wire.dumps([{"med_list_codg": r["med_list_codg"], "trace_codes": c,
                            "sel_retn_cnt": str(r["sel_retn_cnt"])}
                           for r, c in zip(cleaned, codes, strict=False)]),
               platform._now().isoformat())  # fmt: skip
    return platform._answer({}, env.pharmacy_region)


# --------------------------------------------------------------------------- 3301
MAPPING = (  # 3301 catalogcompin (目录对照)
    F("fixmedins_hilist_id", "str", 30, True),
    F("fixmedins_hilist_name", "str", 200, True),
    F("list_type", "code", 30, True),
    F("med_list_codg", "str", 50, True),
    F("begndate", "date", 0, True),
    F("enddate", "date", 0, True),
    F("aprvno", "str", 100),
    F("dosform", "str", 100),
    F("exct_cont", "str", 2000),
    F("item_cont", "str", 2000),
    F("prcunt", "str", 100),
    F("spec", "str", 200),
    F("pacspec", "str", 200),
    F("memo", "str", 500),
)
MAPPING_MAX = 100  # rows in one 3301 (the input stays within its 40000 characters)


def catalogue_mapping(platform: Platform, env: Env) -> str:
    """3301: every row checked (fields, dates, a known national code) before any is
    kept; then each SKU's mapping stored, replacing an earlier one. Answer ``{}``."""
    w = "input.data"
    raw = env.input.get("data")
    rows = raw if isinstance(raw, list) else [raw]
    if not rows or len(rows) > MAPPING_MAX:
        raise Refused(f"{w} 应为1至{MAPPING_MAX}条 (1 to {MAPPING_MAX} rows)", w)
    cleaned = [wire.check_fields(r, MAPPING, f"{w}[{n}]") for n, r in enumerate(rows)]
    code = env["fixmedins_code"]
    now = platform._now().isoformat()
    with platform.store.write() as tx:
        for n, r in enumerate(cleaned):
            if r["begndate"] > r["enddate"]:
                raise Refused(f"{w}[{n}].enddate 不能早于开始日期 (before begndate)",
                              f"{w}[{n}].enddate")  # fmt: skip
            if tx.one("SELECT 1 FROM catalogue WHERE med_list_codg = ?",
                      r["med_list_codg"]) is None:  # fmt: skip
                raise Refused(f"{w}[{n}].med_list_codg 医保目录中不存在 {r['med_list_codg']} "
                              "(not in the catalogue)", f"{w}[{n}].med_list_codg")  # fmt: skip
        for r in cleaned:
            tx.run("INSERT INTO catalogue_mappings (fixmedins_code, fixmedins_hilist_id, "
                   "fixmedins_hilist_name, list_type, med_list_codg, begndate, enddate, detail, "
                   "msgid, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (fixmedins_code, fixmedins_hilist_id) DO UPDATE SET "
                   "fixmedins_hilist_name = excluded.fixmedins_hilist_name, "
                   "list_type = excluded.list_type, med_list_codg = excluded.med_list_codg, "
                   "begndate = excluded.begndate, enddate = excluded.enddate, "
                   "detail = excluded.detail, msgid = excluded.msgid, "
                   "received_at = excluded.received_at",
                   code, r["fixmedins_hilist_id"], r["fixmedins_hilist_name"], r["list_type"],
                   r["med_list_codg"], r["begndate"], r["enddate"], wire.dumps(
                       {k: v for k, v in r.items() if k not in ("begndate", "enddate")}),
                   env["msgid"], now)  # fmt: skip
    return platform._answer({}, env.pharmacy_region)
