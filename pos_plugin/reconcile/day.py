"""Daily reconciliation, the imperative shell: read both sides, resolve, match.

- Journals are read per source (``pos_plugin.journal.sources``: a till's SQLite file, or a
  shared PostgreSQL journal narrowed to the store's tills); the same store's tills
  are reconciled together and per till.
- A journal row still ``settling`` is resolved by msgid before matching, exactly
  as the agent does on start-up (``SaleService.resolve_unsettled``: the row
  becomes ``settled`` or ``failed`` in the journal). A row in ``unknown`` (the
  till took cash and owes a reversal) is resolved in memory by asking the ledger
  for its msgid; the agent's own reversal loop records the outcome.
- A msgid found on only one side of the day is looked up beyond the day (in the
  journals by msgid, at the ledger with ``get_settlement``/``get_reversal``), so a
  sale booked on another date shows as a business-day mismatch, not as missing.
- Closing a day is ``pos_plugin.reconcile.close``; the CSV is ``csv_report``.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from pos_plugin.gcpause import gc_paused
from pos_plugin.journal.journal import Journal
from pos_plugin.journal.postgres import PgDb
from pos_plugin.journal.sources import (
    JournalSource,
    of_pharmacy,
    open_source,
    pharmacy_codes,
    read_chunks,
    rows_of_msgids,
    shared_of,
)
from pos_plugin.ledger.own.schemas import (
    CompactLegKind,
    CompactRow,
    CompactStatement,
    Statement,
    StatementTotals,
    compact_row,
    msgid_stamp,
)
from pos_plugin.reconcile.errors import ReconcileError
from pos_plugin.reconcile.matching import (
    Entry,
    Legs,
    Note,
    Reconciliation,
    Tally,
    conclude,
    norm_legs,
    walk,
)
from pos_plugin.reconcile.msgid_order import MEMORY_BYTES, MsgidOrder
from pos_plugin.sale.service import SaleService, SaleSettings

SHANGHAI = ZoneInfo("Asia/Shanghai")
RESOLVE_MIN_AGE = 120.0  # s: well past a till's settle (3 attempts x 10 s read timeout + backoff)

# A journal row as reconciliation reads it. The legs are the ``legs`` column (schema
# version 9, journal/legs.py: [kind, account_id, amount] triples, sorted; a small part
# of the plan's bytes); the whole plan only where an amount column is empty and the
# plan must fill it in.
_AMOUNT_MISSING = (
    "s.total IS NULL OR s.personal_account IS NULL OR s.mutual_aid IS NULL OR s.cash IS NULL"
)
_JOURNAL_COLS = (
    "s.sale_ref, s.state, s.msgid, s.business_date, s.created_at, s.terminal_id, "
    f"s.total, s.personal_account, s.mutual_aid, s.cash, CASE WHEN {_AMOUNT_MISSING} THEN "
    "s.plan END, s.legs, s.reversal_msgid, p.reversal_msgid, s.patient_id_masked"
)
_FROM = "FROM sales s LEFT JOIN pending_reversals p ON p.msgid = s.msgid"
_CLAIMS = frozenset({"settled", "reversed", "unknown", "settling"})

# --------------------------------------------------------------------------- journal side


def _stamp(msgid: str) -> tuple[str, str]:
    """(business date, ISO time) from a msgid's yyyyMMddHHmmss (the till's clock); ("", "")
    when those are not 14 ASCII digits of an instant. ``msgid_stamp`` reads them in C
    (strptime took 11 us, once a reversal of the day)."""
    try:
        t = msgid_stamp(msgid[12:26]).replace(tzinfo=SHANGHAI)
    except ValueError:
        return "", ""
    return t.date().isoformat(), t.isoformat()


def _row_entries(r: sqlite3.Row | tuple[Any, ...], source: str) -> list[Entry]:
    """A journal row's claims: its sale and, once reversed, its reversal."""
    (
        sale_ref,
        state,
        msgid,
        bdate,
        created,
        terminal,
        total,
        pa,
        ma,
        cash,
        plan_text,
        legs_text,
        rev_msgid,
        pending_rev,
        patient,
    ) = r
    if msgid is None or state not in _CLAIMS:
        return []
    legs = _row_legs(legs_text, sale_ref, msgid, source)
    if pa is None:
        pa = sum(a for k, _, a in legs if k == "personal_account")
    if ma is None:
        ma = sum(a for k, _, a in legs if k == "mutual_aid")
    try:
        plan = _loads(plan_text) if plan_text else {}
        if cash is None:
            cash = int(plan.get("cash", 0))
        if total is None:
            total = int(plan.get("total", pa + ma + cash))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ReconcileError(
            f"journal {source}: the plan of sale {sale_ref} (msgid {msgid}) cannot be read "
            f"({exc}); run `pos-plugin journal verify` on that file and call support"
        ) from None
    started = rev_msgid if state == "settled" and rev_msgid else None
    sale = Entry(msgid, "sale", bdate, state, total, pa, ma, cash, legs, terminal, created,
                 None, sale_ref, source, patient, started)  # fmt: skip
    reversal = rev_msgid or pending_rev
    if state == "reversed" and reversal:
        rdate, rtime = _stamp(reversal)
        return [sale, Entry(reversal, "reversal", rdate, None, -total, -pa, -ma, -cash, legs,
                            terminal, rtime, msgid, sale_ref, source, patient)]  # fmt: skip
    return [sale]


_loads = json.loads

# The ``legs`` column's JSON, strictly: a leg kind (``CompactLegKind``, one shared string
# each), a text account_id, an integer amount (msgspec's integers are strict: no bool, no
# float, no numeric string). Decoded by msgspec as the statement's pages are
# (schemas.CompactStatementPage says why).
_LEG_TRIPLES = tuple[tuple[CompactLegKind, str, int], ...]
_ROW_LEGS = msgspec.json.Decoder(_LEG_TRIPLES | None)
_LEGS_LIST = msgspec.json.Decoder(list[_LEG_TRIPLES | None])


def _row_legs(text: str | None, sale_ref: str, msgid: str, source: str) -> Legs:
    """One row's ``legs`` column as (kind, account_id, amount) tuples; ReconcileError
    naming the sale when it does not read that way (edited by hand?)."""
    try:
        return (_ROW_LEGS.decode(text) if text else None) or ()
    except msgspec.DecodeError as exc:
        raise ReconcileError(
            f"journal {source}: the legs of sale {sale_ref} (msgid {msgid}) cannot be read "
            f"({exc}); run `pos-plugin journal verify` on that file and call support"
        ) from None


def _decode_legs(rows: Sequence[Sequence[Any]], source: str) -> list[Legs]:
    """The legs of ``_common_sql`` rows, in one pass of msgspec over one document of
    every row's ``legs`` column (stored sorted: nothing to sort). Legs that do not read
    that way go row by row, so that the bad row is named."""
    doc = "[" + ",".join([r[7] or "null" for r in rows]) + "]"
    try:
        decoded = _LEGS_LIST.decode(doc)
    except msgspec.DecodeError:
        decoded = []
    if len(decoded) != len(rows):  # unreadable, or not one value a row: row by row
        return [_row_legs(r[7], r[8], r[0], source) for r in rows]
    return [legs or () for legs in decoded]


# The common row: settled on the day, no reversal started, every amount column set.
# It has its own query (no join, ten columns, on the day index) and is built without
# the general path's questions; every other row of the day comes from the general one.
# (SQLite: ``+s.reversal_msgid`` keeps it off that column's index, which would visit
# every NULL.)
def _common(pg: bool) -> str:
    return (
        f"s.business_date = ? AND s.state = 'settled' AND {'' if pg else '+'}s.reversal_msgid "
        "IS NULL AND s.msgid IS NOT NULL AND s.total IS NOT NULL AND s.personal_account IS "
        "NOT NULL AND s.mutual_aid IS NOT NULL AND s.cash IS NOT NULL"
    )


def _common_sql(pg: bool) -> str:
    return (
        "SELECT s.msgid, s.created_at, s.terminal_id, s.total, s.personal_account, "
        f"s.mutual_aid, s.cash, s.legs, s.sale_ref, s.patient_id_masked FROM sales s "
        f"WHERE {_common(pg)}"
    )


def _bad_json(exc: Exception) -> bool:
    """The database refused a JSON document that is not JSON (SQLite: 'malformed JSON';
    PostgreSQL: 'invalid input syntax for type json'): national.py's setlinfo cells."""
    return "json" in str(exc).lower()


_OF_DAY = (
    "(s.business_date = ? OR substr(s.reversal_msgid, 13, 8) = ? "
    "OR substr(p.reversal_msgid, 13, 8) = ?)"
)


@dataclass
class JournalSide:
    entries: list[Entry] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # msgid -> state, rows claiming no money
    terminals: set[str] = field(default_factory=set)
    unknown: list[tuple[str, Any]] = field(default_factory=list)  # (source, row) to resolve


# Rows are read and turned into entries this many at a time, so a reader holds one
# chunk of raw rows whatever the day's size.
_CHUNK = 10_000


def read_journal(
    path: JournalSource,
    day: dt.date,
    side: JournalSide | None = None,
    into: Callable[[list[Entry]], None] | None = None,
) -> JournalSide:
    """One till's journal for a business day: sales of the day and reversals made on it.

    The entries go to ``side.entries``, or chunk by chunk to ``into`` (a ``MsgidOrder``'s
    ``extend``: ``reconcile_day`` keeps none of them here)."""
    side = side or JournalSide()
    with gc_paused():
        return _read_journal(path, day, side, into or side.entries.extend)


def _read_journal(
    path: JournalSource, day: dt.date, side: JournalSide, into: Callable[[list[Entry]], None]
) -> JournalSide:
    iso_day, ymd = day.isoformat(), day.strftime("%Y%m%d")
    db, source = open_source(path)
    pg = isinstance(db, PgDb)
    # The common rows and the rest are two queries: one snapshot for both, or a sale
    # the till moves from settling to settled in between would be in neither (and a
    # settled one reversed in between, in both). The agent may be selling meanwhile.
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ" if pg else "BEGIN"
    try:
        db.execute(begin)
        for chunk in read_chunks(db, _common_sql(pg), (iso_day,), _CHUNK):
            side.terminals.update({r[2] for r in chunk})
            into(_common_entries(chunk, iso_day, source))
        rest_sql = f"SELECT {_JOURNAL_COLS} {_FROM} WHERE {_OF_DAY} AND NOT ({_common(pg)})"
        for chunk in read_chunks(db, rest_sql, (iso_day, ymd, ymd, iso_day), _CHUNK):
            side.terminals.update({r[5] for r in chunk})
            into(_rest_entries(chunk, iso_day, source, side))
        # The tills this journal speaks for: those of the day's rows, and those of the
        # file's latest row (a till with no sale today is still "given") or of every row
        # the shared journal shows this reader.
        tills = (
            "SELECT DISTINCT terminal_id FROM sales"
            if pg
            else "SELECT terminal_id FROM sales ORDER BY rowid DESC LIMIT 1"
        )
        side.terminals.update(t for (t,) in db.execute(tills).fetchall())
        db.execute("COMMIT")
    finally:
        db.close()
    return side


def _common_entries(rows: list[Any], iso_day: str, source: str) -> list[Entry]:
    """Entries of ``_common_sql`` rows: settled sales of the day, every amount set."""
    return [
        Entry(msgid, "sale", iso_day, "settled", total, pa, ma, cash, legs, term, at, None,
              ref, source, who)
        for (msgid, at, term, total, pa, ma, cash, _, ref, who), legs in zip(
            rows, _decode_legs(rows, source), strict=True
        )
    ]


def _rest_entries(rows: list[Any], iso_day: str, source: str, side: JournalSide) -> list[Entry]:
    """Entries of the general query's rows; ``unknown`` rows and rows that claim no money
    are kept on ``side`` instead (to resolve, and to explain a ledger-only break)."""
    out: list[Entry] = []
    for r in rows:
        state, msgid = r[1], r[2]
        if msgid is None:
            continue
        if state == "unknown":
            side.unknown.append((source, r))
            continue
        if state not in _CLAIMS:
            side.states[msgid] = state
            continue
        for e in _row_entries(r, source):
            # Only what the till booked on this day: of a sale reversed on another day,
            # its sale, or its reversal (that day's, as on the ledger's statements).
            if e.business_date == iso_day:
                out.append(e)
    return out


def journal_lookup(
    paths: Sequence[JournalSource], msgids: Iterable[str]
) -> tuple[list[Entry], dict[str, str]]:
    """Entries for these msgids (sales or reversals) on any date, from every journal."""
    wanted = set(msgids)
    found: list[Entry] = []
    states: dict[str, str] = {}
    sql = (
        f"SELECT {_JOURNAL_COLS} {_FROM} WHERE s.msgid IN ({{marks}}) "
        "OR s.reversal_msgid IN ({marks}) OR p.reversal_msgid IN ({marks})"
    )
    for _, source, r in rows_of_msgids(paths, sql, wanted, lists=3):
        if r[1] not in _CLAIMS:
            states[r[2]] = r[1]
            continue
        found.extend(e for e in _row_entries(r, source) if e.msgid in wanted)
    return found, states


def resolve_settling(paths: Sequence[JournalSource], ledger: Any, pharmacy_code: str) -> list[str]:
    """Resolve every ``settling`` row by msgid, as the agent does on start-up; returns msgids.

    A shared journal is resolved till by till (a ``Journal`` per till with such
    rows), so each outcome is chained into that till's own chain.
    """
    resolved: list[str] = []
    for path in (of_pharmacy(p, pharmacy_code) for p in paths):
        shared = shared_of(path)
        db, _ = open_source(path)
        try:
            if shared is not None:
                rows = db.execute(
                    "SELECT pharmacy_code, terminal_id, msgid FROM sales "
                    "WHERE state = 'settling' AND msgid IS NOT NULL ORDER BY 1, 2"
                ).fetchall()
            else:
                rows = [
                    (pharmacy_code, "reconcile", m)
                    for (m,) in db.execute(
                        "SELECT msgid FROM sales WHERE state = 'settling' AND msgid IS NOT NULL"
                    )
                ]
        finally:
            db.close()
        tills: dict[tuple[str, str], list[str]] = {}
        for code, terminal, m in rows:
            tills.setdefault((code, terminal), []).append(m)
        for (code, terminal), pending in tills.items():
            journal = Journal(
                shared.url if shared is not None else str(path),
                hmac_key=b"reconcile",
                pharmacy_code=code,
                terminal_id=terminal,
                password=shared.password if shared is not None else None,
            )
            try:
                resolved += _resolve_rows(journal, ledger, code, pending)
            finally:
                journal.close()
    return resolved


def _resolve_rows(journal: Journal, ledger: Any, code: str, pending: list[str]) -> list[str]:
    service = SaleService(SaleSettings(code, "reconcile"), journal, ledger, None)  # type: ignore[arg-type]
    # A till may be sending one of these right now: leave rows younger than the
    # till's longest settlement attempt to the till itself.
    service.resolve_unsettled(min_age=RESOLVE_MIN_AGE)
    resolved = []
    for m in pending:
        row = journal.by_msgid(m)
        if row is not None and row.state != "settling":
            resolved.append(m)
    return resolved


def _resolve_unknown(side: JournalSide, ledger: Any, day: dt.date) -> list[str]:
    """``unknown`` rows: the truth is at the ledger. Nothing there: nothing was charged."""
    resolved: list[str] = []
    for source, r in side.unknown:
        msgid = r[2]
        try:
            found = ledger.get_settlement(msgid)
        except Exception:  # ledger unreachable for this one: keep it as unknown
            found = "?"
        entries = _row_entries(r, source)
        sale = entries[0]
        if found is None:
            resolved.append(msgid)
            side.states[msgid] = "unknown (not charged)"
            continue
        if found != "?" and getattr(found, "status", "") == "reversed":
            rev = getattr(found, "reversal", None)
            rev_msgid = r[13] or r[12] or (rev.msgid if rev else None)  # pending, row's own
            sale = _replace(sale, status="reversed")
            if sale.business_date == day.isoformat():
                side.entries.append(sale)
            if rev_msgid:
                rdate, rtime = _stamp(rev_msgid)
                if rdate == day.isoformat():
                    side.entries.append(_reversal_of(sale, rev_msgid, rdate, rtime))
            resolved.append(msgid)
            continue
        if sale.business_date == day.isoformat():
            side.entries.append(sale)
    return resolved


def _replace(e: Entry, **kw: Any) -> Entry:
    return e._replace(**kw)


def _reversal_of(sale: Entry, msgid: str, bdate: str, at: str) -> Entry:
    return Entry(
        msgid=msgid,
        kind="reversal",
        status=None,
        terminal_id=sale.terminal_id,
        business_date=bdate,
        created_at=at,
        total=-sale.total,
        personal_account=-sale.personal_account,
        mutual_aid=-sale.mutual_aid,
        cash=-sale.cash,
        legs=sale.legs,
        original_msgid=sale.msgid,
        ref=sale.ref,
        source=sale.source,
        patient=sale.patient,
    )


# --------------------------------------------------------------------------- ledger side


_EIGHT_HOURS = dt.timedelta(hours=8)


def _iso(t: dt.datetime) -> str:
    # Asia/Shanghai has been UTC+8 all year since 1992: a time already at +08:00 reads the same.
    if t.year >= 1992 and t.utcoffset() == _EIGHT_HOURS:
        return t.isoformat()
    return t.astimezone(SHANGHAI).isoformat()


_OFFSET = "+08:00"


def _iso_text(at: str) -> str:
    """A statement time as Asia/Shanghai ISO 8601. The ledger sends +08:00 (kept as is,
    the common case); another offset is converted, and a time without one is taken as
    Shanghai time. Not a time at all: ``ReconcileError`` (the statement is unreadable)."""
    if at.endswith(_OFFSET) and len(at) >= 25 and at[10] == "T":
        return at
    try:
        t = dt.datetime.fromisoformat(at)
    except ValueError:
        raise ReconcileError(f"the ledger's statement has a time we cannot read: {at!r}") from None
    return _iso(t if t.tzinfo else t.replace(tzinfo=SHANGHAI))


def statement_entries(statement: Statement | CompactStatement) -> list[Entry]:
    """The statement's rows as entries (the ledger side of the day)."""
    rows: Sequence[Any]
    if isinstance(statement, Statement):
        rows = [compact_row(r) for r in statement.rows]
    else:
        rows = statement.rows
    return rows_entries(rows, statement.date.isoformat())


def rows_entries(rows: Iterable[CompactRow], day: str) -> list[Entry]:
    """Compact statement rows (``COMPACT_COLUMNS`` order) of ``day`` as entries.

    ``Entry._make`` takes the entry's values as one tuple: ``Entry(...)`` binds sixteen
    arguments in the NamedTuple's Python-level ``__new__``, a third of this function's time."""
    out: list[Entry] = []
    add, make = out.append, Entry._make
    with gc_paused():
        for msgid, ref, term, kind, status, orig, at, total, pa, ma, cash, legs in rows:
            if len(legs) > 1:
                legs = tuple(sorted(legs))
            if not at.endswith(_OFFSET):
                at = _iso_text(at)
            add(make((msgid, kind, day, status, total, pa, ma, cash, legs, term, at, orig, ref,
                      "statement", None, None)))  # fmt: skip
    return out


def _looked_up(ledger: Any, e: Entry) -> Entry | None:
    """The ledger's own record of a msgid, as an Entry in the statement's convention.

    ``get_settlement``/``get_reversal`` answer a reversal with positive amounts; the
    statement (and the journal side) carry reversals negative, so the sign is set here,
    once, for both kinds.
    """
    if e.kind == "sale":
        found = ledger.get_settlement(e.msgid)
        sign, extra = 1, {}
        if found is not None:
            extra = {"status": found.status, "ref": found.settlement_id}
    else:
        found = ledger.get_reversal(e.msgid)
        sign = -1
        if found is not None:
            extra = {"status": None, "original_msgid": found.original_msgid,
                     "ref": found.reversal_id}  # fmt: skip
    if found is None:
        return None
    return Entry(
        msgid=found.msgid,
        kind=e.kind,
        terminal_id=found.terminal_id,
        business_date=found.business_date.isoformat(),
        created_at=_iso(found.created_at),
        total=sign * found.total,
        personal_account=sign * found.personal_account,
        mutual_aid=sign * found.mutual_aid,
        cash=sign * found.cash,
        legs=norm_legs(found.legs),
        source="lookup",
        **extra,
    )


def ledger_lookup(
    ledger: Any, entries: Iterable[Entry], day: str
) -> tuple[list[Entry], list[Entry]]:
    """Look one-sided journal msgids up at the ledger: (entries of other days, entries of
    this day that the statement left out)."""
    found: list[Entry] = []
    missing: list[Entry] = []
    for e in entries:
        try:
            got = _looked_up(ledger, e)
            if got is None:
                continue
        except Exception:  # a lookup is a refinement; the break stands without it
            continue
        if got.business_date == day:
            missing.append(got)
        else:
            found.append(got)
    return found, missing


# --------------------------------------------------------------------------- the day


def reconcile_day(
    day: dt.date,
    journal_paths: Sequence[JournalSource],
    ledger: Any,
    pharmacy_code: str | None = None,
    *,
    resolve: bool = True,
    statement: Statement | CompactStatement | None = None,
    keep_balanced: bool = True,
    memory_rows: int | None = None,
) -> Reconciliation:
    """Reconcile one business day of a store (every given till) against the ledger.

    ``ledger`` is a ``LedgerClient`` (``statement``, ``get_settlement``,
    ``get_reversal``). ``statement`` may be given to reconcile against one already read.
    ``resolve=False`` leaves ``settling`` rows as they are (nothing written).

    Both sides are put in msgid order (``MsgidOrder``: up to ``MEMORY_BYTES`` of
    entries a side in memory, sorted runs on disk past that; ``memory_rows`` entries
    instead, for tests) and walked side by side once. ``keep_balanced=False`` drops
    each balanced pair once counted (``Reconciliation.balanced_pairs`` is then empty;
    totals, breaks and digest are the same), and the memory needed does not grow with
    the day. With the pairs kept (the default: the per-msgid details of the CSV and
    ``as_dict(details=True)``) the day is held anyway, so by default nothing is
    spilled.
    """
    limit_bytes = sys.maxsize if keep_balanced and memory_rows is None else MEMORY_BYTES
    with gc_paused():
        return _reconcile_day(
            day, journal_paths, ledger, pharmacy_code, resolve, statement, keep_balanced,
            memory_rows or sys.maxsize, limit_bytes,
        )  # fmt: skip


def _read_statement(
    ledger: Any, code: str, day: dt.date, into: Callable[[list[Entry]], None]
) -> dict[str, Any]:
    """The day's statement into ``into`` as entries, a page at a time when the client can
    (``statement_compact_pages``); else whole (``statement_compact``, or ``statement``
    for a ``LedgerClient`` without it). Returns the statement's own totals."""
    iso = day.isoformat()
    pages = getattr(ledger, "statement_compact_pages", None)
    if pages is not None:
        totals: StatementTotals = pages(code, day, lambda rows: into(rows_entries(rows, iso)))
        return totals.model_dump()
    read = getattr(ledger, "statement_compact", None)
    whole: Statement | CompactStatement = (
        read(code, day) if read is not None else ledger.statement(code, day)
    )
    return _statement_into(whole, into)


def _statement_into(
    statement: Statement | CompactStatement, into: Callable[[list[Entry]], None]
) -> dict[str, Any]:
    into(statement_entries(statement))
    return statement.totals.model_dump()


def _counted_into(order: MsgidOrder, tally: Tally) -> Callable[[list[Entry]], None]:
    """Where a reader hands each chunk of one side: summed into the side's totals, then
    put in msgid order for the walk."""

    def add(chunk: list[Entry]) -> None:
        tally.add(chunk)
        order.extend(chunk)

    return add


# How far before the start of a reconciliation a booking may be and still be taken for
# one made while reading (the centre's clock and ours disagree by a few seconds).
_STATEMENT_SLACK = dt.timedelta(seconds=5)


def _reconcile_day(
    day: dt.date,
    journal_paths: Sequence[JournalSource],
    ledger: Any,
    pharmacy_code: str | None,
    resolve: bool,
    statement: Statement | CompactStatement | None,
    keep_balanced: bool,
    memory_rows: int,
    limit_bytes: int,
) -> Reconciliation:
    if not journal_paths:
        raise ReconcileError("give at least one journal file")
    started = dt.datetime.now(SHANGHAI)
    codes: set[str] = set()
    for p in journal_paths if pharmacy_code is None else ():
        db, _ = open_source(p)
        try:
            codes |= pharmacy_codes(db)
        finally:
            db.close()
    code = pharmacy_code or (codes.pop() if len(codes) == 1 else None)
    if code is None:
        raise ReconcileError(
            "cannot tell the pharmacy code from the journals: give --pharmacy CODE or --config"
        )
    journal_paths = [of_pharmacy(p, code) for p in journal_paths]
    resolved: list[str] = []
    if resolve:
        resolved += resolve_settling(journal_paths, ledger, code)
    iso = day.isoformat()
    j_tally, l_tally = Tally(iso), Tally(iso)
    with (
        MsgidOrder(memory_rows, limit_bytes=limit_bytes) as j_side,
        MsgidOrder(memory_rows, limit_bytes=limit_bytes) as l_side,
    ):
        j_into, l_into = _counted_into(j_side, j_tally), _counted_into(l_side, l_tally)
        # The statement is read while the journals are: the ledger builds its pages (and
        # the network carries them) while this thread reads the journals.
        with ThreadPoolExecutor(1, thread_name_prefix="statement") as pool:
            if statement is None:
                pending = pool.submit(_read_statement, ledger, code, day, l_into)
            else:
                pending = pool.submit(_statement_into, statement, l_into)
            side = JournalSide()
            for p in journal_paths:
                read_journal(p, day, side, into=j_into)
            reported = pending.result()
        if resolve:
            resolved += _resolve_unknown(side, ledger, day)
        else:
            for source, r in side.unknown:
                side.entries.extend(e for e in _row_entries(r, source) if e.business_date == iso)
        j_into(side.entries)
        side.entries = []
        walked = walk(iso, j_side, l_side, j_tally, l_tally, keep_balanced=keep_balanced)

    # One-sided msgids: look beyond the day on the other side.
    ledger_only = [m for m, (js, _) in walked.open.items() if not js]
    extra_j, states = journal_lookup(journal_paths, ledger_only)
    side.states.update(states)
    # Same day on the other side a moment later: the till was selling while the two
    # sides were read (a statement older than the journal, or the other way round).
    moving = [e.msgid for e in extra_j if e.business_date == iso]
    walked.add_found("journal", (e for e in extra_j if e.business_date != iso))
    only_j = [e for js, ls in walked.open.values() if not ls for e in js]
    extra_l, unlisted = ledger_lookup(ledger, only_j, iso)
    walked.add_found("ledger", extra_l)
    # booked at the centre after the statement was asked for: timing, not an omission
    since = (started - _STATEMENT_SLACK).isoformat()[:19]
    moving += [e.msgid for e in unlisted if e.created_at[:19] >= since]
    missing = [e.msgid for e in unlisted if e.created_at[:19] < since]
    notes: list[Note] = []
    if moving:
        shown = ", ".join(moving[:5]) + (" ..." if len(moving) > 5 else "")
        notes.append(
            Note(
                "settled_while_reconciling",
                f"这些流水在对账读取期间正在结算，所以只出现在一边：{shown}。"
                "这是时间差，不是丢失：收银结束后重新对账。",
                f"these msgids were being settled while the day was read, so they show on one "
                f"side only: {shown}. A timing effect, not a loss: reconcile again once the "
                "tills are idle.",
            )
        )
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        notes.append(
            Note(
                "break_statement_missing",
                f"医保中心查得到这些流水，但当天对账单没有列出：{shown}。请向医保中心索取完整的对账单。",
                f"the centre knows these msgids for this day but its statement does not list "
                f"them: {shown}. Ask the centre for a complete statement.",
            )
        )
    return conclude(
        walked,
        pharmacy_code=code,
        journal_terminals=side.terminals,
        journal_states=side.states,
        reported_ledger_totals=reported,
        resolved=resolved,
        notes=notes,
    )
