"""The national day end end to end: journals on disk, the sandbox-nhsa over HTTP, the
3201 totals and the 3202 file exchange, every break kind classified and explained, and
the manager's one action (2601) repairing what it applies to."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.reconcile.csv_report import render_csv
from pos_plugin.reconcile.matching import BreakKind
from pos_plugin.reconcile.national import REVERSE_ACTION, reconcile_for, reverse_centre_only

from .harness import DAY, P1, P2, P3, Day, at, line


@pytest.fixture(params=["json", "multipart"])
def day(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Day]:
    d = Day(tmp_path, upload_encoding=request.param)
    try:
        yield d
    finally:
        d.close()


def _clean(d: Day) -> list[str]:
    a = d.sale("T01", "A1", P1, line("XA01AAA0001", 1500, qty=3), when=at(9, 5))
    b = d.sale("T02", "B1", P2, line("XB01BBB0001", 2200), when=at(9, 40))
    c = d.sale("T01", "A2", P3, line("XA01AAA0001", 3000), when=at(10, 15))  # family pays
    r = d.sale("T02", "B2", P1, line("XA01AAA0001", 800), when=at(11, 0))
    rev = d.reverse(r, at(11, 30))  # returned the same day: 2103, both sides know
    return [a.msgid, b.msgid, c.msgid, r.msgid, rev]


def test_a_clean_day_balances_through_3201_and_3202(day: Day) -> None:
    msgids = _clean(day)
    rec = reconcile_for(DAY, day.paths, day.client)
    assert rec.breaks == () and rec.balanced, [n.en for n in rec.notes]
    assert rec.balanced_count == 5
    assert rec.journal.as_dict() == rec.ledger.as_dict()
    assert rec.journal.sales_count == 4 and rec.journal.reversals_count == 1
    posts = day.client.platform.posts
    assert posts["9101"] == 1 and posts["3202"] == 1 and posts["9102"] == 1
    assert posts["3201"] >= 1
    assert {m.msgid for m in rec.matches} == set(msgids)


def test_every_national_break_kind_is_classified_explained_and_repaired(day: Day) -> None:
    _clean(day)
    lost = day.lost_answer("T01", "A3", P1, line("XA01AAA0001", 600), when=at(12, 0))
    late = day.late_2102("T02", "B3", P2, line("XB01BBB0001", 700), when=at(13, 0))
    one_sided = day.sale("T01", "A4", P1, line("XA01AAA0001", 900), when=at(14, 0))
    rev_msgid = day.reverse(one_sided, at(14, 30), lose_answer=True)  # the centre reversed it
    # the 2601-concluded lost answer (sale + 2601 on the centre, failed here) nets to zero
    gone = day.lost_answer("T02", "B4", P1, line("XA01AAA0001", 400), when=at(15, 0))
    day.services["T02"].send_owed_reversals()

    rec = reconcile_for(DAY, day.paths, day.client)
    kinds = {b.msgid: b.kind for b in rec.breaks}
    assert kinds == {
        lost.msgid: BreakKind.STATUS_MISMATCH,  # unknown here, charged there: reversal owed
        late.msgid: BreakKind.LEDGER_ONLY,  # a 2102 that landed after its 2601
        # the 2103 whose answer was lost: the centre reversed, the till is not sure; the
        # sale itself agrees (both booked it), the reversal is on the centre's side only
        rev_msgid: BreakKind.STATUS_MISMATCH,
    }, [(b.msgid, b.kind) for b in rec.breaks]
    assert gone.msgid not in {m.msgid for m in rec.matches}
    assert one_sided.msgid in {m.msgid for m in rec.matches if not m.is_break}
    assert not rec.balanced
    assert any(n.code == "break_3201" for n in rec.notes)
    for b in rec.breaks:
        assert b.explanation is not None and b.explanation.todo_zh and b.explanation.todo_en
    actions = {b.msgid: b.action for b in rec.breaks}
    assert actions == {lost.msgid: REVERSE_ACTION, late.msgid: REVERSE_ACTION,
                       rev_msgid: None}  # fmt: skip
    late_break = next(b for b in rec.breaks if b.msgid == late.msgid)
    assert late_break.explanation is not None and "2601" in late_break.explanation.todo_en
    assert late_break.ledger[0].total == 700 and late_break.journal == ()

    # the CSV carries the national code of each break
    rows = list(csv.reader(io.StringIO(render_csv(rec).lstrip("\ufeff"))))
    assert any(late.msgid in r for r in rows)

    # the one action, twice: one 2601 each, journaled, the second does nothing
    before = day.client.platform.posts.get("2601", 0)
    for b in rec.breaks:
        if b.action:
            psn = next(e.patient for e in b.ledger if e.patient)
            assert psn
            done = reverse_centre_only(day.paths, day.client, b.msgid, psn, rec.date)
            assert done.done and not done.already
            again = reverse_centre_only(day.paths, day.client, b.msgid, psn, rec.date)
            assert again.already
    assert day.client.platform.posts["2601"] == before + 2
    kept = []
    for path in day.paths:  # each kept by the till that holds the msgid
        db = sqlite3.connect(path)
        kept += db.execute("SELECT msgid, done_at IS NOT NULL, attempts FROM centre_reversals"
                           ).fetchall()  # fmt: skip
        db.close()
    kept.sort()
    assert kept == sorted([(lost.msgid, 1, 1), (late.msgid, 1, 1)])

    after = reconcile_for(DAY, day.paths, day.client)
    assert {b.msgid for b in after.breaks} == {rev_msgid}
    assert day.server.store is not None
    assert day.server.store.balance(f"PA{P1}") is not None


def test_a_journal_only_settlement_and_a_data_difference(day: Day) -> None:
    a = day.sale("T01", "A1", P1, line("XA01AAA0001", 1500), when=at(9, 5))
    b = day.sale("T01", "A2", P1, line("XA01AAA0001", 500), when=at(9, 10))
    db = sqlite3.connect(day.paths[0])
    # A restored backup of another store's disk: a settlement the centre never had ...
    db.execute("UPDATE sales SET result = json_set(result, '$.ledger_detail.setlinfo.setl_id', "
               "'110105202612010000009999') WHERE msgid = ?", (a.msgid,))  # fmt: skip
    # ... and a journaled answer edited by hand: 1 yuan more than the centre booked
    db.execute("UPDATE sales SET total = total + 100, personal_account = personal_account + 100, "
               "result = json_set(result, '$.ledger_detail.setlinfo.medfee_sumamt', 600, "
               "'$.ledger_detail.setlinfo.acct_pay', 600) WHERE msgid = ?", (b.msgid,))
    db.commit()
    db.close()
    # a ghost: journaled as settled with an answer the centre never gave
    ghost, _req, _plan = day.intent("T02", "G1", P2, (line("XA01AAA0001", 300),), at(9, 20))
    fake = {"setlinfo": {"setl_id": "110105202612010000008888", "mdtrt_id": "M1",
                         "psn_no": P2, "medfee_sumamt": 300, "fund_pay_sumamt": 0,
                         "acct_pay": 300, "insutype": "310", "clr_type": "41",
                         "clr_optins": "110108"}}  # fmt: skip
    from pos_plugin.journal import journal as J

    day.journals["T02"].update("G1", J.SETTLED, settlement_id="x", personal_account=300,
                               mutual_aid=0, cash=0, result={"ledger_detail": fake})  # fmt: skip
    rec = reconcile_for(DAY, day.paths, day.client)
    kinds = {x.msgid: x.kind for x in rec.breaks}
    assert kinds == {b.msgid: BreakKind.AMOUNT_MISMATCH, ghost: BreakKind.JOURNAL_ONLY}
    # a's setl_id is unknown to the centre (2), the centre's own row of a comes back as 1
    # under a's msgid: matched by msgid, the money agrees
    assert a.msgid in {m.msgid for m in rec.matches if not m.is_break}
    diff = next(x for x in rec.breaks if x.msgid == b.msgid)
    assert diff.amounts("ledger").total - diff.amounts("journal").total == -100
