"""Reading a till's journal while the till goes on selling.

The day is read in two queries (the common settled rows, then the rest); a sale
that changes between them must be read once, as it stood at one moment.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

import pytest

import pos_plugin.reconcile.day as rio
from pos_plugin.journal.journal import SHANGHAI
from pos_plugin.reconcile.day import JournalSide, read_journal, reconcile_day

from .conftest import seed_clean_day
from .seed import DAY, ZHANG_WEI, Store


def test_a_sale_reversed_between_the_two_reads_is_read_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sold, _ = seed_clean_day(store)
    victim = next(s for s in sold if s.till == "T01")
    path = store.journals["T01"].path
    common, calls = rio._common, []

    def common_then_reverse(pg: bool) -> str:
        # _common is asked for the first query's SQL, then for the second's: in between,
        # the till (another connection) reverses a sale the first query already read.
        calls.append(pg)
        if len(calls) == 2:
            with sqlite3.connect(path) as other:
                other.execute(
                    "UPDATE sales SET state = 'reversed', reversal_msgid = ? WHERE msgid = ?",
                    (victim.msgid[:12] + victim.msgid[12:20] + "235959" + "9999", victim.msgid),
                )
        return common(pg)

    monkeypatch.setattr(rio, "_common", common_then_reverse)
    side = read_journal(path, DAY, JournalSide())
    assert len(calls) == 2
    seen: dict[str, Any] = {}
    for e in side.entries:
        seen.setdefault(e.msgid, []).append(e)
    assert [e.status for e in seen[victim.msgid]] == ["settled"]  # once, as it stood
    assert all(len(v) == 1 for v in seen.values())
    # and a read after the change sees the change
    after = read_journal(path, DAY, JournalSide())
    assert [e.status for e in after.entries if e.msgid == victim.msgid] == ["reversed"]


def test_a_sale_settled_while_reconciling_is_said_to_be_timing_not_a_lost_statement_row(
    store: Store,
) -> None:
    now = dt.datetime.now(SHANGHAI).replace(microsecond=0)
    today = now.date()
    code = store.pharmacy.code
    earlier = store.client.statement_compact(code, today)  # read before the sale below
    sold = store.sale("T01", "LIVE1", ZHANG_WEI, 1200, 1200, now, ledger_at=now)
    rec = reconcile_day(today, store.paths, store.client, code, statement=earlier)
    assert [(b.msgid, b.kind.value) for b in rec.breaks] == [(sold.msgid, "journal_only")]
    notes = {n.code: n for n in rec.notes}
    assert "break_statement_missing" not in notes
    assert sold.msgid in notes["settled_while_reconciling"].en
    # read again with a fresh statement: nothing left
    assert reconcile_day(today, store.paths, store.client, code).balanced
