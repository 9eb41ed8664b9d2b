"""Benchmark: storing a downloaded national catalogue (1312) of N items, into the till's
SQLite file (``Catalogue.replace``) and into the shared PostgreSQL journal's database
(``SharedCatalogue.replace``: a new generation upserted in one transaction), and the
counter's check of a basket's codes (``unknown``) on each, in one run (issue 13).

The download itself (1312 pages over HTTP) is left out: it is the platform's time, the
same for both stores. The baseline is the physical floor of the PostgreSQL write: the
same N rows by the same driver (``executemany``, batches of 1000) into a bare table
with no key, in one transaction, in the same run; for SQLite, the same into a bare
table of a new file. No time outside the process is subtracted: the database's time is
what a store waits for.

Prints, per store: median and min-max of RUNS runs (>= 5), the load average, and the
baseline. Needs PostgreSQL at 127.0.0.1:5432 (trust auth) like the tests.
Run: ``.venv/bin/python bench/bench_catalogue.py [N] [RUNS]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from pos_plugin.agent import shared_catalogue
from pos_plugin.journal.postgres import PgDb, SharedJournal
from pos_plugin.ledger.nhsa import catalogue as cat

PG = "postgresql://postgres@127.0.0.1:5432/test"
CODE = "H11010500001"


def items(n: int) -> list[cat.Item]:
    return [cat.Item(f"X{k:010d}", f"药品{k}", "0" + str(1 + k % 3), 1500 if k % 5 else None)
            for k in range(n)]  # fmt: skip


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def load() -> str:
    """The load average (not on Windows: there it says n/a)."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def show(label: str, times: list[float], unit: str = "s") -> None:
    scale = 1000.0 if unit == "ms" else 1.0
    med = statistics.median(times) * scale
    print(f"  {label:<48} median {med:9.3f} {unit}  (min {min(times) * scale:.3f}, "
          f"max {max(times) * scale:.3f}; load {load()})")


def main(n: int = 100_000, runs: int = 5) -> None:
    rows = items(n)
    basket = [rows[k].hilist_code for k in (1, 500, n // 2, n - 1)] + ["XZ99ZZZ9999"]
    print(f"catalogue of {n} items, {runs} runs each (load average printed with each figure)")
    with tempfile.TemporaryDirectory() as tmp:
        store = cat.Catalogue(Path(tmp) / "nhsa-catalogue.sqlite3")
        show("SQLite file: replace", timed(lambda: store.replace(rows), runs))
        show("SQLite file: unknown() of a 5-line basket", timed(lambda: store.unknown(basket),
                                                                  runs * 20), "ms")  # fmt: skip

        def sqlite_floor() -> None:
            import sqlite3

            db = sqlite3.connect(Path(tmp) / f"floor-{uuid.uuid4().hex}.sqlite3")
            db.execute("CREATE TABLE t (a, b, c, d)")
            with db:
                db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                               [(i.hilist_code, i.hilist_name, i.chrgitm_lv, i.price_limit)
                                for i in rows])  # fmt: skip
            db.close()

        show("SQLite baseline: bare INSERT, new file", timed(sqlite_floor, runs))

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        source = SharedJournal(url, CODE)
        held = PgDb(source, dict_rows=True)  # as a till reads: on its journal's open connection
        shared = shared_catalogue(source, CODE,
                                  query=lambda q, a: held.execute(q, a).fetchall())  # fmt: skip
        show("shared PostgreSQL: replace (new generation)", timed(lambda: shared.replace(rows),
                                                                    runs))  # fmt: skip
        show("shared PostgreSQL: unknown() of a 5-line basket",
             timed(lambda: shared.unknown(basket), runs * 20), "ms")  # fmt: skip
        held.close()

        def pg_floor() -> None:
            with psycopg.connect(url) as c, c.cursor() as cur:
                cur.execute("CREATE TEMP TABLE t (a text, b text, c text, d bigint)")
                data = [(i.hilist_code, i.hilist_name, i.chrgitm_lv, i.price_limit) for i in rows]
                for k in range(0, len(data), 1000):
                    cur.executemany("INSERT INTO t VALUES (%s, %s, %s, %s)", data[k:k + 1000])
                c.commit()

        show("PostgreSQL baseline: bare INSERT, one tx", timed(pg_floor, runs))
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
