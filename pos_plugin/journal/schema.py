"""The journal's schema version and its migrations, for SQLite and the shared PostgreSQL.

Why: a till is upgraded in place and its journal is the record of money taken; an
upgrade must carry the journal forward, and an older release must never write into
a journal a newer one has changed.

* **Versions.** Version 1 is the schema of every journal written before versions
  existed (the tables as journal/journal.py first created them). Each later version is one
  entry of ``SQLITE_MIGRATIONS`` / ``PG_MIGRATIONS``, applied in order.
* **SQLite** keeps the version in ``PRAGMA user_version`` (in the file's header, so
  it travels with the file). A file with tables but ``user_version = 0`` is version 1.
  Before migrating a file that holds a journal, a backup copy is made beside it
  (``journal.sqlite3.v1-20261201T083000.bak``, SQLite's online backup, consistent even
  in WAL mode); then every step runs in ONE transaction with the new user_version, so
  a crash leaves the old version or the new one, never half.
* **PostgreSQL** keeps it in a ``schema_version`` table (one row per applied version),
  changed under the same advisory lock that creates the tables, so two tills starting
  together migrate once. A database whose tables exist and are current needs no DDL,
  so the tills' role still needs only SELECT, INSERT, UPDATE.
* **From the future.** A journal whose version is newer than this code is refused
  with :class:`JournalTooNew`, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pos_plugin.journal.legs import legs_column
from pos_plugin.journal.person_keys import PG_MIGRATION as _PG_PERSON_KEYS
from pos_plugin.journal.person_keys import SQLITE_MIGRATION as _SQLITE_PERSON_KEYS

# Version 3 (the national platform's day end, issue 13): the manager's reversals (2601)
# of a settlement the centre has and the till does not (a 2102 that landed after its
# 2601), one row per msgid: asked, then done. The key makes the action idempotent.
_CENTRE_REVERSALS = """
    CREATE TABLE IF NOT EXISTS centre_reversals (
        msgid TEXT PRIMARY KEY,
        pharmacy_code TEXT NOT NULL,
        psn_no TEXT NOT NULL,
        business_date TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        done_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    )
"""

# Version 4 (issue 13): the 追溯码 of every pack this store sold, one row per code
# (the key refuses a second sale of it across every till of a shared journal);
# ``released_at`` once the sale was reversed (the pack came back).
_TRACE_CODES = """
    CREATE TABLE IF NOT EXISTS trace_codes (
        code TEXT PRIMARY KEY,
        pharmacy_code TEXT NOT NULL,
        sale_ref TEXT NOT NULL,
        msgid TEXT NOT NULL,
        sold_at TEXT NOT NULL,
        released_at TEXT
    )
"""

# Version 5 (issue 13): the national platform's sales uploads (3505) of settled sales.
# What is owed is derived from ``sales`` (a settled national sale whose plan journaled
# its lines), so nothing can be lost between settling and enqueueing; this table keeps
# each upload's msgid (journaled before it leaves: a resend reuses it), its attempts and
# when it was acknowledged.
_SALES_UPLOADS = """
    CREATE TABLE IF NOT EXISTS sales_uploads (
        sale_ref TEXT NOT NULL,
        kind TEXT NOT NULL,
        pharmacy_code TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        msgid TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        done_at TEXT,
        PRIMARY KEY (pharmacy_code, terminal_id, sale_ref, kind)
    )
"""

# Version 6 (issue 15, journal search): the person-key table, one row per (keyed
# person, sale, role), backfilled from the rows' evidence, patient_id_hmac and plan
# (journal/person_keys.py). Several statements, self-contained (IF NOT EXISTS, and a
# backfill that adds only what is missing), so its place in the order does not matter.

# Version 7 (issue 15, the manager's tools): every close and reopen of a business day,
# in order, one row each (the closed_days row is the day's state now; this is its
# history). Each row's digest is an event in the journal's hash chain (sale_ref
# ``day:YYYY-MM-DD``), so ``journal verify`` sees a row changed or removed.
_DAY_HISTORY_SQLITE = """
    CREATE TABLE IF NOT EXISTS day_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        pharmacy_code TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        business_date TEXT NOT NULL,
        action TEXT NOT NULL,
        at TEXT NOT NULL,
        by_whom TEXT NOT NULL,
        reason TEXT,
        detail TEXT NOT NULL
    )
"""
_DAY_HISTORY_PG = _DAY_HISTORY_SQLITE.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")

# Version 8 (issue 15): the manager's reversals by msgid on our own ledger (a settlement
# the ledger has and the till does not, or an owed reversal that escalated), one row per
# msgid: the reversal msgid is journaled before the request leaves (a retry reuses it),
# then done. The key makes the action idempotent.
_LEDGER_REVERSALS = """
    CREATE TABLE IF NOT EXISTS ledger_reversals (
        msgid TEXT PRIMARY KEY,
        pharmacy_code TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        sale_ref TEXT,
        reversal_msgid TEXT NOT NULL,
        business_date TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        done_at TEXT,
        outcome TEXT,
        last_error TEXT
    )
"""

# Version 9 (issue 17): each sale's legs in a narrow column, derived from the plan
# (journal/legs.py says why and what it holds). SQLite backfills it with that module's
# own function (``journal_legs``, registered by ``migrate_sqlite``): the SQLite a
# CPython 3.11 ships cannot order an aggregate's input, so SQL could not sort the legs.
_SQLITE_LEGS = """
    ALTER TABLE sales ADD COLUMN legs TEXT;
    UPDATE sales SET legs = journal_legs(plan) WHERE plan IS NOT NULL
"""
# PostgreSQL builds the same text in SQL: a plan whose legs are all objects with a text
# kind and account_id and an integer amount gets them sorted (code point order, as
# Python sorts: COLLATE "C"), as canonical compact JSON (to_json escapes a string as
# Python's json does); any other plan gets ``unreadable``. A plan that is not JSON at
# all stops the migration, as the person-key backfill's (version 6) already did.
_PG_LEGS = """
    ALTER TABLE sales ADD COLUMN IF NOT EXISTS legs TEXT;
    WITH p AS (
        SELECT pharmacy_code, terminal_id, sale_ref, pl, json_typeof(pl) = 'object'
               AND coalesce(json_typeof(pl -> 'legs'), 'null') IN ('array', 'null') AS shaped
        FROM (SELECT pharmacy_code, terminal_id, sale_ref,
                     replace(plan, '\\u0000', '\\u0020')::json AS pl
              FROM sales WHERE plan IS NOT NULL) t
    ), l AS (
        SELECT pharmacy_code, terminal_id, sale_ref, leg ->> 'kind' AS kind,
               leg ->> 'account_id' AS account_id,
               CASE WHEN json_typeof(leg) = 'object' AND json_typeof(leg -> 'kind') = 'string'
                    AND json_typeof(leg -> 'account_id') = 'string'
                    AND json_typeof(leg -> 'amount') = 'number'
                    AND (leg ->> 'amount') ~ '^-{0,1}[0-9]+$'
                    THEN (leg ->> 'amount')::bigint END AS amount
        FROM p, json_array_elements(CASE WHEN p.shaped AND json_typeof(p.pl -> 'legs') = 'array'
                                         THEN p.pl -> 'legs' ELSE '[]' END) AS e(leg)
    ), d AS (
        SELECT pharmacy_code, terminal_id, sale_ref,
               CASE WHEN NOT p.shaped OR count(l.sale_ref) > count(l.amount) THEN 'unreadable'
                    ELSE '[' || coalesce(string_agg(
                        '[' || to_json(l.kind)::text || ',' || to_json(l.account_id)::text
                        || ',' || l.amount::text || ']', ','
                        ORDER BY l.kind COLLATE "C", l.account_id COLLATE "C", l.amount), '')
                    || ']' END AS legs
        FROM p LEFT JOIN l USING (pharmacy_code, terminal_id, sale_ref)
        GROUP BY pharmacy_code, terminal_id, sale_ref, p.shaped
    )
    UPDATE sales s SET legs = d.legs FROM d
    WHERE s.pharmacy_code = d.pharmacy_code AND s.terminal_id = d.terminal_id
      AND s.sale_ref = d.sale_ref
"""

# Version 2: a history of the migrations applied, so support can see when a till's
# journal was upgraded and from which version.
SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS schema_history (
        version INTEGER PRIMARY KEY,
        applied_at TEXT NOT NULL,
        from_version INTEGER NOT NULL
    )
    """,
    _CENTRE_REVERSALS,
    _TRACE_CODES,
    _SALES_UPLOADS,
    _SQLITE_PERSON_KEYS,
    _DAY_HISTORY_SQLITE,
    _LEDGER_REVERSALS,
    _SQLITE_LEGS,
)
PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS schema_history (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        from_version INTEGER NOT NULL
    )
    """,
    _CENTRE_REVERSALS,
    _TRACE_CODES,
    _SALES_UPLOADS,
    _PG_PERSON_KEYS,
    _DAY_HISTORY_PG,
    _LEDGER_REVERSALS,
    _PG_LEGS,
)
BASE_VERSION = 1
LATEST = BASE_VERSION + len(SQLITE_MIGRATIONS)
assert len(PG_MIGRATIONS) == len(SQLITE_MIGRATIONS)


class JournalSchemaError(Exception):
    """The journal cannot be opened as this code's journal; the message says why."""


class JournalTooNew(JournalSchemaError):
    """The journal was written by a newer pos-plugin; this one must not touch it."""

    def __init__(self, where: str, version: int) -> None:
        self.version = version
        super().__init__(
            f"the journal {where} has schema version {version}, newer than this pos-plugin "
            f"knows (up to {LATEST}): it was upgraded by a newer release. Install that release "
            "again (or newer); do not open it with this one"
        )


class JournalNotADatabase(JournalSchemaError):
    """The file given as a journal is not an SQLite journal."""


class JournalUpgradeFailed(JournalSchemaError):
    """A migration failed; its transaction was rolled back, the journal is unchanged."""


def statements(migration: str) -> list[str]:
    """A migration's statements: one entry may hold several, separated by ``;`` (none of
    them has a ``;`` inside a string)."""
    return [stmt for stmt in migration.split(";") if stmt.strip()]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- SQLite


def sqlite_version(db: sqlite3.Connection) -> int:
    """The file's schema version: 0 for an empty file, 1 for a pre-version journal."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version:
        return version
    has_sales = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sales'"
    ).fetchone()
    return BASE_VERSION if has_sales else 0


def migrate_sqlite(
    db: sqlite3.Connection,
    path: str,
    base_schema: str,
    *,
    backup: bool = True,
    upgrade: bool = True,
) -> Path | None:
    """Bring the file to ``LATEST``: create it, or back it up and upgrade it.

    Returns the backup file made, if any. ``db`` is in autocommit mode
    (``isolation_level=None``). Raises JournalTooNew, or JournalNotADatabase.
    ``upgrade=False`` (``journal verify``): an older journal is read as it is, not
    changed; one from the future is still refused.
    """
    try:
        current = sqlite_version(db)
    except sqlite3.DatabaseError as e:
        raise JournalNotADatabase(f"{path} is not a journal file ({e})") from None
    if current > LATEST:
        raise JournalTooNew(path, current)
    if current == LATEST or (not upgrade and current >= BASE_VERSION):
        return None
    saved: Path | None = None
    if current >= BASE_VERSION and backup and path not in ("", ":memory:"):
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        saved = Path(f"{path}.v{current}-{stamp}.bak")
        dest = sqlite3.connect(saved)
        try:
            db.backup(dest)
        finally:
            dest.close()
    db.create_function("journal_legs", 1, legs_column, deterministic=True)  # version 9
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        current = sqlite_version(db)
        if current > LATEST:
            raise JournalTooNew(path, current)
        if current == 0:
            for stmt in base_schema.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            current = BASE_VERSION
        start = current
        for version in range(current + 1, LATEST + 1):
            for stmt in statements(SQLITE_MIGRATIONS[version - BASE_VERSION - 1]):
                db.execute(stmt)
            db.execute(
                "INSERT OR REPLACE INTO schema_history (version, applied_at, from_version) "
                "VALUES (?, ?, ?)",
                (version, _now(), start),
            )
        db.execute(f"PRAGMA user_version = {LATEST}")
        db.execute("COMMIT")
    except BaseException as e:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(e, sqlite3.Error):
            kept = f"; a copy from before is {saved}" if saved else ""
            raise JournalUpgradeFailed(
                f"upgrading the journal {path} to schema version {LATEST} failed ({e}); "
                f"it is unchanged{kept}. Call support with the log"
            ) from None
        raise
    return saved


# --------------------------------------------------------------------------- PostgreSQL


def migrate_pg(
    db: Any,
    base_schema: str,
    *,
    where: str,
    lock: int,
    table_exists: Callable[[str], bool],
) -> None:
    """The shared journal's schema to ``LATEST`` under the DDL advisory lock.

    ``db`` is a PgDb (``?`` placeholders, ``scalar``, ``rollback_quietly``);
    nothing is run when the schema is current.
    """

    def version() -> int:
        if table_exists("schema_version"):
            v = db.scalar("SELECT max(version) FROM schema_version")
            return int(v) if v is not None else BASE_VERSION
        return BASE_VERSION if table_exists("sales") else 0

    current = version()
    if current > LATEST:
        raise JournalTooNew(where, current)
    if current == LATEST:
        return
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
        current = version()  # again, under the lock: another till may have done it
        if current > LATEST:
            raise JournalTooNew(where, current)
        if current < LATEST:
            if current == 0:
                for stmt in base_schema.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                current = BASE_VERSION
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            db.execute(
                "INSERT INTO schema_version (version) VALUES (?) ON CONFLICT DO NOTHING",
                (current,),
            )
            start = current
            for v in range(current + 1, LATEST + 1):
                for stmt in statements(PG_MIGRATIONS[v - BASE_VERSION - 1]):
                    db.execute(stmt)
                db.execute(
                    "INSERT INTO schema_history (version, from_version) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (v, start),
                )
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (v,))
    except BaseException:
        db.rollback_quietly()
        raise
    db.execute("COMMIT")
