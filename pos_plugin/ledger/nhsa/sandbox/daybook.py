"""The sandbox's day-end transactions: 3201 totals, 9101/9102 file exchange, 3202 details.

Why these rules (NHSA.md §2, Hunan 表146–151 and the openhis / zebone readers):
- **3201** compares the pharmacy's totals for one insutype and clearing type over the
  period (by the settlement's day, the platform's ``setl_time``) with the platform's
  own: ``medfee_sumamt``, ``fund_pay_sumamt``, ``acct_pay`` and the count, reversal rows
  included (their amounts negative). ``stmt_rslt`` 0 平, 1 不平.
- **9101** keeps an uploaded file (JSON ``in`` = Base64, or the multipart ``file`` the
  HTTP layer turned into the same) and answers a ``file_qury_no``; **9102** hands back a
  kept file by that number (the HTTP layer sends it as ``application/octet-stream``).
- **3202** reads the uploaded ZIP (one UTF-8 TXT inside, TAB-separated, ``null`` for
  empty, 7 columns: setl_id, mdtrt_id, psn_no, medfee_sumamt, fund_pay_sumamt,
  acct_pay, refd_setl_flag) and compares it row by row with the platform's settlements
  of the period and clearing type (``clr_type`` empty: every type), keyed by setl_id.
  The result file (表151: psn_no, mdtrt_id, setl_id, msgid, stmt_rslt,
  refd_setl_flag, memo, medfee_sumamt, fund_pay_sumamt, acct_pay) is kept as a file and
  named in the answer's ``fileinfo``: 0 对平, 1 中心多 (setl_id and mdtrt_id empty, as
  the spec says; ``msgid`` the sender's message id, for a 2601), 2 医药机构多,
  3 数据不一致.
- A sale reversed by **2601** together with its reversal is left out of both sides'
  comparison: the pharmacy never learnt either setl_id (that is why it sent a 2601),
  and the pair nets to zero. A 2102 that landed *after* its 2601 is a plain settled
  sale: the pharmacy's file lacks it, so it comes back as 1 中心多 with its msgid.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pos_plugin.ledger.nhsa.sandbox import wire
from pos_plugin.ledger.nhsa.sandbox.wire import F, Refused, fen_of, yuan, yuan_text

if TYPE_CHECKING:
    from pos_plugin.ledger.nhsa.sandbox.platform import Env, Platform

TOTALS = (  # 表146 (3201)
    F("insutype", "code", 6, True),
    F("clr_type", "code", 30, True),
    F("setl_optins", "code", 6, True),
    F("stmt_begndate", "date", 0, True),
    F("stmt_enddate", "date", 0, True),
    F("medfee_sumamt", "num", (16, 2), True),
    F("fund_pay_sumamt", "num", (16, 2), True),
    F("acct_pay", "num", (16, 2), True),
    F("fixmedins_setl_cnt", "num", (10, 0), True),
    F("refd_setl_flag", "code", 3),
    F("fixmedins_refd_setl_flag", "code", 3),
)
DETAIL = (  # 表148 (3202)
    F("setl_optins", "code", 6, True),
    F("file_qury_no", "str", 200, True),
    F("stmt_begndate", "date", 0, True),
    F("stmt_enddate", "date", 0, True),
    F("medfee_sumamt", "num", (16, 2), True),
    F("fund_pay_sumamt", "num", (16, 2), True),
    F("cash_payamt", "num", (16, 2), True),
    F("fixmedins_setl_cnt", "num", (10, 0), True),
    F("clr_type", "code", 30),
    F("refd_setl_flag", "code", 3),
    F("fixmedins_refd_setl_flag", "code", 3),
)
UPLOAD = (F("filename", "str", 200, True), F("fixmedins_code", "str", 30, True))
DOWNLOAD = (F("file_qury_no", "str", 200, True), F("filename", "str", 200),
            F("fixmedins_code", "str", 30, True))  # fmt: skip
FILE_MAX = 64 * 1024 * 1024  # one day's ZIP: far beyond 10^5 settlements (~3 MB)
COLUMNS = 7


def _null(value: str) -> str:
    return "" if value in ("null", "NULL") else value


def _t(value: str) -> str:
    return value if value else "null"


def centre_rows(tx: Any, code: str, begin: str, end: str, clr_type: str = "",
                insutype: str = "", optins: str = "") -> list[Any]:
    """The settlements the day's comparison counts (module docstring: 2601 pairs left out)."""
    sql = ("SELECT s.setl_id, s.mdtrt_id, s.psn_no, s.medfee_sumamt, s.fund_pay_sumamt, "
           "s.acct_pay, s.kind, s.msgid, s.insutype, s.clr_type FROM settlements s "
           "WHERE s.fixmedins_code = ? AND s.business_date BETWEEN ? AND ? "
           "AND s.infno <> '2601' AND NOT EXISTS (SELECT 1 FROM settlements r WHERE "
           "r.original_setl_id = s.setl_id AND r.infno = '2601')")
    params: list[Any] = [code, begin, end]
    if clr_type:
        sql += " AND s.clr_type = ?"
        params.append(clr_type)
    if insutype:
        sql += " AND s.insutype = ?"
        params.append(insutype)
    if optins:  # 3201's setl_optins: the clearing institution (the answer's clr_optins)
        sql += " AND json_extract(s.setlinfo, '$.clr_optins') = ?"
        params.append(optins)
    return list(tx.all(sql + " ORDER BY s.setl_id", *params))


def totals(platform: Platform, env: Env) -> str:
    """3201: stmt_rslt 0 when the pharmacy's totals are the platform's, else 1."""
    w = "input.data"
    data = wire.check_fields(env.input.get("data"), TOTALS, w)
    code = env["fixmedins_code"]
    with platform.store.read() as tx:
        rows = centre_rows(tx, code, data["stmt_begndate"], data["stmt_enddate"],
                           data["clr_type"], data["insutype"], data["setl_optins"])
    mine = (fen_of(data["medfee_sumamt"], f"{w}.medfee_sumamt"),
            fen_of(data["fund_pay_sumamt"], f"{w}.fund_pay_sumamt"),
            fen_of(data["acct_pay"], f"{w}.acct_pay"), int(Decimal(data["fixmedins_setl_cnt"])))
    ours = (sum(int(r[3]) for r in rows), sum(int(r[4]) for r in rows),
            sum(int(r[5]) for r in rows), len(rows))
    ok = mine == ours
    dscr = "对账平" if ok else (
        f"对账不平：中心 医疗费总额{yuan(ours[0])} 基金{yuan(ours[1])} 个人账户{yuan(ours[2])} "
        f"笔数{ours[3]}")
    return platform._answer({"stmtinfo": {"setl_optins": data["setl_optins"],
                                          "stmt_rslt": "0" if ok else "1",
                                          "stmt_rslt_dscr": dscr}}, env.pharmacy_region)


def upload(platform: Platform, env: Env) -> str:
    """9101: keep the file, answer its file_qury_no."""
    w = "input.fsUploadIn"
    node = env.input.get("fsUploadIn")
    data = wire.check_fields(node, UPLOAD, w)
    raw = node.get("in") if isinstance(node, dict) else None
    if isinstance(raw, list):  # a byte array as JSON numbers (Java's byte[] serialised)
        try:
            content = bytes(int(b) & 0xFF for b in raw)
        except (TypeError, ValueError):
            raise Refused(f"{w}.in 应为字节数组或Base64 (bytes)", f"{w}.in") from None
    elif isinstance(raw, str) and raw:
        try:
            content = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(f"{w}.in 不是有效的Base64 (not Base64)", f"{w}.in") from None
    else:
        raise Refused(f"{w}.in 不能为空 (is required)", f"{w}.in")
    if len(content) > FILE_MAX:
        raise Refused(f"{w}.in 文件过大 (file too large)", f"{w}.in")
    if data["fixmedins_code"] != env["fixmedins_code"]:
        raise Refused(f"{w}.fixmedins_code 与报文的定点医药机构不符", f"{w}.fixmedins_code")
    return platform._answer(_keep(platform, env, data["filename"], content),
                            env.pharmacy_region)


def _keep(platform: Platform, env: Env, filename: str, content: bytes) -> dict[str, Any]:
    now = platform._now()
    with platform.store.write() as tx:
        no = f"F{platform._new_id(tx, env.pharmacy_region)}"
        end = f"{now.date().isoformat()} 23:59:59"
        tx.run("INSERT INTO files (file_qury_no, fixmedins_code, filename, content, "
               "dld_endtime, created_at) VALUES (?, ?, ?, ?, ?, ?)", no,
               env["fixmedins_code"], filename, content, end, now.isoformat())
    return {"file_qury_no": no, "filename": filename,
            "fixmedins_code": env["fixmedins_code"], "dld_endtime": end}


def download(platform: Platform, env: Env) -> bytes:
    """9102: the kept file's bytes (a refusal is raised as ``Refused``)."""
    w = "input.fsDownloadIn"
    data = wire.check_fields(env.input.get("fsDownloadIn"), DOWNLOAD, w)
    with platform.store.read() as tx:
        row = tx.one("SELECT content, fixmedins_code FROM files WHERE file_qury_no = ?",
                     data["file_qury_no"])
    if row is None or row[1] not in (env["fixmedins_code"], "plc"):
        raise Refused(f"{w}.file_qury_no 文件不存在 (no such file)", f"{w}.file_qury_no")
    return bytes(row[0])


def _rows_of_zip(content: bytes, where: str) -> list[list[str]]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise Refused(f"{where} 压缩包应只含一个TXT文件 (one TXT in the ZIP)", where)
            text = z.read(names[0]).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError):
        raise Refused(f"{where} 不是UTF-8 TXT的ZIP压缩包 (not a ZIP of UTF-8 TXT)",
                      where) from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = [_null(c) for c in line.split("\t")]
        if len(cells) < COLUMNS:
            raise Refused(f"{where} 第{n}行应有{COLUMNS}列，以TAB分隔 (line {n}: 7 columns)",
                          where)
        rows.append(cells)
    return rows


def detail(platform: Platform, env: Env) -> str:
    """3202: compare the uploaded file with the platform's rows; keep the result file."""
    w = "input.data"
    data = wire.check_fields(env.input.get("data"), DETAIL, w)
    code = env["fixmedins_code"]
    with platform.store.read() as tx:
        f = tx.one("SELECT content FROM files WHERE file_qury_no = ? AND fixmedins_code = ?",
                   data["file_qury_no"], code)
        if f is None:
            raise Refused(f"{w}.file_qury_no 文件不存在，请先调用【9101】上传",
                          f"{w}.file_qury_no")
        rows = _rows_of_zip(bytes(f[0]), f"{w}.file_qury_no")
        centre = {r[0]: r for r in centre_rows(tx, code, data["stmt_begndate"],
                                               data["stmt_enddate"], data["clr_type"])}
    out: list[list[str]] = []
    seen: set[str] = set()
    for n, cells in enumerate(rows, 1):
        setl_id, mdtrt_id, psn_no, medfee, fund, acct, flag = cells[:COLUMNS]
        try:
            mine = (fen_of(medfee, "medfee_sumamt"), fen_of(fund or "0", "fund_pay_sumamt"),
                    fen_of(acct or "0", "acct_pay"))
        except Refused:
            raise Refused(f"{w}.file_qury_no 第{n}行金额无效 (line {n}: amounts)",
                          f"{w}.file_qury_no") from None
        c = centre.get(setl_id)
        if c is None or setl_id in seen:
            out.append([psn_no, mdtrt_id, setl_id, "", "2", flag, "医药机构多",
                        *map(yuan_text, mine)])
            continue
        seen.add(setl_id)
        cflag = "1" if c[6] == "reversal" else "0"
        theirs = (int(c[3]), int(c[4]), int(c[5]))
        same = theirs == mine and cflag == (flag or "0") and c[1] == mdtrt_id and c[2] == psn_no
        out.append([c[2], c[1], setl_id, c[7], "0" if same else "3", cflag,
                    "对平" if same else "数据不一致", *map(yuan_text, theirs)])
    for setl_id, c in centre.items():
        if setl_id not in seen:
            cflag = "1" if c[6] == "reversal" else "0"
            out.append([c[2], "", "", c[7], "1", cflag, "中心多",
                        *(yuan_text(int(c[i])) for i in (3, 4, 5))])
    text = "".join("\t".join(_t(v) for v in r) + "\n" for r in out)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{data['file_qury_no']}_result.txt", text.encode("utf-8"))
    kept = _keep(platform, env, f"{data['file_qury_no']}_result.zip", buf.getvalue())
    return platform._answer({"fileinfo": {"file_qury_no": kept["file_qury_no"],
                                          "filename": kept["filename"],
                                          "dld_endtime": kept["dld_endtime"]}},
                            env.pharmacy_region)


# --------------------------------------------------------------------------- 1312
CATALOGUE_QUERY = (  # 1312 医保目录信息查询 (the fields the agent sends)
    F("query_date", "date", 0),
    F("hilist_code", "str", 50),
    F("insu_admdvs", "code", 6),
    F("begndate", "date", 0),
    F("hilist_name", "str", 200),
    F("updt_time", "date", 0),
    F("page_num", "num", (10, 0)),
    F("page_size", "num", (10, 0)),
)
PAGE_MAX = 1000
_LV = {"A": "01", "B": "02", "C": "03"}


def catalogue(platform: Platform, env: Env) -> str:
    """1312: the world's catalogue, paged (``page_num`` from 1, ``page_size`` at most
    1000), in code order; ``hilist_code`` narrows it to one code. Each row: hilist_code,
    hilist_name, chrgitm_lv (01 甲 / 02 乙 / 03 丙), hilist_pric_uplmt_amt (the price
    limit, yuan, or null), begndate/enddate (a fixed validity), vali_flag 1."""
    w = "input.data"
    data = wire.check_fields(env.input.get("data"), CATALOGUE_QUERY, w)
    num = int(data["page_num"]) or 1
    size = int(data["page_size"]) or 100
    if size > PAGE_MAX:
        raise Refused(f"{w}.page_size 不能超过{PAGE_MAX}", f"{w}.page_size")
    where, params = "", []
    if data["hilist_code"]:
        where, params = " WHERE med_list_codg = ?", [data["hilist_code"]]
    with platform.store.read() as tx:
        counted = tx.one(f"SELECT count(*) FROM catalogue{where}", *params)
        total = int(counted[0]) if counted else 0
        rows = tx.all(f"SELECT med_list_codg, name, insurance_class, price_limit FROM catalogue"
                      f"{where} ORDER BY med_list_codg LIMIT ? OFFSET ?", *params, size,
                      (num - 1) * size)  # fmt: skip
    out = [{"hilist_code": c, "hilist_name": n, "chrgitm_lv": _LV[str(k)],
            "hilist_pric_uplmt_amt": yuan(int(p)) if p is not None else None,
            "begndate": "2020-01-01", "enddate": "2099-12-31", "vali_flag": "1"}
           for c, n, k, p in rows]  # fmt: skip
    return platform._answer({"data": out, "recordCounts": total, "pageNum": num,
                             "pageSize": size, "pages": -(-total // size) if size else 0},
                            env.pharmacy_region)  # fmt: skip
