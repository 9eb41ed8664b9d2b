"""The day's files with the national platform: the 3202 detail file and its result file.

Why a module of its own: the file formats are the part the acceptance checks byte-check,
and two peers read and write exactly these shapes (NHSA.md §2, 表150/151):
- **detail file**: UTF-8 TXT, one line per settlement, TAB-separated, ``null`` for an
  empty cell, no header, ``\\n`` line ends (the spec is silent on both; openhis writes
  no header, and the readers split lines either way), the 7 columns setl_id, mdtrt_id,
  psn_no, medfee_sumamt, fund_pay_sumamt, acct_pay, refd_setl_flag. A reversed sale is
  two lines: forward (flag 0) and reverse (the 2103's own setl_id, amounts negative,
  flag 1). Amounts in yuan with exactly 2 decimals, written from int fen by ``Decimal``.
  Lines in msgid order (msgids are time-ordered), so a day's file is reproducible.
- the file is sent as a ZIP holding that one TXT (``{name}.txt`` in ``{name}.zip``),
  written with a fixed timestamp so the same day gives the same bytes.
- **result file**: a ZIP of one TXT, the 10 columns of 表151 (psn_no, mdtrt_id, setl_id,
  msgid, stmt_rslt, refd_setl_flag, memo, medfee_sumamt, fund_pay_sumamt, acct_pay);
  a row with fewer cells, or amounts that are not whole fen, is refused (never guessed).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pos_plugin.ledger.nhsa.amounts import AmountError, fen_from_yuan, yuan_text

DETAIL_COLUMNS = ("setl_id", "mdtrt_id", "psn_no", "medfee_sumamt", "fund_pay_sumamt",
                  "acct_pay", "refd_setl_flag")  # fmt: skip
RESULT_COLUMNS = ("psn_no", "mdtrt_id", "setl_id", "msgid", "stmt_rslt", "refd_setl_flag",
                  "memo", "medfee_sumamt", "fund_pay_sumamt", "acct_pay")  # fmt: skip
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)


class DaybookError(Exception):
    """A result file that cannot be read as the spec's; the message names the line."""


@dataclass(frozen=True, slots=True)
class DetailRow:
    """One settlement line of the day as the journal holds it (money in int fen).

    ``msgid``: the journal's key for it (the 2102's msgid, or the 2103's for a reverse
    line); not in the file, it maps the platform's answer back to the journal."""

    msgid: str
    setl_id: str
    mdtrt_id: str
    psn_no: str
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    refd_setl_flag: str  # "0" forward, "1" reverse
    insutype: str = ""
    clr_type: str = ""
    clr_optins: str = ""


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One row of the platform's 3202 result (amounts in int fen; "" for ``null``)."""

    psn_no: str
    mdtrt_id: str
    setl_id: str
    msgid: str
    stmt_rslt: str  # 0 对平, 1 中心多, 2 医药机构多, 3 数据不一致
    refd_setl_flag: str
    memo: str
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int


def _cell(value: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(f"a 3202 cell cannot hold a TAB or a line break: {value!r}")
    return value if value else "null"


def detail_text(rows: Iterable[DetailRow]) -> bytes:
    """The 3202 upload file's bytes (module docstring)."""
    out = []
    for r in sorted(rows, key=lambda r: (r.msgid, r.refd_setl_flag)):
        cells = (r.setl_id, r.mdtrt_id, r.psn_no, yuan_text(r.medfee_sumamt),
                 yuan_text(r.fund_pay_sumamt), yuan_text(r.acct_pay), r.refd_setl_flag)
        out.append("\t".join(_cell(c) for c in cells) + "\n")
    return "".join(out).encode("utf-8")


def zipped(name: str, content: bytes) -> bytes:
    """``content`` as ``{name}.txt`` inside a ZIP, byte-reproducible (fixed timestamp)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(f"{name}.txt", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, content)
    return buf.getvalue()


def unzipped(content: bytes) -> bytes:
    """The one TXT inside a platform ZIP."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise DaybookError(f"the platform's ZIP holds {len(names)} files, not one")
            return z.read(names[0])
    except zipfile.BadZipFile as exc:
        raise DaybookError(f"the platform's file is not a ZIP ({exc})") from None


def read_result(content: bytes) -> Iterator[ResultRow]:
    """The 3202 result file (a ZIP, or its TXT) row by row."""
    raw = unzipped(content) if content[:2] == b"PK" else content
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DaybookError("the 3202 result file is not UTF-8") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = ["" if c.strip() in ("null", "NULL") else c.strip() for c in line.split("\t")]
        if len(cells) < len(RESULT_COLUMNS):
            raise DaybookError(f"3202 result line {n}: {len(cells)} cells, not "
                               f"{len(RESULT_COLUMNS)}")  # fmt: skip
        try:
            amounts = [fen_from_yuan(c or "0", f"line {n} {k}")
                       for c, k in zip(cells[7:10], RESULT_COLUMNS[7:], strict=True)]
        except AmountError as exc:
            raise DaybookError(f"3202 result line {n}: {exc}") from None
        if cells[4] not in ("0", "1", "2", "3"):
            raise DaybookError(f"3202 result line {n}: stmt_rslt {cells[4]!r} is not 0-3")
        c = cells
        yield ResultRow(c[0], c[1], c[2], c[3], c[4], c[5], c[6], *amounts)
