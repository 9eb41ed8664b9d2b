"""The manager's tools, one entry each for the command line, the API and the page.

``take_reverse``: reverse by msgid on whichever backend the store uses (the national
platform's 2601 of a centre-only settlement, ``national``; our own ledger's reversal,
``actions``). Closing and reopening a day are ``close.close_day`` / ``close.reopen_day``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pos_plugin.journal.sources import JournalSource, open_source
from pos_plugin.reconcile.actions import DEFAULT_PAPER, REVERSE_MSGID, Paper, reverse_by_msgid
from pos_plugin.reconcile.matching import Reconciliation
from pos_plugin.reconcile.national import REVERSE_ACTION, is_national, reverse_centre_only

ACTIONS = (REVERSE_ACTION, REVERSE_MSGID)
"""Every ``Match.action``: each is a "reverse by msgid" button and ``--reverse-msgid``."""


def take_reverse(
    rec: Reconciliation, paths: Sequence[JournalSource], ledger: Any, msgid: str, *,
    by: str = "manager", reason: str = "", paper: Paper = DEFAULT_PAPER,
) -> dict[str, Any]:  # fmt: skip
    """The break's reversal by msgid on whichever backend ``ledger`` is: 2601 of a
    centre-only settlement on the national platform, else ``reverse_by_msgid``.
    ``rec``: the day reconciled just now. Raises ``LookupError`` when none is offered.
    Where the reversal credits the accounts back of a sale the till had concluded failed,
    the answer carries its reversal receipt (``receipt``: lines for ``paper``;
    ``receipt_detail``: the facts), as a till's reversal answers."""
    if is_national(ledger):
        b = next((b for b in rec.breaks if b.msgid == msgid), None)
        if _centre_reversed(paths, msgid):  # done before: say so, send nothing
            return {"msgid": msgid, "done": True, "already": True, "outcome": "reversed",
                    "action": REVERSE_ACTION}  # fmt: skip
        if b is None or b.action != REVERSE_ACTION:
            raise LookupError(f"{msgid} is not a centre-only settlement offered for 2601")
        psn_no = next((e.patient for e in b.ledger if e.patient), "") or ""
        c = reverse_centre_only(paths, ledger, msgid, psn_no, rec.date, by=by)
        return {"msgid": msgid, "done": c.done, "already": c.already,
                "outcome": "reversed", "action": REVERSE_ACTION}  # fmt: skip
    r = reverse_by_msgid(rec, paths, ledger, msgid, by=by, reason=reason, paper=paper)
    out = {"msgid": msgid, "done": r.done, "already": r.already, "outcome": r.outcome,
           "reversal_msgid": r.reversal_msgid, "action": REVERSE_MSGID}  # fmt: skip
    if r.receipt is not None:
        out |= {"receipt": r.receipt, "receipt_detail": r.receipt_detail}
    return out


def _centre_reversed(paths: Sequence[JournalSource], msgid: str) -> bool:
    """Whether a 2601 of ``msgid`` by the manager is journaled done in any given journal."""
    for path in paths:
        db, _ = open_source(path)
        try:
            row = db.execute(
                "SELECT done_at FROM centre_reversals WHERE msgid = ?", (msgid,)
            ).fetchone()
        except Exception:  # a journal older than the table: never reversed here
            row = None
        finally:
            db.close()
        if row is not None and row[0]:
            return True
    return False
