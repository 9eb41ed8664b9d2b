"""The interface's field tables (NHSA.md §1-2, Hunan 表2/7/59-65/69/127/367/369), transcribed
independently of the client, and a validator for a request envelope as sent on the wire.

Each field: (kind, length, required). kind: "str" (a JSON string of at most length
characters), "num" (a JSON number, length "16,2" = integer digits + decimals),
"datetime" (yyyy-MM-dd HH:mm:ss or empty), "digits" (a string of digits), "obj", "rows".
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

Field = tuple[str, Any, bool]
ENVELOPE: dict[str, Field] = {
    "infno": ("str", 4, True), "msgid": ("str", 30, True), "mdtrtarea_admvs": ("str", 6, True),
    "insuplc_admdvs": ("str", 6, False), "recer_sys_code": ("str", 10, True),
    "dev_no": ("str", 100, False), "dev_safe_info": ("str", 2000, False),
    "cainfo": ("str", 1024, False), "signtype": ("str", 10, False), "infver": ("str", 6, True),
    "opter_type": ("str", 3, True), "opter": ("str", 30, True), "opter_name": ("str", 50, True),
    "inf_time": ("datetime", 19, True), "fixmedins_code": ("str", 12, True),
    "fixmedins_name": ("str", 20, True), "sign_no": ("str", 30, False), "input": ("obj", 0, True),
}  # fmt: skip
SIGN_IN = {"opter_no": ("str", 20, True), "mac": ("str", 20, True), "ip": ("str", 20, True)}
SIGN_OUT = {"sign_no": ("str", 30, True), "opter_no": ("str", 20, True)}
Q1101 = {
    "mdtrt_cert_type": ("str", 3, True), "mdtrt_cert_no": ("str", 50, True),
    "card_sn": ("str", 32, False), "begntime": ("datetime", 19, False),
    "psn_cert_type": ("str", 6, True), "certno": ("str", 50, False),
    "psn_name": ("str", 50, False),
}  # fmt: skip
DRUGINFO = {
    "psn_no": ("str", 30, True), "mdtrt_cert_type": ("str", 3, True),
    "mdtrt_cert_no": ("str", 50, True), "card_sn": ("str", 32, False),
    "psn_cert_type": ("str", 3, True), "certno": ("str", 20, True), "psn_type": ("str", 3, False),
    "psn_name": ("str", 20, True), "begntime": ("datetime", 19, True),
    "medfee_sumamt": ("num", (14, 2), True), "invono": ("str", 20, False),
    "insutype": ("str", 6, True), "dise_codg": ("str", 30, False), "dise_name": ("str", 500, False),
    "acct_used_flag": ("str", 1, True), "med_type": ("str", 6, True),
    "exp_content": ("str", 4000, False),
}  # fmt: skip
DRUGDETAIL = {
    "feedetl_sn": ("digits", 30, True), "rxno": ("str", 30, False),
    "rx_circ_flag": ("str", 3, True), "fee_ocur_time": ("datetime", 19, True),
    "med_list_codg": ("str", 50, True), "medins_list_codg": ("str", 150, True),
    "det_item_fee_sumamt": ("num", (14, 2), True), "cnt": ("num", (12, 4), True),
    "pric": ("num", (10, 6), True), "sin_dos_dscr": ("str", 200, False),
    "used_frqu_dscr": ("str", 200, False), "prd_days": ("num", (2, 2), False),
    "medc_way_dscr": ("str", 200, False), "bilg_dr_codg": ("str", 30, False),
    "bilg_dr_name": ("str", 50, False), "tcmdrug_used_way": ("str", 6, False),
    "exp_content": ("str", 4000, False),
}  # fmt: skip
Q2103 = {"setl_id": ("str", 30, True), "mdtrt_id": ("str", 30, True),
         "psn_no": ("str", 30, True), "exp_content": ("str", 4000, False)}  # fmt: skip
Q2601 = {"psn_no": ("str", 30, True), "omsgid": ("str", 30, True), "oinfno": ("str", 4, True)}
INPUTS: dict[str, dict[str, dict[str, Field]]] = {
    "9001": {"signIn": SIGN_IN}, "9002": {"signOut": SIGN_OUT}, "1101": {"data": Q1101},
    "2101": {"druginfo": DRUGINFO, "drugdetail": DRUGDETAIL},
    "2102": {"druginfo": DRUGINFO, "drugdetail": DRUGDETAIL},
    "2103": {"data": Q2103}, "2601": {"data": Q2601},
}  # fmt: skip
ROWS = {"drugdetail"}
MSGID = re.compile(r"^[A-Z0-9]{12}(\d{14})\d{4}$")


def _field(where: str, value: Any, spec: Field) -> list[str]:
    kind, length, required = spec
    if value is None:
        return [f"{where}: null"]
    if kind == "obj":
        return [] if isinstance(value, dict) else [f"{where}: not an object"]
    if kind == "num":
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            return [f"{where}: not a JSON number ({value!r})"]
        whole, places = length
        d = Decimal(value)
        if d != d.quantize(Decimal(1).scaleb(-places)) or abs(d) >= Decimal(10) ** whole:
            return [f"{where}: {value} exceeds {whole},{places}"]
        return []
    if not isinstance(value, str):
        return [f"{where}: not a JSON string ({value!r})"]
    if required and value == "":
        return [f"{where}: required but empty"]
    if len(value) > length:
        return [f"{where}: {len(value)} characters > {length}"]
    if kind == "datetime" and value:
        try:
            dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return [f"{where}: not yyyy-MM-dd HH:mm:ss ({value!r})"]
    if kind == "digits" and not (value.isdigit() and int(value) > 0 and len(value) <= 15):
        return [f"{where}: not a positive number of at most 15 digits"]
    return []


def _node(where: str, node: Any, table: dict[str, Field]) -> list[str]:
    if not isinstance(node, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}.{k}: not in the table" for k in node if k not in table]
    for name, spec in table.items():
        if name not in node:
            if spec[2]:
                problems.append(f"{where}.{name}: missing")
            continue
        problems += _field(f"{where}.{name}", node[name], spec)
    return problems


def violations(envelope: dict[str, Any]) -> list[str]:
    """Everything in one request envelope that the tables do not allow (empty: valid)."""
    problems = _node("envelope", envelope, ENVELOPE)
    m = MSGID.match(str(envelope.get("msgid", "")))
    if m is None or not str(envelope["msgid"]).startswith(str(envelope.get("fixmedins_code"))):
        problems.append("msgid: not fixmedins_code + yyyyMMddHHmmss + 4 digits")
    else:
        dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S")
    inputs = INPUTS.get(str(envelope.get("infno")))
    data = envelope.get("input")
    if inputs is None or not isinstance(data, dict):
        return [*problems, f"infno {envelope.get('infno')}: no table"]
    problems += [f"input.{k}: not in the table" for k in data if k not in inputs]
    for node, table in inputs.items():
        if node in ROWS:
            rows = data.get(node)
            if not isinstance(rows, list) or not rows:
                problems.append(f"input.{node}: no rows")
                continue
            for i, row in enumerate(rows):
                problems += _node(f"input.{node}[{i}]", row, table)
            sns = [r.get("feedetl_sn") for r in rows if isinstance(r, dict)]
            if len(set(sns)) != len(sns):
                problems.append(f"input.{node}: feedetl_sn not unique")
        else:
            problems += _node(f"input.{node}", data.get(node), table)
    carries_psn = any(isinstance(v, dict) and "psn_no" in v for v in data.values())
    if carries_psn and not envelope.get("insuplc_admdvs"):
        problems.append("insuplc_admdvs: required when the input carries psn_no")
    if envelope.get("infno") == "1101" and data.get("data", {}).get("mdtrt_cert_type") == "03" \
            and not data["data"].get("card_sn"):  # fmt: skip
        problems.append("input.data.card_sn: required for mdtrt_cert_type 03")
    return problems
