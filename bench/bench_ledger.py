"""Benchmark: concurrent tills settling 3-leg cascades against the sandbox ledger.

Not a test. Prints settlements/s, p50/p99 latency, and the ratio against a bare
"one row insert + commit" on the same SQLite file (WAL, synchronous=FULL) in
the same run, so the figure says how much the ledger costs above the disk's
commit rate. Run:  .venv/bin/python bench/bench_ledger.py [--tills 4] [--seconds 10]

The server runs in its own process(es) (``pos-plugin sandbox-ledger`` entry
point) and each till in its own process, so the client's Python does not share
a GIL with the server's. A bench world with many families is generated so no
balance runs out (no 409s in the measurement).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FAMILIES_PER_TILL = 200
BALANCE = 10**12  # fen; never runs out


def bench_world(tills: int) -> dict[str, Any]:
    """One pharmacy per till (msgid sequences never collide), families of three."""
    pharmacies, persons, bindings = [], [], []
    for t in range(tills):
        code = f"B1101050{t:04d}"
        pharmacies.append({"code": code, "name": f"bench {t}", "region": "110105",
                           "api_token": f"bench-token-{t:04d}"})
        for f in range(FAMILIES_PER_TILL):
            base = f"{t:04d}{f:06d}"
            for role in range(3):
                persons.append({
                    "psn_no": f"11{base}{role:08d}", "name": "测试", "id_number": "x",
                    "insurance_type": "310", "insured_region": "110105",
                    "personal_account_balance": BALANCE,
                    "cards": [{"card_no": f"C{base}{role}", "card_sn": "S" * 32,
                               "issue_date": "2020-01-01", "expiry_date": "2099-01-01",
                               "pin": "123456"}] if role == 0 else [],
                })
            for role in (1, 2):
                bindings.append({"binding_id": f"B{base}{role}", "payer": f"11{base}{role:08d}",
                                 "patient": f"11{base}{0:08d}", "relation": "parent",
                                 "order": role})
    return {"version": 1, "pharmacies": pharmacies, "persons": persons, "bindings": bindings}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def till(t: int, url: str, seconds: float, out: Any) -> None:
    """One till: settle 3-leg cascades back to back on a keep-alive session."""
    from pos_plugin.ledger import Credential, HttpLedgerClient, SettlementRequest
    from pos_plugin.models import Leg, LegKind

    code = f"B1101050{t:04d}"
    client = HttpLedgerClient(url, f"bench-token-{t:04d}", retries=0)
    start = dt.datetime(2026, 1, 1) + dt.timedelta(days=t)
    lat: list[float] = []
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        base = f"{t:04d}{i % FAMILIES_PER_TILL:06d}"
        stamp = (start + dt.timedelta(seconds=i // 10000)).strftime("%Y%m%d%H%M%S")
        legs = tuple(
            Leg(kind=LegKind.PERSONAL_ACCOUNT if r == 0 else LegKind.MUTUAL_AID,
                account_id=f"PA11{base}{r:08d}", payer_psn_no=f"11{base}{r:08d}",
                amount=100 + r, binding_id=None if r == 0 else f"B{base}{r}")
            for r in range(3)
        )
        req = SettlementRequest(
            msgid=f"{code}{stamp}{i % 10000:04d}", pharmacy_code=code, terminal_id=f"T{t}",
            operator="bench", patient_psn_no=f"11{base}{0:08d}",
            credential=Credential.card(f"C{base}0", "S" * 32), legs=legs, cash=50,
            total=sum(leg.amount for leg in legs) + 50,
        )
        t0 = time.perf_counter()
        client.settle(req)
        lat.append(time.perf_counter() - t0)
        i += 1
    out.put(lat)


def bare_commits(db: str, seconds: float) -> float:
    """The floor: one-row insert + commit, same file, same pragmas."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS bench_bare (id INTEGER PRIMARY KEY, v TEXT)")
    n = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO bench_bare (v) VALUES (?)", ("x" * 64,))
        conn.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tills", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--db", default=None, help="SQLite path or postgresql:// URL")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    db = args.db or str(tmp / "ledger.db")
    world = tmp / "world.json"
    world.write_text(json.dumps(bench_world(args.tills)), "utf-8")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pos_plugin.ledger.sandbox.server import main; sys.exit(main(sys.argv[1:]))", "--db", db, "--world",
         str(world), "--port", str(port), "--workers", str(args.workers), "--log-level",
         "warning"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("sandbox did not start") from None
                time.sleep(0.1)
        time.sleep(0.5)
        q: Any = mp.Queue()
        procs = [mp.Process(target=till, args=(t, url, args.seconds, q))
                 for t in range(args.tills)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        lats: list[float] = []
        for _ in procs:
            lats.extend(q.get())
        elapsed = time.perf_counter() - t0
        for p in procs:
            p.join()
    finally:
        server.terminate()
        server.wait(10)
    rate = len(lats) / elapsed
    lats.sort()
    p50 = statistics.median(lats) * 1000
    p99 = lats[int(len(lats) * 0.99) - 1] * 1000
    print(f"cores: {os.cpu_count()}  tills: {args.tills}  server workers: {args.workers}  "
          f"db: {'postgresql' if db.startswith('postgres') else 'sqlite'}")
    print(f"settlements: {len(lats)} in {elapsed:.1f}s  ->  {rate:.0f} settlements/s "
          "(3 legs each, over loopback HTTP)")
    print(f"latency: p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    if not db.startswith("postgres"):
        bare = bare_commits(db, min(args.seconds, 5.0))
        print(f"bare insert+commit on the same SQLite file: {bare:.0f}/s  ->  "
              f"ledger is {bare / rate:.1f}x slower than the bare commit "
              f"(target <= 5x; target >= 500/s: {'met' if rate >= 500 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
