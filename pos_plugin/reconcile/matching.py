"""Daily reconciliation, the pure part: match the till's journal against the ledger's statement.

No I/O here (reading journals and statements, resolving ``settling`` rows,
rendering and closing a day live in ``reconcile.day``, ``close`` and ``csv_report``), so this module is fast
and property-testable.

Both sides are first turned into ``Entry`` values: one per sale and one per
reversal, each keyed by its own msgid (the ledger's idempotency key, which the
till keeps as its settlement id). Matching is by msgid only, with no tolerance:
fen must match. Each msgid gets one classification:

- ``balanced``               both sides agree to the fen, on status and on the day;
- ``duplicate``              the msgid occurs more than once on one side;
- ``ledger_only``            the centre has a sale the till does not know;
- ``journal_only``           the till believes it settled, the centre has nothing;
- ``business_day_mismatch``  both have it, booked on different dates;
- ``status_mismatch``        reversed on one side only (a reversal present on
                             one side only is the same fault seen from its own msgid,
                             and is folded into the sale's break when both are here);
- ``amount_mismatch``        the totals differ;
- ``split_mismatch``         same total, different legs or cash part.

Totals: per side, per fund (personal account, mutual aid, cash), per terminal,
sales and reversals apart (reversal amounts are negative), net = sales + reversals,
exactly as the ledger's statement counts them. Only entries booked on the day
count; entries from other days (found by looking a one-sided msgid up) serve the
classification only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Any, Literal, NamedTuple

from pos_plugin.gcpause import gc_paused
from pos_plugin.money import yuan

Side = Literal["journal", "ledger"]
Legs = tuple[tuple[str, str, int], ...]


class BreakKind(StrEnum):
    BALANCED = "balanced"
    DUPLICATE = "duplicate"
    LEDGER_ONLY = "ledger_only"
    JOURNAL_ONLY = "journal_only"
    BUSINESS_DAY_MISMATCH = "business_day_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    SPLIT_MISMATCH = "split_mismatch"


# The national platform's per-row result codes (3202): 0 balanced, 1 the centre
# has more, 2 the pharmacy has more, 3 data differ.
NATIONAL_CODE = {
    BreakKind.BALANCED: 0,
    BreakKind.LEDGER_ONLY: 1,
    BreakKind.JOURNAL_ONLY: 2,
}

KIND_LABEL: dict[BreakKind, tuple[str, str]] = {
    BreakKind.BALANCED: ("平账", "balanced"),
    BreakKind.DUPLICATE: ("重复记录", "duplicate"),
    BreakKind.LEDGER_ONLY: ("中心有、本店无", "ledger only"),
    BreakKind.JOURNAL_ONLY: ("本店有、中心无", "journal only"),
    BreakKind.BUSINESS_DAY_MISMATCH: ("记账日期不同", "business-day mismatch"),
    BreakKind.STATUS_MISMATCH: ("冲正状态不一致", "status mismatch"),
    BreakKind.AMOUNT_MISMATCH: ("金额不一致", "amount mismatch"),
    BreakKind.SPLIT_MISMATCH: ("支付构成不一致", "split mismatch"),
}

# Order in which breaks are shown: the ones that can mean money lost first.
_SEVERITY = [
    BreakKind.JOURNAL_ONLY,
    BreakKind.LEDGER_ONLY,
    BreakKind.STATUS_MISMATCH,
    BreakKind.AMOUNT_MISMATCH,
    BreakKind.SPLIT_MISMATCH,
    BreakKind.DUPLICATE,
    BreakKind.BUSINESS_DAY_MISMATCH,
    BreakKind.BALANCED,
]
SEVERITY = {k: i for i, k in enumerate(_SEVERITY)}


class Entry(NamedTuple):
    """One sale or reversal as one side records it (money in int fen).

    Reversal amounts are negative (as in the ledger's statement); a reversal's
    ``legs`` are the original sale's legs. ``status`` is for sales: ``settled``
    or ``reversed`` on both sides; the journal may also say ``unknown`` (the
    till gave up waiting, took cash and owes a reversal) or ``settling`` (the
    outcome could not be resolved yet).

    A NamedTuple, not a dataclass, because a day is ~10^5 of them on each side:
    building one costs a fifth of a frozen dataclass. The fields matching compares
    come first after ``msgid`` (``MATCHED``), so "both sides agree" is one slice
    comparison in C.
    """

    msgid: str
    kind: Literal["sale", "reversal"]
    business_date: str  # YYYY-MM-DD, Asia/Shanghai
    status: str | None
    total: int
    personal_account: int
    mutual_aid: int
    cash: int
    legs: Legs
    terminal_id: str
    created_at: str  # ISO 8601 with offset, Asia/Shanghai
    original_msgid: str | None = None
    ref: str = ""  # journal: sale_ref; ledger: settlement or reversal id
    source: str = ""  # where it was read: a journal file's name, "statement", "lookup"
    patient: str | None = None  # masked ID number (journal only)
    reversal_started: str | None = None  # journal: a reversal msgid whose outcome is not recorded


# Entry[MATCHED] is what must agree to the fen for a msgid to balance: kind, business
# date, status, total, the three funds and the legs.
MATCHED = slice(1, 9)
assert list(Entry._fields)[MATCHED] == [
    "kind", "business_date", "status", "total", "personal_account", "mutual_aid", "cash", "legs"
]


def norm_legs(legs: Iterable[Any]) -> Legs:
    """Legs as sorted (kind, account_id, amount): money-equal legs compare equal in any order."""
    out = []
    for leg in legs:
        if isinstance(leg, Mapping):
            out.append((str(leg["kind"]), str(leg["account_id"]), int(leg["amount"])))
        else:
            kind = getattr(leg.kind, "value", leg.kind)
            out.append((str(kind), str(leg.account_id), int(leg.amount)))
    if len(out) > 1:
        out.sort()
    return tuple(out)


# --------------------------------------------------------------------------- totals


@dataclass(slots=True)
class Amounts:
    total: int = 0
    personal_account: int = 0
    mutual_aid: int = 0
    cash: int = 0

    def add(self, e: Entry | Amounts) -> None:
        self.total += e.total
        self.personal_account += e.personal_account
        self.mutual_aid += e.mutual_aid
        self.cash += e.cash

    def minus(self, other: Amounts) -> Amounts:
        return Amounts(
            self.total - other.total,
            self.personal_account - other.personal_account,
            self.mutual_aid - other.mutual_aid,
            self.cash - other.cash,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "personal_account": self.personal_account,
            "mutual_aid": self.mutual_aid,
            "cash": self.cash,
        }

    def is_zero(self) -> bool:
        return not (self.total or self.personal_account or self.mutual_aid or self.cash)


@dataclass(slots=True)
class SideTotals:
    """One side's day: sales (gross) and reversals (negative) apart, and the net."""

    sales_count: int = 0
    reversals_count: int = 0
    sales: Amounts = field(default_factory=Amounts)
    reversals: Amounts = field(default_factory=Amounts)

    @property
    def net(self) -> Amounts:
        n = Amounts()
        n.add(self.sales)
        n.add(self.reversals)
        return n

    def add(self, e: Entry) -> None:
        if e.kind == "sale":
            self.sales_count += 1
            self.sales.add(e)
        else:
            self.reversals_count += 1
            self.reversals.add(e)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sales_count": self.sales_count,
            "reversals_count": self.reversals_count,
            "sales": self.sales.as_dict(),
            "reversals": self.reversals.as_dict(),
            "net": self.net.as_dict(),
        }


def side_totals(entries: Iterable[Entry]) -> SideTotals:
    t = SideTotals()
    for e in entries:
        t.add(e)
    return t


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Explanation:
    """What happened and what to do, in words a store manager understands."""

    what_zh: str
    what_en: str
    todo_zh: str
    todo_en: str

    def as_dict(self) -> dict[str, str]:
        return {
            "what_zh": self.what_zh,
            "what_en": self.what_en,
            "todo_zh": self.todo_zh,
            "todo_en": self.todo_en,
        }


@dataclass(frozen=True, slots=True)
class Match:
    """One msgid (plus, for a folded reversal, its sale's msgid) and its classification."""

    msgid: str
    kind: BreakKind
    journal: tuple[Entry, ...]
    ledger: tuple[Entry, ...]
    related: tuple[str, ...] = ()  # reversal msgids folded into this break
    explanation: Explanation | None = None
    # The one repair the manager is offered, if any: "reverse_2601" (the national
    # platform: reverse a centre-only settlement under its msgid, reconcile.national).
    action: str | None = None

    @property
    def terminal_id(self) -> str:
        for e in (*self.ledger, *self.journal):
            return e.terminal_id
        return ""

    @property
    def is_break(self) -> bool:
        return self.kind is not BreakKind.BALANCED

    @property
    def created_at(self) -> str:
        times = [e.created_at for e in (*self.ledger, *self.journal)]
        return min(times) if times else ""

    def amounts(self, side: Side, day: str | None = None) -> Amounts:
        a = Amounts()
        for e in self.journal if side == "journal" else self.ledger:
            if day is None or e.business_date == day:
                a.add(e)
        return a

    def as_dict(self, day: str | None = None) -> dict[str, Any]:
        j, led = self.amounts("journal", day), self.amounts("ledger", day)
        return {
            "msgid": self.msgid,
            "kind": self.kind.value,
            "kind_zh": KIND_LABEL[self.kind][0],
            "national_code": NATIONAL_CODE.get(self.kind, 3),
            "terminal_id": self.terminal_id,
            "created_at": self.created_at,
            "related_msgids": list(self.related),
            "journal": [_entry_dict(e) for e in self.journal],
            "ledger": [_entry_dict(e) for e in self.ledger],
            "journal_amounts": j.as_dict(),
            "ledger_amounts": led.as_dict(),
            "difference": led.minus(j).as_dict(),  # ledger minus journal
            "explanation": self.explanation.as_dict() if self.explanation else None,
            "action": self.action,
        }


def _entry_dict(e: Entry) -> dict[str, Any]:
    return {
        "msgid": e.msgid,
        "kind": e.kind,
        "status": e.status,
        "original_msgid": e.original_msgid,
        "terminal_id": e.terminal_id,
        "business_date": e.business_date,
        "created_at": e.created_at,
        "total": e.total,
        "personal_account": e.personal_account,
        "mutual_aid": e.mutual_aid,
        "cash": e.cash,
        "legs": [{"kind": k, "account": mask_account(a), "amount": m} for k, a, m in e.legs],
        "ref": e.ref,
        "source": e.source,
        "patient": e.patient,
    }


@dataclass(frozen=True, slots=True)
class TerminalResult:
    terminal_id: str
    journal: SideTotals
    ledger: SideTotals
    breaks: int
    journal_given: bool

    @property
    def balanced(self) -> bool:
        return self.breaks == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "balanced": self.balanced,
            "breaks": self.breaks,
            "journal_given": self.journal_given,
            "journal": self.journal.as_dict(),
            "ledger": self.ledger.as_dict(),
            "difference": self.ledger.net.minus(self.journal.net).as_dict(),
        }


@dataclass(frozen=True, slots=True)
class HourBucket:
    hour: int
    journal_count: int
    journal_amount: int
    ledger_count: int
    ledger_amount: int


@dataclass(frozen=True, slots=True)
class Note:
    """A day-level warning (not tied to one msgid)."""

    code: str
    zh: str
    en: str


@dataclass(frozen=True)
class Reconciliation:
    date: str
    pharmacy_code: str
    journal: SideTotals
    ledger: SideTotals
    terminals: tuple[TerminalResult, ...]
    breaks: tuple[Match, ...]  # most serious first, then by time
    balanced_count: int
    counts: dict[str, int]
    hourly: tuple[HourBucket, ...]
    notes: tuple[Note, ...] = ()
    resolved: tuple[str, ...] = ()  # msgids resolved by looking them up before matching
    balanced_pairs: tuple[tuple[Entry, Entry], ...] = field(default=(), repr=False)

    @property
    def matches(self) -> tuple[Match, ...]:
        """Every msgid: the breaks, then each balanced pair (for the details CSV and JSON)."""
        return self.breaks + tuple(
            Match(j.msgid, BreakKind.BALANCED, (j,), (led,)) for j, led in self.balanced_pairs
        )

    @property
    def balanced(self) -> bool:
        return not self.breaks and not any(n.code.startswith("break_") for n in self.notes)

    def as_dict(self, *, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "date": self.date,
            "pharmacy_code": self.pharmacy_code,
            "balanced": self.balanced,
            "counts": dict(self.counts),
            "balanced_count": self.balanced_count,
            "break_count": len(self.breaks),
            "journal": self.journal.as_dict(),
            "ledger": self.ledger.as_dict(),
            "difference": self.ledger.net.minus(self.journal.net).as_dict(),
            "terminals": [t.as_dict() for t in self.terminals],
            "breaks": [b.as_dict(self.date) for b in self.breaks],
            "hourly": [
                {
                    "hour": h.hour,
                    "journal_count": h.journal_count,
                    "journal_amount": h.journal_amount,
                    "ledger_count": h.ledger_count,
                    "ledger_amount": h.ledger_amount,
                }
                for h in self.hourly
            ],
            "notes": [{"code": n.code, "zh": n.zh, "en": n.en} for n in self.notes],
            "resolved_msgids": list(self.resolved),
            "digest": self.digest(),
        }
        if details:
            out["matches"] = [m.as_dict(self.date) for m in self.matches]
        return out

    def digest(self) -> str:
        """A fingerprint of the result (totals and breaks): a closed day is compared against it."""
        doc = {
            "date": self.date,
            "pharmacy_code": self.pharmacy_code,
            "journal": self.journal.as_dict(),
            "ledger": self.ledger.as_dict(),
            "breaks": sorted([b.msgid, b.kind.value, *b.related] for b in self.breaks),
            "balanced_count": self.balanced_count,
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- matching


def classify(journal: Sequence[Entry], ledger: Sequence[Entry]) -> BreakKind:
    """The classification of one msgid from its entries on each side."""
    if len(journal) > 1 or len(ledger) > 1:
        return BreakKind.DUPLICATE
    if not journal or not ledger:
        e = journal[0] if journal else ledger[0]
        if e.kind == "reversal":
            return BreakKind.STATUS_MISMATCH  # reversed on one side only
        return BreakKind.JOURNAL_ONLY if journal else BreakKind.LEDGER_ONLY
    j, led = journal[0], ledger[0]
    if j.business_date != led.business_date:
        return BreakKind.BUSINESS_DAY_MISMATCH
    if j.kind != led.kind or j.status != led.status:
        return BreakKind.STATUS_MISMATCH
    if j.total != led.total:
        return BreakKind.AMOUNT_MISMATCH
    if (
        j.personal_account != led.personal_account
        or j.mutual_aid != led.mutual_aid
        or j.cash != led.cash
        or j.legs != led.legs
    ):
        return BreakKind.SPLIT_MISMATCH
    return BreakKind.BALANCED


def reconcile(
    date: dt.date | str,
    journal: Iterable[Entry],
    ledger: Iterable[Entry],
    *,
    pharmacy_code: str = "",
    journal_terminals: Iterable[str] | None = None,
    journal_states: Mapping[str, str] | None = None,
    reported_ledger_totals: Mapping[str, Any] | None = None,
    resolved: Sequence[str] = (),
    notes: Sequence[Note] = (),
) -> Reconciliation:
    """Match both sides of one business day by msgid; totals, breaks and explanations.

    The entries may come in any order (they are sorted here; ``walk`` then
    ``conclude`` is the same for sides already in msgid order, in bounded memory).
    ``journal_terminals``: the tills whose journal was given (a till seen only on
    the ledger gets a note: its journal is probably missing from the inputs).
    ``journal_states``: msgid -> journal state for rows that claim no money
    (failed, refused...), used to explain a ``ledger_only`` break.
    ``reported_ledger_totals``: the statement's own totals (``StatementTotals``
    as a dict), checked against the sum of its rows.
    """
    day = date.isoformat() if isinstance(date, dt.date) else date
    with gc_paused():  # ~10^5 small objects and no cycles: see pos_plugin.gcpause
        j_list, l_list = sorted(journal, key=_MSGID), sorted(ledger, key=_MSGID)
        j_tally, l_tally = Tally(day), Tally(day)
        j_tally.add(j_list)
        l_tally.add(l_list)
        walked = walk(day, j_list, l_list, j_tally, l_tally)
    return conclude(
        walked,
        pharmacy_code=pharmacy_code,
        journal_terminals=journal_terminals,
        journal_states=journal_states,
        reported_ledger_totals=reported_ledger_totals,
        resolved=resolved,
        notes=notes,
    )


@dataclass
class Walked:
    """Both sides of a day walked once in msgid order: what is kept of it.

    Matched pairs are counted and summed, then dropped (kept in ``balanced`` only
    when asked, for the per-msgid details); every other msgid is kept in ``open``
    with its entries on each side, to be classified by ``conclude``.
    """

    day: str
    journal_tally: Tally
    ledger_tally: Tally
    balanced_count: int = 0
    balanced: list[tuple[Entry, Entry]] = field(default_factory=list)
    open: dict[str, tuple[list[Entry], list[Entry]]] = field(default_factory=dict)

    def add_found(self, side: Side, entries: Iterable[Entry]) -> None:
        """Entries of other days found by looking a one-sided msgid up: they take part in
        its classification (a business-day mismatch, not a missing sale), not in the totals."""
        for e in entries:
            js, ls = self.open.setdefault(e.msgid, ([], []))
            (js if side == "journal" else ls).append(e)


def walk(
    day: str,
    journal: Iterable[Entry],
    ledger: Iterable[Entry],
    journal_tally: Tally,
    ledger_tally: Tally,
    *,
    keep_balanced: bool = True,
) -> Walked:
    """One pass over both sides, each in msgid order (a merge join): the balanced msgids
    counted, every other msgid kept in ``Walked.open``. The totals are the tallies the
    caller filled while it read each side (``Tally.add``, a chunk at a time).

    Each side is read one entry ahead: a msgid whose next entry on both sides is a later
    msgid has one entry a side, and balances if they agree (``MATCHED``), with nothing
    built but the count; any other msgid gathers its entries (``_run``).

    A side out of msgid order is a fault of its reader: ``ValueError``, never a
    silently wrong result.
    """
    walked = Walked(day, journal_tally, ledger_tally)
    keep = walked.balanced.append if keep_balanced else None
    opened = walked.open
    balanced = 0
    js, ls = iter(journal), iter(ledger)
    j, led = next(js, None), next(ls, None)
    while j is not None and led is not None:
        msgid = j[0]
        if msgid == led[0]:
            j_next, l_next = next(js, None), next(ls, None)
            if (  # one entry a side (the next on each is a later msgid), and they agree
                (j_next is None or j_next[0] > msgid)
                and (l_next is None or l_next[0] > msgid)
                and j[MATCHED] == led[MATCHED]
            ):
                balanced += 1
                if keep is not None:
                    keep((j, led))
            else:
                j_run, j_next = _run(j, j_next, js, "journal")
                l_run, l_next = _run(led, l_next, ls, "ledger")
                opened[msgid] = (j_run, l_run)
            j, led = j_next, l_next
        elif msgid < led[0]:
            j_run, j = _run(j, next(js, None), js, "journal")
            opened[msgid] = (j_run, [])
        else:
            l_run, led = _run(led, next(ls, None), ls, "ledger")
            opened[l_run[0].msgid] = ([], l_run)
    while j is not None:
        j_run, j = _run(j, next(js, None), js, "journal")
        opened[j_run[0].msgid] = (j_run, [])
    while led is not None:
        l_run, led = _run(led, next(ls, None), ls, "ledger")
        opened[l_run[0].msgid] = ([], l_run)
    walked.balanced_count = balanced
    return walked


def _run(
    first: Entry, after: Entry | None, rest: Iterator[Entry], side: Side
) -> tuple[list[Entry], Entry | None]:
    """``first`` and the entries of its msgid that follow it (``after`` is the entry read
    after ``first``, then ``rest``): those entries, and the next msgid's first entry."""
    run = [first]
    while after is not None and after[0] == first[0]:
        run.append(after)
        after = next(rest, None)
    if after is not None and after[0] < first[0]:
        raise ValueError(f"the {side} side is not in msgid order ({first[0]} then {after[0]})")
    return run, after


def conclude(
    walked: Walked,
    *,
    pharmacy_code: str = "",
    journal_terminals: Iterable[str] | None = None,
    journal_states: Mapping[str, str] | None = None,
    reported_ledger_totals: Mapping[str, Any] | None = None,
    resolved: Sequence[str] = (),
    notes: Sequence[Note] = (),
) -> Reconciliation:
    """Classify and explain what the walk left open; totals, per-till results and notes
    (the keywords as for ``reconcile``)."""
    day = walked.day
    states = journal_states or {}
    breaks = [
        Match(msgid, classify(js, ls), tuple(js), tuple(ls))
        for msgid, (js, ls) in walked.open.items()
    ]
    balanced_count = walked.balanced_count
    jt, term_j = _totals(walked.journal_tally.acc)
    lt, term_l = _totals(walked.ledger_tally.acc)
    hours_j, hours_l = walked.journal_tally.hours, walked.ledger_tally.hours

    breaks = _fold_reversals(breaks)
    breaks = [
        Match(b.msgid, b.kind, b.journal, b.ledger, b.related, explain(b, day, states))
        for b in breaks
    ]
    breaks.sort(key=lambda b: (SEVERITY[b.kind], b.created_at, b.msgid))

    counts = {k.value: 0 for k in BreakKind}
    counts[BreakKind.BALANCED.value] = balanced_count
    for b in breaks:
        counts[b.kind.value] += 1

    given = set(journal_terminals) if journal_terminals is not None else set(term_j)
    break_terms: dict[str, int] = {}
    for b in breaks:
        break_terms[b.terminal_id] = break_terms.get(b.terminal_id, 0) + 1
    terminals = tuple(
        TerminalResult(
            terminal_id=tid,
            journal=term_j.get(tid, SideTotals()),
            ledger=term_l.get(tid, SideTotals()),
            breaks=break_terms.get(tid, 0),
            journal_given=tid in given,
        )
        for tid in sorted(set(term_j) | set(term_l) | set(break_terms) | given)
        if tid
    )

    all_notes = list(notes)
    for tr in terminals:
        if not tr.journal_given and tr.ledger.sales_count + tr.ledger.reversals_count:
            all_notes.append(
                Note(
                    "journal_missing",
                    f"中心有收银机 {tr.terminal_id} 的结算，但没有提供这台收银机的流水文件："
                    "它的每一笔都会显示为“中心有、本店无”。请把该机的流水一并对账。",
                    f"the centre has settlements from till {tr.terminal_id} but no journal of "
                    "that till was given: each of its sales shows as ledger only. Reconcile "
                    "with that till's journal too.",
                )
            )
    if reported_ledger_totals is not None:
        all_notes.extend(_check_reported(reported_ledger_totals, lt))

    hourly = tuple(
        HourBucket(h, hours_j[h][0], hours_j[h][1], hours_l[h][0], hours_l[h][1]) for h in range(24)
    )
    return Reconciliation(
        date=day,
        pharmacy_code=pharmacy_code,
        journal=jt,
        ledger=lt,
        terminals=terminals,
        breaks=tuple(breaks),
        balanced_count=balanced_count,
        counts=counts,
        hourly=hourly,
        notes=tuple(all_notes),
        resolved=tuple(resolved),
        balanced_pairs=tuple(walked.balanced),
    )


_MSGID = itemgetter(0)
_AMOUNTS = (itemgetter(4), itemgetter(5), itemgetter(6), itemgetter(7))  # total, 3 funds


class Tally:
    """Running totals of one side's entries booked on ``day``: (terminal, kind) ->
    [count, total, personal, mutual aid, cash], and per hour [sales count, sales amount].

    Entries are added a chunk at a time (``add``, as a reader hands them over): each
    chunk is grouped by (terminal, kind, hour) in one pass, and each group summed by
    ``sum`` in C. Only the sums stay, so the totals of any day take the same memory.
    """

    def __init__(self, day: str) -> None:
        self.day = day
        self.acc: dict[tuple[str, str], list[int]] = {}
        self.hours = [[0, 0] for _ in range(24)]

    def add(self, entries: Iterable[Entry]) -> None:
        day = self.day
        groups: dict[tuple[str, str, str], list[Entry]] = {}
        for e in entries:
            if e[2] == day:  # business_date
                key = (e[9], e[1], e[10][11:13])  # terminal_id, kind, the hour of created_at
                g = groups.get(key)
                if g is None:
                    groups[key] = [e]
                else:
                    g.append(e)
        acc, hours = self.acc, self.hours
        for (terminal, kind, hh), g in groups.items():
            sums = [sum(map(get, g)) for get in _AMOUNTS]
            a = acc.get((terminal, kind))
            if a is None:
                acc[(terminal, kind)] = [len(g), *sums]
            else:
                a[0] += len(g)
                for k in range(4):
                    a[k + 1] += sums[k]
            if kind == "sale":
                h = hours[_hour_digits(hh)]
                h[0] += len(g)
                h[1] += sums[0]


def _totals(acc: dict[tuple[str, str], list[int]]) -> tuple[SideTotals, dict[str, SideTotals]]:
    store = SideTotals()
    terms: dict[str, SideTotals] = {}
    for (tid, kind), (n, total, pa, ma, cash) in acc.items():
        amounts = Amounts(total, pa, ma, cash)
        t = terms.setdefault(tid, SideTotals())
        for st in (store, t):
            if kind == "sale":
                st.sales_count += n
                st.sales.add(amounts)
            else:
                st.reversals_count += n
                st.reversals.add(amounts)
    return store, terms


def _hour_digits(hh: str) -> int:
    """The hour from created_at[11:13]; 0 when that is not an hour."""
    try:
        h = int(hh)
    except ValueError:
        return 0
    return h if 0 <= h < 24 else 0


def _fold_reversals(breaks: list[Match]) -> list[Match]:
    """Fold a one-sided reversal into its sale's status-mismatch break (one fault, one line)."""
    sale_breaks = {
        b.msgid: i
        for i, b in enumerate(breaks)
        if b.kind is BreakKind.STATUS_MISMATCH
        and any(e.kind == "sale" for e in (*b.journal, *b.ledger))
    }
    out: list[Match | None] = list(breaks)
    for i, b in enumerate(breaks):
        if b.kind is not BreakKind.STATUS_MISMATCH:
            continue
        entries = (*b.journal, *b.ledger)
        if not entries or any(e.kind != "reversal" for e in entries):
            continue
        original = entries[0].original_msgid
        j = sale_breaks.get(original or "")
        if j is None:
            continue
        target = out[j]
        assert target is not None
        out[j] = Match(
            target.msgid,
            target.kind,
            target.journal + b.journal,
            target.ledger + b.ledger,
            (*target.related, b.msgid),
        )
        out[i] = None
    return [m for m in out if m is not None]


def _check_reported(reported: Mapping[str, Any], computed: SideTotals) -> list[Note]:
    mine = computed.as_dict()
    problems = []
    for part, key in (("sales", "sales"), ("reversals", "reversals"), ("net", "net")):
        theirs = reported.get(part) or {}
        for fund in ("total", "personal_account", "mutual_aid", "cash"):
            if int(theirs.get(fund, 0)) != mine[key][fund]:
                problems.append(f"{part}.{fund}: {theirs.get(fund)} != {mine[key][fund]}")
    sales = reported.get("sales") or {}
    revs = reported.get("reversals") or {}
    if int(sales.get("count", 0)) != computed.sales_count:
        problems.append(f"sales.count: {sales.get('count')} != {computed.sales_count}")
    if int(revs.get("count", 0)) != computed.reversals_count:
        problems.append(f"reversals.count: {revs.get('count')} != {computed.reversals_count}")
    if not problems:
        return []
    return [
        Note(
            "break_statement_totals",
            "中心对账单的汇总数与其明细行之和不一致（" + "; ".join(problems[:4]) + "）。"
            "以明细为准对账，并向医保中心索取更正后的对账单。",
            "the centre's statement totals do not equal the sum of its rows ("
            + "; ".join(problems[:4])
            + "). Reconciled on the rows; ask the centre for a corrected statement.",
        )
    ]


# --------------------------------------------------------------------------- explanations


def mask_account(account_id: str) -> str:
    """An account id is personal data (it embeds the insurance number): keep 4 + 4."""
    if len(account_id) <= 8:
        return "*" * len(account_id)
    return account_id[:4] + "*" * (len(account_id) - 8) + account_id[-4:]


def _time(e: Entry) -> str:
    return e.created_at[11:19] if len(e.created_at) >= 19 else e.created_at


def _split(e: Entry) -> tuple[str, str]:
    zh = f"个人账户 {yuan(e.personal_account)}，共济 {yuan(e.mutual_aid)}，现金 {yuan(e.cash)}"
    en = (
        f"personal account {yuan(e.personal_account)}, mutual aid {yuan(e.mutual_aid)}, "
        f"cash {yuan(e.cash)}"
    )
    return zh, en


_STATUS_ZH = {
    "settled": "已结算",
    "reversed": "已冲正",
    "unknown": "结果未知（已改收现金，待自动冲正）",
    "settling": "结算中（结果未确认）",
}


def explain(m: Match, day: str, journal_states: Mapping[str, str] | None = None) -> Explanation:
    """Say what the break means and what the manager should do next (Chinese + English)."""
    states = journal_states or {}
    e = (m.ledger or m.journal)[0]
    till = e.terminal_id
    at = _time(e)
    amount = yuan(e.total)
    sid = m.msgid
    k = m.kind
    if k is BreakKind.DUPLICATE:
        if len(m.journal) > 1:
            sources = "、".join(sorted({x.source or x.terminal_id for x in m.journal}))
            return Explanation(
                f"同一流水号 {sid} 在本店流水中出现 {len(m.journal)} 次（{sources}）。"
                "通常是把一台收银机的数据备份恢复到了另一台，或同一流水文件被重复提供。",
                f"msgid {sid} appears {len(m.journal)} times in the till journals ({sources}). "
                "Usually one till's backup was restored on another, or the same journal file "
                "was given twice.",
                "不要退款或重复冲正。核实哪台收银机真正做了这笔交易，只保留那台的流水；"
                "其余收银机的流水请联系技术支持处理。",
                "Do not refund or reverse it again. Find out which till really made this sale "
                "and reconcile with that till's journal only; have support fix the other one.",
            )
        return Explanation(
            f"中心对账单中同一流水号 {sid} 出现 {len(m.ledger)} 次（收银机 {till}，{amount}）。"
            "中心对同一流水号只应记账一次：这是对账单错误或中心重复记账。",
            f"the centre's statement lists msgid {sid} {len(m.ledger)} times (till {till}, "
            f"{amount}). The centre books one msgid once only: the statement is wrong or the "
            "centre booked it twice.",
            "本店无需补收或退款。请联系医保中心，要求核查并出具更正后的对账单；"
            "更正前不要关账，或关账时注明原因。",
            "Nothing to collect or refund at the counter. Ask the insurance centre to check "
            "and issue a corrected statement; do not close the day before, or give the reason "
            "when closing.",
        )
    if k is BreakKind.LEDGER_ONLY:
        state = states.get(sid)
        why_zh, why_en = (
            (
                f"本机把这笔记为“{state}”（以为没有扣款），但中心已经扣款：结算结果在途中丢失了。",
                f"The till recorded it as '{state}' (believing nothing was charged) but the "
                "centre committed it: the outcome was lost on the way back.",
            )
            if state
            else (
                "本店流水中没有这笔：可能结算结果在途中丢失，或这台收银机的流水没有一并提供。",
                "It is not in the till journals: the outcome was lost on the way back, or this "
                "till's journal was not given.",
            )
        )
        zh, en = _split(e)
        return Explanation(
            f"医保中心有一笔结算（流水号 {sid}，收银机 {till}，{at}，{amount}：{zh}），"
            f"本店没有记录。{why_zh}",
            f"the insurance centre has a settlement (msgid {sid}, till {till}, {at}, "
            f"{amount}: {en}) that the till does not know. {why_en}",
            "不要再次收费。按流水号和时间核对小票与收银记录：若顾客已拿走药品，"
            "在收银系统中补记这笔医保收款；若顾客没有拿到药品或已用现金付款，请对这笔结算做冲正。",
            "Do not charge again. Check the receipts and the POS records for this msgid and "
            "time: if the customer took the goods, book this insurance payment in the POS; if "
            "the customer got nothing or paid cash instead, reverse this settlement.",
        )
    if k is BreakKind.JOURNAL_ONLY:
        zh, en = _split(e)
        return Explanation(
            f"本店记录这笔已结算（流水号 {sid}，收银机 {till}，{at}，{amount}：{zh}），"
            "但医保中心没有这笔：顾客的医保账户没有被扣款。",
            f"the till recorded this sale as settled (msgid {sid}, till {till}, {at}, "
            f"{amount}: {en}) but the insurance centre has no such settlement: the customer's "
            "accounts were not charged.",
            "账户应付部分本店没有收到。请联系顾客重新刷卡结算或补交现金；"
            "并运行 `pos-plugin journal verify` 检查流水是否被改动，结果异常请联系技术支持。",
            "The pharmacy did not receive the account part. Ask the customer to settle again "
            "with the card or pay it in cash; and run `pos-plugin journal verify` to check the "
            "journal was not altered; call support if it reports a problem.",
        )
    if k is BreakKind.BUSINESS_DAY_MISMATCH:
        j = m.journal[0]
        led = m.ledger[0]
        return Explanation(
            f"这笔（流水号 {sid}，收银机 {till}，{amount}）本店记在 {j.business_date}，"
            f"中心记在 {led.business_date}。通常发生在零点前后，或收银机时钟不准。钱没有少。",
            f"this {'reversal' if e.kind == 'reversal' else 'sale'} (msgid {sid}, till {till}, "
            f"{amount}) is booked on {j.business_date} by the till and on {led.business_date} by "
            "the centre. It happens around midnight or when the till's clock is wrong. No money "
            "is missing.",
            "无需收退款。关账时在两天的记录中注明这笔；若不是零点前后发生的，请校准收银机时钟。",
            "Nothing to collect or refund. Note it when closing both days; if it did not happen "
            "around midnight, set the till's clock right.",
        )
    if k is BreakKind.STATUS_MISMATCH:
        return _explain_status(m)
    j = m.journal[0]
    led = m.ledger[0]
    jz, je = _split(j)
    lz, le = _split(led)
    if k is BreakKind.AMOUNT_MISMATCH:
        diff = yuan(led.total - j.total)
        return Explanation(
            f"同一笔（流水号 {sid}，收银机 {till}，{at}）金额不一致：本店 {yuan(j.total)}，"
            f"中心 {yuan(led.total)}，相差 {diff}（中心减本店）。",
            f"the same sale (msgid {sid}, till {till}, {at}) has different amounts: till "
            f"{yuan(j.total)}, centre {yuan(led.total)}, difference {diff} (centre minus till).",
            "以医保中心记账为准核对小票。本店多记则更正收银记录；中心多扣则对这笔冲正后按正确金额重新结算。"
            "同一流水号金额不同不应发生，请同时报告技术支持。",
            "Check the receipt against the centre's amount. If the till has too much, correct "
            "the POS record; if the centre charged too much, reverse it and settle again with "
            "the right amount. One msgid with two amounts should never happen: report it to "
            "support too.",
        )
    # split mismatch
    return Explanation(
        f"同一笔（流水号 {sid}，收银机 {till}，{at}）合计相同（{amount}），但支付构成不同："
        f"本店 {jz}；中心 {lz}。",
        f"the same sale (msgid {sid}, till {till}, {at}) has the same total ({amount}) but a "
        f"different split: till {je}; centre {le}.",
        f"以中心为准：钱箱中的现金应相差 {yuan(led.cash - j.cash)}（中心减本店）。"
        "核对小票上的个人账户、共济和现金金额，更正收银记录；共济账户不同请联系技术支持。",
        f"The centre is right: the cash drawer should differ by {yuan(led.cash - j.cash)} "
        "(centre minus till). Check the receipt's personal-account, mutual-aid and cash "
        "amounts and correct the POS record; if a different family account paid, call support.",
    )


def _explain_status(m: Match) -> Explanation:
    sid = m.msgid
    sale_j = next((e for e in m.journal if e.kind == "sale"), None)
    sale_l = next((e for e in m.ledger if e.kind == "sale"), None)
    rev_j = next((e for e in m.journal if e.kind == "reversal"), None)
    rev_l = next((e for e in m.ledger if e.kind == "reversal"), None)
    any_e = (m.ledger or m.journal)[0]
    till = any_e.terminal_id
    amount = yuan(abs((sale_l or sale_j or any_e).total))
    j_status = sale_j.status if sale_j else ("reversed" if rev_j else None)
    l_status = sale_l.status if sale_l else ("reversed" if rev_l else None)
    if j_status == "unknown":
        return Explanation(
            f"收银机 {till} 没有收到这笔（流水号 {sid}，{amount}）的结算结果，已改收现金；"
            "但中心实际已从医保账户扣款。系统应自动冲正退回，目前还没有完成。",
            f"till {till} got no answer for this sale (msgid {sid}, {amount}) and took cash "
            "instead, but the centre did charge the accounts. The agent owes an automatic "
            "reversal that has not landed yet.",
            "不要向顾客再收费。确认收银机网络正常后等待自动冲正（健康页 reversals_owed 为 0 即完成）；"
            "如显示已上报（escalated），请在管理端手工冲正这笔。",
            "Do not charge the customer again. Make sure the till is online and wait for the "
            "automatic reversal (done when reversals_owed in /v1/health is 0); if it is "
            "escalated, reverse this sale by hand from the manager functions.",
        )
    if j_status == "settling":
        return Explanation(
            f"这笔（流水号 {sid}，收银机 {till}，{amount}）在本店仍是“结算中”，无法向中心确认结果。",
            f"this sale (msgid {sid}, till {till}, {amount}) is still 'settling' on the till: "
            "its outcome could not be confirmed with the centre.",
            "检查与医保中心的网络连接，稍后重新对账；不要手工改动这笔。",
            "Check the connection to the insurance centre and reconcile again later; do not "
            "change this sale by hand.",
        )
    if l_status == "reversed" and j_status != "reversed":
        started = sale_j.reversal_started if sale_j else None
        why_zh = (
            "收银机发起了冲正但没有收到结果。"
            if started
            else "冲正可能是在中心或另一台设备上做的。"
        )
        why_en = (
            "The till started the reversal but never got its answer."
            if started
            else "The reversal may have been made at the centre or from another device."
        )
        return Explanation(
            f"中心已冲正这笔（流水号 {sid}，收银机 {till}，{amount}，钱已退回医保账户），"
            f"本店仍记为已结算。{why_zh}",
            f"the centre has reversed this sale (msgid {sid}, till {till}, {amount}; the money "
            f"went back to the accounts) but the till still shows it as settled. {why_en}",
            "在管理端对这笔再做一次冲正即可补记（系统会使用同一冲正流水号，不会重复退款）；"
            "并确认药品已退回或顾客已另行付款。",
            "Reverse this sale again from the manager functions to record it (the same reversal "
            "msgid is reused, so nothing is refunded twice); and check the goods came back or "
            "the customer paid another way.",
        )
    if j_status == "reversed" and l_status != "reversed":
        return Explanation(
            f"本店记录这笔已冲正（流水号 {sid}，收银机 {till}，{amount}），"
            "但中心仍为已结算：钱没有退回顾客的医保账户。",
            f"the till recorded this sale as reversed (msgid {sid}, till {till}, {amount}) "
            "but the centre still has it settled: the money did not go back to the customer's "
            "accounts.",
            "在管理端重新发起这笔的冲正；若被拒绝，请联系医保中心。冲正完成前不要关账，或关账时注明原因。",
            "Start the reversal of this sale again from the manager functions; if it is "
            "refused, call the insurance centre. Do not close the day until it lands, or give "
            "the reason when closing.",
        )
    return Explanation(
        f"这笔（流水号 {sid}，收银机 {till}）两边记录的状态不同："
        f"本店 {_STATUS_ZH.get(j_status or '', j_status or '无')}，中心 "
        f"{_STATUS_ZH.get(l_status or '', l_status or '无')}。",
        f"this entry (msgid {sid}, till {till}) has a different status on each side: till "
        f"{j_status or 'none'}, centre {l_status or 'none'}.",
        "以中心记录为准核对收银记录，并联系技术支持。",
        "Check the POS records against the centre's and call support.",
    )
