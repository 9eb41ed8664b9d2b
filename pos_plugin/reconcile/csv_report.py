"""The reconciliation as CSV files a store manager opens in Excel or WPS.

One table per file (a CSV is one sheet, and a spreadsheet sorts or filters a sheet
as one table), each with its own header row:

- ``msgids`` (``reconciliation-DATE.csv``): one row per msgid, breaks first, then
  (with ``details``) every balanced one: the sale_ref, both sides' amounts, each
  side's status in plain words (and as codes), what happened and what to do;
- ``totals`` (``reconciliation-DATE-totals.csv``): both sides' counts and sums side
  by side, for the store and each till;
- ``notes`` (``reconciliation-DATE-notes.csv``): the day's notes, when it has any.

UTF-8 with a BOM, so the Chinese text opens intact; cells a spreadsheet would run
as formulas get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pos_plugin.money import yuan
from pos_plugin.reconcile.matching import KIND_LABEL, Entry, Match, Reconciliation, SideTotals


def _cell(value: Any) -> Any:
    """Text cells that a spreadsheet would run as a formula get a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _y(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _status(entries: Sequence[Entry]) -> str:
    return " / ".join(f"{e.kind}:{e.status or '-'}@{e.business_date}" for e in entries)


_PLAIN = {
    "settled": "已结算 settled",
    "reversed": "已结算后冲正 settled, then reversed",
    "unknown": "结果未知，已改收现金，欠冲正 outcome unknown: cash taken, a reversal owed",
    "settling": "结算中，结果待确认 settling: the outcome is not confirmed",
    "differs": "与本店不同 differs from the till",
}


def plain_status(entries: Sequence[Entry]) -> str:
    """One side's record of a msgid in words: each sale and reversal with its date."""
    if not entries:
        return "无记录 no record"
    return "；".join(
        (f"销售 sale: {_PLAIN.get(e.status or '', e.status or '-')}" if e.kind == "sale"
         else "冲正 reversal") + f" ({e.business_date})"
        for e in entries
    )  # fmt: skip


def cashier_took(b: Match) -> tuple[str, str] | None:
    """What the cashier took for a sale, from the till's own record (Chinese, English)."""
    sale = next((e for e in b.journal if e.kind == "sale"), None)
    if sale is None:
        return None
    if sale.status == "unknown":
        zh = f"收银员因结果未知改收现金 {yuan(sale.total)}"
        en = f"the cashier took {yuan(sale.total)} in cash (the insurance outcome was unknown)"
    elif sale.status == "settling":
        zh, en = "收银员未收款（结果待定）", "the cashier took nothing yet (outcome pending)"
    else:
        zh = (f"收银员按医保收款：个人账户 {yuan(sale.personal_account)}，共济 "
              f"{yuan(sale.mutual_aid)}，现金 {yuan(sale.cash)}")  # fmt: skip
        en = (f"the cashier took: personal account {yuan(sale.personal_account)}, mutual aid "
              f"{yuan(sale.mutual_aid)}, cash {yuan(sale.cash)}")  # fmt: skip
        if sale.status == "reversed":
            zh += "，之后已退款（冲正）"
            en += ", then refunded it (reversal)"
    return zh, en


def _sale_ref(m: Match) -> str:
    return next((e.ref for e in m.journal if e.ref), "")


CSV_HEADER = [
    "类别",
    "kind",
    "流水号 msgid",
    "销售单号 sale_ref",
    "相关流水号 related",
    "收银机 till",
    "时间 time",
    "本店合计 journal total",
    "本店个人账户 journal personal",
    "本店共济 journal mutual aid",
    "本店现金 journal cash",
    "中心合计 ledger total",
    "中心个人账户 ledger personal",
    "中心共济 ledger mutual aid",
    "中心现金 ledger cash",
    "差额 difference (ledger-journal)",
    "本店状态 till status",
    "中心状态 centre status",
    "本店状态代码 journal status code",
    "中心状态代码 ledger status code",
    "说明",
    "what happened",
    "处理",
    "what to do",
]


SHEETS = ("msgids", "totals", "notes")
TOTALS_HEADER = ["范围 scope", "项目 item", "本店 till journal", "中心 centre ledger",
                 "差额 difference (ledger-journal)"]  # fmt: skip
NOTES_HEADER = ["代码 code", "说明", "what happened"]


def render_csv(rec: Reconciliation, *, details: bool = True, sheet: str = "msgids",
               sale_refs: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """UTF-8 text of one sheet (module docstring). Write it with ``write_csv`` (adds the
    BOM Excel needs). ``sale_refs``: msgid -> sale_ref where the till journals a msgid it
    claims nothing under (``actions.sale_refs``: a ledger-only break's receipt number)."""
    refs = sale_refs or {}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if sheet == "totals":
        w.writerow(TOTALS_HEADER)
        for who, jt, lt in [("全店 store", rec.journal, rec.ledger)] + [
            (f"收银机 till {t.terminal_id}", t.journal, t.ledger) for t in rec.terminals
        ]:
            for label, jv, lv, show in _total_lines(jt, lt):
                w.writerow([who, label, show(jv), show(lv), show(lv - jv)])
        return buf.getvalue()
    if sheet == "notes":
        w.writerow(NOTES_HEADER)
        for n in rec.notes:
            w.writerow([_cell(n.code), _cell(n.zh), _cell(n.en)])
        return buf.getvalue()
    if sheet != "msgids":
        raise ValueError(f"sheet: one of {', '.join(SHEETS)}")
    w.writerow(CSV_HEADER)
    rows: list[Match] = list(rec.breaks)
    if details:
        rows += [m for m in rec.matches if not m.is_break]
    for m in rows:
        j, led = m.amounts("journal", rec.date), m.amounts("ledger", rec.date)
        ex = m.explanation
        w.writerow(
            [
                _cell(v)
                for v in (
                    KIND_LABEL[m.kind][0],
                    m.kind.value,
                    m.msgid,
                    _sale_ref(m) or refs.get(m.msgid, ""),
                    " ".join(m.related),
                    m.terminal_id,
                    m.created_at[:19].replace("T", " "),
                    _y(j.total),
                    _y(j.personal_account),
                    _y(j.mutual_aid),
                    _y(j.cash),
                    _y(led.total),
                    _y(led.personal_account),
                    _y(led.mutual_aid),
                    _y(led.cash),
                    _y(led.total - j.total),
                    plain_status(m.journal),
                    plain_status(m.ledger),
                    _status(m.journal),
                    _status(m.ledger),
                    ex.what_zh if ex else "",
                    ex.what_en if ex else "",
                    ex.todo_zh if ex else "",
                    ex.todo_en if ex else "",
                )
            ]
        )
    return buf.getvalue()


def _total_lines(
    j: SideTotals, led: SideTotals
) -> list[tuple[str, int, int, Callable[[int], str]]]:
    """(label, journal, ledger, how to show it): counts as numbers, money in yuan."""
    out: list[tuple[str, int, int, Callable[[int], str]]] = [
        ("笔数 sales count", j.sales_count, led.sales_count, str),
        ("冲正笔数 reversals count", j.reversals_count, led.reversals_count, str),
    ]
    for part, ja, la in (
        ("销售 sales", j.sales, led.sales),
        ("冲正 reversals", j.reversals, led.reversals),
        ("净额 net", j.net, led.net),
    ):
        for fund, label in (
            ("total", "合计 total"),
            ("personal_account", "个人账户 personal"),
            ("mutual_aid", "共济 mutual aid"),
            ("cash", "现金 cash"),
        ):
            out.append((f"{part} {label}", getattr(ja, fund), getattr(la, fund), _y))
    return out


def sheet_path(path: str | os.PathLike[str], sheet: str) -> Path:
    """Where a sheet goes beside the msgids file: ``day.csv`` -> ``day-totals.csv``."""
    p = Path(path)
    return p if sheet == "msgids" else p.with_name(f"{p.stem}-{sheet}{p.suffix or '.csv'}")


def write_csv(rec: Reconciliation, path: str | os.PathLike[str], *, details: bool = True,
              sheet: str = "msgids", sale_refs: Mapping[str, str] | None = None
              ) -> Path:  # fmt: skip
    """UTF-8 with BOM, so Excel and WPS open it with the Chinese text intact."""
    p = Path(path)
    p.write_text(render_csv(rec, details=details, sheet=sheet, sale_refs=sale_refs),
                 encoding="utf-8-sig", newline="")  # fmt: skip
    return p


def write_sheets(rec: Reconciliation, path: str | os.PathLike[str],
                 sale_refs: Mapping[str, str] | None = None) -> list[Path]:  # fmt: skip
    """Every sheet of the day: the msgids at ``path``, the totals (and the notes, when the
    day has any) beside it (``sheet_path``)."""
    return [write_csv(rec, sheet_path(path, sheet), sheet=sheet, sale_refs=sale_refs)
            for sheet in SHEETS if sheet != "notes" or rec.notes]  # fmt: skip
