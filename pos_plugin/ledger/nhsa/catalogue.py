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
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
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


def update(client: Any, catalogue: Catalogue) -> int:
    """Download the whole catalogue (1312) and swap it in; how many items."""
    n = catalogue.replace(pages(client))
    log.info("nhsa catalogue: %d items from the platform into %s", n, catalogue.path)
    return n
