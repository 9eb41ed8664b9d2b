"""The reconciliation as a CSV file a store manager opens in Excel or WPS.

Breaks first, then (with ``details``) every balanced msgid, then the totals of
both sides side by side for the store and each till, then the day's notes.
UTF-8 with a BOM, so the Chinese text opens intact; cells a spreadsheet would run
as formulas get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


CSV_HEADER = [
    "类别",
    "kind",
    "流水号 msgid",
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
    "本店状态 journal status",
    "中心状态 ledger status",
    "说明",
    "what happened",
    "处理",
    "what to do",
]


def render_csv(rec: Reconciliation, *, details: bool = True) -> str:
    """UTF-8 text for a spreadsheet: breaks first, then (``details``) every balanced msgid,
    then the totals side by side. Write it with ``write_csv`` (adds the BOM Excel needs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
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
                    _status(m.journal),
                    _status(m.ledger),
                    ex.what_zh if ex else "",
                    ex.what_en if ex else "",
                    ex.todo_zh if ex else "",
                    ex.todo_en if ex else "",
                )
            ]
        )
    w.writerow([])
    w.writerow(
        [
            "汇总 totals",
            rec.date,
            rec.pharmacy_code,
            "",
            "",
            "",
            "本店 journal",
            "中心 ledger",
            "差额 difference",
        ]
    )
    for who, jt, lt in [("全店 store", rec.journal, rec.ledger)] + [
        (f"收银机 till {t.terminal_id}", t.journal, t.ledger) for t in rec.terminals
    ]:
        for label, jv, lv, show in _total_lines(jt, lt):
            w.writerow([who, label, "", "", "", "", show(jv), show(lv), show(lv - jv)])
    for n in rec.notes:
        # the note's words land in the 说明 / what happened columns (CSV_HEADER)
        w.writerow(["注意 note", n.code, *[""] * 15, n.zh, n.en])
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


def write_csv(rec: Reconciliation, path: str | os.PathLike[str], *, details: bool = True) -> Path:
    """UTF-8 with BOM, so Excel and WPS open it with the Chinese text intact."""
    p = Path(path)
    p.write_text(render_csv(rec, details=details), encoding="utf-8-sig", newline="")
    return p
