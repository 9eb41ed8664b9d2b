"""The platform's drug catalogue kept on the till: downloaded by 1312, checked at the counter.

Why on the till: a 2102 whose ``med_list_codg`` the platform does not know is refused by
the platform *after* the customer has presented their card (and, on some provinces, the
PIN); checked locally the line is refused before anyone is asked for anything, with a
message that names it. The check is only as fresh as the last ``pos-plugin catalogue
update``: the catalogue's date is kept and shown.

Storage: an SQLite file beside the till's journal (``nhsa-catalogue.sqlite3``), not the
journal itself: it is reference data the platform owns and a download replaces whole,
never a record of money; a till without it still sells (the check is skipped, with a
warning in the log, until the first download). A download is written into a new table
and swapped in one transaction, so a failed download leaves the old catalogue.

On a shared PostgreSQL journal the catalogue lives in that database
(:class:`SharedCatalogue`, tables ``nhsa_catalogue`` / ``nhsa_catalogue_meta``, one
catalogue per pharmacy code), so every till of the store checks against the one
download a manager made. Created by the first ``catalogue update`` (``SHARED_SCHEMA``,
under the journal's DDL lock, as close-day creates ``closed_days``), not by a journal
migration: reference data, not a record of money. A download never DELETEs (a till's
role has SELECT, INSERT, UPDATE only): each one is a new *generation*, every item
upserted with it and the meta row moved to it in the same transaction; an item of an
older generation is no longer in the catalogue.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("pos_plugin.ledger.nhsa")
FILENAME = "nhsa-catalogue.sqlite3"
PAGE_SIZE = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalogue (
    hilist_code TEXT PRIMARY KEY, hilist_name TEXT NOT NULL, chrgitm_lv TEXT NOT NULL,
    price_limit INTEGER);
CREATE TABLE IF NOT EXISTS catalogue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Item:
    hilist_code: str
    hilist_name: str
    chrgitm_lv: str  # 01 甲, 02 乙, 03 丙
    price_limit: int | None  # fen per unit


def path_beside(journal_path: str | Path) -> Path:
    """Where a till's catalogue lives: beside its journal file."""
    return Path(journal_path).resolve().parent / FILENAME


class Catalogue:
    """The local copy (thread-safe: a connection per call, SQLite's own locking)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0)
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def replace(self, items: Iterable[Item], *, at: dt.datetime | None = None) -> int:
        """The whole catalogue swapped for ``items`` in one transaction; how many."""
        stamp = (at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM catalogue")
            n = 0
            for it in items:
                db.execute("INSERT OR REPLACE INTO catalogue VALUES (?, ?, ?, ?)",
                           (it.hilist_code, it.hilist_name, it.chrgitm_lv, it.price_limit))
                n += 1
            db.execute("INSERT OR REPLACE INTO catalogue_meta VALUES ('updated_at', ?)", (stamp,))
            db.execute("INSERT OR REPLACE INTO catalogue_meta VALUES ('count', ?)", (str(n),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
        return n

    def info(self) -> dict[str, Any]:
        """``{"updated_at": ISO or None, "count": n}`` (for ``catalogue show`` and health)."""
        db = self._db()
        try:
            meta = dict(db.execute("SELECT key, value FROM catalogue_meta").fetchall())
        finally:
            db.close()
        return {"updated_at": meta.get("updated_at"), "count": int(meta.get("count", 0))}

    def unknown(self, codes: Sequence[str]) -> list[str]:
        """The codes the platform's catalogue does not hold (none while never downloaded)."""
        if not codes:
            return []
        db = self._db()
        try:
            if db.execute("SELECT 1 FROM catalogue_meta WHERE key = 'updated_at'").fetchone() \
                    is None:  # fmt: skip
                log.warning("nhsa catalogue %s never downloaded: codes not checked", self.path)
                return []
            marks = ",".join("?" * len(codes))
            known = {c for (c,) in db.execute(
                f"SELECT hilist_code FROM catalogue WHERE hilist_code IN ({marks})", list(codes))}
        finally:
            db.close()
        return [c for c in codes if c not in known]


SHARED_SCHEMA = """
CREATE TABLE IF NOT EXISTS nhsa_catalogue (
    pharmacy_code TEXT NOT NULL, hilist_code TEXT NOT NULL, hilist_name TEXT NOT NULL,
    chrgitm_lv TEXT NOT NULL, price_limit BIGINT, generation BIGINT NOT NULL,
    PRIMARY KEY (pharmacy_code, hilist_code));
CREATE TABLE IF NOT EXISTS nhsa_catalogue_meta (
    pharmacy_code TEXT PRIMARY KEY, generation BIGINT NOT NULL, updated_at TEXT NOT NULL,
    item_count BIGINT NOT NULL)
"""
_HAS_SHARED = "SELECT 1 FROM pg_class WHERE oid = to_regclass('nhsa_catalogue_meta')"


class SharedCatalogue:
    """The catalogue in the shared PostgreSQL journal's database, one per pharmacy.

    ``connect()`` gives a connection that speaks ``?`` placeholders (the journal's
    ``PgDb``; this package may not import the journal); ``ensure_schema(db, ddl)``
    creates the tables once (the journal's, under its DDL lock); ``query(sql, args)``
    (the till's own journal connection, thread-safe) serves the counter's reads, so a
    sale does not open a connection. Without ``query`` every call opens its own."""

    def __init__(self, connect: Callable[[], Any], pharmacy_code: str, *, label: str,
                 ensure_schema: Callable[[Any, str], None] | None = None,
                 query: Callable[[str, Sequence[Any]], list[Any]] | None = None) -> None:  # fmt: skip
        self._connect, self._ensure = connect, ensure_schema
        self._query = query
        self.pharmacy_code = pharmacy_code
        self.path = label  # where, for messages (the URL without its password)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        if self._query is not None:
            return self._query(sql, args)
        db = self._connect()
        try:
            return list(db.execute(sql, args).fetchall())
        finally:
            db.close()

    def _meta(self) -> Any | None:
        if not self._read(_HAS_SHARED):
            return None
        rows = self._read("SELECT generation, updated_at, item_count FROM nhsa_catalogue_meta "
                          "WHERE pharmacy_code = ?", (self.pharmacy_code,))  # fmt: skip
        return _row(rows[0]) if rows else None

    def replace(self, items: Iterable[Item], *, at: dt.datetime | None = None) -> int:
        """A new generation of the whole catalogue in one transaction; how many items."""
        stamp = (at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        db = self._connect()
        try:
            if self._ensure is not None:
                self._ensure(db, SHARED_SCHEMA)
            db.execute("BEGIN")
            try:
                db.execute("SELECT pg_advisory_xact_lock(hashtext(?), 1312)",
                           (self.pharmacy_code,))  # two downloads at once: one after the other
                got = db.execute("SELECT generation FROM nhsa_catalogue_meta "
                                 "WHERE pharmacy_code = ?", (self.pharmacy_code,)).fetchone()  # fmt: skip
                gen = (_row(got)[0] if got is not None else 0) + 1
                n = 0
                with db.conn.cursor() as cur:
                    batch: list[tuple[Any, ...]] = []
                    for it in items:
                        batch.append((self.pharmacy_code, it.hilist_code, it.hilist_name,
                                      it.chrgitm_lv, it.price_limit, gen))  # fmt: skip
                        n += 1
                        if len(batch) >= PAGE_SIZE:
                            cur.executemany(_UPSERT, batch)
                            batch = []
                    if batch:
                        cur.executemany(_UPSERT, batch)
                db.execute("INSERT INTO nhsa_catalogue_meta (pharmacy_code, generation, updated_at,"
                           " item_count) VALUES (?, ?, ?, ?) ON CONFLICT (pharmacy_code) DO UPDATE"
                           " SET generation = excluded.generation, updated_at = excluded.updated_at,"
                           " item_count = excluded.item_count",
                           (self.pharmacy_code, gen, stamp, n))  # fmt: skip
            except BaseException:
                db.rollback_quietly()
                raise
            db.execute("COMMIT")
        finally:
            db.close()
        return n

    def info(self) -> dict[str, Any]:
        meta = self._meta()
        if meta is None:
            return {"updated_at": None, "count": 0}
        return {"updated_at": str(meta[1]), "count": int(meta[2])}

    def unknown(self, codes: Sequence[str]) -> list[str]:
        """The codes this pharmacy's current catalogue does not hold (none while never
        downloaded: the platform checks at 2102)."""
        if not codes:
            return []
        meta = self._meta()
        if meta is None:
            log.warning("nhsa catalogue of %s never downloaded into %s: codes not checked",
                        self.pharmacy_code, self.path)  # fmt: skip
            return []
        rows = self._read("SELECT hilist_code FROM nhsa_catalogue WHERE pharmacy_code = ? AND "
                          "generation = ? AND hilist_code = ANY(?)",
                          (self.pharmacy_code, int(meta[0]), list(codes)))  # fmt: skip
        known = {str(_row(r)[0]) for r in rows}
        return [c for c in codes if c not in known]


_UPSERT = (
    "INSERT INTO nhsa_catalogue (pharmacy_code, hilist_code, hilist_name, chrgitm_lv, "
    "price_limit, generation) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (pharmacy_code, "
    "hilist_code) DO UPDATE SET hilist_name = excluded.hilist_name, chrgitm_lv = "
    "excluded.chrgitm_lv, price_limit = excluded.price_limit, generation = excluded.generation"
)


def _row(r: Any) -> tuple[Any, ...]:
    """A row as a tuple, whether the connection gives dicts or tuples."""
    return tuple(r.values()) if isinstance(r, dict) else tuple(r)


def pages(client: Any, page_size: int = PAGE_SIZE) -> Iterator[Item]:
    """Every item of the platform's catalogue, page by page by 1312."""
    from pos_plugin.ledger.nhsa.amounts import fen_from_yuan

    num = 1
    while True:
        rows, pages_total = client.catalogue_page(num, page_size)
        for r in rows:
            limit = r.get("hilist_pric_uplmt_amt")
            yield Item(str(r["hilist_code"]), str(r.get("hilist_name") or ""),
                       str(r.get("chrgitm_lv") or ""),
                       fen_from_yuan(limit, "hilist_pric_uplmt_amt")
                       if limit not in (None, "", "null") else None)  # fmt: skip
        if not rows or num >= pages_total:
            return
        num += 1


def update(client: Any, catalogue: Catalogue | SharedCatalogue) -> int:
    """Download the whole catalogue (1312) and swap it in; how many items."""
    n = catalogue.replace(pages(client))
    log.info("nhsa catalogue: %d items from the platform into %s", n, catalogue.path)
    return n
