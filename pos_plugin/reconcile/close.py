"""Closing a business day: the reconciled result recorded, so it cannot change silently.

``close_day`` writes a row in table ``closed_days`` of every given journal file
(or one row for the store in a shared journal): the result, its digest, the
manager's reason when breaks remain, and the journal's event-chain head(s), hashed
together. The table and the check a sale asks first (``is_day_closed``) live with
the journal, in ``pos_plugin.journal.closed_days``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from pos_plugin.journal.closed_days import (
    CLOSED_DAYS_SCHEMA,
    CLOSED_DAYS_SCHEMA_PG,
    HAS_CLOSED_DAYS_PG,
    business_day,
    is_day_closed,
    shared_pharmacy_code,
)
from pos_plugin.journal.postgres import PgDb, SharedJournal, ensure_schema
from pos_plugin.journal.sources import JournalSource, connect_file, file_of, label_of, shared_of
from pos_plugin.reconcile.errors import DayAlreadyClosed, DayNotBalanced, ReconcileError
from pos_plugin.reconcile.matching import Reconciliation

SHANGHAI = ZoneInfo("Asia/Shanghai")

def closed_record(
    path: JournalSource, business_date: dt.date | str, *, pharmacy_code: str | None = None
) -> dict[str, Any] | None:
    """The closed-day record, decoded; None when the day is not closed.

    ``pharmacy_code``: whose day, on a shared journal that is not narrowed to one."""
    shared = shared_of(path)
    if shared is not None:
        pg = PgDb(shared, dict_rows=True)
        try:
            row = None
            if pg.execute(HAS_CLOSED_DAYS_PG).fetchone() is not None:
                row = pg.execute(
                    "SELECT * FROM closed_days WHERE pharmacy_code = ? AND business_date = ?",
                    (shared_pharmacy_code(shared, pharmacy_code), business_day(business_date)),
                ).fetchone()
        finally:
            pg.close()
    else:
        db = connect_file(file_of(path))
        db.row_factory = sqlite3.Row
        try:
            try:
                row = db.execute(
                    "SELECT * FROM closed_days WHERE business_date = ?", (business_day(business_date),)
                ).fetchone()
            except sqlite3.OperationalError:
                return None
        finally:
            db.close()
    if row is None:
        return None
    rec = dict(row)
    rec["terminals"] = json.loads(rec["terminals"])
    rec["result"] = json.loads(rec["result"])
    rec["balanced"] = bool(rec["balanced"])
    return rec


def _record_hash(rec: dict[str, Any]) -> str:
    body = json.dumps(
        {k: v for k, v in rec.items() if k != "hash"},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256((rec["chain_head"] + body).encode("utf-8")).hexdigest()


def verify_closed_record(rec: dict[str, Any]) -> bool:
    raw = dict(rec)
    raw["terminals"] = json.dumps(raw["terminals"], ensure_ascii=False)
    raw["result"] = json.dumps(raw["result"], ensure_ascii=False, sort_keys=True)
    raw["balanced"] = int(raw["balanced"])
    return bool(_record_hash(raw) == rec["hash"])


def close_day(
    journal_paths: Sequence[JournalSource],
    rec: Reconciliation,
    *,
    reason: str | None = None,
    closed_by: str = "manager",
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Record the reconciled day in every given journal; refuse breaks without a reason.

    Each record keeps the result (totals and breaks), its digest, the manager's
    reason, and the journal's event-chain head at closing, hashed together. A
    shared journal gets one record for the pharmacy's day, with every till's head.
    """
    reason = (reason or "").strip() or None
    if not rec.balanced and reason is None:
        raise DayNotBalanced(
            f"{rec.date} has {len(rec.breaks)} break(s) not explained: resolve them, or close "
            "with --reason saying why (the reason is kept with the closed day)"
        )
    for p in journal_paths:
        shared = shared_of(p)
        if shared is not None and shared.terminals:
            raise ReconcileError(
                "on a shared journal a closed day covers the whole store: close it without "
                "--terminal, reconciling every till"
            )
        if is_day_closed(p, rec.date, pharmacy_code=rec.pharmacy_code):
            prev = closed_record(p, rec.date, pharmacy_code=rec.pharmacy_code) or {}
            raise DayAlreadyClosed(
                f"{rec.date} was already closed in {label_of(p)} at {prev.get('closed_at')} "
                f"by {prev.get('closed_by')}"
            )
    at = (now or dt.datetime.now(SHANGHAI)).astimezone(SHANGHAI).isoformat()
    result = json.dumps(rec.as_dict(), ensure_ascii=False, sort_keys=True)
    terminals = json.dumps([t.terminal_id for t in rec.terminals], ensure_ascii=False)
    written = []
    for p in journal_paths:
        shared = shared_of(p)
        if shared is not None:
            _close_shared(shared, rec, at, closed_by, terminals, reason, result)
            written.append(closed_record(p, rec.date, pharmacy_code=rec.pharmacy_code) or {})
            continue
        db = connect_file(file_of(p))
        try:
            db.executescript(CLOSED_DAYS_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            try:
                head = db.execute("SELECT hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
                raw = _closed_row(
                    rec, at, closed_by, terminals, reason, result, head[0] if head else "0" * 64
                )
                cols = ", ".join(raw)
                db.execute(
                    f"INSERT INTO closed_days ({cols}) VALUES ({', '.join('?' * len(raw))})",
                    tuple(raw.values()),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()
        written.append(closed_record(p, rec.date) or {})
    return written


def _closed_row(
    rec: Reconciliation,
    at: str,
    closed_by: str,
    terminals: str,
    reason: str | None,
    result: str,
    chain_head: str,
) -> dict[str, Any]:
    """A closed_days row (a file's or a shared journal's), hashed over all its columns."""
    raw: dict[str, Any] = {
        "business_date": rec.date,
        "closed_at": at,
        "closed_by": closed_by,
        "pharmacy_code": rec.pharmacy_code,
        "terminals": terminals,
        "balanced": int(rec.balanced),
        "break_count": len(rec.breaks),
        "reason": reason,
        "digest": rec.digest(),
        "result": result,
        "chain_head": chain_head,
    }
    raw["hash"] = _record_hash(raw)
    return raw


def _close_shared(
    shared: SharedJournal,
    rec: Reconciliation,
    at: str,
    closed_by: str,
    terminals: str,
    reason: str | None,
    result: str,
) -> None:
    """One closed-day row for the pharmacy's day in a shared journal. Its chain_head is
    every till's head ({terminal_id: hash}), read in the closing transaction."""
    db = PgDb(shared, dict_rows=False)
    try:
        ensure_schema(db, CLOSED_DAYS_SCHEMA_PG)
        db.execute("BEGIN")
        try:
            heads = db.execute(
                "SELECT DISTINCT ON (terminal_id) terminal_id, hash FROM events "
                "WHERE pharmacy_code = ? ORDER BY terminal_id, seq DESC",
                (rec.pharmacy_code,),
            ).fetchall()
            chain_heads = json.dumps(dict(heads), sort_keys=True, separators=(",", ":"))
            raw = _closed_row(rec, at, closed_by, terminals, reason, result, chain_heads)
            cols = ", ".join(raw)
            cur = db.execute(
                f"INSERT INTO closed_days ({cols}) VALUES ({', '.join('?' * len(raw))}) "
                "ON CONFLICT DO NOTHING",
                tuple(raw.values()),
            )
            if cur.rowcount != 1:  # closed by someone else since the check above
                raise DayAlreadyClosed(f"{rec.date} was already closed in {shared.label}")
            db.execute("COMMIT")
        except BaseException:
            db.rollback_quietly()
            raise
    finally:
        db.close()


def closed_state(
    journal_paths: Sequence[JournalSource], rec: Reconciliation
) -> dict[str, Any] | None:
    """The closed-day record (from the first journal that has one), and whether the day
    reconciles differently now than when it was closed."""
    for p in journal_paths:
        got = closed_record(p, rec.date, pharmacy_code=rec.pharmacy_code)
        if got is not None:
            return {
                "closed_at": got["closed_at"],
                "closed_by": got["closed_by"],
                "reason": got["reason"],
                "balanced_when_closed": got["balanced"],
                "break_count_when_closed": got["break_count"],
                "changed_since_close": got["digest"] != rec.digest(),
                "record_intact": verify_closed_record(got),
            }
    return None
