"""A side is held in memory up to a size in bytes (``MEMORY_BYTES``), estimated from a
sample of each chunk: the estimate follows what the entries really hold, a side under
the limit is never spilled, one over it is, and a day spilled by bytes reconciles
exactly as one held whole."""

from __future__ import annotations

import sys

import pytest

from pos_plugin.reconcile import day as day_module
from pos_plugin.reconcile.day import reconcile_day
from pos_plugin.reconcile.matching import Entry
from pos_plugin.reconcile.msgid_order import MsgidOrder, entries_bytes

from .conftest import Seeded
from .seed import DAY


def _entry(i: int, legs: int = 1) -> Entry:
    """An entry whose per-row values are its own objects, as a reader builds them."""
    return Entry(f"H11010500001202405200900{i:06d}", "sale", "2024-05-20", "settled",
                 1000 + i, 700 + i, 0, 300, tuple(("personal_account", f"PA{i:020d}", 700 + i)
                                                  for _ in range(legs)),
                 f"T{i % 10:02d}", f"2024-05-20T09:00:{i % 60:02d}.{i:06d}+08:00", None,
                 f"STL{i:021d}", "statement")  # fmt: skip


def _held(entries: list[Entry]) -> int:
    """What the entries really hold: every object reachable through them, once."""
    seen: set[int] = set()
    size = 0
    todo: list[object] = list(entries)
    while todo:
        obj = todo.pop()
        if id(obj) not in seen:
            seen.add(id(obj))
            size += sys.getsizeof(obj)
            if isinstance(obj, tuple):
                todo.extend(obj)
    return size


@pytest.mark.parametrize("legs", [1, 3])
def test_the_estimate_follows_what_a_chunk_holds(legs: int) -> None:
    chunk = [_entry(i, legs) for i in range(2000)]
    assert entries_bytes([]) == 0
    real = _held(chunk)
    assert 0.9 * real <= entries_bytes(chunk) <= 1.1 * real
    if legs > 1:  # a family sale weighs more: a limit in entries would not see it
        assert entries_bytes(chunk) > 1.3 * entries_bytes([_entry(i) for i in range(2000)])


def test_a_side_under_the_limit_stays_in_memory_and_one_over_it_spills() -> None:
    chunks = [[_entry(i) for i in range(k, k + 500)] for k in range(0, 3000, 500)]
    size = sum(entries_bytes(c) for c in chunks)
    with MsgidOrder(limit_bytes=size + 1) as fits:
        for c in reversed(chunks):
            fits.extend(c)
        assert fits.spilled == 0
        kept = list(fits)
    with MsgidOrder(limit_bytes=size // 3) as spills:
        for c in reversed(chunks):
            spills.extend(c)
        assert spills.spilled >= 2
        merged = list(spills)
    every = [e for c in chunks for e in c]
    assert kept == merged == sorted(every, key=lambda e: e.msgid)


def test_a_day_spilled_by_bytes_reconciles_exactly_as_one_held_whole(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = seeded.store
    whole = reconcile_day(DAY, s.paths, s.client, resolve=False)
    spills: list[int] = []
    spill = MsgidOrder._spill

    def counted(self: MsgidOrder) -> None:
        spills.append(len(self._batch))
        spill(self)

    monkeypatch.setattr(MsgidOrder, "_spill", counted)
    monkeypatch.setattr(day_module, "MEMORY_BYTES", 3000)  # a few entries a side
    lean = reconcile_day(DAY, s.paths, s.client, resolve=False, keep_balanced=False)
    assert len(spills) >= 2  # both sides went to disk
    assert lean.digest() == whole.digest() and lean.breaks == whole.breaks
    assert lean.balanced_count == whole.balanced_count and lean.balanced_pairs == ()
    monkeypatch.setattr(day_module, "MEMORY_BYTES", 10**9)
    spills.clear()
    again = reconcile_day(DAY, s.paths, s.client, resolve=False, keep_balanced=False)
    assert spills == [] and again.digest() == whole.digest()
