"""Benchmark: ``journal search --person`` on a large journal (issue 15): the person-key
table's index against the LIKE scan of every row's evidence it replaces.

A journal of ROWS sales (100,000 by default) written as the till writes them (evidence
with masked documents and keyed hashes, a plan, a result), bulk-loaded in one
transaction so building it takes seconds, not the fsyncs of 200,000 commits; the
person-key table is then filled by the schema migration's own backfill (its time is
printed too: what upgrading such a journal costs). One person has 10 of the rows.

Printed: median and min-max of RUNS runs of each search, the floor measured in the same
run (one sale read by its primary key on the same connection: the least any indexed
read costs), and the load average. Nothing here waits outside the process, so nothing
is subtracted.

Run: ``.venv/bin/python bench/bench_search.py [ROWS] [RUNS]`` (SQLite), or with
``--pg postgresql://postgres@127.0.0.1:5432/test`` for the shared journal (a new schema,
dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pos_plugin.journal import person_keys
from pos_plugin.journal.journal import Journal
from pos_plugin.journal.schema import statements

KEY = b"bench-key-" * 3
PHARMACY = "H11010500001"
TARGET = "110105198005120319"
HITS = 10


def _id(n: int) -> str:
    return f"1101051980{n % 10**8:08d}"


def _rows(j: Journal, count: int, pharmacy: str | None) -> list[dict[str, Any]]:
    """``count`` sales rows as the journal holds them; every count//HITS-th is TARGET's."""
    out = []
    every = max(count // HITS, 1)
    for n in range(count):
        holder = TARGET if n % every == 0 else _id(n)
        ev = {
            "buyer_role": "self", "operator": "cashier", "credential_asked": "card",
            "credential": "card", "card_no_masked": "B******01",
            "holder": j.evidence_of("resident_id", holder, "张伟"),
            "patient": j.evidence_of("resident_id", holder, "张伟"),
        }  # fmt: skip
        plan = {"total": 3700, "account_payable": 3700, "cash": 0, "cash_only": 0,
                "legs": [{"kind": "personal_account", "account_id": f"PA{n:020d}",
                          "payer_psn_no": f"{n:020d}", "amount": 3700}],
                "lines": [{"sku": "6901", "name": "感冒灵颗粒", "quantity": 2,
                           "unit_price": 1850}]}  # fmt: skip
        result = {"status": "settled", "receipt": {"lines": ["感冒灵颗粒 x2 37.00"] * 8}}
        row: dict[str, Any] = {
            "sale_ref": f"R{n:07d}", "request_hash": f"{n:064x}", "state": "settled",
            "msgid": f"{PHARMACY}20261123{n:010d}",
            "business_date": "2026-11-23", "created_at": f"2026-11-23T10:{n:010d}",
            "updated_at": "2026-11-23T10:00:00+08:00", "terminal_id": f"T{n % 4 + 1:02d}",
            "patient_psn_no": f"{n:020d}", "patient_id_masked": ev["holder"]["number_masked"],
            "patient_id_hmac": ev["holder"]["number_hmac"], "proxy": 0,
            "evidence": json.dumps(ev, ensure_ascii=False), "total": 3700,
            "account_payable": 3700, "personal_account": 3700, "mutual_aid": 0, "cash": 0,
            "plan": json.dumps(plan, ensure_ascii=False),
            "result": json.dumps(result, ensure_ascii=False),
        }  # fmt: skip
        if pharmacy is not None:
            row["pharmacy_code"] = pharmacy
        out.append(row)
    return out


def _load(db: Any, rows: list[dict[str, Any]], mark: str) -> None:
    cols = list(rows[0])
    sql = f"INSERT INTO sales ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    db.executemany(sql, [tuple(r.values()) for r in rows])


def _timed(fn: Callable[[], object], runs: int) -> tuple[list[float], object]:
    times, got = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t0)
    return times, got


def spread(xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"median {statistics.median(ms):8.2f} ms ({min(ms):.2f}-{max(ms):.2f})"


def _build_sqlite(work: Path, count: int) -> tuple[str, float]:
    path = str(work / "journal.sqlite3")
    j = Journal(path, hmac_key=KEY, pharmacy_code=PHARMACY, terminal_id="T01")
    rows = _rows(j, count, None)
    j.close()
    db = sqlite3.connect(path)
    with db:
        _load(db, rows, "?")
        db.execute("DROP TABLE person_keys")  # as before the upgrade
    t0 = time.perf_counter()
    with db:
        for stmt in statements(person_keys.SQLITE_MIGRATION):
            db.execute(stmt)
    backfill = time.perf_counter() - t0
    db.execute("ANALYZE")
    db.close()
    return path, backfill


def _build_pg(url: str, count: int) -> float:
    import psycopg

    j = Journal(url, hmac_key=KEY, pharmacy_code=PHARMACY, terminal_id="T01")
    rows = _rows(j, count, PHARMACY)
    j.close()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            with conn.cursor() as cur:
                _load(cur, rows, "%s")
            conn.execute("DROP TABLE person_keys")  # as before the upgrade
        t0 = time.perf_counter()
        with conn.transaction():
            for stmt in statements(person_keys.PG_MIGRATION):
                conn.execute(stmt)
        backfill = time.perf_counter() - t0
        conn.execute("ANALYZE")
    return backfill


def measure(target: str, count: int, runs: int, backfill: float, pg: bool) -> None:
    j = Journal(target, hmac_key=KEY, pharmacy_code=PHARMACY, terminal_id="T01", upgrade=False)
    try:
        scope = "store" if pg else "till"
        indexed, got = _timed(lambda: j.rows_of_person(TARGET, scope=scope), runs)
        assert isinstance(got, list) and len(got) == HITS, len(got)
        # The same scope (on PostgreSQL every till of the store: 4 tills share the rows).
        scan, got_scan = _timed(lambda: j.rows_of_person_by_scan(TARGET, scope=scope), runs)
        floor, _ = _timed(lambda: j.get("R0000001"), runs)
    finally:
        j.close()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    kind = "PostgreSQL" if pg else "SQLite"
    print(f"bench_search ({kind}): {count} rows, {HITS} of them the person's, {runs} runs; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print(f"  floor: one sale by primary key   {spread(floor)}")
    print(f"  search, person-key index         {spread(indexed)}   ({len(got)} rows)")
    print(f"  search, LIKE scan of evidence    {spread(scan)}   "
          f"({len(got_scan) if isinstance(got_scan, list) else '?'} rows)")  # fmt: skip
    ratio = statistics.median(scan) / statistics.median(indexed)
    print(f"  scan / index (medians)           {ratio:8.0f}x")
    print(f"  backfill of person_keys (once, the migration)  {backfill * 1000:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", nargs="?", type=int, default=100_000)
    p.add_argument("runs", nargs="?", type=int, default=7)
    p.add_argument("--pg", help="a postgresql:// URL: bench the shared journal in a new schema")
    args = p.parse_args()
    if args.pg:
        import psycopg

        schema = f"bench_search_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{args.pg}{'&' if '?' in args.pg else '?'}options=-csearch_path%3D{schema}"
        try:
            measure(url, args.rows, args.runs, _build_pg(url, args.rows), pg=True)
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        return
    with tempfile.TemporaryDirectory() as work:
        path, backfill = _build_sqlite(Path(work), args.rows)
        measure(path, args.rows, args.runs, backfill, pg=False)


if __name__ == "__main__":
    main()
