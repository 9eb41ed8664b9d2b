"""The manager's reconciliation page as HTML: plain HTML with inline CSS, an inline SVG
chart and plain forms (no JavaScript but a reversal receipt's print button), printable
(print CSS), personal data masked (account ids keep 4 + 4 characters, ID numbers come
from the journal already masked).

``render_page`` is what the agent serves (``manager_page``, with ``Tools``: the forms
and their CSRF token) and what ``pos-plugin reconcile --html`` writes (no tools: a
file has no forms and no download link).
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pos_plugin.money import yuan
from pos_plugin.reconcile.csv_report import cashier_took
from pos_plugin.reconcile.matching import KIND_LABEL, BreakKind, Match, Reconciliation, SideTotals
from pos_plugin.reconcile.national import REVERSE_ACTION
from pos_plugin.reconcile.tools import ACTIONS

SHANGHAI = ZoneInfo("Asia/Shanghai")


_CSS = """
:root { --ok:#1b7f3b; --bad:#b3261e; --warn:#8a5a00; --ink:#1d1d1f; --mute:#5f6368; --line:#d0d4d9; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC","PingFang SC","Microsoft YaHei","WenQuanYi Micro Hei",system-ui,sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 16px 20px; line-height: 1.45; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 22px 0 8px;
     border-bottom: 2px solid var(--ink); padding-bottom: 2px; }
.sub { color: var(--mute); font-size: 13px; }
.badge { display: inline-block; padding: 3px 10px; border-radius: 4px; font-weight: 700; color: #fff; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); } .badge.closed { background: #444; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; margin: 14px 0; }
.tile { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.tile .k { font-size: 13px; color: var(--mute); } .tile .v { font-size: 20px; font-weight: 700; }
.tile .d { font-size: 13px; } .tile.diff { border-color: var(--bad); } .tile.diff .d { color: var(--bad); font-weight: 700; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0 10px; }
th, td { border: 1px solid var(--line); padding: 4px 6px; text-align: right; vertical-align: top; }
th:first-child, td:first-child, td.l, th.l { text-align: left; }
thead th { background: #f1f3f4; }
td.neg { color: var(--bad); font-weight: 700; }
.break { border: 1px solid var(--line); border-left: 6px solid var(--bad); border-radius: 4px;
         padding: 8px 12px; margin: 10px 0; break-inside: avoid; page-break-inside: avoid; }
.break.kind-business_day_mismatch, .break.kind-duplicate { border-left-color: var(--warn); }
.break h3 { font-size: 15px; margin: 0 0 4px; } .break .id { font-family: monospace; font-size: 13px; }
.break p { margin: 4px 0; } .todo { background: #fff8e1; padding: 4px 8px; border-radius: 3px; }
.en { color: var(--mute); }
.note { border: 1px dashed var(--warn); padding: 6px 10px; margin: 6px 0; }
.allgood { border: 1px solid var(--ok); color: var(--ok); padding: 10px; font-weight: 700; }
svg text { font-size: 11px; fill: var(--mute); }
form.day, form.tool { margin: 8px 0; } .took { background: #eef3fd; padding: 4px 8px; border-radius: 3px; }
.tile .side { font-size: 12px; font-weight: 400; color: var(--mute); } .note.done { border-color: var(--ok); } footer { margin-top: 24px; font-size: 12px; color: var(--mute); }
section.receipt { border: 2px solid var(--ok); border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
pre.receipt { font-family: "Noto Sans Mono CJK SC","Sarasa Mono SC",monospace; font-size: 13px; margin: 6px 0; }
@media print {
  form.day, form.tool, .noprint { display: none; }
  body:has(#receipt) > :not(#receipt) { display: none; }
  section.receipt { border: none; padding: 0; margin: 0; }
  body { max-width: none; padding: 0; font-size: 11pt; }
  .badge { color: #000 !important; border: 2px solid #000; background: none !important; }
  .tiles { grid-template-columns: repeat(4, 1fr); }
  h2 { break-after: avoid; page-break-after: avoid; }
  a { color: inherit; text-decoration: none; }
  @page { size: A4; margin: 14mm; }
}
"""

FUNDS = (
    ("total", "合计", "total"),
    ("personal_account", "个人账户", "personal account"),
    ("mutual_aid", "家庭共济", "mutual aid"),
    ("cash", "现金", "cash"),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def login_page(date: str | None, wrong: bool) -> str:
    msg = "<p class='note'>令牌不正确 / the token is not the manager's.</p>" if wrong else ""
    return _page(
        "对账 Reconciliation",
        "<h1>门店对账 Store reconciliation</h1>"
        "<p>请输入店长令牌 / Enter the manager token.</p>"
        + msg
        + '<form method="get" action="/manager/reconciliation">'
        f'<input type="hidden" name="date" value="{_e(date or "")}">'
        '<label>令牌 Token <input type="password" name="token" autocomplete="off"></label> '
        '<button type="submit">打开 Open</button></form>',
    )


def message_page(text: str, date: str | None = None) -> str:
    back = (f"<p><a href='/manager/reconciliation?date={_e(date)}'>返回对账页 back to the "
            "reconciliation</a></p>" if date else "")  # fmt: skip
    return _page("对账 Reconciliation",
                 f"<h1>门店对账 Store reconciliation</h1><p class='note'>{_e(text)}</p>{back}")


@dataclass(frozen=True)
class Tools:
    """The page's forms (served by the agent): the CSRF token bound to the session."""

    csrf: str

    def form(self, action: str, day: str, fields: str, button: str, cls: str = "") -> str:
        return (
            f"<form method='post' action='/manager/reconciliation/{action}' "
            f"class='tool noprint {cls}'>"
            f"<input type='hidden' name='csrf' value='{_e(self.csrf)}'>"
            f"<input type='hidden' name='date' value='{_e(day)}'>{fields}{button}</form>"
        )


def _took(b: Match) -> str:
    took = cashier_took(b)
    if took is None:
        return ""
    return (f"<p class='took'><b>收银员收取：</b>{_e(took[0])}<br><span class='en'>"
            f"{_e(took[1])}</span></p>")  # fmt: skip


def _amount_cells(j: int, led: int) -> str:
    d = led - j
    return (
        f"<td>{_e(yuan(j))}</td><td>{_e(yuan(led))}</td>"
        f"<td class='{'neg' if d else ''}'>{_e(yuan(d)) if d else '—'}</td>"
    )


def _totals_table(j: SideTotals, led: SideTotals) -> str:
    rows = [
        "<table><thead><tr><th class='l'>项目 Item</th><th>本店 Till journal</th>"
        "<th>中心 Centre ledger</th><th>差额 Difference</th></tr></thead><tbody>",
        f"<tr><td>销售笔数 sales</td><td>{j.sales_count}</td><td>{led.sales_count}</td>"
        f"<td class='{'neg' if j.sales_count != led.sales_count else ''}'>"
        f"{led.sales_count - j.sales_count or '—'}</td></tr>",
        f"<tr><td>冲正笔数 reversals</td><td>{j.reversals_count}</td><td>{led.reversals_count}</td>"
        f"<td class='{'neg' if j.reversals_count != led.reversals_count else ''}'>"
        f"{led.reversals_count - j.reversals_count or '—'}</td></tr>",
    ]
    for part, zh, en in (
        ("sales", "销售", "sales"),
        ("reversals", "冲正", "reversals"),
        ("net", "净额", "net"),
    ):
        ja = getattr(j, part)
        la = getattr(led, part)
        for fund, fzh, fen in FUNDS:
            rows.append(
                f"<tr><td>{zh}·{fzh} <span class='en'>{en}, {fen}</span></td>"
                + _amount_cells(getattr(ja, fund), getattr(la, fund))
                + "</tr>"
            )
    rows.append("</tbody></table>")
    return "".join(rows)


def _chart(rec: Reconciliation) -> str:
    """Settlements per hour: bars = centre, outlined bars = till (no JavaScript)."""
    active = [h for h in rec.hourly if h.ledger_count or h.journal_count]
    first = min((h.hour for h in active), default=8)
    last = max((h.hour for h in active), default=20)
    first, last = min(first, 8), max(last, 20)
    hours = [h for h in rec.hourly if first <= h.hour <= last]
    peak = max([max(h.ledger_count, h.journal_count) for h in hours] + [1])
    w, h_px, left, bottom, top = 760, 170, 36, 24, 10
    slot = (w - left - 8) / len(hours)
    bar = max(4.0, slot * 0.38)
    parts = [
        f'<svg role="img" viewBox="0 0 {w} {h_px}" width="100%" height="{h_px}" '
        f'aria-label="每小时结算笔数 settlements per hour">',
        "<title>每小时结算笔数 Settlements per hour</title>",
    ]
    plot_h = h_px - bottom - top
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - 4}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>'
        )
    for i, hb in enumerate(hours):
        x = left + i * slot + slot * 0.1
        lh = plot_h * hb.ledger_count / peak
        jh = plot_h * hb.journal_count / peak
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - lh:.1f}" width="{bar:.1f}" height="{lh:.1f}" '
            f'fill="#3367d6"><title>{hb.hour:02d}:00 中心 centre {hb.ledger_count} '
            f"({_e(yuan(hb.ledger_amount))})</title></rect>"
        )
        parts.append(
            f'<rect x="{x + bar + 1:.1f}" y="{top + plot_h - jh:.1f}" width="{bar:.1f}" '
            f'height="{jh:.1f}" fill="#fff" stroke="#ea8600" stroke-width="1.5">'
            f"<title>{hb.hour:02d}:00 本店 till {hb.journal_count} "
            f"({_e(yuan(hb.journal_amount))})</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar:.1f}" y="{h_px - 8}" text-anchor="middle">{hb.hour:02d}</text>'
        )
    parts.append("</svg>")
    legend = (
        "<p class='sub'><span style='color:#3367d6'>■</span> 中心 centre ledger &nbsp; "
        "<span style='color:#ea8600'>□</span> 本店 till journal — 每小时销售笔数 sales per hour</p>"
    )
    return "".join(parts) + legend


_BY = ("<label>操作人 By <input type='text' name='by' maxlength='50' size='10' "
       "placeholder='manager'></label> ")


def _reverse_form(b: Match, day: str, tools: Tools) -> str:
    label = ("冲正 2601 <span class='en'>reverse at the centre</span>" if b.action == REVERSE_ACTION
             else "按流水号冲正 <span class='en'>reverse by msgid</span>")  # fmt: skip
    return tools.form(
        "reverse", day,
        f"<input type='hidden' name='msgid' value='{_e(b.msgid)}'>"
        "<label>原因 Reason <input type='text' name='reason' maxlength='200'></label> " + _BY,
        f"<button type='submit' name='do' value='reverse'>{label}</button>",
    )  # fmt: skip


def _break_html(b: Match, day: str, tools: Tools | None = None) -> str:
    zh, en = KIND_LABEL[b.kind]
    j, led = b.amounts("journal", day), b.amounts("ledger", day)
    ex = b.explanation
    ids = _e(b.msgid) + ("".join(f" + {_e(r)}" for r in b.related))
    patient = next((e.patient for e in b.journal if e.patient), None)
    meta = [f"收银机 till {_e(b.terminal_id)}", _e(b.created_at[11:19] or "")]
    if patient:
        meta.append(f"证件 ID {_e(patient)}")
    rows = "".join(
        f"<tr><td>{fzh} <span class='en'>{fen}</span></td>"
        + _amount_cells(getattr(j, fund), getattr(led, fund))
        + "</tr>"
        for fund, fzh, fen in FUNDS
    )
    return (
        f"<article class='break kind-{_e(b.kind.value)}'>"
        f"<h3>{_e(zh)} <span class='en'>{_e(en)}</span></h3>"
        f"<div class='id'>{ids}</div><div class='sub'>{' · '.join(meta)}</div>"
        + (
            f"<p>{_e(ex.what_zh)}</p><p class='en'>{_e(ex.what_en)}</p>"
            + (_took(b) if b.kind is BreakKind.STATUS_MISMATCH else "")
            + f"<p class='todo'><b>处理：</b>{_e(ex.todo_zh)}<br><span class='en'><b>What to "
            f"do:</b> {_e(ex.todo_en)}</span></p>"
            if ex
            else ""
        )
        + "<table><thead><tr><th class='l'>当日金额 This day</th><th>本店 Till</th>"
        f"<th>中心 Centre</th><th>差额 Difference</th></tr></thead><tbody>{rows}</tbody></table>"
        + (_reverse_form(b, day, tools) if tools is not None and b.action in ACTIONS else "")
        + "</article>"
    )


def render_page(
    rec: Reconciliation,
    closed: dict[str, Any] | None = None,
    *,
    history: Sequence[dict[str, Any]] = (),
    tools: Tools | None = None,
    uploads_owed: int = 0,
    note: str | None = None,
    receipt: Sequence[str] | None = None,
) -> str:
    """The whole page for one day (also what ``pos-plugin reconcile --html`` writes, with
    no ``tools``: a file has no forms and no download link); ``receipt``: the lines of a
    reversal's receipt the manager just made, shown on top to print and hand over."""
    n = len(rec.breaks)
    status = (
        "<span class='badge ok'>平账 Balanced</span>"
        if rec.balanced
        else f"<span class='badge bad'>{n} 处差异 {n} break{'s' if n != 1 else ''}</span>"
    )
    if closed:
        status += f" <span class='badge closed'>已关账 Closed {_e(closed['closed_at'][:16])}</span>"
    jn, ln = rec.journal.net, rec.ledger.net
    tiles = []
    for fund, fzh, fen in FUNDS:
        jv, lv = getattr(jn, fund), getattr(ln, fund)
        d = lv - jv
        tiles.append(
            f"<div class='tile{' diff' if d else ''}'><div class='k'>{fzh} {fen} (净额 net)</div>"
            f"<div class='v'><span class='side'>中心 ledger</span> {_e(yuan(lv))}</div>"
            f"<div class='d'>本店 till journal {_e(yuan(jv))} · "
            f"{'差 diff ' + _e(yuan(d)) if d else '一致 equal'}</div></div>"
        )
    body = [
        f"<header><h1>门店对账 Store reconciliation · {_e(rec.date)}</h1>"
        f"<div class='sub'>药店 Pharmacy {_e(rec.pharmacy_code)} · 收银机 tills "
        f"{_e(', '.join(t.terminal_id for t in rec.terminals) or '—')} · "
        f"平账 {rec.balanced_count} balanced</div><p>{status}</p></header>",
        "<form class='day' method='get' action='/manager/reconciliation'>"
        f"<label>日期 Date <input type='date' name='date' value='{_e(rec.date)}'></label> "
        "<button type='submit'>查看 Show</button></form>",
        f"<section class='tiles'>{''.join(tiles)}</section>",
    ]
    if receipt:
        body.insert(1, _receipt_html(rec.date, receipt))
    if note:
        body.insert(1, f"<p class='note done'>{_e(note)}</p>")
    if tools is not None:
        link = f"/manager/reconciliation.csv?date={_e(rec.date)}"
        body.append(
            f"<p class='noprint'>下载 CSV（每个文件一张表）Download the CSV, one table per file: "
            f"<a class='csv' id='csv-msgids' href='{link}' download>逐笔 msgids</a> · "
            f"<a class='csv' id='csv-totals' href='{link}&amp;sheet=totals' download>汇总 totals</a>"
            + (f" · <a class='csv' id='csv-notes' href='{link}&amp;sheet=notes' download>注意 "
               "notes</a>" if rec.notes else "")
            + "</p>"
        )  # fmt: skip
    if uploads_owed:
        body.append(
            f"<p class='note owed'>本日国家平台上传（3505 销售 / 3506 退货）尚有 {uploads_owed} 笔未确认："
            f"上传完成前关账需注明原因。/ {uploads_owed} upload(s) of this day to the national "
            "platform (3505 sales, 3506 returns) are not acknowledged yet: closing before they "
            "are needs a reason.</p>"
        )
    if closed:
        body.append(
            "<p class='note'>本日已关账 / this day is closed: "
            f"{_e(closed['closed_at'])}, {_e(closed['closed_by'])}"
            + (f"; 原因 reason: {_e(closed['reason'])}" if closed.get("reason") else "")
            + (
                "<br><b>关账后结果已改变 / the day reconciles differently than when it was "
                "closed.</b>"
                if closed.get("changed_since_close")
                else ""
            )
            + "</p>"
        )
    if tools is not None:
        body.append(_day_tools(rec, closed, tools))
    if history:
        body.append(_history_html(history))
    body.append(f"<section id='breaks'><h2>差异 Breaks ({n})</h2>")
    if n:
        body.extend(_break_html(b, rec.date, tools) for b in rec.breaks)
    else:
        body.append(
            "<p class='allgood'>两边逐笔一致，可以关账。Both sides agree to the fen: the day "
            "can be closed.</p>"
        )
    body.append("</section>")
    if rec.notes:
        body.append("<section><h2>注意 Notes</h2>")
        body.extend(
            f"<p class='note'>{_e(x.zh)}<br><span class='en'>{_e(x.en)}</span></p>"
            for x in rec.notes
        )
        body.append("</section>")
    body.append(f"<section><h2>每小时结算 Settlements by hour</h2>{_chart(rec)}</section>")
    body.append(f"<section><h2>全店汇总 Store totals</h2>{_totals_table(rec.journal, rec.ledger)}")
    body.append(
        "</section><section><h2>各收银机 Per till</h2><table><thead><tr>"
        "<th class='l'>收银机 Till</th><th>差异 Breaks</th><th>本店笔数 Till sales</th>"
        "<th>中心笔数 Centre sales</th><th>本店净额 Till net</th><th>中心净额 Centre net</th>"
        "<th>差额 Difference</th></tr></thead><tbody>"
    )
    for t in rec.terminals:
        d = t.ledger.net.total - t.journal.net.total
        body.append(
            f"<tr><td>{_e(t.terminal_id)}{'' if t.journal_given else ' (无流水 no journal)'}</td>"
            f"<td class='{'neg' if t.breaks else ''}'>{t.breaks}</td>"
            f"<td>{t.journal.sales_count}</td><td>{t.ledger.sales_count}</td>"
            f"<td>{_e(yuan(t.journal.net.total))}</td><td>{_e(yuan(t.ledger.net.total))}</td>"
            f"<td class='{'neg' if d else ''}'>{_e(yuan(d)) if d else '—'}</td></tr>"
        )
    body.append("</tbody></table></section>")
    kinds = ", ".join(f"{KIND_LABEL[BreakKind(k)][0]} {v}" for k, v in rec.counts.items() if v)
    generated = dt.datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    body.append(
        f"<footer>分类 {_e(kinds)} · 生成于 generated {generated} · 指纹 digest "
        f"{_e(rec.digest()[:16])} · 个人信息已脱敏 personal data masked</footer>"
    )
    return _page(f"对账 {rec.date} Reconciliation", "".join(body))


def _receipt_html(day: str, lines: Sequence[str]) -> str:
    """The reversal receipt as the till's printer prints it (its lines, already masked,
    escaped here), to print and hand to the customer: printing the page while it is shown
    prints the receipt alone (print CSS); the print button is the page's one bit of
    script, Ctrl+P does the same. Closing it is a link back to the day."""
    text = "\n".join(_e(x) for x in lines)
    return (
        "<section id='receipt' class='receipt'><h2 class='noprint'>冲正小票 Reversal receipt</h2>"
        "<p class='sub noprint'>请打印交给顾客（重新打开本页即可补打，不会再次冲正）。/ Print it "
        "for the customer (reload this page to reprint: nothing is reversed again).</p>"
        f"<pre class='receipt'>{text}</pre><p class='noprint'>"
        "<button type='button' onclick='window.print()'>打印小票 Print the receipt</button> "
        f"<a href='/manager/reconciliation?date={_e(day)}'>关闭小票 close the receipt</a></p>"
        "</section>"
    )


def _day_tools(rec: Reconciliation, closed: dict[str, Any] | None, tools: Tools) -> str:
    """Close the day (or reopen it, once closed): plain forms, a reason where one is asked."""
    reason = ("<label>原因 Reason <input type='text' name='reason' maxlength='500' "
              "size='48'></label> ")  # fmt: skip
    by = _BY
    if closed:
        form = tools.form(
            "reopen", rec.date, reason.replace("name='reason'", "name='reason' required") + by,
            "<button type='submit' name='do' value='reopen'>重新打开本日 Reopen the day</button>",
            "reopen",
        )  # fmt: skip
        hint = "重新打开需注明原因，关账记录会保留。/ Reopening needs a reason; the close is kept."
    else:
        form = tools.form(
            "close", rec.date,
            reason + by + "<label><input type='checkbox' name='force' value='1'> 营业中仍强制关账 "
            "force while still selling</label> ",
            "<button type='submit' name='do' value='close'>关账 Close the day</button>", "close",
        )  # fmt: skip
        hint = ("有差异、上传未完成或今天仍在营业时需注明原因（营业中还需勾选强制）。/ A reason is "
                "needed with breaks, uploads owed, or today while still selling (then also "
                "force).")  # fmt: skip
    return (f"<section class='noprint'><h2>关账 Close</h2><p class='sub'>{_e(hint)}</p>"
            f"{form}</section>")  # fmt: skip


def _history_html(history: Sequence[dict[str, Any]]) -> str:
    """Every close and reopen of the day, oldest first: both are kept."""
    label = {"closed": "关账 closed", "reopened": "重新打开 reopened"}
    rows = "".join(
        f"<tr><td class='l'>{_e(label.get(h['action'], h['action']))}</td>"
        f"<td class='l'>{_e(str(h['at'])[:19].replace('T', ' '))}</td><td class='l'>{_e(h['by'])}</td>"
        f"<td class='l'>{_e(h['reason'] or '—')}"
        + (f"<br><span class='en'>{_e('; '.join(h['overrides']))}</span>" if h["overrides"] else "")
        + "</td></tr>"
        for h in history
    )
    return (
        "<section id='history'><h2>关账记录 Close history</h2><table><thead><tr>"
        "<th class='l'>操作 Action</th><th class='l'>时间 Time</th><th class='l'>操作人 By</th>"
        f"<th class='l'>原因 Reason</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def write_html(
    rec: Reconciliation,
    path: str | os.PathLike[str],
    closed: dict[str, Any] | None = None,
    history: Sequence[dict[str, Any]] = (),
) -> Path:
    p = Path(path)
    p.write_text(render_page(rec, closed, history=history), encoding="utf-8")
    return p
