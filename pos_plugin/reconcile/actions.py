"""The manager's one repair, "reverse by msgid", on our own ledger (the national
platform's is ``national.reverse_centre_only``, 2601).

Offered (``Match.action = "reverse_msgid"``) on a break of the day for:

- **a settlement the ledger has and the till does not** (ledger only): the till's row
  for the msgid says ``failed`` (it concluded nothing was charged), the ledger holds
  it ``settled``. The customer got nothing or paid another way, so the settlement is
  reversed at the ledger (``POST /v1/settlements/{id}/reversals``) under a new msgid
  of that till, and the till's row becomes ``reversed`` with the ledger's amounts:
  the day then balances. The accounts credited back get the reversal receipt a till's
  reversal prints (冲正/退款, ``sale.service.with_reversal_receipt``), built from the
  ledger's split and what the till journaled with the intent (the lines, the masked
  card and patient), with who reversed it; it is journaled in the row's answer and
  returned (a second call returns it again, to reprint).
- **an owed reversal that escalated** (status mismatch, the till ``unknown``): the
  reversal the agent kept retrying is sent now, as the agent sends it
  (``sale.service.send_owed_reversal``: lookup, void, reversal under the journaled
  reversal msgid), and journaled as the agent journals it.
- **a reversal the till journaled and the ledger never got** (the till ``reversed``,
  the ledger ``settled``): the same reversal, under the journaled reversal msgid, is
  sent again.
- **a reversal the ledger has and the till does not** (the till ``settled``, the
  ledger ``reversed``: the reversal's answer was lost, or it was made elsewhere):
  nothing is sent; the till's row is journaled ``reversed`` with the ledger's
  reversal msgid and id.

Every action is journaled first (``ledger_reversals``, one row per msgid: the reversal
msgid and the reason before the request leaves, so a retry sends the same request,
which the ledger answers once), and idempotent: once done, a second call sends
nothing and says so. The caller reconciles the day again before acting
(``ReconcileSource.reverse``, the CLI's ``--reverse-msgid``), never on a stale page;
a begun, unfinished action is resumed whatever the page shows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from pos_plugin.journal import journal as J
from pos_plugin.journal.journal import Journal, now_shanghai
from pos_plugin.journal.sources import (
    JournalSource,
    of_pharmacy,
    rows_of_msgids,
    shared_of,
)
from pos_plugin.ledger.errors import LedgerError
from pos_plugin.reconcile.errors import ReconcileError
from pos_plugin.reconcile.matching import BreakKind, Explanation, Match, Reconciliation
from pos_plugin.sale.models import SaleResult
from pos_plugin.sale.receipts import ReceiptReversal
from pos_plugin.sale.service import (
    SaleSettings,
    record_owed_reversal,
    send_owed_reversal,
    settled_result,
    stored,
    with_reversal_receipt,
)

REVERSE_MSGID = "reverse_msgid"
LEDGER_ONLY, OWED, RESEND, RECORD = (
    "ledger_only", "owed_escalated", "reversal_not_landed", "reversed_elsewhere"
)
MANAGER_REVERSED = (
    "店长已按流水号冲正，医保扣款已退回 / reversed by the manager by msgid: the account "
    "charge went back"
)


@dataclasses.dataclass(frozen=True)
class Found:
    """The till's row for a break's msgid, as one journal holds it."""

    path: JournalSource
    sale_ref: str
    state: str
    terminal_id: str
    reversal_msgid: str | None
    pending: J.PendingReversal | None


@dataclasses.dataclass(frozen=True)
class Reversed:
    msgid: str
    done: bool
    already: bool  # it had been done before: nothing was sent this time
    outcome: str  # reversed / not_charged / already_reversed
    reversal_msgid: str
    receipt: list[str] | None = None  # the reversal's receipt lines, where one was printed
    receipt_detail: dict[str, Any] | None = None  # its facts (sale.receipts.Receipt)


@dataclasses.dataclass(frozen=True)
class Paper:
    """The till's receipt printer, for a receipt the manager's action prints."""

    store_name: str = ""  # [receipt] store_name; the pharmacy code where empty
    width: int = 80  # [receipt] width, 58 or 80 mm


DEFAULT_PAPER = Paper()


def _rows(paths: Sequence[JournalSource], msgids: Sequence[str]) -> dict[str, Found]:
    out: dict[str, Found] = {}
    sql = (
        "SELECT s.msgid, s.sale_ref, s.state, s.terminal_id, s.reversal_msgid, "
        "p.sale_ref, p.reversal_msgid, p.attempts, p.next_attempt_at, p.last_error, "
        "p.escalated, p.done FROM sales s LEFT JOIN pending_reversals p "
        "ON p.msgid = s.msgid WHERE s.msgid IN ({marks})"
    )
    for path, _, r in rows_of_msgids(paths, sql, msgids):
        pending = None
        if r[5] is not None and not r[11]:
            pending = J.PendingReversal(r[0], r[5], r[6], int(r[7]), r[8], r[9],
                                        bool(r[10]))  # fmt: skip
        out.setdefault(r[0], Found(path, r[1], r[2], r[3], r[4], pending))
    return out


def _case(b: Match, row: Found | None) -> str | None:
    """Which of the module docstring's cases a break is, if any."""
    if row is None:
        return None  # not in the given journals: perhaps a till whose journal is missing
    led_sale = next((e for e in b.ledger if e.kind == "sale"), None)
    if led_sale is None:
        return None
    if b.kind is BreakKind.LEDGER_ONLY and row.state == J.FAILED and led_sale.status == "settled":
        return LEDGER_ONLY
    if b.kind is BreakKind.STATUS_MISMATCH:
        if row.state == J.UNKNOWN and row.pending is not None and row.pending.escalated:
            return OWED
        led_reversed = led_sale.status == "reversed" or any(e.kind == "reversal" for e in b.ledger)
        if row.state == J.REVERSED and row.reversal_msgid and not led_reversed:
            return RESEND
        if row.state == J.SETTLED and led_sale.status == "reversed":
            return RECORD
    return None


_TODO = {
    LEDGER_ONLY: (
        "不要再次收费。核对小票与收银记录：若顾客已按医保拿走药品，在收银系统补记这笔医保收款；"
        "若顾客没有拿到药品或已用现金付款，在店长页面点“按流水号冲正”，或运行 "
        "`pos-plugin reconcile --date {day} --reverse-msgid {msgid}`：系统向中心冲正这笔结算，"
        "先记入流水，重复操作不会重复冲正。",
        "Do not charge again. Check the receipts and the POS records: if the customer took "
        "the goods paid by insurance, book this payment in the POS; if the customer got "
        "nothing or paid cash, press \"reverse by msgid\" on the manager page, or run "
        "`pos-plugin reconcile --date {day} --reverse-msgid {msgid}`: the agent reverses the "
        "settlement at the ledger, journaled first, never twice.",
    ),
    OWED: (
        "不要向顾客再收费。自动冲正多次未成功（已上报）：在店长页面点“按流水号冲正”，或运行 "
        "`pos-plugin reconcile --date {day} --reverse-msgid {msgid}`，立即发送这笔欠下的冲正"
        "（使用同一冲正流水号，不会重复退款）。",
        "Do not charge the customer again. The automatic reversal kept failing (escalated): "
        "press \"reverse by msgid\" on the manager page, or run `pos-plugin reconcile --date "
        "{day} --reverse-msgid {msgid}`, to send the owed reversal now (the same reversal "
        "msgid, so nothing is refunded twice).",
    ),
    RESEND: (
        "本店已冲正但中心没有收到：在店长页面点“按流水号冲正”，或运行 `pos-plugin reconcile "
        "--date {day} --reverse-msgid {msgid}`，用同一冲正流水号重新发送（不会重复退款）；"
        "若中心拒绝，请联系医保中心。",
        "The till reversed it but the ledger never got the reversal: press \"reverse by "
        "msgid\" on the manager page, or run `pos-plugin reconcile --date {day} "
        "--reverse-msgid {msgid}`, to send it again under the same reversal msgid (nothing "
        "is refunded twice); if the ledger refuses it, call the insurance centre.",
    ),
    RECORD: (
        "中心已冲正而本店仍记为已结算：在店长页面点“按流水号冲正”，或运行 `pos-plugin reconcile "
        "--date {day} --reverse-msgid {msgid}`，把中心的冲正记入本店流水（不向中心发送任何请求，"
        "不会重复退款）；并确认药品已退回或顾客已另行付款。",
        "The centre reversed it and the till still shows it settled: press \"reverse by "
        "msgid\" on the manager page, or run `pos-plugin reconcile --date {day} "
        "--reverse-msgid {msgid}`, to journal the centre's reversal in the till (nothing is "
        "sent to the centre, nothing refunded twice); and check the goods came back or the "
        "customer paid another way.",
    ),
}


# Advice for two breaks that look repairable but are not yet: it names what the manager
# can do now, and when the button will be there.
_NOT_YET = {
    "missing": (
        "不要再次收费。所给的收银机流水中都没有这笔：请带上本店每台收银机的流水重新对账（每台一个 "
        "--journal）；找到后，若顾客没有拿到药品或已付现金，这里会出现“按流水号冲正”。"
        "仍然找不到请联系技术支持。",
        "Do not charge again. None of the given till journals has this msgid: reconcile "
        "again with every till's journal (one --journal per till); once a till's journal "
        "shows it, \"reverse by msgid\" appears here for a customer who got nothing or paid "
        "cash. If no journal has it, call support.",
    ),
    "owed": (
        "不要向顾客再收费。收银机会自动冲正（健康页 reversals_owed 为 0 即完成），请确认收银机网络"
        "正常后重新对账；若连续失败已上报（escalated），这里会出现“按流水号冲正”。",
        "Do not charge the customer again. The till reverses it automatically (done when "
        "reversals_owed in /v1/health is 0): make sure the till is online and reconcile "
        "again; if it keeps failing it escalates, and \"reverse by msgid\" appears here.",
    ),
}


def _not_yet(b: Match, row: Found | None) -> str | None:
    if b.kind is BreakKind.LEDGER_ONLY and row is None:
        return "missing"
    if b.kind is BreakKind.STATUS_MISMATCH and row is not None and row.state == J.UNKNOWN:
        return "owed"
    return None


def offer_reversals(rec: Reconciliation, paths: Sequence[JournalSource]) -> Reconciliation:
    """The day with ``reverse_msgid`` offered on each break it applies to (and that
    break's advice naming it; a break that cannot be reversed yet says what can be done
    now)."""
    candidates = [b for b in rec.breaks
                  if b.kind in (BreakKind.LEDGER_ONLY, BreakKind.STATUS_MISMATCH)]  # fmt: skip
    if not candidates:
        return rec
    rows = _rows([of_pharmacy(p, rec.pharmacy_code) for p in paths], [b.msgid for b in candidates])
    out: list[Match] = []
    for b in rec.breaks:
        row = rows.get(b.msgid)
        case = _case(b, row) if b in candidates else None
        later = _not_yet(b, row) if b in candidates and case is None else None
        ex = b.explanation
        if ex is not None and (case is not None or later is not None):
            zh, en = _TODO[case] if case is not None else _NOT_YET[later or ""]
            b = dataclasses.replace(
                b, action=REVERSE_MSGID if case is not None else None,
                explanation=Explanation(ex.what_zh, ex.what_en,
                                        zh.format(day=rec.date, msgid=b.msgid),
                                        en.format(day=rec.date, msgid=b.msgid)),
            )  # fmt: skip
        out.append(b)
    return dataclasses.replace(rec, breaks=tuple(out))


def sale_refs(rec: Reconciliation, paths: Sequence[JournalSource]) -> dict[str, str]:
    """The till's receipt number (sale_ref) of each ledger-only break whose msgid a till
    journaled without claiming it (e.g. ``failed``), for the CSV: what the manager looks
    up in the POS."""
    wanted = [b.msgid for b in rec.breaks if b.kind is BreakKind.LEDGER_ONLY]
    if not wanted:
        return {}
    rows = _rows([of_pharmacy(p, rec.pharmacy_code) for p in paths], wanted)
    return {m: r.sale_ref for m, r in rows.items()}


def _journal_of(row: Found, pharmacy_code: str, msgid: str) -> Journal:
    """The till's own journal (its file, or its share of the shared journal), with the
    till's index (the msgid's 27th character) so a new msgid is that till's next."""
    shared = shared_of(row.path)
    index = int(msgid[26]) if msgid[26:27].isdigit() else 0
    target = shared.url if shared is not None else str(row.path)
    return Journal(target, hmac_key=b"reconcile", pharmacy_code=pharmacy_code,
                   terminal_id=row.terminal_id, till_index=index,
                   password=shared.password if shared is not None else None)  # fmt: skip


def reverse_by_msgid(
    rec: Reconciliation, paths: Sequence[JournalSource], ledger: Any, msgid: str, *,
    by: str = "manager", reason: str = "", paper: Paper = DEFAULT_PAPER,
) -> Reversed:  # fmt: skip
    """Take the action on ``msgid`` (module docstring); ``rec`` was reconciled just now.

    Raises ``LookupError`` when the day offers no reversal for it, ``LedgerError`` when
    the ledger cannot be reached or refuses (the journaled intent stays: try again)."""
    found = _rows([of_pharmacy(p, rec.pharmacy_code) for p in paths], [msgid]).get(msgid)
    if found is None:
        raise LookupError(f"{msgid} is not in the given journals: nothing to reverse here")
    j = _journal_of(found, rec.pharmacy_code, msgid)
    try:
        before = j.ledger_reversal(msgid)
        if before is not None and before["done_at"]:
            return Reversed(msgid, True, True, str(before["outcome"]), before["reversal_msgid"],
                            *_receipt_of(j, found.sale_ref))  # fmt: skip
        b = next((b for b in rec.breaks if b.msgid == msgid), None)
        case = _case(b, found) if b is not None else None
        if before is None and (b is None or b.action != REVERSE_MSGID or case is None):
            raise LookupError(f"{msgid} is not a break this day offers to reverse by msgid")
        if before is not None:  # begun and not finished: resume it, whatever the page shows
            case = {J.FAILED: LEDGER_ONLY, J.SETTLED: RECORD, J.UNKNOWN: OWED}.get(
                found.state, RESEND)
        assert case is not None
        rmsgid = (
            found.pending.reversal_msgid if case == OWED and found.pending is not None
            else found.reversal_msgid if case == RESEND and found.reversal_msgid
            else before["reversal_msgid"] if before is not None
            else j.next_msgid()
        )  # fmt: skip
        row = j.ledger_reversal_begin(msgid, sale_ref=found.sale_ref, reversal_msgid=rmsgid,
                                      business_date=rec.date, by=by, reason=reason)  # fmt: skip
        settings = SaleSettings(pharmacy_code=rec.pharmacy_code, terminal_id=found.terminal_id,
                                store_name=paper.store_name, receipt_width=paper.width)  # fmt: skip
        try:
            outcome = _send(j, ledger, found, case, row, settings)
        except LedgerError as e:
            j.ledger_reversal_ended(msgid, error=e.message)
            raise
        j.ledger_reversal_ended(msgid, outcome=outcome)
        return Reversed(msgid, True, False, outcome, row["reversal_msgid"],
                        *_receipt_of(j, found.sale_ref))  # fmt: skip
    finally:
        j.close()


def _receipt_of(j: Journal, sale_ref: str) -> tuple[list[str] | None, dict[str, Any] | None]:
    """The reversal receipt journaled in the till's row for ``sale_ref``, if it has one."""
    sale = j.get(sale_ref)
    return _receipt_in((sale.result or {}) if sale is not None else {})


def journaled_receipt(
    paths: Sequence[JournalSource], pharmacy_code: str, msgid: str
) -> list[str] | None:
    """The reversal receipt lines journaled in the till's row of ``msgid`` (the row
    ``reverse_by_msgid`` acts on: the first given journal holding it), None where it has
    none. Read only, so the manager page can show a reversal's receipt again on every
    load (a reprint) without acting again; the lines are masked when journaled."""
    sql = "SELECT s.msgid, s.result FROM sales s WHERE s.msgid IN ({marks})"
    sources = [of_pharmacy(p, pharmacy_code) for p in paths]
    for _path, _label, r in rows_of_msgids(sources, sql, [msgid]):
        return _receipt_in(json.loads(r[1]) if r[1] else {})[0]
    return None


def _receipt_in(doc: dict[str, Any]) -> tuple[list[str] | None, dict[str, Any] | None]:
    """The reversal receipt in a till's journaled answer: its lines and facts, if any."""
    detail = doc.get("receipt_detail")
    if doc.get("status") != "reversed" or not detail or detail.get("kind") != "reversal":
        return None, None
    return list(doc.get("receipt") or ()), dict(detail)


def _send(j: Journal, ledger: Any, found: Found, case: str, row: dict[str, Any],
          settings: SaleSettings) -> str:  # fmt: skip
    """The requests of one case and the till's row journaled after them; the outcome."""
    msgid, rmsgid = row["msgid"], row["reversal_msgid"]
    if case == OWED:
        assert found.pending is not None
        charged = send_owed_reversal(j, ledger, found.pending)
        record_owed_reversal(j, found.pending, charged)
        return "reversed" if charged else "not_charged"
    settlement = ledger.get_settlement(msgid)
    sale = j.get(found.sale_ref)
    if settlement is None:
        if sale is not None and sale.refusal_code == "cash_fallback":
            return "not_charged"  # an owed reversal resumed after it was journaled: voided
        raise ReconcileError(f"the ledger no longer holds a settlement under {msgid}")
    reason = row["reason"] or "reversed by the manager (reconciliation)"
    rev = None
    if settlement.status == "settled" and case != RECORD:
        try:
            rev = ledger.reverse(settlement.settlement_id, rmsgid, reason,
                                 psn_no=sale.patient_psn_no if sale else None,
                                 detail=settlement.detail)  # fmt: skip
        except LedgerError as e:
            if e.code != "already_reversed":
                raise
    if case == RESEND:
        if rev is not None and sale is not None and not sale.reversal_id:
            j.update(found.sale_ref, J.REVERSED, reversal_id=rev.reversal_id)
        return "reversed" if rev is not None else "already_reversed"
    if case == RECORD:
        if settlement.reversal is None or sale is None:
            raise ReconcileError(f"the ledger shows no reversal of {msgid} to record")
        doc = dict(sale.result or {})
        doc["status"] = "reversed"
        j.update(found.sale_ref, J.REVERSED, reversal_msgid=settlement.reversal.msgid,
                 reversal_id=settlement.reversal.reversal_id, result=doc)  # fmt: skip
        j.release_trace_codes(found.sale_ref)
        return "recorded"
    # ledger only: the till's failed row becomes the reversed sale the ledger holds
    taken = settlement.reversal.msgid if rev is None and settlement.reversal else rmsgid
    reversal = ReceiptReversal(msgid=taken, reason=reason,
                               by=row.get("requested_by") or "manager",
                               at=now_shanghai().strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    plan, masked = (sale.plan, sale.patient_id_masked) if sale is not None else (None, None)
    result = manager_reversed(settings, found.sale_ref, msgid, settlement, plan, masked,
                              reversal)  # fmt: skip
    j.update(
        found.sale_ref, J.REVERSED, settlement_id=settlement.settlement_id,
        total=settlement.total, personal_account=settlement.personal_account,
        mutual_aid=settlement.mutual_aid, cash=settlement.cash, reversal_msgid=taken,
        reversal_id=getattr(rev, "reversal_id", None)
        or (settlement.reversal.reversal_id if settlement.reversal else None),
        result=stored(result, 200),
    )  # fmt: skip
    return "reversed" if rev is not None else "already_reversed"


def manager_reversed(
    settings: SaleSettings, sale_ref: str, msgid: str, settlement: Any,
    plan: dict[str, Any] | None, patient_id_masked: str | None, reversal: ReceiptReversal,
) -> SaleResult:  # fmt: skip
    """The till's answer for a settlement it had concluded failed, now reversed by the
    manager: the sale as the ledger committed it (``settlement``'s split; the ``plan``
    journaled with the intent names the lines, the masked card and patient, the family
    payers), with the reversal receipt a till's reversal prints. Only masked personal
    data: the plan's receipt facts are masked when journaled, and so is the row's
    ``patient_id_masked``, which stands in where an older plan kept no receipt facts."""
    plan = dict(plan or {})
    facts = dict(plan.get("receipt") or {})
    if patient_id_masked:
        facts.setdefault("patient_id_masked", patient_id_masked)
    plan["receipt"] = facts
    answer = settled_result(settings, sale_ref, msgid, settlement, plan)
    answer.message = MANAGER_REVERSED
    # the till took no cash for a sale it concluded failed: none is handed back
    no_cash = reversal.model_copy(update={"cash_returned": False})
    return with_reversal_receipt(settings, answer, no_cash)
