"""Closed business days: the table ``close-day`` writes, and the check a sale asks first.

``is_day_closed`` lives with the journal, not with reconciliation, because the sale
service asks it before every sale: a sale dated a closed day is refused with a
cashier-visible error. ``pos_plugin.reconcile.close`` writes the rows.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from pos_plugin.journal.journal import Journal
from pos_plugin.journal.postgres import PgDb, SharedJournal
from pos_plugin.journal.sources import JournalSource, JournalSourceError, file_of, shared_of

CLOSED_DAYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS closed_days (
    business_date TEXT PRIMARY KEY,
    closed_at TEXT NOT NULL,
    closed_by TEXT NOT NULL,
    pharmacy_code TEXT NOT NULL,
    terminals TEXT NOT NULL,
    balanced INTEGER NOT NULL,
    break_count INTEGER NOT NULL,
    reason TEXT,
    digest TEXT NOT NULL,
    result TEXT NOT NULL,
    chain_head TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""
# The shared journal: one close covers a pharmacy's day (every till); chain_head
# holds every till's head as JSON {terminal_id: hash}.
CLOSED_DAYS_SCHEMA_PG = """
CREATE TABLE IF NOT EXISTS closed_days (
    pharmacy_code TEXT NOT NULL,
    business_date TEXT NOT NULL,
    closed_at TEXT NOT NULL,
    closed_by TEXT NOT NULL,
    terminals TEXT NOT NULL,
    balanced INTEGER NOT NULL,
    break_count INTEGER NOT NULL,
    reason TEXT,
    digest TEXT NOT NULL,
    result TEXT NOT NULL,
    chain_head TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (pharmacy_code, business_date)
);
"""

def business_day(business_date: dt.date | str) -> str:
    return business_date.isoformat() if isinstance(business_date, dt.date) else business_date


def is_day_closed(
    journal: JournalSource | sqlite3.Connection | Journal,
    business_date: dt.date | str,
    *,
    pharmacy_code: str | None = None,
) -> bool:
    """True when ``close-day`` has recorded this business date in this journal.

    ``journal``: the journal file's path, an open sqlite3 connection to it, a
    ``Journal`` (the sale service's own: on a shared journal the check runs on its
    connection, for its pharmacy), or a shared journal (URL or ``SharedJournal``;
    ``pharmacy_code`` says whose day when the source does not).
    Never creates anything; a journal without the table has no closed day.
    """
    day = business_day(business_date)
    if isinstance(journal, Journal):
        # On the journal's own connection: a sale asks this every time, and opening a
        # connection cost more than the indexed read. It sees a close committed by any
        # process, so only the table's existence is kept (Journal.has_table).
        if not journal.has_table("closed_days"):  # no day was ever closed
            return False
        if not journal.is_shared:
            return bool(journal.query(CLOSED_SQLITE, (day,)))
        return bool(journal.query(CLOSED_PG, (journal.pharmacy_code, day)))
    shared = shared_of(journal)
    if shared is not None:
        code = shared_pharmacy_code(shared, pharmacy_code)
        pg = PgDb(shared, dict_rows=False)
        try:
            if pg.execute(HAS_CLOSED_DAYS_PG).fetchone() is None:
                return False
            return pg.execute(CLOSED_PG, (code, day)).fetchone() is not None
        finally:
            pg.close()
    if isinstance(journal, sqlite3.Connection):
        try:
            row = journal.execute(CLOSED_SQLITE, (day,)).fetchone()
        except sqlite3.OperationalError:
            return False
        return row is not None
    if not Path(file_of(journal)).is_file():
        return False
    db = sqlite3.connect(str(journal))
    try:
        return is_day_closed(db, day)
    finally:
        db.close()


CLOSED_SQLITE = "SELECT 1 FROM closed_days WHERE business_date = ?"
HAS_CLOSED_DAYS_PG = "SELECT 1 FROM pg_class WHERE oid = to_regclass('closed_days')"
CLOSED_PG = "SELECT 1 FROM closed_days WHERE pharmacy_code = ? AND business_date = ?"


def shared_pharmacy_code(shared: SharedJournal, pharmacy_code: str | None) -> str:
    code = pharmacy_code or shared.pharmacy_code
    if code is None:
        raise JournalSourceError(
            f"the shared journal {shared.label} keeps each pharmacy's closed days: "
            "give the pharmacy code (--pharmacy CODE or --config)"
        )
    return code
