"""The sandbox's side of the wire: field tables, their checks, and JSON with exact decimals.

Why a hand-written checker and not pydantic models: every refusal must be an
``infcode -1`` whose ``err_msg`` names the field by its path in the envelope
(``input.druginfo.medfee_sumamt``), in the platform's words, and never echoes the
offending value (it may be an ID number). The tables are the Hunan edition's
(NHSA.md §1/§2): a field is ``(name, kind, size, required)``.

Amounts: the request JSON is parsed with ``parse_float=Decimal`` so ``12.30`` is never
a float; a yuan amount (16,2) becomes int fen, refusing a value that is not a whole
fen. Answers are written by ``dumps``, which prints a ``Decimal`` as the JSON number
it is (``12.30``, ``-5.00``): the platform answers amounts as numbers with 2 decimals.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["str", "code", "num", "datetime", "date", "digits"]

# Values the platform's own samples use for "empty" (Hunan's 1101 sample: "NULL").
EMPTY = ("", "null", "NULL")
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FEN = Decimal("0.01")


class Refused(Exception):
    """A request the platform refuses: becomes ``infcode -1`` with ``err_msg``."""

    def __init__(self, err_msg: str, field: str | None = None) -> None:
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.field = field


@dataclass(frozen=True)
class F:
    """One row of a field table: name, kind, size (chars, or (int, scale) digits), required."""

    name: str
    kind: Kind
    size: int | tuple[int, int] = 0
    required: bool = False


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in EMPTY)


def decimal_of(value: Any, path: str) -> Decimal:
    """A JSON number (int or Decimal) or a numeric string, as an exact ``Decimal``."""
    if isinstance(value, bool):
        raise Refused(f"{path} 应为数值型 (must be a number)", path)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise Refused(f"{path} 应为数值型 (must be a number)", path) from None
        if d.is_finite():
            return d
    raise Refused(f"{path} 应为数值型 (must be a number)", path)


def check_number(value: Any, path: str, size: tuple[int, int]) -> Decimal:
    """A number within ``(digits, scale)``: at most ``scale`` decimals, ``digits`` in all."""
    d = decimal_of(value, path)
    digits, scale = size
    if max(d.adjusted() + 1, 0) > digits - scale:  # digits before the point, checked first
        raise Refused(f"{path} 超出长度{digits},{scale} (too large)", path)
    if d != d.quantize(Decimal(1).scaleb(-scale)):
        raise Refused(f"{path} 最多{scale}位小数 (at most {scale} decimals)", path)
    return d


# Yuan text that is whole fen within 16,2 on its face (at most 14 integer digits, two
# decimals and any trailing zeros): ``fen_of`` reads it by integers, the value
# ``check_number`` gives (tests/nhsa_sandbox/test_wire_amounts.py holds the two equal),
# because a 3202 file is three amounts a row, 10^5 rows. Anything else, the full check.
_FEN_TEXT = re.compile(r"\s*([+-]?)(\d{1,14})(?:\.(\d{0,2})0*)?\s*")


def fen_of(value: Any, path: str) -> int:
    """A yuan amount (16,2) as int fen; a value that is not a whole fen is refused."""
    if type(value) is str and (m := _FEN_TEXT.fullmatch(value)) is not None:
        sign, whole, cents = m.groups()
        fen = int(whole) * 100 + int((cents or "").ljust(2, "0"))
        return -fen if sign == "-" else fen
    d = check_number(value, path, (16, 2))
    return int(d * 100)


def yuan(fen: int) -> Decimal:
    """Int fen as yuan with exactly 2 decimals, for an answer."""
    return (Decimal(fen) / 100).quantize(FEN)


def yuan_text(fen: int) -> str:
    """``str(yuan(fen))`` by integers, for a file's cell: 1230 -> "12.30", -5 -> "-0.05"."""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


def parse_datetime(value: str, path: str) -> dt.datetime:
    if not DATETIME_RE.match(value):
        raise Refused(f"{path} 格式应为 yyyy-MM-dd HH:mm:ss", path)
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise Refused(f"{path} 不是有效的时间 (not a valid time)", path) from None


def check_fields(obj: Any, table: Sequence[F], path: str) -> dict[str, Any]:
    """The node's fields per its table, cleaned; unknown keys are ignored (as the platform does).

    Cleaned values: strings stripped ("null"/"NULL" -> ""), numbers as ``Decimal``,
    ``digits`` as str. A missing required field, a string too long, a malformed time
    or number: ``Refused`` naming ``path.field``.
    """
    if not isinstance(obj, Mapping):
        raise Refused(f"{path} 应为JSON对象 (must be a JSON object)", path)
    out: dict[str, Any] = {}
    for f in table:
        where = f"{path}.{f.name}" if path else f.name
        value = obj.get(f.name)
        if _is_empty(value):
            if f.required:
                raise Refused(f"{where} 不能为空 (is required)", where)
            out[f.name] = Decimal(0) if f.kind == "num" else ""
            continue
        if f.kind == "num":
            assert isinstance(f.size, tuple)
            out[f.name] = check_number(value, where, f.size)
            continue
        if f.kind == "digits":  # 数字型: a JSON integer or a string of digits
            text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(text, str) or not text.isdigit() or not text.isascii():
                raise Refused(f"{where} 应为数字型 (must be digits)", where)
            assert isinstance(f.size, int)
            if len(text) > f.size:
                raise Refused(f"{where} 超出长度{f.size} (longer than {f.size})", where)
            out[f.name] = text
            continue
        if f.kind == "code" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a code with no declared type (opter_type): 1 or "1"
        if not isinstance(value, str):
            raise Refused(f"{where} 应为字符型 (must be a string)", where)
        text = value.strip()
        if f.kind == "datetime":
            parse_datetime(text, where)
        elif f.kind == "date" and not DATE_RE.match(text):
            raise Refused(f"{where} 格式应为 yyyy-MM-dd", where)
        assert isinstance(f.size, int)
        if f.size and len(text) > f.size:
            raise Refused(f"{where} 超出长度{f.size} (longer than {f.size})", where)
        out[f.name] = text
    return out


def one_of(value: str, allowed: Sequence[str], path: str) -> str:
    if value not in allowed:
        raise Refused(f"{path} 取值应为 {'/'.join(allowed)} (not a known code)", path)
    return value


# --------------------------------------------------------------------------- tables
# Hunan 表2: the request envelope (all but ``input``, checked apart).
ENVELOPE = (
    F("infno", "str", 4, True),
    F("msgid", "str", 30, True),
    F("mdtrtarea_admvs", "str", 6, True),
    F("insuplc_admdvs", "str", 6),
    F("recer_sys_code", "str", 10, True),
    F("dev_no", "str", 100),
    F("dev_safe_info", "str", 2000),
    F("cainfo", "str", 1024),
    F("signtype", "str", 10),
    F("infver", "str", 6, True),
    F("opter_type", "code", 3, True),
    F("opter", "str", 30, True),
    F("opter_name", "str", 50, True),
    F("inf_time", "datetime", 19, True),
    F("fixmedins_code", "str", 12, True),
    F("fixmedins_name", "str", 20, True),
    F("sign_no", "str", 30),
)
INPUT_MAX = 40000  # 表2: input, 40000 characters

SIGN_IN = (F("opter_no", "str", 20, True), F("mac", "str", 20, True), F("ip", "str", 20, True))
SIGN_OUT = (F("sign_no", "str", 30, True), F("opter_no", "str", 20, True))

LOOKUP = (  # 表7. psn_cert_type/certno/psn_name are "Y" in the table, yet the
    # platform's own sample sends them empty for a card or voucher: optional here.
    F("mdtrt_cert_type", "str", 3, True),
    F("mdtrt_cert_no", "str", 50, True),
    F("card_sn", "str", 32),
    F("begntime", "str", 19),
    F("psn_cert_type", "str", 6),
    F("certno", "str", 50),
    F("psn_name", "str", 50),
)

DRUGINFO = (  # 表59/64
    F("psn_no", "str", 30, True),
    F("mdtrt_cert_type", "str", 3, True),
    F("mdtrt_cert_no", "str", 50, True),
    F("card_sn", "str", 32),
    F("psn_cert_type", "str", 3, True),
    F("certno", "str", 20, True),
    # 3 in the input tables, 6 in 1101's output (which is what a client echoes): 6.
    F("psn_type", "str", 6, True),
    F("psn_name", "str", 20, True),
    F("begntime", "datetime", 19, True),
    F("medfee_sumamt", "num", (16, 2), True),
    F("invono", "str", 20),
    F("insutype", "str", 6, True),
    F("dise_codg", "str", 30),
    F("dise_name", "str", 500),
    F("acct_used_flag", "str", 1, True),
    F("med_type", "str", 6, True),
    F("exp_content", "str", 4000),
)

DRUGDETAIL = (  # 表60/65
    F("feedetl_sn", "digits", 15, True),  # 1.1.x change log: digits, > 0, at most 15
    F("rxno", "str", 30),
    F("rx_circ_flag", "str", 3, True),
    F("fee_ocur_time", "datetime", 19, True),
    F("med_list_codg", "str", 50, True),
    F("medins_list_codg", "str", 150, True),
    F("det_item_fee_sumamt", "num", (16, 2), True),
    F("cnt", "num", (16, 4), True),
    F("pric", "num", (16, 6), True),
    F("sin_dos_dscr", "str", 200),
    F("used_frqu_dscr", "str", 200),
    F("prd_days", "num", (4, 2)),
    F("medc_way_dscr", "str", 200),
    F("bilg_dr_codg", "str", 30),
    F("bilg_dr_name", "str", 50),
    F("tcmdrug_used_way", "str", 6),
    F("exp_content", "str", 4000),
)

UNDO = (  # 表69 (2103)
    F("setl_id", "str", 30, True),
    F("mdtrt_id", "str", 30, True),
    F("psn_no", "str", 30, True),
    F("exp_content", "str", 4000),
)

REVERSE = (  # 表127 (2601)
    F("psn_no", "str", 30, True),
    F("omsgid", "str", 30, True),
    F("oinfno", "str", 4, True),
)


# --------------------------------------------------------------------------- JSON
def loads(raw: bytes | str) -> Any:
    """JSON with exact decimals: ``12.30`` -> ``Decimal('12.30')``, never a float."""
    return json.loads(raw, parse_float=Decimal)


def dumps(obj: Any) -> str:
    """Compact JSON (UTF-8 text, not ASCII-escaped) printing ``Decimal`` as a JSON number."""
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}"
                              for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)


def canonical(obj: Any) -> str:
    """Order- and spelling-independent text of cleaned input (for the idempotency hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def round_fen(value: Decimal) -> int:
    """A yuan ``Decimal`` with any number of decimals, rounded half-up to int fen."""
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
