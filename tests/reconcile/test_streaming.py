"""The day matched in msgid order in bounded memory: the same result however much of a
side is held in memory (sorted runs spilled to disk), from files and from the shared
journal; balanced pairs dropped once counted change nothing but the details; a side out
of msgid order is refused, never matched wrongly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_plugin.reconcile.day import reconcile_day
from pos_plugin.reconcile.matching import MATCHED, Entry, Reconciliation, Tally, reconcile, walk
from pos_plugin.reconcile.msgid_order import MsgidOrder

from .conftest import Seeded
from .seed import DAY
from .test_shared_journal import Pair, comparable, pair  # noqa: F401  (the fixture)


def _msgid(e: Entry) -> str:
    return e.msgid


def _entry(msgid: str, n: int) -> Entry:
    return Entry(msgid, "sale", "2024-05-20", "settled", n, n, 0, 0,
                 (("personal_account", "PA1", n),), "T01", "2024-05-20T09:00:00+08:00")  # fmt: skip


@given(
    st.lists(st.integers(0, 30), max_size=60),
    st.integers(1, 7),
)
@settings(max_examples=80, deadline=None)
def test_msgid_order_sorts_across_spilled_runs_and_keeps_duplicates_in_arrival_order(
    keys: list[int], limit: int
) -> None:
    entries = [_entry(f"M{k:03d}", i) for i, k in enumerate(keys)]
    with MsgidOrder(limit) as side:
        for i in range(0, len(entries), 3):  # in chunks, as readers hand them over
            side.extend(entries[i : i + 3])
        assert side.count == len(entries)
        if len(entries) >= limit:
            assert side.spilled >= 1
        got = list(side)
    assert got == sorted(entries, key=lambda e: e.msgid)  # stable: arrival order kept
    assert all(type(e) is Entry for e in got)  # rebuilt from disk as entries


def test_walk_refuses_a_side_out_of_msgid_order() -> None:
    a, b = _entry("M002", 1), _entry("M001", 1)
    with pytest.raises(ValueError, match="not in msgid order"):
        walk("2024-05-20", [a, b], [b, a], Tally("2024-05-20"), Tally("2024-05-20"))


def test_walk_counts_balanced_pairs_without_keeping_them() -> None:
    same = [_entry(f"M{i:03d}", i + 1) for i in range(5)]
    tally = Tally("2024-05-20")
    tally.add(same[:2])  # a chunk at a time, as readers hand them over
    tally.add(same[2:])
    assert tally.acc == {("T01", "sale"): [5, 15, 15, 0, 0]}
    walked = walk("2024-05-20", same, same, tally, tally, keep_balanced=False)
    assert walked.balanced_count == 5 and walked.balanced == [] and walked.open == {}
    # the pure entry point (any order) agrees
    rec = reconcile("2024-05-20", reversed(same), same)
    assert rec.balanced and rec.balanced_count == 5 and rec.journal.sales_count == 5


def _oracle(journal: list[Entry], ledger: list[Entry]) -> tuple[int, list[Any], dict[str, Any]]:
    """The walk written plainly: every msgid's entries a side; one a side that agree on
    ``MATCHED`` balance, every other msgid stays open with its entries."""
    js: dict[str, list[Entry]] = {}
    ls: dict[str, list[Entry]] = {}
    for side, entries in ((js, journal), (ls, ledger)):
        for e in entries:
            side.setdefault(e.msgid, []).append(e)
    pairs, opened = [], {}
    for m in sorted(js.keys() | ls.keys()):
        j, led = js.get(m, []), ls.get(m, [])
        if len(j) == len(led) == 1 and j[0][MATCHED] == led[0][MATCHED]:
            pairs.append((j[0], led[0]))
        else:
            opened[m] = (j, led)
    return len(pairs), pairs, opened


_side = st.lists(st.tuples(st.integers(0, 7), st.integers(1, 2)), max_size=14)


@given(_side, _side)
@settings(max_examples=300, deadline=None)
def test_walk_agrees_with_a_plain_oracle_on_duplicates_and_one_sided_msgids(
    j_keys: list[tuple[int, int]], l_keys: list[tuple[int, int]]
) -> None:
    journal = sorted((_entry(f"M{k}", n)._replace(source="j") for k, n in j_keys), key=_msgid)
    ledger = sorted((_entry(f"M{k}", n) for k, n in l_keys), key=_msgid)
    count, pairs, opened = _oracle(journal, ledger)
    walked = walk(DAY.isoformat(), journal, ledger, Tally(""), Tally(""))
    assert (walked.balanced_count, walked.balanced, walked.open) == (count, pairs, opened)
    lean = walk(DAY.isoformat(), iter(journal), iter(ledger), Tally(""), Tally(""),
                keep_balanced=False)  # fmt: skip
    assert (lean.balanced_count, lean.balanced, lean.open) == (count, [], opened)


@given(_side, _side, st.booleans(), st.data())
@settings(max_examples=200, deadline=None)
def test_walk_refuses_a_side_out_of_order_wherever_the_fault_is(
    j_keys: list[tuple[int, int]], l_keys: list[tuple[int, int]], on_journal: bool,
    data: st.DataObject,
) -> None:  # fmt: skip
    journal = sorted((_entry(f"M{k}", n) for k, n in j_keys), key=_msgid)
    ledger = sorted((_entry(f"M{k}", n) for k, n in l_keys), key=_msgid)
    bad = journal if on_journal else ledger
    steps = [i for i in range(len(bad) - 1) if bad[i].msgid != bad[i + 1].msgid]
    if not steps:
        return
    i = data.draw(st.sampled_from(steps))
    bad[i], bad[i + 1] = bad[i + 1], bad[i]  # one msgid before a smaller one
    with pytest.raises(ValueError, match="not in msgid order"):
        walk(DAY.isoformat(), journal, ledger, Tally(""), Tally(""), keep_balanced=False)


def _without_pairs(rec: Reconciliation) -> dict[str, Any]:
    out = rec.as_dict()
    out.pop("digest")
    return out


def test_a_day_spilled_to_disk_reconciles_exactly_as_one_held_in_memory(seeded: Seeded) -> None:
    s = seeded.store
    whole = reconcile_day(DAY, s.paths, s.client, resolve=False)
    assert whole.breaks and whole.balanced_count  # not a trivial day
    spilled = reconcile_day(DAY, s.paths, s.client, resolve=False, memory_rows=2)
    assert spilled.as_dict(details=True) == whole.as_dict(details=True)
    lean = reconcile_day(DAY, s.paths, s.client, resolve=False, memory_rows=2, keep_balanced=False)
    assert lean.balanced_pairs == () and lean.balanced_count == whole.balanced_count
    assert lean.digest() == whole.digest()
    assert _without_pairs(lean) == _without_pairs(whole)


def test_the_shared_journal_streamed_through_small_runs_gives_the_same_day(
    pair: Pair,  # noqa: F811
) -> None:
    s = pair.shared
    whole = reconcile_day(DAY, [pair.url], s.client, s.pharmacy.code, resolve=False)
    spilled = reconcile_day(
        DAY, [pair.url], s.client, s.pharmacy.code, resolve=False, memory_rows=3
    )
    assert len(whole.breaks) >= 5 and whole.balanced_count  # the seeded faults, unresolved
    assert comparable(spilled) == comparable(whole)
    assert spilled.digest() == whole.digest()


def test_the_managers_paths_hold_only_breaks_but_the_csv_lists_every_msgid(
    seeded: Seeded,
) -> None:
    """The page, close-day and a reversal read the day without its balanced pairs (bounded
    memory); the CSV's msgids sheet and ``details`` still list every msgid."""
    from pos_plugin.reconcile.csv_report import render_csv
    from pos_plugin.reconcile.manager_page import ReconcileSource

    s = seeded.store
    source = ReconcileSource(s.paths, s.client, s.pharmacy.code, resolve=False)
    lean, _ = source.run(DAY)
    full, _ = source.run(DAY, every_msgid=True)
    assert lean.balanced_pairs == () and full.balanced_pairs
    assert lean.balanced_count == full.balanced_count == len(full.balanced_pairs)
    assert lean.digest() == full.digest() and lean.breaks == full.breaks
    listed = render_csv(full, sheet="msgids")
    assert all(m in listed for m in seeded.balanced)
