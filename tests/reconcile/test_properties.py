"""Properties of the pure matcher (no I/O): totals are the sums of their rows; an untouched
day is always balanced; one tampering gives the break it should."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pos_plugin.reconcile.matching import BreakKind, Entry, reconcile

DAY = "2024-05-20"
fen = st.integers(min_value=0, max_value=500_000)


@st.composite
def sale(draw: st.DrawFn, n: int) -> list[Entry]:
    pa, ma, cash = draw(fen), draw(fen), draw(fen)
    if pa + ma + cash == 0:
        cash = 1
    legs = []
    if pa:
        legs.append(("personal_account", f"PA{n:020d}", pa))
    if ma:
        legs.append(("mutual_aid", f"PA{n + 1:020d}", ma))
    till = draw(st.sampled_from(["T01", "T02", "T03"]))
    hour = draw(st.integers(0, 23))
    msgid = f"H11010500001202405200000{n:06d}"
    reversed_ = draw(st.booleans())
    s = Entry(
        msgid=msgid,
        kind="sale",
        terminal_id=till,
        business_date=DAY,
        created_at=f"{DAY}T{hour:02d}:00:00+08:00",
        total=pa + ma + cash,
        personal_account=pa,
        mutual_aid=ma,
        cash=cash,
        legs=tuple(sorted(legs)),
        status="reversed" if reversed_ else "settled",
    )
    out = [s]
    if reversed_:
        out.append(
            s._replace(
                msgid=f"H11010500001202405200001{n:06d}",
                kind="reversal",
                status=None,
                total=-s.total,
                personal_account=-pa,
                mutual_aid=-ma,
                cash=-cash,
                original_msgid=msgid,
            )
        )
    return out


@st.composite
def day(draw: st.DrawFn) -> list[Entry]:
    n = draw(st.integers(min_value=0, max_value=25))
    return [e for i in range(n) for e in draw(sale(i * 2))]


def _sums(entries: list[Entry]) -> tuple[int, int, int, int, int, int]:
    on = [e for e in entries if e.business_date == DAY]
    return (
        sum(e.kind == "sale" for e in on),
        sum(e.kind == "reversal" for e in on),
        sum(e.total for e in on),
        sum(e.personal_account for e in on),
        sum(e.mutual_aid for e in on),
        sum(e.cash for e in on),
    )


@given(day())
@settings(max_examples=80, deadline=None)
def test_an_untouched_day_is_always_balanced(entries: list[Entry]) -> None:
    journal = [e._replace(source="journal.sqlite3") for e in entries]
    rec = reconcile(DAY, journal, entries)
    assert rec.balanced and not rec.breaks
    assert rec.balanced_count == len(entries)
    assert rec.journal.as_dict() == rec.ledger.as_dict()
    assert all(t.balanced for t in rec.terminals)


@given(day(), day(), st.data())
@settings(max_examples=80, deadline=None)
def test_each_sides_totals_are_the_sums_of_its_rows(
    a: list[Entry], b: list[Entry], data: st.DataObject
) -> None:
    # Two unrelated sides, with some rows of another day and some repeated rows.
    other = data.draw(st.lists(st.sampled_from(b), max_size=3)) if b else []
    b = b + [e._replace(business_date="2024-05-21") for e in other]
    if a:
        a = a + data.draw(st.lists(st.sampled_from(a), max_size=3))
    rec = reconcile(DAY, a, b)
    for side, entries in ((rec.journal, a), (rec.ledger, b)):
        net = side.net
        assert (
            side.sales_count,
            side.reversals_count,
            net.total,
            net.personal_account,
            net.mutual_aid,
            net.cash,
        ) == _sums(entries)
    assert sum(t.journal.net.total for t in rec.terminals) == rec.journal.net.total
    assert sum(t.ledger.net.total for t in rec.terminals) == rec.ledger.net.total
    assert sum(h.ledger_count for h in rec.hourly) == rec.ledger.sales_count
    # Every msgid of either side is classified exactly once.
    assert rec.balanced_count + sum(1 + len(x.related) for x in rec.breaks) == len(
        {e.msgid for e in a} | {e.msgid for e in b}
    )


TAMPER = {
    "drop_journal": BreakKind.LEDGER_ONLY,
    "drop_ledger": BreakKind.JOURNAL_ONLY,
    "amount": BreakKind.AMOUNT_MISMATCH,
    "split": BreakKind.SPLIT_MISMATCH,
    "status": BreakKind.STATUS_MISMATCH,
    "day": BreakKind.BUSINESS_DAY_MISMATCH,
    "dup_journal": BreakKind.DUPLICATE,
    "dup_ledger": BreakKind.DUPLICATE,
}


@given(day(), st.sampled_from(sorted(TAMPER)), st.data())
@settings(max_examples=120, deadline=None)
def test_one_tampering_gives_its_break(entries: list[Entry], how: str, data: st.DataObject) -> None:
    sales = [e for e in entries if e.kind == "sale" and e.status == "settled" and e.cash]
    if not sales:
        return
    victim = data.draw(st.sampled_from(sales))
    journal = list(entries)
    ledger = list(entries)
    i = journal.index(victim)
    if how == "drop_journal":
        journal.pop(i)
    elif how == "drop_ledger":
        ledger.pop(i)
    elif how == "amount":
        journal[i] = victim._replace(total=victim.total + 1, cash=victim.cash + 1)
    elif how == "split":
        journal[i] = victim._replace(
            cash=victim.cash - 1, personal_account=victim.personal_account + 1
        )
    elif how == "status":
        journal[i] = victim._replace(status="reversed")
    elif how == "day":
        ledger[i] = victim._replace(business_date="2024-05-21")
    elif how == "dup_journal":
        journal.append(victim)
    else:
        ledger.append(victim)
    rec = reconcile(DAY, journal, ledger)
    assert [(b.msgid, b.kind) for b in rec.breaks] == [(victim.msgid, TAMPER[how])]
    assert rec.breaks[0].explanation is not None


@given(day(), day(), st.data())
@settings(max_examples=60, deadline=None)
def test_each_csv_sheet_is_one_table_and_lists_every_msgid_once(
    a: list[Entry], b: list[Entry], data: st.DataObject
) -> None:
    """Whatever the day: every row of a sheet is as wide as its header (one table per
    file), the msgids sheet has each classified msgid once, breaks first, and its
    amounts add up to the totals sheet's."""
    import csv
    import io
    from decimal import Decimal

    from pos_plugin.reconcile.csv_report import CSV_HEADER, SHEETS, TOTALS_HEADER, render_csv

    if a:
        a = a + data.draw(st.lists(st.sampled_from(a), max_size=2))
    rec = reconcile(DAY, a, b)
    sheets = {n: list(csv.reader(io.StringIO(render_csv(rec, sheet=n)))) for n in SHEETS}
    for rows in sheets.values():
        assert len({len(r) for r in rows}) == 1
    rows = sheets["msgids"]
    assert rows[0] == CSV_HEADER and sheets["totals"][0] == TOTALS_HEADER
    col = CSV_HEADER.index("流水号 msgid")
    listed = [r[col] for r in rows[1:]]
    assert len(listed) == len(set(listed)) == len(rec.breaks) + rec.balanced_count
    kinds = [r[1] for r in rows[1:]]
    assert kinds == sorted(kinds, key=lambda k: k == "balanced")  # breaks first
    store = {r[1]: r for r in sheets["totals"][1:] if r[0] == "全店 store"}
    for side, column in (("本店 till journal", "本店合计 journal total"),
                         ("中心 centre ledger", "中心合计 ledger total")):  # fmt: skip
        summed = sum(Decimal(r[CSV_HEADER.index(column)]) for r in rows[1:])
        assert summed == Decimal(store["净额 net 合计 total"][TOTALS_HEADER.index(side)])


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_a_csrf_token_is_good_only_for_its_own_session(cookie: str, other: str) -> None:
    from pos_plugin.reconcile.manager_page import Csrf

    guard = Csrf()
    token = guard.token(cookie)
    assert guard.ok(cookie, token)
    assert not guard.ok(cookie, None) and not guard.ok(None, token) and not guard.ok(cookie, "")
    assert guard.ok(other, token) == (other == cookie)
    assert not Csrf().ok(cookie, token)  # another agent process: another key
