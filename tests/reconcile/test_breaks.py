"""Every break kind on a seeded day: classified, totalled, explained; closing rules."""

from __future__ import annotations

import datetime as dt

import pytest

from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.reconcile.close import close_day, closed_state
from pos_plugin.reconcile.day import reconcile_day
from pos_plugin.reconcile.errors import DayNotBalanced
from pos_plugin.reconcile.matching import BreakKind

from .conftest import Seeded, seed_clean_day
from .seed import DAY, Store


def test_every_break_kind_is_classified_totalled_and_explained(seeded: Seeded) -> None:
    s = seeded.store
    statement = s.client.statement(s.pharmacy.code, DAY)
    # A paging fault: the centre's statement lists one row twice.
    dup_row = next(r for r in statement.rows if r.msgid == seeded.balanced[0])
    statement = statement.model_copy(update={"rows": (*statement.rows, dup_row)})
    rec = reconcile_day(DAY, s.paths, s.client, statement=statement)

    got = {b.msgid: b.kind.value for b in rec.breaks}
    expected = dict(seeded.breaks)
    expected[seeded.balanced[0]] = "duplicate"
    assert got == expected
    assert rec.resolved == tuple(seeded.resolved)
    assert rec.counts["balanced"] == len(seeded.balanced) - 1 + len(seeded.resolved)
    # every kind is present
    assert {b.kind for b in rec.breaks} == set(BreakKind) - {BreakKind.BALANCED}

    by = {b.msgid: b for b in rec.breaks}
    # The one-sided reversals are folded into their sale's status break.
    assert by[next(m for m, k in seeded.breaks.items() if k == "status_mismatch")].related
    ledger_rev = seeded.extra["ledger_reversal"]
    journal_rev = seeded.extra["journal_reversal"]
    assert any(ledger_rev in b.related for b in rec.breaks)
    assert any(journal_rev in b.related for b in rec.breaks)

    for b in rec.breaks:
        ex = b.explanation
        assert ex is not None and ex.what_zh and ex.what_en and ex.todo_zh and ex.todo_en
        assert b.msgid in ex.what_en or b.kind is BreakKind.DUPLICATE
    unknown = by[seeded.extra["unknown"]]
    assert "reversal" in unknown.explanation.what_en  # type: ignore[union-attr]
    ledger_only = next(b for b in rec.breaks if b.kind is BreakKind.LEDGER_ONLY)
    assert "'failed'" in ledger_only.explanation.what_en  # type: ignore[union-attr]
    assert any(n.code == "break_statement_totals" for n in rec.notes)  # the repeated row

    # Totals: each side is the sum of its own rows of the day, side by side.
    ledger_rows = [r for r in statement.rows]
    assert rec.ledger.sales_count == sum(r.kind == "sale" for r in ledger_rows)
    assert rec.ledger.net.total == sum(r.total for r in ledger_rows)
    assert rec.ledger.net.personal_account == sum(r.personal_account for r in ledger_rows)
    assert rec.ledger.net.mutual_aid == sum(r.mutual_aid for r in ledger_rows)
    assert rec.ledger.net.cash == sum(r.cash for r in ledger_rows)
    assert rec.ledger.reversals_count == 2
    assert rec.journal.reversals_count == 3  # the cloned journal counts its copy too
    # The difference per break adds up to the difference of the day.
    diff = rec.ledger.net.minus(rec.journal.net)
    assert diff.total == sum(
        b.amounts("ledger", rec.date).total - b.amounts("journal", rec.date).total
        for b in rec.breaks
    )
    # Per till: the store is the sum of its tills.
    assert {t.terminal_id for t in rec.terminals} == {"T01", "T02", "T03"}
    assert sum(t.ledger.net.total for t in rec.terminals) == rec.ledger.net.total
    assert sum(t.journal.net.total for t in rec.terminals) == rec.journal.net.total
    assert all(t.breaks for t in rec.terminals if t.terminal_id in ("T01", "T02"))
    # A mutual-aid sale balanced with its legs.
    assert rec.ledger.sales.mutual_aid > 0

    # No personal data in clear anywhere in the result.
    text = str(rec.as_dict(details=True))
    for p in s.world.persons:
        assert p.id_number not in text and p.name not in text and p.psn_no not in text


def test_resolution_writes_the_lost_outcome_into_the_journal(seeded: Seeded) -> None:
    s = seeded.store
    reconcile_day(DAY, s.paths, s.client)
    row = s.journals["T02"].by_msgid(seeded.resolved[0])
    assert row is not None and row.state == "settled" and row.settlement_id
    assert s.journals["T02"].verify().ok  # resolution goes through the journal's own chain


def test_the_next_day_sees_the_midnight_sale_as_a_business_day_mismatch(seeded: Seeded) -> None:
    s = seeded.store
    rec = reconcile_day(DAY + dt.timedelta(days=1), s.paths, s.client)
    assert [b.kind.value for b in rec.breaks] == ["business_day_mismatch"]
    assert rec.ledger.sales_count == 1 and rec.journal.sales_count == 0


def test_a_balanced_day_closes_and_later_sales_see_it_closed(store: Store) -> None:
    seed_clean_day(store)
    rec = reconcile_day(DAY, store.paths, store.client)
    assert rec.balanced, [b.as_dict() for b in rec.breaks]
    assert rec.counts["balanced"] == 6 and rec.ledger.reversals_count == 1
    assert rec.journal.as_dict() == rec.ledger.as_dict()
    assert not is_day_closed(store.paths[0], DAY)
    records = close_day(store.paths, rec, closed_by="店长")
    assert len(records) == 2 and all(r["balanced"] and r["reason"] is None for r in records)
    assert all(is_day_closed(p, DAY) for p in store.paths)
    assert is_day_closed(store.journals["T01"]._db, DAY.isoformat())
    assert not is_day_closed(store.paths[0], DAY + dt.timedelta(days=1))
    state = closed_state(store.paths, rec)
    assert state is not None and state["record_intact"] and not state["changed_since_close"]
    # The journal's own chain is untouched by closing.
    assert all(j.verify().ok for j in store.journals.values())


def test_an_unbalanced_day_refuses_to_close_without_a_reason(seeded: Seeded) -> None:
    s = seeded.store
    rec = reconcile_day(DAY, s.paths, s.client)
    assert not rec.balanced
    with pytest.raises(DayNotBalanced, match="--reason"):
        close_day(s.paths, rec)
    assert not any(is_day_closed(p, DAY) for p in s.paths)
    with pytest.raises(DayNotBalanced):
        close_day(s.paths, rec, reason="   ")
    records = close_day(s.paths, rec, reason="中心已确认补发对账单 ticket 4711")
    assert records[0]["reason"] == "中心已确认补发对账单 ticket 4711"
    assert records[0]["break_count"] == len(rec.breaks)
    assert is_day_closed(s.paths[1], DAY)


def test_a_reversal_booked_after_midnight_keeps_the_statement_sign(store: Store) -> None:
    """A reversal found by lookup (not on the day's statement) is negative, as everywhere else."""
    from pos_plugin.journal import journal as J

    from .seed import ZHANG_WEI, at

    s = store
    sold = s.sale("T01", "A1", ZHANG_WEI, 3700, 3700, at(10, 0))
    j = s.journals["T01"]
    rmsgid = j.next_msgid(at(23, 59, 58))
    j.update(sold.ref, J.SETTLED, reversal_msgid=rmsgid)
    s.clock.now = at(0, 0, 3, DAY + dt.timedelta(days=1))  # the centre books it after midnight
    rid = s.client.reverse(sold.settlement_id or "", rmsgid, "returned").reversal_id
    j.update(sold.ref, J.REVERSED, reversal_id=rid)
    rec = reconcile_day(DAY, s.paths, s.client)
    (b,) = rec.breaks
    assert (b.msgid, b.kind) == (rmsgid, BreakKind.BUSINESS_DAY_MISMATCH)
    (mine,), (theirs,) = b.journal, b.ledger
    assert theirs.source == "lookup" and theirs.business_date == "2024-05-21"
    amounts = ("total", "personal_account", "mutual_aid", "cash")
    assert [getattr(theirs, a) for a in amounts] == [getattr(mine, a) for a in amounts]
    assert theirs.total == -3700


def test_a_sale_returned_the_next_day_balances_both_days(store: Store) -> None:
    """A customer brings the goods back the next morning: the sale belongs to its day and
    the reversal to the next, on the till as on the ledger's statements, so each day
    balances with one msgid (the sale's day used to show the next day's reversal as a
    'balanced' break, and count it balanced twice)."""
    from pos_plugin.journal import journal as J

    from .seed import ZHANG_WEI, at

    s = store
    sold = s.sale("T01", "A1", ZHANG_WEI, 3700, 3700, at(10, 0))
    j = s.journals["T01"]
    nxt = DAY + dt.timedelta(days=1)
    rmsgid = j.next_msgid(at(9, 30, 0, nxt))
    j.update(sold.ref, J.SETTLED, reversal_msgid=rmsgid)
    s.clock.now = at(9, 30, 1, nxt)
    rid = s.client.reverse(sold.settlement_id or "", rmsgid, "returned").reversal_id
    j.update(sold.ref, J.REVERSED, reversal_id=rid)

    first = reconcile_day(DAY, s.paths, s.client)
    assert first.balanced, [b.as_dict() for b in first.breaks]
    assert first.counts["balanced"] == 1
    assert (first.journal.sales_count, first.journal.reversals_count) == (1, 0)
    assert first.journal.as_dict() == first.ledger.as_dict()

    second = reconcile_day(nxt, s.paths, s.client)
    assert second.balanced, [b.as_dict() for b in second.breaks]
    assert second.counts["balanced"] == 1
    assert (second.journal.sales_count, second.journal.reversals_count) == (0, 1)
    assert second.journal.reversals.total == second.ledger.reversals.total == -3700
