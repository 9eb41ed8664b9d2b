"""Benchmark: reconciliation's time against reading both sides' raw bytes, and its peak
memory against the day's size.

Run: ``.venv/bin/python bench/bench_reconcile.py`` (all of it, a few minutes), or
``... --speed-only`` / ``... --memory-only``; ``--rounds N`` (default 5).

1. **Speed**: a store day of 100,000 settlements over 10 tills (one SQLite journal
   each), the statement served over HTTP by the real sandbox ledger in its own
   process (the central ledger is another machine). Each round measures, in this
   order: the **raw read** (the floor: the statement's pages as received over HTTP, a
   plain fetch loop following the ``Link`` header, with the ten journals' rows of the
   day as stored, ``SELECT *`` with no parsing; the two at once, as reconciliation
   reads them, and one after the other), then ``reconcile_day`` as the CLI runs it
   (balanced pairs kept for the details) and with ``keep_balanced=False``. Printed:
   median and min-max over the rounds, the load average before and after, the
   process's CPU time per reconcile and the sorted runs spilled to disk. Target:
   reconcile < 2 s median and <= 1.5x the raw read (both at once) of the same run.
2. **Memory**: the shared PostgreSQL journal (a fresh database, seeded with COPY,
   dropped after): a single store's day of 100,000 / 300,000 / 1,000,000 rows over
   10 tills, and a chain day of 1,000,000 rows (100 stores x 10 tills, reconciled
   store by store), each reconciled in a fresh process with ``keep_balanced=False``;
   printed: the process's peak RSS, its RSS after imports (the floor), the time, the
   sorted runs spilled (``--sizes``, ``--chain N`` choose the days; ``--chain 0`` none).
   Target: peak < 300 MB whatever the day's size.

Rows are written directly in their real shapes (the sandbox's ``entries``, the tills'
``sales`` with the ``legs`` column the journal derives from the plan; 100,000 real
settlements would take minutes); the day is ``day_sales.py``'s, as bench_nhsa_day's. 1% of the sales are
reversed on both sides. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import urllib3
from day_sales import DAY, day_sales
from floors import pace_ms
from sandbox_proc import sandbox_process

from pos_plugin.journal.journal import Journal
from pos_plugin.journal.legs import legs_column
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.store import Store
from pos_plugin.reconcile import msgid_order
from pos_plugin.reconcile.day import reconcile_day
from pos_plugin.world import World, WorldPharmacy, load_world

PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
LEDGER_COLS = (
    "entry_id, msgid, kind, pharmacy_code, terminal_id, operator, patient_psn_no, "
    "original_id, status, total, personal_account, mutual_aid, cash, proxy, created_at, "
    "business_date, legs, balances_after, lines, reason"
)
SALES_COLS = (
    "sale_ref, request_hash, state, msgid, settlement_id, business_date, created_at, "
    "updated_at, terminal_id, patient_psn_no, total, account_payable, personal_account, "
    "mutual_aid, cash, plan, legs, reversal_msgid"
)


# --------------------------------------------------------------------------- the day


def day_rows(
    code: str, n: int, tills: int, seed: int = 7
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """A store's day (``day_sales``) in batches: (ledger entries rows, journal sales rows)."""
    ledger: list[tuple[Any, ...]] = []
    journal: list[tuple[Any, ...]] = []
    iso = DAY.isoformat()
    for d in day_sales(code, n, tills, seed):
        till, t, total, pa, ma, cash, legs = d.till, d.at, d.total, d.pa, d.ma, d.cash, d.legs
        rev = d.reversal
        created = t.isoformat(timespec="milliseconds")
        sid = f"STL{code}{d.i:09d}"
        ledger.append((sid, d.msgid, "sale", code, till, "op", d.psn, None,
                       "reversed" if rev else "settled", total, pa, ma, cash, 0,
                       created, iso, json.dumps(legs), "{}", "[]", ""))  # fmt: skip
        if rev:
            ledger.append((f"REV{code}{d.i:09d}", rev.msgid, "reversal", code, till, "op", d.psn,
                           sid, "settled", -total, -pa, -ma, -cash, 0,
                           rev.at.isoformat(timespec="milliseconds"), iso,
                           json.dumps(legs), "{}", "[]", "returned"))  # fmt: skip
        plan = {"total": total, "account_payable": pa + ma, "cash": cash, "cash_only": 0,
                "legs": legs, "skipped": [], "notices": []}  # fmt: skip
        journal.append((f"S{d.i}", "h", "reversed" if rev else "settled", d.msgid, sid, iso,
                        t.isoformat(), t.isoformat(), till, d.psn, total, pa + ma, pa, ma, cash,
                        json.dumps(plan), legs_column(plan), rev.msgid if rev else None))  # fmt: skip
        if len(journal) >= 50_000:
            yield ledger, journal
            ledger, journal = [], []
    yield ledger, journal


def world_of(stores: int) -> World:
    """The embedded world with ``stores`` pharmacies (the first is the embedded one's)."""
    world = load_world()
    first = world.pharmacies[0]
    more = [
        WorldPharmacy(code=f"H110105{i:05d}", name=f"{first.name} {i}", region=first.region,
                 api_token=f"bench-token-{i:05d}")
        for i in range(2, stores + 1)
    ]
    return world.model_copy(update={"pharmacies": [first, *more]})


def new_ledger(path: Path, world: World) -> sqlite3.Connection:
    Store(str(path)).init(world)
    return sqlite3.connect(path)


def insert_ledger(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    con.executemany(f"INSERT INTO entries ({LEDGER_COLS}) VALUES ({','.join('?' * 20)})", rows)


# --------------------------------------------------------------------------- measuring


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s (min-max {min(xs):.2f}-{max(xs):.2f})"


def raw_statement(base: str, code: str, token: str) -> int:
    """The statement's pages as received: a plain fetch loop following ``Link``; bytes."""
    pool = urllib3.PoolManager()
    headers = {"Authorization": f"Bearer {token}"}
    url: str | None = (
        f"{base}/v1/statements/{code}/{DAY.isoformat()}?page=1&page_size=10000&after=0"
        "&format=compact"
    )
    size = 0
    while url:
        r = pool.request("GET", url, headers=headers)
        assert r.status == 200, r.status
        size += len(r.data)
        m = re.search(r'<([^>]*)>;\s*rel="?next', r.headers.get("Link", ""))
        url = base + m.group(1) if m else None
    pool.clear()
    return size


def raw_journals(paths: list[str]) -> int:
    """The journals' rows of the day as stored: ``SELECT *``, no parsing; rows."""
    n = 0
    for p in paths:
        con = sqlite3.connect(p)
        n += len(con.execute("SELECT * FROM sales WHERE business_date = ?", (DAY.isoformat(),)).fetchall())
        con.close()
    return n


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    got = f()
    return time.perf_counter() - t, got


SPILLS = [0]  # sorted runs written to disk (MsgidOrder._spill), counted by the bench


def _count_spills() -> None:
    spill = msgid_order.MsgidOrder._spill

    def counted(self: msgid_order.MsgidOrder) -> None:
        SPILLS[0] += 1
        spill(self)

    msgid_order.MsgidOrder._spill = counted  # type: ignore[method-assign]


def speed(rounds: int, n: int = 100_000, tills: int = 10) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        world = world_of(1)
        ph = world.pharmacies[0]
        t0 = time.perf_counter()
        con = new_ledger(work / "ledger.sqlite3", world)
        per_till: dict[str, list[tuple[Any, ...]]] = {}
        for led, jr in day_rows(ph.code, n, tills):
            insert_ledger(con, led)
            for r in jr:
                per_till.setdefault(r[8], []).append(r)
        con.commit()
        con.close()
        paths = []
        for till, rows in sorted(per_till.items()):
            path = work / f"journal-{till}.sqlite3"
            Journal(path, hmac_key=b"k", pharmacy_code=ph.code, terminal_id=till).close()
            with sqlite3.connect(path) as jc:
                jc.executemany(f"INSERT INTO sales ({SALES_COLS}) VALUES ({','.join('?' * 18)})", rows)
            paths.append(str(path))
        del per_till
        print(f"speed: {n:,} settlements over {tills} tills generated in "
              f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs")  # fmt: skip
        url = stack.enter_context(sandbox_process(str(work / "ledger.sqlite3")))
        client = HttpLedgerClient(url, ph.api_token)
        stack.callback(client.close)
        raw_both, raw_seq, raw_stmt, raw_jour, full, lean = [], [], [], [], [], []
        cpu_full: list[float] = []
        cpu_lean: list[float] = []
        _count_spills()
        reconcile_day(DAY, paths, client, ph.code)  # warm: imports, the sandbox's caches
        before, pace_before = load(), pace_ms()
        pool = ThreadPoolExecutor(1)
        for _ in range(rounds):
            t, size = timed(lambda: raw_statement(url, ph.code, ph.api_token))
            raw_stmt.append(t)
            tj, rows = timed(lambda: raw_journals(paths))
            raw_jour.append(tj)
            raw_seq.append(t + tj)

            def both() -> None:
                pending = pool.submit(raw_statement, url, ph.code, ph.api_token)
                raw_journals(paths)
                pending.result()

            raw_both.append(timed(both)[0])
            # The last round's day is freed before the clock starts (assigning ``rec``
            # frees it after the call returns, inside the CPU measured).
            rec = None
            c = time.process_time()
            t, rec = timed(lambda: reconcile_day(DAY, paths, client, ph.code))
            cpu_full.append(time.process_time() - c)
            assert rec.balanced, rec.counts
            full.append(t)
            rec = None
            c = time.process_time()
            t, rec = timed(lambda: reconcile_day(DAY, paths, client, ph.code, keep_balanced=False))
            cpu_lean.append(time.process_time() - c)
            assert rec.balanced, rec.counts
            lean.append(t)
        pool.shutdown()
        after, pace_after = load(), pace_ms()
        assert rec is not None
        led_rows = rec.ledger.sales_count + rec.ledger.reversals_count
        print(f"  ledger rows {led_rows:,} ({size / 1e6:.1f} MB of compact pages), journal rows "
              f"{rows:,}; {rounds} rounds; load average (1/5/15 min) {before} before, "
              f"{after} after")  # fmt: skip
        print(f"  raw read, both at once (the floor):        {spread(raw_both)}")
        print(f"  raw read, one after the other:             {spread(raw_seq)}")
        print(f"    of which the statement's pages:          {spread(raw_stmt)}")
        print(f"    of which the journals' rows:             {spread(raw_jour)}")
        print(f"  reconcile_day (pairs kept, as the CLI):    {spread(full)}")
        print(f"  reconcile_day (keep_balanced=False):       {spread(lean)}; sorted runs "
              f"spilled to disk in all rounds: {SPILLS[0]}")  # fmt: skip
        print(f"  CPU of this process per reconcile_day:     pairs kept {spread(cpu_full)}, "
              f"lean {spread(cpu_lean)}")  # fmt: skip
        floor = statistics.median(raw_both)
        med = statistics.median(full)
        print(f"  ratio reconcile / raw read (medians):      {med / floor:.2f}x "
              f"(lean {statistics.median(lean) / floor:.2f}x)")  # fmt: skip
        ok = med < 2.0 and med / floor <= 1.5
        print(f"  target (< 2 s median, <= 1.5x the raw read): {'met' if ok else 'NOT met'}")
        print(f"  machine pace (floors.pace_ms, to compare runs of other days): {pace_before} "
              f"before the rounds, {pace_after} after")  # fmt: skip


# --------------------------------------------------------------------------- memory


def peak_rss_mb(field: str = "VmHWM") -> float:
    """The process's peak resident memory so far, in MB (``field="VmRSS"``: the current
    one). Linux: /proc/self/status (``getrusage`` would report the parent's peak,
    inherited across fork); other POSIX: getrusage; Windows: the peak working set."""
    status = Path("/proc/self/status")
    if status.exists():
        m = re.search(rf"^{field}:\s+(\d+) kB", status.read_text(), re.M)
        if m:
            return int(m.group(1)) / 1024
    try:
        import resource
    except ImportError:  # Windows
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                        ("PeakWorkingSetSize", ctypes.c_size_t)]  # fmt: skip

        c = Counters()
        c.cb = ctypes.sizeof(Counters) + 7 * ctypes.sizeof(ctypes.c_size_t)
        buf = ctypes.create_string_buffer(c.cb)
        ctypes.windll.psapi.GetProcessMemoryInfo(  # type: ignore[attr-defined]
            ctypes.windll.kernel32.GetCurrentProcess(), buf, c.cb  # type: ignore[attr-defined]
        )
        return Counters.from_buffer_copy(buf[: ctypes.sizeof(Counters)]).PeakWorkingSetSize / 1e6
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / 1024 if sys.platform == "darwin" else kb / 1024


def child(ledger_url: str, journal_url: str, stores: list[tuple[str, str]]) -> None:
    """In a fresh process: reconcile each store, print JSON (time, peak RSS, rows)."""
    base = peak_rss_mb("VmRSS")
    _count_spills()
    t = time.perf_counter()
    rows = 0
    for code, token in stores:
        client = HttpLedgerClient(ledger_url, token)
        try:
            rec = reconcile_day(DAY, [journal_url], client, code, keep_balanced=False)
        finally:
            client.close()
        assert rec.balanced, (code, rec.counts)
        rows += rec.journal.sales_count
    print(json.dumps({"seconds": time.perf_counter() - t, "base_mb": base,
                      "peak_mb": peak_rss_mb(), "rows": rows, "spills": SPILLS[0]}))  # fmt: skip


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for the bench, dropped after; yields its URL."""
    import psycopg

    name = f"bench_reconcile_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def memory(sizes: list[int], chain: int) -> None:
    import psycopg

    stores = 100
    jobs = [(f"store day of {n:,} rows (10 tills)", [n]) for n in sizes]
    if chain:
        jobs.append((f"chain day of {chain:,} rows ({stores} stores x 10 tills)",
                     [chain // stores] * stores))  # fmt: skip
    world = world_of(len(sizes) + (stores if chain else 0))
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-mem-") as tmp, fresh_database() as url:
        work = Path(tmp)
        t0 = time.perf_counter()
        con = new_ledger(work / "ledger.sqlite3", world)
        Journal(url, hmac_key=b"k", pharmacy_code=world.pharmacies[0].code, terminal_id="T01").close()
        pg = psycopg.connect(url)
        assigned: list[tuple[str, list[tuple[str, str]]]] = []
        next_store = 0
        for label, ns in jobs:
            mine = []
            for n in ns:
                ph = world.pharmacies[next_store]
                next_store += 1
                for led, jr in day_rows(ph.code, n, 10, seed=next_store):
                    insert_ledger(con, led)
                    with pg.cursor().copy(f"COPY sales (pharmacy_code, {SALES_COLS}) FROM STDIN") as cp:
                        for r in jr:
                            cp.write_row((ph.code, *r))
                mine.append((ph.code, ph.api_token))
            assigned.append((label, mine))
        con.commit()
        con.close()
        pg.commit()
        pg.execute("ANALYZE sales")
        pg.commit()
        pg.close()
        total = sum(sum(ns) for _, ns in jobs)
        print(f"memory: {total:,} journal rows seeded (COPY) in {time.perf_counter() - t0:.1f} s")
        peaks = []
        with sandbox_process(str(work / "ledger.sqlite3")) as ledger_url:
            for label, mine in assigned:
                before = load()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", ledger_url, url, json.dumps(mine)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                got = json.loads(out.stdout.strip().splitlines()[-1])
                peaks.append(got["peak_mb"])
                print(f"  {label:<45} peak RSS {got['peak_mb']:6.0f} MB (after imports "
                      f"{got['base_mb']:.0f} MB), {got['seconds']:.1f} s, {got['spills']} sorted "
                      f"runs spilled; load {before}")  # fmt: skip
        ok = max(peaks) < 300
        print(f"  target (peak < 300 MB whatever the day's size): {'met' if ok else 'NOT met'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--chain", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], [tuple(s) for s in json.loads(args.child[2])])
        return 0
    if not args.memory_only:
        speed(max(5, args.rounds))
    if not args.speed_only:
        memory([int(x) for x in args.sizes.split(",") if x], args.chain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
