"""Closing a business day: the reconciled result recorded, so it cannot change silently.

``close_day`` writes a row in table ``closed_days`` of every given journal file
(or one row for the store in a shared journal): the result, its digest, the
manager's reason when breaks remain, and the journal's event-chain head(s), hashed
together. The table and the check a sale asks first (``is_day_closed``) live with
the journal, in ``pos_plugin.journal.closed_days``.

A close is refused without a reason when breaks remain or national uploads are owed
(``uploads_owed``), and today while the shift is still selling unless forced with a
reason (``still_selling``). ``reopen_day`` undoes a close, with a reason. Every close
and reopen is also a ``day_history`` row written with an event in the journal's hash
chain (``Journal.record_day_event``), so both are kept and ``journal verify`` checks
them; ``day_history`` lists them for the page and the CLI.
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
from pos_plugin.journal.journal import Journal, count_uploads_owed
from pos_plugin.journal.postgres import PgDb, SharedJournal, ensure_schema
from pos_plugin.journal.sources import (
    JournalSource,
    connect_file,
    file_of,
    label_of,
    open_source,
    shared_of,
)
from pos_plugin.reconcile.errors import (
    DayAlreadyClosed,
    DayNotBalanced,
    DayNotClosed,
    ReconcileError,
)
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


class CloseRefused(ReconcileError):
    """A close the shift or the national uploads stand against; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


QUIET_MINUTES = 15
"""Closing *today* is refused while a sale is in progress or the last sale began less
than this many minutes ago (the shift is still selling), unless forced with a reason."""
DAY_TERMINAL = "manager"
"""On a shared journal, the hash chain a store-wide close or reopen is kept in."""

_IN_PROGRESS = ("received", "card_read", "validated", "settling")


def still_selling(
    journal_paths: Sequence[JournalSource], day: str, now: dt.datetime,
    quiet_minutes: int = QUIET_MINUTES,
) -> str | None:  # fmt: skip
    """Why the shift is still selling on ``day`` (a sale in progress, or one begun within
    ``quiet_minutes`` of ``now``), or None. Only today can still be selling."""
    now = now.astimezone(SHANGHAI)
    if day != now.date().isoformat():
        return None
    marks = ", ".join("?" * len(_IN_PROGRESS))
    busy, last = 0, ""
    for path in journal_paths:
        db, _ = open_source(path)
        try:
            (n,) = db.execute(
                f"SELECT count(*) FROM sales WHERE business_date = ? AND state IN ({marks})",
                (day, *_IN_PROGRESS),
            ).fetchone()
            (latest,) = db.execute(
                "SELECT max(created_at) FROM sales WHERE business_date = ?", (day,)
            ).fetchone()
        finally:
            db.close()
        busy += int(n)
        last = max(last, latest or "")
    if busy:
        return f"{busy} sale(s) still in progress"
    if last:
        ago = now - dt.datetime.fromisoformat(last)
        if ago < dt.timedelta(minutes=quiet_minutes):
            return (
                f"the last sale began {int(ago.total_seconds() // 60)} min ago "
                f"(less than {quiet_minutes})"
            )
    return None


def uploads_owed(
    journal_paths: Sequence[JournalSource], pharmacy_code: str, day: dt.date | str | None = None
) -> int:
    """The national uploads (3505 sales, 3506 returns) the platform has not acknowledged,
    every till of the given journals, of business ``day`` (None: of every day): the
    question ``/v1/health`` asks (``journal.count_uploads_owed``), the gate of a close."""
    on = dt.date.fromisoformat(day) if isinstance(day, str) else day
    owed = 0
    for path in journal_paths:
        shared = shared_of(path)
        if shared is not None:
            pg = PgDb(shared, dict_rows=True)
            try:
                owed += count_uploads_owed(pg, pharmacy_code, shared=True, day=on)
            finally:
                pg.close()
            continue
        db = connect_file(file_of(path))
        try:
            owed += count_uploads_owed(db, pharmacy_code, day=on)
        except sqlite3.OperationalError:  # a journal older than the uploads: owes none
            pass
        finally:
            db.close()
    return owed


def _journal(path: JournalSource, pharmacy_code: str, terminal_id: str = DAY_TERMINAL) -> Journal:
    """The journal a manager's change is written through (so it joins the hash chain)."""
    shared = shared_of(path)
    if shared is not None:
        return Journal(shared.url, hmac_key=b"reconcile", pharmacy_code=pharmacy_code,
                       terminal_id=terminal_id, password=shared.password)  # fmt: skip
    connect_file(file_of(path)).close()  # a missing file is said, never created
    return Journal(str(file_of(path)), hmac_key=b"reconcile", pharmacy_code=pharmacy_code,
                   terminal_id=terminal_id)  # fmt: skip


def close_day(
    journal_paths: Sequence[JournalSource],
    rec: Reconciliation,
    *,
    reason: str | None = None,
    closed_by: str = "manager",
    now: dt.datetime | None = None,
    force: bool = False,
    national: bool = False,
    quiet_minutes: int = QUIET_MINUTES,
) -> list[dict[str, Any]]:
    """Record the reconciled day in every given journal; refuse what a reason must answer.

    Refused without a reason: breaks (``DayNotBalanced``), national uploads owed
    (``CloseRefused("uploads_owed")``, when ``national``); refused unless ``force`` and
    a reason: today while the shift is still selling (``CloseRefused("still_selling")``).
    Each record keeps the result (totals and breaks), its digest, the manager's
    reason, and the journal's event-chain head at closing, hashed together; the close
    is also a ``day_history`` row chained in the journal's events, in the same
    transaction. A shared journal gets one record for the pharmacy's day, with every
    till's head.
    """
    reason = (reason or "").strip() or None
    moment = (now or dt.datetime.now(SHANGHAI)).astimezone(SHANGHAI)
    if not rec.balanced and reason is None:
        raise DayNotBalanced(
            f"{rec.date} has {len(rec.breaks)} break(s) not explained: resolve them, or close "
            "with --reason saying why (the reason is kept with the closed day)"
        )
    overrides: list[str] = []
    selling = still_selling(journal_paths, rec.date, moment, quiet_minutes)
    if selling:
        if not (force and reason):
            raise CloseRefused(
                "still_selling",
                f"{rec.date} is today and the shift is still selling ({selling}): close it "
                "after the last sale, or force it with a reason (--force --reason)",
            )
        overrides.append(f"still_selling: {selling}")
    owed = uploads_owed(journal_paths, rec.pharmacy_code, rec.date) if national else 0
    if owed:
        if reason is None:
            raise CloseRefused(
                "uploads_owed",
                f"{owed} upload(s) of this day to the national platform (3505 sales, 3506 "
                "returns) are not acknowledged yet: wait until the agent has sent them "
                "(uploads_owed in /v1/health is 0), or close with a reason (--reason)",
            )
        overrides.append(f"uploads_owed: {owed}")
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
    at = moment.isoformat()
    result = json.dumps(rec.as_dict(), ensure_ascii=False, sort_keys=True)
    terminals = json.dumps([t.terminal_id for t in rec.terminals], ensure_ascii=False)
    detail = {"closed_at": at, "digest": rec.digest(), "balanced": rec.balanced,
              "break_count": len(rec.breaks), "overrides": overrides}  # fmt: skip
    written = []
    for p in journal_paths:
        shared = shared_of(p)
        if shared is not None:
            pg = PgDb(shared, dict_rows=False)
            try:
                ensure_schema(pg, CLOSED_DAYS_SCHEMA_PG)
            finally:
                pg.close()

        def insert(db: Any, shared: SharedJournal | None = shared, p: JournalSource = p) -> None:
            """The closed_days row, in the transaction that chains the close."""
            if shared is not None:
                heads = db.execute(
                    "SELECT DISTINCT ON (terminal_id) terminal_id, hash FROM events "
                    "WHERE pharmacy_code = ? AND terminal_id <> ? ORDER BY terminal_id, seq DESC",
                    (rec.pharmacy_code, DAY_TERMINAL),
                ).fetchall()
                head = json.dumps({h["terminal_id"]: h["hash"] for h in heads}, sort_keys=True,
                                  separators=(",", ":"))  # fmt: skip
                conflict = " ON CONFLICT DO NOTHING"
            else:
                db.execute(CLOSED_DAYS_SCHEMA.strip().rstrip(";"))
                last = db.execute("SELECT hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
                head, conflict = (last[0] if last else "0" * 64), ""
            raw = _closed_row(rec, at, closed_by, terminals, reason, result, head)
            cur = db.execute(
                f"INSERT INTO closed_days ({', '.join(raw)}) "
                f"VALUES ({', '.join('?' * len(raw))}){conflict}",
                tuple(raw.values()),
            )
            if cur.rowcount != 1:  # closed by someone else since the check above
                raise DayAlreadyClosed(f"{rec.date} was already closed in {label_of(p)}")

        j = _journal(p, rec.pharmacy_code)
        try:
            j.record_day_event(rec.date, "closed", by=closed_by, reason=reason, detail=detail,
                               within=insert, at=at)  # fmt: skip
        finally:
            j.close()
        written.append(closed_record(p, rec.date, pharmacy_code=rec.pharmacy_code) or {})
    return written


def reopen_day(
    journal_paths: Sequence[JournalSource],
    business_date: dt.date | str,
    pharmacy_code: str,
    *,
    reason: str | None,
    by: str = "manager",
) -> list[dict[str, Any]]:
    """Reopen a closed day, with the manager's reason: its closed-day record leaves
    ``closed_days`` (sales dated that day are taken again) and moves, whole, into a
    ``day_history`` row chained in the journal's events; the close's own history row
    stays. Closing again afterwards works as the first time. Returns the reopen rows."""
    day = business_day(business_date)
    reason = (reason or "").strip() or None
    if reason is None:
        raise ReconcileError("a day is reopened only with a reason (--reason): it is kept "
                             "with the day's history")  # fmt: skip
    closed = [(p, closed_record(p, day, pharmacy_code=pharmacy_code)) for p in journal_paths]
    if not any(c for _, c in closed):
        raise DayNotClosed(f"{day} is not closed: there is nothing to reopen")
    out = []
    at = dt.datetime.now(SHANGHAI).isoformat()
    for p, record in closed:
        if record is None:
            continue
        shared = shared_of(p)

        def delete(db: Any, shared: SharedJournal | None = shared, p: JournalSource = p) -> None:
            """The closed_days row leaves, in the transaction that chains the reopen."""
            if shared is not None:
                cur = db.execute(
                    "DELETE FROM closed_days WHERE pharmacy_code = ? AND business_date = ?",
                    (pharmacy_code, day),
                )
            else:
                cur = db.execute("DELETE FROM closed_days WHERE business_date = ?", (day,))
            if cur.rowcount != 1:
                raise DayNotClosed(f"{day} was reopened meanwhile in {label_of(p)}")

        kept = ("closed_at", "closed_by", "reason", "digest", "hash", "balanced", "break_count",
                "chain_head")  # fmt: skip
        detail = {"closed": {k: record[k] for k in kept},
                  "record_intact": verify_closed_record(record), "result": record["result"]}
        j = _journal(p, pharmacy_code)
        try:
            out.append(j.record_day_event(day, "reopened", by=by, reason=reason, detail=detail,
                                          within=delete, at=at))  # fmt: skip
        finally:
            j.close()
    return out


def day_history(
    journal_paths: Sequence[JournalSource], business_date: dt.date | str, pharmacy_code: str
) -> list[dict[str, Any]]:
    """Every close and reopen of the day, oldest first, once for the store (``journals``:
    the files it was recorded in)."""
    day = business_day(business_date)
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in journal_paths:
        shared = shared_of(p)
        rows: list[Any]
        if shared is not None:
            pg = PgDb(shared, dict_rows=True)
            try:
                if pg.execute("SELECT to_regclass('day_history')").fetchone() is None:
                    rows = []
                else:
                    rows = pg.execute(
                        "SELECT * FROM day_history WHERE pharmacy_code = ? AND business_date = ? "
                        "ORDER BY seq", (pharmacy_code, day)).fetchall()  # fmt: skip
            finally:
                pg.close()
        else:
            db = connect_file(file_of(p))
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute(
                    "SELECT * FROM day_history WHERE business_date = ? ORDER BY seq", (day,)
                ).fetchall()
            except sqlite3.OperationalError:  # a journal older than the table: no history
                rows = []
            finally:
                db.close()
        for r in rows:
            d = dict(r)
            key = (d["action"], d["at"], d["by_whom"], d["reason"])
            if key in seen:
                seen[key]["journals"].append(label_of(p))
                continue
            detail = json.loads(d["detail"] or "{}")
            seen[key] = {
                "action": d["action"], "at": d["at"], "by": d["by_whom"], "reason": d["reason"],
                "overrides": detail.get("overrides", []), "journals": [label_of(p)],
            }  # fmt: skip
    return sorted(seen.values(), key=lambda h: str(h["at"]))


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
