"""The manager page's forms over real HTTP (no browser): CSRF tokens bound to the session
cookie and refused when missing or wrong, the close / reopen / reverse forms, the CSV
links (one table per file), which side each headline figure is, what the cashier took;
and the national uploads gate on closing."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
import sqlite3
from pathlib import Path

import pytest
import requests

from pos_plugin.journal import journal as J
from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.journal.journal import SHANGHAI
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.reconcile.close import CloseRefused, close_day, day_history
from pos_plugin.reconcile.csv_report import CSV_HEADER, NOTES_HEADER, TOTALS_HEADER
from pos_plugin.reconcile.national import reconcile_for

from .conftest import Seeded, Served
from .seed import DAY, WANG_JIANGUO


def _session(served: Served) -> tuple[requests.Session, str, str]:
    """A browser-like session: the token once in the address, then the cookie."""
    s = requests.Session()
    page = s.get(f"{served.url}/manager/reconciliation?date={DAY}&token={served.tokens['manager']}",
                 timeout=30)  # fmt: skip
    assert page.status_code == 200 and "pos_manager_token" in s.cookies
    (token,) = set(re.findall(r"name='csrf' value='([0-9a-f]{64})'", page.text))
    return s, token, page.text


def _balance(seeded: Seeded, psn_no: str) -> int:
    """The person's personal-account balance, as the ledger answers a card lookup."""
    s = seeded.store
    card = s.world.person(psn_no).cards[0]
    found = s.client.lookup(Credential.card(card.card_no, card.card_sn)).personal_account
    assert found is not None
    return found.balance


def _ledger_reversals(seeded: Seeded) -> int:
    db = sqlite3.connect(seeded.store.tmp / "ledger.sqlite3")
    try:
        return int(db.execute("SELECT count(*) FROM entries WHERE kind = 'reversal'").fetchone()[0])
    finally:
        db.close()


def test_forms_refuse_a_missing_or_wrong_csrf_token_and_do_nothing(
    served: Served, seeded: Seeded
) -> None:
    s, token, _page = _session(served)
    close = f"{served.url}/manager/reconciliation/close"
    form = {"date": DAY.isoformat(), "reason": "对账单已核对"}
    for bad in ({}, {"csrf": "0" * 64}, {"csrf": token[:-1] + ("0" if token[-1] != "0" else "1")}):
        r = s.post(close, data={**form, **bad}, timeout=30, allow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text and "nothing was done" in r.text
    stranger = requests.post(close, data={**form, "csrf": token}, timeout=30)
    assert stranger.status_code == 401  # a token without the session cookie is nothing
    other = requests.Session()  # another session's cookie: the token is not bound to it
    other.cookies.set("pos_manager_token", served.tokens["pos"], path="/manager")
    assert other.post(close, data={**form, "csrf": token}, timeout=30).status_code == 401
    assert not any(is_day_closed(p, DAY) for p in seeded.store.paths)
    done = s.post(close, data={**form, "csrf": token}, timeout=30)
    assert done.status_code == 200 and "本日已关账。/ The day is closed." in done.text
    assert all(is_day_closed(p, DAY) for p in seeded.store.paths)


def test_the_page_says_which_side_each_figure_is_and_what_the_cashier_took(
    served: Served, seeded: Seeded
) -> None:
    _s, _token, page = _session(served)
    assert page.count("<span class='side'>中心 ledger</span>") == 4
    assert page.count("本店 till journal ") >= 4
    unknown = seeded.extra["unknown"]
    article = page[page.index(f"{unknown}</div>"):]
    article = article[: article.index("</article>")]
    assert "收银员收取" in article and "the cashier took ¥8.00 in cash" in article
    # reversing is offered on the own-ledger breaks it applies to, as plain forms
    offered = re.findall(r"name='msgid' value='(\w+)'", page)
    refs = {seeded.store.journals[t].by_msgid(m).sale_ref  # type: ignore[union-attr]
            for m in offered for t in ("T01", "T02") if seeded.store.journals[t].by_msgid(m)}
    assert refs == {"B4", "A6", "B6"}  # B7's owed reversal has not escalated: no button
    assert "action='/manager/reconciliation/close'" in page
    assert "<script" not in page


def test_csv_links_download_one_table_per_file(served: Served, seeded: Seeded) -> None:
    s, _token, page = _session(served)
    links = re.findall(r"href='(/manager/reconciliation\.csv[^']*)'", page)
    assert links == [f"/manager/reconciliation.csv?date={DAY}",
                     f"/manager/reconciliation.csv?date={DAY}&amp;sheet=totals"]  # fmt: skip
    tables = {}
    for link in links:
        r = s.get(served.url + link.replace("&amp;", "&"), timeout=30)
        assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
        assert r.headers["content-disposition"].startswith("attachment; filename=\"reconciliation-")
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert len({len(row) for row in rows}) == 1  # one table: every row as wide as its header
        tables[rows[0][0]] = rows
    msgids, totals = tables[CSV_HEADER[0]], tables[TOTALS_HEADER[0]]
    assert msgids[0] == CSV_HEADER and totals[0] == TOTALS_HEADER
    by_msgid = {r[2]: r for r in msgids[1:]}
    b4 = seeded.store.journals["T02"].get("B4")
    assert b4 is not None and b4.msgid is not None
    row = by_msgid[b4.msgid]
    assert row[CSV_HEADER.index("销售单号 sale_ref")] == "B4"  # journaled failed, found by msgid
    a5 = seeded.store.journals["T01"].get("A5")
    assert a5 is not None and a5.msgid is not None
    assert by_msgid[a5.msgid][CSV_HEADER.index("销售单号 sale_ref")] == "A5"
    assert row[CSV_HEADER.index("本店状态 till status")] == "无记录 no record"
    assert row[CSV_HEADER.index("中心状态 centre status")] == "销售 sale: 已结算 settled (2024-05-20)"
    unknown = by_msgid[seeded.extra["unknown"]]
    assert "结果未知" in unknown[CSV_HEADER.index("本店状态 till status")]
    assert any(r[:2] == ["全店 store", "净额 net 合计 total"] for r in totals)
    notes = s.get(f"{served.url}/manager/reconciliation.csv?date={DAY}&sheet=notes", timeout=30)
    assert next(csv.reader(io.StringIO(notes.content.decode("utf-8-sig")))) == NOTES_HEADER
    bad = s.get(f"{served.url}/manager/reconciliation.csv?date={DAY}&sheet=all", timeout=30)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    assert requests.get(served.url + links[0], timeout=30).status_code == 401  # no cookie


def test_the_close_and_reopen_api_keep_the_reasons(served: Served, seeded: Seeded) -> None:
    mgr = {"Authorization": f"Bearer {served.tokens['manager']}"}
    url = f"{served.url}/v1/reconciliation"
    refused = requests.post(f"{url}/close", json={"date": DAY.isoformat()}, headers=mgr,
                            timeout=30)  # fmt: skip
    assert refused.status_code == 409 and refused.json()["code"] == "day_not_balanced"
    closed = requests.post(f"{url}/close", json={"date": DAY.isoformat(), "reason": "中心核查中",
                                                 "by": "店长王"}, headers=mgr, timeout=30)
    assert closed.status_code == 200 and closed.json()["reason"] == "中心核查中"
    twice = requests.post(f"{url}/close", json={"date": DAY.isoformat(), "reason": "x"},
                          headers=mgr, timeout=30)  # fmt: skip
    assert twice.status_code == 409 and twice.json()["code"] == "day_already_closed"
    no_reason = requests.post(f"{url}/reopen", json={"date": DAY.isoformat()}, headers=mgr,
                              timeout=30)  # fmt: skip
    assert no_reason.status_code == 422
    reopened = requests.post(f"{url}/reopen", json={"date": DAY.isoformat(), "reason": "补录"},
                             headers=mgr, timeout=30)  # fmt: skip
    assert reopened.status_code == 200
    again = requests.post(f"{url}/reopen", json={"date": DAY.isoformat(), "reason": "补录"},
                          headers=mgr, timeout=30)  # fmt: skip
    assert again.status_code == 409 and again.json()["code"] == "day_not_closed"
    body = requests.get(f"{url}?date={DAY}", headers=mgr, timeout=30).json()
    assert body["closed"] is None and body["uploads_owed"] == 0
    assert [(h["action"], h["reason"], h["by"]) for h in body["history"]] == [
        ("closed", "中心核查中", "店长王"), ("reopened", "补录", "manager")]
    page = requests.get(f"{served.url}/manager/reconciliation?date={DAY}", headers=mgr, timeout=30)
    assert "关账记录 Close history" in page.text and "补录" in page.text
    for j in seeded.store.journals.values():
        assert j.verify().ok


def test_closing_with_national_uploads_owed_needs_a_reason(tmp_path: Path) -> None:
    from tests.nhsa_day.harness import DAY as NDAY
    from tests.nhsa_day.harness import P1, Day, at, line

    d = Day(tmp_path)
    evening = at(22)  # the shift is over: "still selling" is not what this test is about
    try:
        d.sale("T01", "A1", P1, line("XA01AAA0001", 1500), when=at(9, 5))
        assert d.journals["T01"].uploads_owed_count() == 1  # its 3505 not sent yet
        rec = reconcile_for(NDAY, d.paths, d.client)
        assert rec.balanced
        with pytest.raises(CloseRefused, match="3505") as refused:
            close_day(d.paths, rec, national=True, now=evening)
        assert refused.value.code == "uploads_owed"
        assert not is_day_closed(d.paths[0], NDAY)
        close_day(d.paths, rec, national=True, reason="平台上传接口维护中", now=evening)
        assert is_day_closed(d.paths[0], NDAY)
        (h,) = day_history(d.paths, NDAY, d.pharmacy.code)
        assert h["reason"] == "平台上传接口维护中" and h["overrides"] == ["uploads_owed: 1"]
    finally:
        d.close()


def _receipt_panel(page: str) -> str:
    """The text of the page's reversal receipt (its <pre>), as the browser shows it."""
    (pre,) = re.findall(r"<section id='receipt'.*?<pre class='receipt'>(.*?)</pre>", page, re.S)
    return html.unescape(pre)


def test_the_reverse_form_shows_the_journaled_receipt_and_a_reprint_reverses_nothing(
    served: Served, seeded: Seeded
) -> None:
    """B4 (王建国's 23.00, ledger only) reversed from the page's form: the browser is sent
    to the day with the reversal receipt on it, its lines the ones journaled in the till's
    row (冲正 heading, the ID number masked, the amounts); a reload and a second
    submission show the same receipt, and the account is credited once."""
    s = seeded.store
    b4 = s.journals["T02"].get("B4")
    assert b4 is not None and b4.msgid is not None and seeded.breaks[b4.msgid] == "ledger_only"
    msgid = b4.msgid
    s.clock.now = dt.datetime.now(SHANGHAI)  # the reversal is made today, on both sides
    person = s.world.person(WANG_JIANGUO)
    before = _balance(seeded, WANG_JIANGUO)
    session, token, page = _session(served)
    assert "id='receipt'" not in page  # no receipt before any reversal
    form = {"date": DAY.isoformat(), "msgid": msgid, "csrf": token, "reason": "顾客未取药"}
    url = f"{served.url}/manager/reconciliation/reverse"

    r = session.post(url, data=form, timeout=30, allow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == (
        f"/manager/reconciliation?date={DAY}&note=reversed&receipt={msgid}")
    shown = session.get(served.url + r.headers["location"], timeout=30)
    assert shown.status_code == 200 and "Reversed by msgid" in shown.text
    row = s.journals["T02"].get("B4")
    assert row is not None and row.state == J.REVERSED and row.result is not None
    journaled = row.result["receipt"]
    assert _receipt_panel(shown.text) == "\n".join(journaled)
    receipt = _receipt_panel(shown.text)
    assert "医保冲正/退款单" in receipt  # the reversal receipt's heading
    assert person.id_number[:6] + "********" + person.id_number[-4:] in receipt
    lines = receipt.splitlines()
    assert any(x.startswith("个人账户") and x.endswith("-¥23.00") for x in lines)
    assert any(x.startswith("退款合计") and x.endswith("-¥23.00") for x in lines)
    assert any(x.startswith("原流水") and x.endswith(msgid) for x in lines)
    assert "onclick='window.print()'" in shown.text and "<script" not in shown.text
    assert _balance(seeded, WANG_JIANGUO) == before + 2300
    reversals = _ledger_reversals(seeded)

    reloaded = session.get(served.url + r.headers["location"], timeout=30)  # a reprint
    assert _receipt_panel(reloaded.text) == "\n".join(journaled)

    again = session.post(url, data=form, timeout=30)  # the form sent a second time
    assert again.status_code == 200 and "Already reversed before" in again.text
    assert again.url.endswith(f"note=already&receipt={msgid}")
    assert _receipt_panel(again.text) == "\n".join(journaled)
    assert _balance(seeded, WANG_JIANGUO) == before + 2300  # credited once
    assert _ledger_reversals(seeded) == reversals
    assert s.journals["T02"].query("SELECT attempts FROM ledger_reversals WHERE msgid = ?",
                                   (msgid,))[0][0] == 1  # fmt: skip
    for text in (shown.text, reloaded.text, again.text):
        assert not any(p.id_number in text for p in s.world.persons)  # never a full ID number


def test_a_reversal_that_printed_no_receipt_shows_the_note_and_no_panel(
    served: Served, seeded: Seeded
) -> None:
    """A6: the ledger reversed it and the till never heard (status mismatch): the form
    journals the centre's reversal and prints nothing, so the day shows the note alone;
    a receipt asked for a msgid whose row has none shows no panel either."""
    s = seeded.store
    a6 = s.journals["T01"].get("A6")
    assert a6 is not None and a6.msgid is not None
    session, token, _page = _session(served)
    done = session.post(f"{served.url}/manager/reconciliation/reverse", timeout=30,
                        data={"date": DAY.isoformat(), "msgid": a6.msgid, "csrf": token})
    assert done.status_code == 200 and "已把中心的冲正记入本店流水" in done.text
    assert done.url.endswith("note=recorded") and "id='receipt'" not in done.text
    asked = session.get(f"{served.url}/manager/reconciliation?date={DAY}&receipt={a6.msgid}",
                        timeout=30)  # fmt: skip
    assert asked.status_code == 200 and "id='receipt'" not in asked.text


def test_the_receipt_panel_escapes_the_lines() -> None:
    """The receipt's lines are text (a store name may hold anything): escaped in the <pre>."""
    from pos_plugin.reconcile.matching import reconcile
    from pos_plugin.reconcile.page_html import render_page

    rec = reconcile(DAY, [], [], pharmacy_code="H11010500001")
    page = render_page(rec, receipt=["<b>康民&药房</b>", "合计 -¥1.00"])
    assert "&lt;b&gt;康民&amp;药房&lt;/b&gt;\n合计 -¥1.00" in page and "<b>康民" not in page
    assert page.index("id='receipt'") < page.index("<section class='tiles'>")
    assert "id='receipt'" not in render_page(rec)
