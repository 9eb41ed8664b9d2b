"""Daily reconciliation against the national platform: 3201 totals and the 3202 file.

The national platform has no statement to download: the pharmacy sends its side and
the platform says where it differs (NHSA.md §2). So the day runs the other way round
from the own API's, and ends in the same ``Reconciliation`` (same break kinds, CSV,
manager page, close-day):

1. the journals are read exactly as for the own API (``reconcile.day``: ``settling``
   rows resolved first, by 2601 on this backend), plus each row's journaled 2102
   ``setlinfo`` (``ledger_detail``): setl_id, mdtrt_id, psn_no, amounts in fen,
   insutype, clr_type;
2. **3201** once per (insutype, clr_type, clearing institution) with the journal's
   count and sums; ``stmt_rslt`` 1 becomes a ``break_3201`` day note;
3. **3202**: the day's detail file (``ledger.nhsa.daybook``), zipped, uploaded by 9101,
   3202 called with its ``file_qury_no`` (``clr_type`` empty: every clearing type in
   one file, so a centre-only settlement of a type the journal never saw is still
   reported), the result fetched by 9102 and read;
4. the result becomes the centre's side, keyed by msgid as on the own API: 0 -> the
   journal's entry (balanced); 3 -> the journal's entry with the centre's amounts (the
   file carries no mutual-aid split, so a difference in ``acct_pay`` is put on the
   personal account; equal amounts with a different reversal flag are a status
   difference); 1 -> a centre-only entry under the row's msgid; 2 -> nothing
   (journal only). A till ``unknown`` row (cash taken, a 2601 owed) counts only when the
   centre reports its msgid (a reversal owed); otherwise nothing was charged.

A centre-only sale (1 中心多) whose msgid the till never saw settled, or owes a reversal
for, is offered to the manager as one action (``Match.action = "reverse_2601"``):
``reverse_centre_only`` sends 2601 for it, journaled first in ``centre_reversals`` and
idempotent (a second call, or a repeated 2601, does nothing more).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from pos_plugin.gcpause import gc_paused
from pos_plugin.journal.journal import Journal
from pos_plugin.journal.postgres import PgDb
from pos_plugin.journal.sources import (
    JournalSource,
    of_pharmacy,
    open_source,
    rows_of_msgids,
    shared_of,
)
from pos_plugin.ledger.nhsa import daybook
from pos_plugin.ledger.nhsa.amounts import yuan_of
from pos_plugin.ledger.nhsa.daybook import DetailRow, ResultRow
from pos_plugin.reconcile.day import (
    _FROM,
    _OF_DAY,
    JournalSide,
    _bad_json,
    _row_entries,
    read_journal,
    resolve_settling,
)
from pos_plugin.reconcile.errors import ReconcileError
from pos_plugin.reconcile.matching import (
    BreakKind,
    Entry,
    Explanation,
    Match,
    Note,
    Reconciliation,
    reconcile,
)

REVERSE_ACTION = "reverse_2601"
# The setlinfo fields a detail line needs, in DetailRow's order after the msgid.
_SETL_FIELDS = ("setl_id", "mdtrt_id", "psn_no", "medfee_sumamt", "fund_pay_sumamt",
                "acct_pay", "insutype", "clr_type", "clr_optins")  # fmt: skip
_DETAIL_COLS = ("s.msgid, s.state, s.business_date, s.reversal_msgid, s.reversal_id, "
                "s.patient_psn_no, ")  # fmt: skip


def _setl_cells(pg: bool) -> str:
    """The 2102 answer's setlinfo fields as one small JSON array, cut out by the database.

    Why: a journaled result is ~4 KB (receipt, detail, cut lines) of which a detail line
    needs nine values; the database parses each document once in C, and Python gets a
    ~200-byte array instead of decoding every whole document (a fifth of the CPU).
    A result that is not JSON makes the query fail; ``detail_rows`` then reads row by
    row, to name it."""
    if pg:
        cells = ", ".join(f"s.result::json #> '{{ledger_detail,setlinfo,{f}}}'"
                          for f in _SETL_FIELDS)  # fmt: skip
        return f"json_build_array({cells})::text"
    paths = ", ".join(f"'$.ledger_detail.setlinfo.{f}'" for f in _SETL_FIELDS)
    return f"json_extract(s.result, {paths})"


def is_national(ledger: Any) -> bool:
    """A ledger client that reconciles by 3201/3202 (``NhsaLedgerClient``), by its calls."""
    return all(hasattr(ledger, m) for m in ("totals_check", "upload_file", "detail_check"))


def _setlinfo(result_text: Any) -> dict[str, Any]:
    if not result_text:
        return {}
    doc = json.loads(result_text) if isinstance(result_text, str) else result_text
    detail = doc.get("ledger_detail") if isinstance(doc, dict) else None
    setl = detail.get("setlinfo") if isinstance(detail, dict) else None
    return setl if isinstance(setl, dict) else {}


def _cells_one_by_one(found: Sequence[Sequence[Any]], source: str) -> list[list[Any]]:
    """The slow path: each whole result decoded here, so a bad one is named."""
    out = []
    for r in found:
        try:
            s = _setlinfo(r[6])
        except ValueError as exc:
            raise ReconcileError(f"journal {source}: the result of {r[0]} is not JSON "
                                 f"({exc})") from None  # fmt: skip
        out.append([s.get(f) for f in _SETL_FIELDS])
    return out


def _journal_cells(path: JournalSource, day: dt.date) -> tuple[list[Any], list[list[Any]]]:
    """The day's rows of one journal and each row's setlinfo fields (``_setl_cells``)."""
    iso, ymd = day.isoformat(), day.strftime("%Y%m%d")
    db, source = open_source(path)
    try:
        sql = f"SELECT {_DETAIL_COLS}{{}} {_FROM} WHERE {_OF_DAY}"
        try:
            found = db.execute(sql.format(_setl_cells(isinstance(db, PgDb))),
                               (iso, ymd, ymd)).fetchall()  # fmt: skip
        except Exception as exc:  # sqlite3.OperationalError, psycopg.DataError
            if not _bad_json(exc):
                raise
            found = db.execute(sql.format("s.result"), (iso, ymd, ymd)).fetchall()
            return found, _cells_one_by_one(found, source)
    finally:
        db.close()
    doc = "[" + ",".join([r[6] or "null" for r in found]) + "]"
    cells = [c or [None] * len(_SETL_FIELDS) for c in json.loads(doc)]
    return found, cells


def detail_rows(paths: Sequence[JournalSource], day: dt.date) -> list[DetailRow]:
    """The day's settlement lines from the journals' 2102 answers (module docstring)."""
    iso, ymd = day.isoformat(), day.strftime("%Y%m%d")
    rows: list[DetailRow] = []
    for path in paths:
        found, cells = _journal_cells(path, day)
        for (msgid, state, bdate, rev_msgid, rev_id, psn_no, _), c in zip(found, cells,
                                                                         strict=True):
            if msgid is None or state not in ("settled", "reversed") or not c[0]:
                continue  # no claim, or not a national settlement (or its answer not kept)
            setl_id, mdtrt_id, psn, medfee, fund, acct, insutype, clr_type, optins = c
            fwd = DetailRow(
                msgid, str(setl_id), str(mdtrt_id or ""), str(psn or psn_no or ""),
                int(medfee or 0), int(fund or 0), int(acct or 0), "0", str(insutype or ""),
                str(clr_type or ""), str(optins or ""),
            )  # fmt: skip
            if bdate == iso:
                rows.append(fwd)
            if state == "reversed" and rev_id and rev_msgid and rev_msgid[12:20] == ymd:
                rows.append(dataclasses.replace(
                    fwd, msgid=rev_msgid, setl_id=str(rev_id), medfee_sumamt=-fwd.medfee_sumamt,
                    fund_pay_sumamt=-fwd.fund_pay_sumamt, acct_pay=-fwd.acct_pay,
                    refd_setl_flag="1"))  # fmt: skip
    return rows


def totals_notes(ledger: Any, rows: Sequence[DetailRow], day: dt.date) -> list[Note]:
    """3201 per (insutype, clr_type, clearing institution); a ``break_3201`` note where not 平."""
    groups: dict[tuple[str, str, str], list[DetailRow]] = {}
    for r in rows:
        groups.setdefault((r.insutype, r.clr_type, r.clr_optins), []).append(r)
    notes: list[Note] = []
    region = ledger.settings.mdtrtarea_admvs
    for (insutype, clr_type, optins), group in sorted(groups.items()):
        refd = "1" if any(r.refd_setl_flag == "1" for r in group) else "0"
        data = {
            "insutype": insutype, "clr_type": clr_type, "setl_optins": optins or region,
            "stmt_begndate": day.isoformat(), "stmt_enddate": day.isoformat(),
            "medfee_sumamt": yuan_of(sum(r.medfee_sumamt for r in group)),
            "fund_pay_sumamt": yuan_of(sum(r.fund_pay_sumamt for r in group)),
            "acct_pay": yuan_of(sum(r.acct_pay for r in group)),
            "fixmedins_setl_cnt": len(group), "refd_setl_flag": refd,
            "fixmedins_refd_setl_flag": refd,
        }  # fmt: skip
        rslt, dscr = ledger.totals_check(data)
        if rslt != "0":
            notes.append(Note(
                "break_3201",
                f"医保中心总额对账（3201）不平：险种 {insutype}，清算类别 {clr_type}，本店 "
                f"{len(group)} 笔。中心说明：{dscr}。请看下面的明细差异。",
                f"the platform's totals check (3201) does not balance for insutype {insutype}, "
                f"clearing type {clr_type} ({len(group)} settlements here). The platform "
                f"says: {dscr}. See the detail breaks below.",
            ))  # fmt: skip
    return notes


def detail_file_name(code: str, day: dt.date) -> str:
    """The day's 3202 file name, without its ``.txt``/``.zip``."""
    return f"{code}_{day:%Y%m%d}_3202"


def detail_request(ledger: Any, rows: Sequence[DetailRow], day: dt.date, file_qury_no: str
                   ) -> dict[str, Any]:  # fmt: skip
    """3202's input (表148): the uploaded file's number and the file's own totals."""
    medfee = sum(r.medfee_sumamt for r in rows)
    fund = sum(r.fund_pay_sumamt for r in rows)
    acct = sum(r.acct_pay for r in rows)
    refd = "1" if any(r.refd_setl_flag == "1" for r in rows) else "0"
    return {
        "setl_optins": ledger.settings.mdtrtarea_admvs, "file_qury_no": file_qury_no,
        "stmt_begndate": day.isoformat(), "stmt_enddate": day.isoformat(),
        "medfee_sumamt": yuan_of(medfee), "fund_pay_sumamt": yuan_of(fund),
        "cash_payamt": yuan_of(medfee - fund - acct), "fixmedins_setl_cnt": len(rows),
        "clr_type": "", "refd_setl_flag": refd, "fixmedins_refd_setl_flag": refd,
    }  # fmt: skip


def read_results(content: bytes) -> list[ResultRow]:
    """The fetched 3202 result file, every row; unreadable: ``ReconcileError``."""
    try:
        return list(daybook.read_result(content))
    except daybook.DaybookError as exc:
        raise ReconcileError(f"the platform's 3202 result cannot be read: {exc}") from None


def detail_results(ledger: Any, rows: Sequence[DetailRow], day: dt.date, code: str
                   ) -> list[ResultRow]:  # fmt: skip
    """Write, zip, 9101, 3202, 9102, read: the platform's per-row verdicts."""
    name = detail_file_name(code, day)
    content = daybook.zipped(name, daybook.detail_text(rows))
    file_qury_no = ledger.upload_file(f"{name}.zip", content)
    result_no, filename = ledger.detail_check(detail_request(ledger, rows, day, file_qury_no))
    return read_results(ledger.download_file(result_no, filename))


def _centre_entry(r: ResultRow, day: str, terminal: str) -> Entry:
    sale = r.refd_setl_flag != "1"
    return Entry(
        msgid=r.msgid or r.setl_id, kind="sale" if sale else "reversal", business_date=day,
        status="settled" if sale else None, total=r.medfee_sumamt,
        personal_account=r.acct_pay, mutual_aid=0,
        cash=r.medfee_sumamt - r.acct_pay - r.fund_pay_sumamt, legs=(),
        terminal_id=terminal, created_at="", ref=r.setl_id, source="3202",
        patient=r.psn_no or None,
    )  # fmt: skip


def _differing(j: Entry, d: DetailRow, r: ResultRow) -> Entry:
    dm = r.medfee_sumamt - d.medfee_sumamt
    da = r.acct_pay - d.acct_pay
    df = r.fund_pay_sumamt - d.fund_pay_sumamt
    e = j._replace(total=j.total + dm, personal_account=j.personal_account + da,
                   cash=j.cash + dm - da - df, source="3202", ref=r.setl_id)  # fmt: skip
    if not (dm or da or df):  # same money, another reversal flag or ids: a status difference
        e = e._replace(status="reversed" if j.status == "settled" else "differs")
    return e


def ledger_side(side: JournalSide, rows: Sequence[DetailRow], results: Sequence[ResultRow],
                day: str) -> tuple[list[Entry], list[Note]]:  # fmt: skip
    """The centre's entries from the 3202 verdicts (module docstring, step 4)."""
    by_setl = {r.setl_id: r for r in rows}
    journal: dict[str, Entry] = {}
    for e in side.entries:
        journal.setdefault(e.msgid, e)
    ledger: list[Entry] = []
    notes: list[Note] = []
    strange: list[str] = []
    for r in results:
        if r.stmt_rslt == "2":
            continue
        d = by_setl.get(r.setl_id) if r.setl_id else None
        j = journal.get(d.msgid) if d is not None else None
        if r.stmt_rslt == "1" or j is None or d is None:
            if r.stmt_rslt != "1":
                strange.append(r.setl_id or r.msgid)
            if r.msgid or r.setl_id:
                ledger.append(_centre_entry(r, day, ""))
            continue
        ledger.append(j._replace(source="3202", ref=r.setl_id) if r.stmt_rslt == "0"
                      else _differing(j, d, r))  # fmt: skip
    if strange:
        shown = ", ".join(strange[:5]) + (" ..." if len(strange) > 5 else "")
        notes.append(Note(
            "break_3202_unknown_rows",
            f"医保中心的明细对账结果中有本店未上传的结算ID：{shown}。请联系医保中心核实。",
            f"the platform's 3202 result names settlements this pharmacy did not send: {shown}. "
            "Ask the platform to check them.",
        ))  # fmt: skip
    return ledger, notes


# --------------------------------------------------------------------------- the day


def reconcile_for(
    day: dt.date,
    journal_paths: Sequence[JournalSource],
    ledger: Any,
    pharmacy_code: str | None = None,
    *,
    resolve: bool = True,
    every_msgid: bool = True,
) -> Reconciliation:
    """The day by whichever backend ``ledger`` is: 3201/3202 for the national platform,
    the statement for our own API (``reconcile.day.reconcile_day``). What the CLI, the
    manager page and the demo call.

    ``every_msgid=False`` when only the totals and the breaks are wanted (the page, close,
    a reversal): our own API's day is then read in bounded memory, whatever its size;
    the CSV and ``details`` list every balanced msgid, so they keep them."""
    if is_national(ledger):
        return reconcile_national(day, journal_paths, ledger, pharmacy_code, resolve=resolve)
    from pos_plugin.reconcile.actions import offer_reversals
    from pos_plugin.reconcile.day import reconcile_day

    rec = reconcile_day(day, journal_paths, ledger, pharmacy_code, resolve=resolve,
                        keep_balanced=every_msgid)  # fmt: skip
    return offer_reversals(rec, journal_paths)


def reconcile_national(
    day: dt.date,
    journal_paths: Sequence[JournalSource],
    ledger: Any,
    pharmacy_code: str | None = None,
    *,
    resolve: bool = True,
) -> Reconciliation:
    """One business day of a store against the national platform (module docstring).

    With the cyclic GC paused (``gcpause``): a day builds ~10^6 small objects that form
    no cycles, and each collection would rescan them all (a third of the time at 10^5)."""
    with gc_paused():
        return _reconcile_national(day, journal_paths, ledger, pharmacy_code, resolve)


def _reconcile_national(day: dt.date, journal_paths: Sequence[JournalSource], ledger: Any,
                        pharmacy_code: str | None, resolve: bool) -> Reconciliation:  # fmt: skip
    if not journal_paths:
        raise ReconcileError("give at least one journal file")
    code = pharmacy_code or ledger.settings.fixmedins_code
    paths = [of_pharmacy(p, code) for p in journal_paths]
    resolved: list[str] = []
    if resolve:
        resolved += resolve_settling(paths, ledger, code)
    side, rows = read_day(paths, day)
    notes = totals_notes(ledger, rows, day)
    results = detail_results(ledger, rows, day, code)
    return match_day(day, paths, code, side, rows, results, notes, resolved)


def read_day(paths: Sequence[JournalSource], day: dt.date) -> tuple[JournalSide, list[DetailRow]]:
    """Step 1: the journals' side of the day, and its detail lines."""
    side = JournalSide()
    for p in paths:
        read_journal(p, day, side)
    return side, detail_rows(paths, day)


def match_day(
    day: dt.date, paths: Sequence[JournalSource], code: str, side: JournalSide,
    rows: Sequence[DetailRow], results: Sequence[ResultRow], notes: list[Note],
    resolved: list[str],
) -> Reconciliation:  # fmt: skip
    """Step 4: the verdicts as the centre's side, matched with the journals' side."""
    iso = day.isoformat()
    centre_only = {r.msgid for r in results if r.stmt_rslt == "1" and r.msgid}
    for source, r in side.unknown:
        msgid = r[2]
        if msgid in centre_only:  # charged: the till owes its reversal
            side.entries.extend(e for e in _row_entries(r, source) if e.business_date == iso)
        else:  # the centre has nothing under it: nothing was charged
            side.states[msgid] = "unknown (not charged)"
            resolved.append(msgid)
    side.unknown = []
    ledger_entries, more = ledger_side(side, rows, results, iso)
    missing = {e.msgid for e in ledger_entries} - {e.msgid for e in side.entries}
    states = dict(side.states)
    states.update(_states_of(paths, missing))
    rec = reconcile(
        day, side.entries, ledger_entries, pharmacy_code=code,
        journal_terminals=side.terminals, journal_states=states, resolved=resolved,
        notes=notes + more,
    )  # fmt: skip
    return _with_actions(rec, paths)


def _states_of(paths: Sequence[JournalSource], msgids: set[str]) -> dict[str, str]:
    """The journal state of msgids the centre reports and the day's entries lack."""
    sql = "SELECT msgid, state FROM sales WHERE msgid IN ({marks})"
    return {msgid: state for _, _, (msgid, state) in rows_of_msgids(paths, sql, msgids)}


_TODO_ZH = ("这笔是中心有、本店没有确认的医保结算（常见于冲正【2601】之后才到达中心的结算【2102】）："
            "顾客没有按医保付款。在店长页面点“冲正 2601”，或运行 "
            "`pos-plugin reconcile --reverse-msgid {msgid}`：系统按流水号向医保中心冲正，"
            "记入流水，重复操作不会重复冲正。然后重新对账。")
_TODO_EN = ("The centre holds a settlement the till never confirmed (usually a 2102 that "
            "reached the centre after its 2601): the customer did not pay by insurance. Press "
            "\"reverse 2601\" on the manager page, or run `pos-plugin reconcile --reverse-msgid "
            "{msgid}`: the agent reverses that msgid at the centre, journals it, and never "
            "twice. Then reconcile again.")


def _with_actions(rec: Reconciliation, paths: Sequence[JournalSource]) -> Reconciliation:
    """Offer the one repair (2601) on each centre-only sale the till did not settle."""
    out: list[Match] = []
    for b in rec.breaks:
        sale = next((e for e in b.ledger if e.kind == "sale" and e.source == "3202"
                     and e.status == "settled"), None)  # fmt: skip
        settled_here = any(e.kind == "sale" and e.status in ("settled", "reversed")
                           for e in b.journal)  # fmt: skip
        if b.kind in (BreakKind.LEDGER_ONLY, BreakKind.STATUS_MISMATCH) and sale is not None \
                and sale.patient and not settled_here:  # fmt: skip
            ex = b.explanation
            assert ex is not None
            ex = Explanation(ex.what_zh, ex.what_en, _TODO_ZH.format(msgid=b.msgid),
                             _TODO_EN.format(msgid=b.msgid))  # fmt: skip
            b = dataclasses.replace(b, explanation=ex, action=REVERSE_ACTION)
        out.append(b)
    return dataclasses.replace(rec, breaks=tuple(out))


# --------------------------------------------------------------------------- the action


def _where_and_region(paths: Sequence[JournalSource], msgid: str, psn_no: str
                      ) -> tuple[JournalSource, str | None]:  # fmt: skip
    """Which journal keeps the action (the till that holds the msgid, else the first given:
    the same answer every time, so the action stays idempotent) and the patient's insured
    region for the 2601's envelope: journaled with the sale's intent
    (``evidence.insured_region``), or with another sale of theirs (None: the client's own
    memory of their 1101, else the pharmacy's region)."""
    home: JournalSource | None = None
    region: str | None = None
    for path in paths:
        db, _ = open_source(path)
        try:
            rows = db.execute(
                "SELECT msgid, evidence FROM sales WHERE msgid = ? OR patient_psn_no = ? "
                "ORDER BY created_at DESC LIMIT 50",
                (msgid, psn_no),
            ).fetchall()
        finally:
            db.close()
        for m, text in rows:
            if m == msgid and home is None:
                home = path
            try:
                ev = json.loads(text) if text else {}
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("insured_region") and (region is None
                                                                       or m == msgid):
                region = str(ev["insured_region"])
    return (home if home is not None else paths[0]), region


@dataclasses.dataclass(frozen=True)
class CentreReversal:
    msgid: str
    done: bool
    already: bool  # it had been done before: nothing was sent this time
    attempts: int


def reverse_centre_only(
    journal_paths: Sequence[JournalSource], ledger: Any, msgid: str, psn_no: str,
    business_date: str, *, by: str = "manager",
) -> CentreReversal:  # fmt: skip
    """2601 for ``msgid``, journaled first; idempotent (module docstring).

    ``journal_paths``: the store's journals, as reconciled (the action is kept in the
    one holding the msgid); ``psn_no``: the patient, as the 3202 result names them."""
    if not journal_paths:
        raise ReconcileError("give at least one journal file")
    journal_path, region = _where_and_region(journal_paths, msgid, psn_no)
    shared = shared_of(journal_path)
    code = ledger.settings.fixmedins_code
    journal = Journal(
        shared.url if shared is not None else str(journal_path), hmac_key=b"reconcile",
        pharmacy_code=code, terminal_id="reconcile",
        password=shared.password if shared is not None else None,
    )  # fmt: skip
    try:
        before = journal.centre_reversal(msgid)
        if before is not None and before["done_at"]:
            return CentreReversal(msgid, True, True, int(before["attempts"]))
        row = journal.centre_reversal_begin(msgid, psn_no, business_date, by)
        try:
            ledger.void_settlement(msgid, psn_no=psn_no, insuplc_admdvs=region)
        except Exception as exc:
            journal.centre_reversal_ended(msgid, str(exc)[:500])
            raise
        journal.centre_reversal_ended(msgid)
        return CentreReversal(msgid, True, False, int(row["attempts"]))
    finally:
        journal.close()
