"""The manager's tools on our own ledger, by the command line, the JSON API and Python:
reverse by msgid (each case, twice), closing refused while the shift sells, reopening a
closed day and closing it again; journal rows, ledger balances and the hash chain checked.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
import requests

from pos_plugin.journal import journal as J
from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.journal.journal import SHANGHAI
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.reconcile.actions import REVERSE_MSGID
from pos_plugin.reconcile.cli import close_day_main, reconcile_main, reopen_day_main
from pos_plugin.reconcile.close import (
    CloseRefused,
    close_day,
    day_history,
    reopen_day,
    still_selling,
)
from pos_plugin.reconcile.errors import DayNotClosed, ReconcileError
from pos_plugin.reconcile.manager_page import ReconcileSource
from pos_plugin.reconcile.national import reconcile_for as reconcile_day

from .conftest import Seeded, Served, seed_clean_day
from .seed import DAY, LI_NA, WANG_JIANGUO, ZHANG_WEI, Store, at


def _args(s: Store, *more: str) -> list[str]:
    out = ["--date", DAY.isoformat(), "--ledger-url", s.url, "--token", s.pharmacy.api_token]
    for p in s.paths:
        out += ["--journal", p]
    return out + list(more)


def _balance(s: Store, psn_no: str) -> int:
    card = s.world.person(psn_no).cards[0]
    found = s.client.lookup(Credential.card(card.card_no, card.card_sn)).personal_account
    assert found is not None
    return found.balance


def _ledger_reversals(s: Store) -> int:
    db = sqlite3.connect(s.tmp / "ledger.sqlite3")
    try:
        return int(db.execute("SELECT count(*) FROM entries WHERE kind = 'reversal'").fetchone()[0])
    finally:
        db.close()


def _verified(s: Store) -> None:
    for j in s.journals.values():
        report = j.verify()
        assert report.ok, report.problems


def _msgid(seeded: Seeded, kind: str, till: str, ref: str) -> str:
    row = seeded.store.journals[till].get(ref)
    assert row is not None and row.msgid is not None and seeded.breaks[row.msgid] == kind
    return row.msgid


def test_reverse_by_msgid_a_settlement_only_the_ledger_has(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    """B4: the till concluded "failed", the ledger committed 23.00 from 王建国's account."""
    s = seeded.store
    msgid = _msgid(seeded, "ledger_only", "T02", "B4")
    s.clock.now = dt.datetime.now(SHANGHAI)  # the reversal is made today, on both sides
    rec = reconcile_day(DAY, s.paths, s.client)
    (b,) = [b for b in rec.breaks if b.msgid == msgid]
    assert b.action == REVERSE_MSGID and b.explanation is not None
    assert "--reverse-msgid" in b.explanation.todo_en and "reverse by msgid" in b.explanation.todo_en
    before, reversals = _balance(s, WANG_JIANGUO), _ledger_reversals(s)

    assert reconcile_main(_args(s, "--reverse-msgid", msgid, "--reason", "顾客未取药")) == 1
    out = capsys.readouterr().out
    assert f"reverse by msgid {msgid}: 已完成 done" in out
    assert _balance(s, WANG_JIANGUO) == before + 2300  # the account got its 23.00 back
    assert _ledger_reversals(s) == reversals + 1
    row = s.journals["T02"].get("B4")
    assert row is not None and row.state == J.REVERSED and row.total == 2300
    assert row.reversal_msgid and row.reversal_id and row.settlement_id
    (kept,) = s.journals["T02"].query("SELECT * FROM ledger_reversals WHERE msgid = ?", (msgid,))
    assert (kept["reversal_msgid"], kept["reason"], kept["outcome"]) == (
        row.reversal_msgid, "顾客未取药", "reversed")
    assert kept["done_at"] and kept["attempts"] == 1
    after = reconcile_day(DAY, s.paths, s.client)
    assert msgid not in {b.msgid for b in after.breaks}  # the day agrees on it now
    _verified(s)

    # A second click: nothing is sent, and it says so.
    assert reconcile_main(_args(s, "--reverse-msgid", msgid)) == 1
    assert "already done before: nothing was sent" in capsys.readouterr().out
    assert _ledger_reversals(s) == reversals + 1 and _balance(s, WANG_JIANGUO) == before + 2300


def test_reverse_by_msgid_is_refused_where_the_day_offers_none(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    s = seeded.store
    unknown = seeded.extra["unknown"]  # owed, not escalated: the agent is still on it
    rec = reconcile_day(DAY, s.paths, s.client)
    owed = next(b for b in rec.breaks if b.msgid == unknown)
    assert owed.action is None and owed.explanation is not None
    assert "it escalates, and \"reverse by msgid\" appears here" in owed.explanation.todo_en
    # advice names only tools the manager has: no "manager functions" that do not exist
    assert not any("manager functions" in (b.explanation.todo_en if b.explanation else "")
                   for b in rec.breaks)
    ghost = _msgid(seeded, "journal_only", "T01", "A4")
    reversals = _ledger_reversals(s)
    assert reconcile_main(_args(s)) == 1  # the summary says what the cashier took
    assert "the cashier took ¥8.00 in cash" in capsys.readouterr().out
    for msgid in (unknown, ghost, "H11010500001202405201200009999"):
        assert reconcile_main(_args(s, "--reverse-msgid", msgid)) == 2
        assert "reverse by msgid" in capsys.readouterr().err
    assert _ledger_reversals(s) == reversals


def test_an_escalated_owed_reversal_is_sent_by_the_api(served: Served, seeded: Seeded) -> None:
    s = seeded.store
    msgid = seeded.extra["unknown"]  # B7: cash taken, the ledger had charged 李娜 8.00
    for _ in range(5):  # the agent's retries failed, the last escalates
        s.journals["T02"].reversal_attempt_failed(
            msgid, "ledger down", dt.datetime.now(SHANGHAI), escalate=True)
    s.clock.now = dt.datetime.now(SHANGHAI)
    before = _balance(s, LI_NA)
    mgr = {"Authorization": f"Bearer {served.tokens['manager']}"}
    got = requests.get(f"{served.url}/v1/reconciliation?date={DAY}", headers=mgr, timeout=30)
    assert next(b for b in got.json()["breaks"] if b["msgid"] == msgid)["action"] == REVERSE_MSGID
    url = f"{served.url}/v1/reconciliation/reverse"
    pos = requests.post(url, json={"date": DAY.isoformat(), "msgid": msgid}, timeout=30,
                        headers={"Authorization": f"Bearer {served.tokens['pos']}"})
    assert pos.status_code == 403  # a manager's tool
    done = requests.post(url, json={"date": DAY.isoformat(), "msgid": msgid}, headers=mgr,
                         timeout=30)
    assert done.status_code == 200, done.text
    assert done.json() | {"reversal_msgid": ""} == {
        "msgid": msgid, "done": True, "already": False, "outcome": "reversed",
        "reversal_msgid": "", "action": REVERSE_MSGID}
    assert _balance(s, LI_NA) == before + 800
    row = s.journals["T02"].get("B7")
    assert row is not None and (row.state, row.refusal_code) == (J.REVERSED, "cash_fallback")
    assert s.journals["T02"].pending_reversals() == []
    again = requests.post(url, json={"date": DAY.isoformat(), "msgid": msgid}, headers=mgr,
                          timeout=30)
    assert again.status_code == 200 and again.json()["already"] is True
    assert _balance(s, LI_NA) == before + 800
    bad = requests.post(url, data=b"[1]", headers=mgr, timeout=30)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    _verified(s)


def test_a_reversal_one_side_lacks_is_sent_again_or_recorded(seeded: Seeded) -> None:
    """B6 (the till reversed, the ledger never got it): sent again under the journaled
    reversal msgid. A6 (the ledger reversed, the till's answer lost): journaled, nothing
    sent."""
    s = seeded.store
    s.clock.now = dt.datetime.now(SHANGHAI)
    source = ReconcileSource(s.paths, s.client, s.pharmacy.code, today=lambda: DAY)
    b6 = _msgid(seeded, "status_mismatch", "T02", "B6")
    a6 = _msgid(seeded, "status_mismatch", "T01", "A6")
    rec, _closed = source.run(DAY)
    assert {b.msgid: b.action for b in rec.breaks if b.msgid in (b6, a6)} == {
        b6: REVERSE_MSGID, a6: REVERSE_MSGID}
    before_wjg, before_zw, reversals = _balance(s, WANG_JIANGUO), _balance(s, ZHANG_WEI), \
        _ledger_reversals(s)  # fmt: skip
    journaled = s.journals["T02"].get("B6")
    assert journaled is not None
    sent = source.reverse(DAY, b6, reason="retry")
    assert (sent["outcome"], sent["reversal_msgid"]) == ("reversed", journaled.reversal_msgid)
    assert _balance(s, WANG_JIANGUO) == before_wjg + 900
    recorded = source.reverse(DAY, a6)
    assert recorded["outcome"] == "recorded"
    assert _ledger_reversals(s) == reversals + 1 and _balance(s, ZHANG_WEI) == before_zw
    a6_row = s.journals["T01"].get("A6")
    assert a6_row is not None and a6_row.state == J.REVERSED and a6_row.reversal_id
    rec, _closed = source.run(DAY)
    assert not {b6, a6} & {b.msgid for b in rec.breaks}
    assert source.reverse(DAY, b6)["already"] and source.reverse(DAY, a6)["already"]
    assert _ledger_reversals(s) == reversals + 1
    _verified(s)


# ------------------------------------------------------------------ closing and reopening


def test_closing_today_is_refused_while_the_shift_is_still_selling(store: Store) -> None:
    seed_clean_day(store)  # the last sale of DAY began at 14:30
    rec = reconcile_day(DAY, store.paths, store.client)
    assert rec.balanced
    assert "10 min ago" in (still_selling(store.paths, DAY.isoformat(), at(14, 40)) or "")
    assert still_selling(store.paths, DAY.isoformat(), at(14, 46)) is None
    assert still_selling(store.paths, DAY.isoformat(), at(9, 0, 0, DAY + dt.timedelta(1))) is None
    with pytest.raises(CloseRefused, match="still selling") as refused:
        close_day(store.paths, rec, now=at(14, 40))
    assert refused.value.code == "still_selling"
    with pytest.raises(CloseRefused):  # a reason alone is not enough: it must be forced
        close_day(store.paths, rec, now=at(14, 40), reason="early close")
    store.journals["T01"].begin_sale("IN-PROGRESS", "h", now=at(17, 0))
    assert "in progress" in (still_selling(store.paths, DAY.isoformat(), at(18, 0)) or "")
    assert not any(is_day_closed(p, DAY) for p in store.paths)
    records = close_day(store.paths, rec, now=at(18, 0), force=True, reason="盘点，提前关账")
    assert all(r["reason"] == "盘点，提前关账" for r in records)
    (h,) = day_history(store.paths[:1], DAY, store.pharmacy.code)
    assert h["action"] == "closed" and h["overrides"] == ["still_selling: 1 sale(s) still in progress"]
    _verified(store)


def test_a_closed_day_reopens_with_a_reason_and_closes_again(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_clean_day(store)
    code = store.pharmacy.code
    assert close_day_main(_args(store, "--by", "店长王")) == 0
    assert all(is_day_closed(p, DAY) for p in store.paths)
    capsys.readouterr()
    journal = ["--date", DAY.isoformat(), "--journal", store.paths[0], "--journal", store.paths[1]]
    with pytest.raises(SystemExit) as usage:  # --reason is required
        reopen_day_main(journal)
    assert usage.value.code == 2
    assert reopen_day_main([*journal, "--reason", "补录一笔退货", "--by", "店长王"]) == 0
    out = capsys.readouterr().out
    assert "已重新打开 REOPENED" in out and "补录一笔退货" in out and "关账 closed" in out
    assert not any(is_day_closed(p, DAY) for p in store.paths)
    with pytest.raises(DayNotClosed):
        reopen_day(store.paths, DAY, code, reason="again")
    with pytest.raises(ReconcileError, match="reason"):
        reopen_day(store.paths, DAY, code, reason="  ")
    _verified(store)
    assert close_day_main(_args(store, "--by", "店长王")) == 0  # closing again works
    assert all(is_day_closed(p, DAY) for p in store.paths)
    history = day_history(store.paths[:1], DAY, code)
    assert [(h["action"], h["by"], h["reason"]) for h in history] == [
        ("closed", "店长王", None), ("reopened", "店长王", "补录一笔退货"), ("closed", "店长王", None)]
    capsys.readouterr()
    assert reconcile_main(_args(store)) == 0
    out = capsys.readouterr().out
    assert out.count("关账 closed  by 店长王") == 2 and out.count("重新打开 reopened  by") == 1
    # the reopen row keeps the close it undid, whole
    (row,) = store.journals["T01"].query(
        "SELECT detail FROM day_history WHERE action = 'reopened'")
    assert '"closed_by":"店长王"' in row["detail"] and '"record_intact":true' in row["detail"]
    _verified(store)
    events = store.journals["T01"].query(
        "SELECT state FROM events WHERE sale_ref = ? ORDER BY seq", (f"day:{DAY}",))
    assert [e["state"] for e in events] == ["day_closed", "day_reopened", "day_closed"]


def test_a_changed_or_removed_close_history_row_fails_journal_verify(store: Store) -> None:
    seed_clean_day(store)
    rec = reconcile_day(DAY, store.paths, store.client)
    close_day(store.paths, rec)
    reopen_day(store.paths, DAY, store.pharmacy.code, reason="wrong day")
    j = store.journals["T01"]
    assert j.verify().ok
    j.query("UPDATE day_history SET reason = 'nothing to see' WHERE action = 'reopened'")
    report = j.verify()
    assert not report.ok and "close/reopen record was changed" in report.problems[0]
    j.query("DELETE FROM day_history WHERE action = 'reopened'")
    assert any("was added or removed" in p for p in j.verify().problems)


def test_a_reversal_cut_off_after_it_left_is_finished_once(seeded: Seeded) -> None:
    """The manager's process died after the reversal left and before the till's row was
    journaled: the page no longer offers it (the ledger shows it reversed), yet the next
    call resumes the journaled intent with the same msgid, and the ledger reverses once."""
    s = seeded.store
    msgid = _msgid(seeded, "ledger_only", "T02", "B4")
    s.clock.now = dt.datetime.now(SHANGHAI)
    j = s.journals["T02"]
    intent = j.ledger_reversal_begin(msgid, sale_ref="B4", reversal_msgid=j.next_msgid(),
                                     business_date=DAY.isoformat(), by="店长", reason="顾客退货")
    settlement = s.client.get_settlement(msgid)
    assert settlement is not None
    s.client.reverse(settlement.settlement_id, intent["reversal_msgid"], "顾客退货")  # it left
    reversals, before = _ledger_reversals(s), _balance(s, WANG_JIANGUO)
    source = ReconcileSource(s.paths, s.client, s.pharmacy.code, today=lambda: DAY)
    rec, _closed = source.run(DAY)
    assert next(b for b in rec.breaks if b.msgid == msgid).action is None  # not on the page
    done = source.reverse(DAY, msgid)
    assert (done["already"], done["outcome"], done["reversal_msgid"]) == (
        False, "already_reversed", intent["reversal_msgid"])
    assert _ledger_reversals(s) == reversals and _balance(s, WANG_JIANGUO) == before
    row = j.get("B4")
    assert row is not None and row.state == J.REVERSED
    assert row.reversal_msgid == intent["reversal_msgid"]
    assert j.ledger_reversal(msgid)["attempts"] == 2  # type: ignore[index]
    rec, _closed = source.run(DAY)
    assert msgid not in {b.msgid for b in rec.breaks}
    _verified(s)


def test_the_managers_reversal_prints_the_reversal_receipt(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sale the till concluded failed while the ledger had committed it, all of it from
    张小明's parent's account by family mutual aid (he has no personal account): the
    manager's reversal by msgid credits it back and prints the reversal receipt a till's reversal prints (冲正/退款, each amount
    negative as the ledger credited it, the ID number masked), journaled in the till's
    row; a second call prints the same receipt again and sends nothing."""
    from pos_plugin.rules.identity import mask_card_no, mask_id_number, mask_name
    from pos_plugin.sale.receipts import Receipt, render

    from .seed import XIAOMING

    s = store
    person = s.world.person(XIAOMING)
    facts = {"operator": "cashier", "credential": "card", "proxy": None,
             "card_no_masked": mask_card_no(person.cards[0].card_no),
             "patient_name": mask_name(person.name),
             "patient_id_masked": mask_id_number(person.id_number), "patient_account_id": None,
             "items": [{"name": "小儿感冒颗粒", "quantity": 3, "amount": 4500,
                        "insurance_class": "A"}]}  # fmt: skip
    lines = [{"sku": "6901", "name": "小儿感冒颗粒", "trace_codes": ["81234567890123456703"]}]
    sold = s.sale("T01", "X1", XIAOMING, 4500, 4500, at(10, 15), record_outcome=False,
                  receipt=facts, lines=lines)  # fmt: skip
    s.journals["T01"].update("X1", J.FAILED, refusal_code="ledger_unavailable")
    s.clock.now = dt.datetime.now(SHANGHAI)
    settled = s.client.get_settlement(sold.msgid)
    assert settled is not None and (settled.mutual_aid, settled.personal_account) == (4500, 0)
    (payer,) = {leg.payer_psn_no for leg in settled.legs}
    before = _balance(s, payer)

    args = _args(s, "--reverse-msgid", sold.msgid, "--reason", "顾客未取药", "--by", "店长王")
    assert reconcile_main(args) == 0  # the day balances once reversed (the reversal is today's)
    out = capsys.readouterr().out
    assert _balance(s, payer) == before + 4500
    row = s.journals["T01"].get("X1")
    assert row is not None and row.state == J.REVERSED and row.result is not None
    detail = Receipt.model_validate(row.result["receipt_detail"])
    assert detail.kind == "reversal" and detail.reversal is not None
    assert (detail.total, detail.personal_account, detail.mutual_aid, detail.cash) == (
        -4500, 0, -4500, 0)
    assert (detail.reversal.msgid, detail.reversal.reason, detail.reversal.by) == (
        row.reversal_msgid, "顾客未取药", "店长王")
    assert [i.trace_codes for i in detail.items] == [["81234567890123456703"]]
    printed = row.result["receipt"]
    assert printed == render(detail, 80)
    assert "冲正小票 reversal receipt:\n" + "\n".join(printed) in out
    assert "医保冲正/退款单" in out
    assert any(x.startswith("原流水") and x.endswith(sold.msgid) for x in printed)
    assert mask_id_number(person.id_number) in out and person.id_number not in out
    assert any(x.startswith("家庭共济 ") and x.endswith("-¥45.00") for x in printed)

    reconcile_main(args)  # again: nothing sent, the same receipt to reprint
    again = capsys.readouterr().out
    assert "already done before: nothing was sent" in again
    assert "\n".join(printed) in again
    assert _balance(s, payer) == before + 4500


def test_the_api_answers_the_managers_reversal_with_its_receipt(
    served: Served, seeded: Seeded
) -> None:
    """B4 through ``POST /v1/reconciliation/reverse``: the answer carries the reversal
    receipt (lines and facts) for 王建国's 23.00, the ID number masked."""
    s = seeded.store
    msgid = _msgid(seeded, "ledger_only", "T02", "B4")
    s.clock.now = dt.datetime.now(SHANGHAI)
    mgr = {"Authorization": f"Bearer {served.tokens['manager']}"}
    got = requests.post(f"{served.url}/v1/reconciliation/reverse", headers=mgr, timeout=30,
                        json={"date": DAY.isoformat(), "msgid": msgid, "by": "店长王"})  # fmt: skip
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["outcome"], body["already"]) == ("reversed", False)
    detail, lines = body["receipt_detail"], body["receipt"]
    assert (detail["kind"], detail["total"], detail["personal_account"]) == ("reversal", -2300, -2300)
    assert detail["msgid"] == msgid and detail["reversal"]["by"] == "店长王"
    person = s.world.person(WANG_JIANGUO)
    assert any(person.id_number[:6] + "********" in x for x in lines)
    assert not any(person.id_number in x for x in lines)
    assert any(x.startswith("退款合计") and x.endswith("-¥23.00") for x in lines)
    row = s.journals["T02"].get("B4")
    assert row is not None and row.result is not None and row.result["receipt"] == lines
