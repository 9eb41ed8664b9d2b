"""Where a till's journal is read from, and how it says what went wrong.

A source is a till's SQLite journal file, or a shared PostgreSQL journal (a
``postgresql://`` URL, or a ``SharedJournal`` narrowed to a pharmacy and tills).
``open_source`` gives one connection for both whose ``execute`` takes the same
SQL (``?`` placeholders, ``substr``): on PostgreSQL, temporary views named
``sales`` and ``pending_reversals`` show only the source's rows; a file from before
schema version 9 shows its ``sales`` with the ``legs`` column derived.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pos_plugin.journal.legs import legs_column
from pos_plugin.journal.postgres import JournalUnavailable, PgDb, SharedJournal, is_postgres_url

# A till's journal file, or a shared PostgreSQL journal (URL text or SharedJournal).
JournalSource = str | os.PathLike[str] | SharedJournal


class JournalSourceError(Exception):
    """A journal source that cannot be read, said in words the manager can act on."""


def connect_file(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A journal file opened for reconciling; a missing file is said, never created."""
    p = Path(path)
    if not p.is_file():
        raise JournalSourceError(f"journal file {p} not found")
    db = sqlite3.connect(str(p), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    _legs_for_older(db)
    return db


def _legs_for_older(db: sqlite3.Connection) -> None:
    """A file from before schema version 9 (its till not yet upgraded; reading never
    migrates) has no ``legs`` column, which reconciliation reads: this connection then
    sees ``sales`` through a temporary view of the same name (SQLite searches the temp
    schema first) that derives it with the journal's own function. Nothing is written
    to the file."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sales'").fetchone():
        return  # not a journal: the reader's own query says so
    if any(c[1] == "legs" for c in db.execute("PRAGMA main.table_info(sales)")):
        return
    db.create_function("journal_legs", 1, legs_column, deterministic=True)
    db.execute("CREATE TEMP VIEW sales AS SELECT rowid AS rowid, *, journal_legs(plan) AS legs "
               "FROM main.sales")  # fmt: skip


def pharmacy_codes(db: Any) -> set[str]:
    """The pharmacy codes (a msgid's first 12 characters) in a journal. msgids sort by
    that code first, so when the least and the greatest share it, every msgid between
    does: two seeks on the msgid index instead of a scan of the whole file."""
    # Two statements: SQLite seeks the index for a lone min() or max(), not for both.
    (low,) = db.execute("SELECT min(msgid) FROM sales").fetchone()
    (high,) = db.execute("SELECT max(msgid) FROM sales").fetchone()
    if low is None:
        return set()
    if low[:12] == high[:12]:
        return {low[:12]}
    found = db.execute("SELECT DISTINCT substr(msgid, 1, 12) FROM sales WHERE msgid IS NOT NULL")
    return {c for (c,) in found}


def shared_of(source: object) -> SharedJournal | None:
    """The source as a shared PostgreSQL journal, or None for a file."""
    if isinstance(source, SharedJournal):
        return source
    return SharedJournal(source) if isinstance(source, str) and is_postgres_url(source) else None


def open_source(source: JournalSource) -> tuple[Any, str]:
    """(connection, label) for reading one journal source; the caller closes it.

    The connection's ``execute(sql, params)`` takes reconciliation's SQL (``?``
    placeholders, ``substr``) and returns tuple rows. A file: its own sqlite3
    connection, labelled by the file's name. A shared journal: a PostgreSQL
    connection on which ``sales`` and ``pending_reversals`` show only the
    source's pharmacy and tills (``SharedJournal.open_reader``), labelled by its
    URL without password. The reading SQL is therefore one text for both.
    Raises ``JournalUnavailable`` when the database cannot be reached, or holds a
    journal from before schema version 9 (a file from before is read as it is).
    """
    shared = shared_of(source)
    if shared is not None:
        db = shared.open_reader()
        if not db.scalar(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('sales') "
            "AND attname = 'legs' AND NOT attisdropped"
        ):  # schema version 9 (journal/legs.py), which reconciliation reads
            db.close()
            raise JournalUnavailable(
                f"journal {shared.label} is from before schema version 9 (no legs column, "
                "which reconciliation reads): start one till of this release on it once, "
                "which upgrades it"
            )
        return db, shared.label
    return connect_file(file_of(source)), Path(file_of(source)).name


def file_of(source: JournalSource) -> str | os.PathLike[str]:
    """A source that ``shared_of`` found not to be a shared journal: a file's path."""
    assert not isinstance(source, SharedJournal)
    return source


def of_pharmacy(source: JournalSource, code: str) -> JournalSource:
    """A shared journal narrowed to the pharmacy being reconciled (it may hold other
    stores' rows, which must be neither read nor resolved with this store's ledger
    client); a file as it is."""
    shared = shared_of(source)
    if shared is None:
        return source
    if shared.pharmacy_code not in (None, code):
        raise JournalSourceError(f"the journal source {shared.label} is not pharmacy {code}'s")
    return shared.scoped(code, shared.terminals)


def label_of(source: JournalSource) -> str:
    """How a source is named to the manager: the file's name, or the URL without password."""
    shared = shared_of(source)
    return shared.label if shared is not None else Path(file_of(source)).name


# Parameters a by-msgid query binds at most (SQLite builds before 3.32 allow 999).
_MAX_PARAMS = 900


def rows_of_msgids(
    paths: Sequence[JournalSource], sql: str, msgids: Iterable[str], lists: int = 1
) -> Iterator[tuple[JournalSource, str, Any]]:
    """The rows of ``sql`` for these msgids in every journal: (source, its label, row).

    ``sql`` has ``{marks}`` where each ``IN (...)`` list of msgids goes (``lists`` of
    them, each given the same msgids); the msgids are sent a chunk at a time, so a query
    never binds more than ``_MAX_PARAMS`` values. Each journal is opened once and closed
    after its rows."""
    wanted = sorted(set(msgids))
    if not wanted:
        return
    size = _MAX_PARAMS // lists
    for path in paths:
        db, label = open_source(path)
        try:
            for i in range(0, len(wanted), size):
                chunk = wanted[i : i + size]
                query = sql.format(marks=",".join("?" * len(chunk)))
                for row in db.execute(query, tuple(chunk) * lists).fetchall():
                    yield path, label, row
        finally:
            db.close()


def read_chunks(
    db: Any, sql: str, params: Sequence[Any] = (), size: int = 10_000
) -> Iterator[list[Any]]:
    """A query's rows in lists of up to ``size``, never the whole result at once: a
    SQLite cursor's ``fetchmany``, or a PostgreSQL server-side cursor (``PgDb.stream``,
    inside the reader's transaction)."""
    if isinstance(db, PgDb):
        yield from db.stream(sql, params, size)
        return
    cur = db.execute(sql, params)
    while rows := cur.fetchmany(size):
        yield rows
