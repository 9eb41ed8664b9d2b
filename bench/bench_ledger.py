"""Benchmark: concurrent tills settling 3-leg cascades against the sandbox ledger.

Not a test. Prints settlements/s (median and min-max of ``--runs`` runs), p50/p99
latency and the load average, and, in the same run, two floors on the same disk
(WAL, synchronous=FULL): a bare one-row insert + commit, and a bare writer that
commits the very rows the ledger wrote (entry, postings, idempotency row, balance
updates) in batches of ``--tills`` settlements, the largest batch the ledger's group
commit can form with one request in flight per till; the ratio is against the
latter (issue 17: within 5x). Run:
  .venv/bin/python bench/bench_ledger.py [--tills 16] [--clients 2] [--seconds 4] [--runs 5]

The server runs in its own process(es) (the ``pos-plugin sandbox-ledger``
entry point); the tills (one keep-alive connection each) are spread over
``--clients`` client processes, so the client's Python does not share a GIL
with the server's. The client is deliberately lean (``http.client``, bodies
built before the clock starts): the bench measures the server, and on a
2-core machine every client CPU cycle is taken from it. The clock starts only
once every client has started and built its bodies. Afterwards the bench
checks that every 201 is one committed 3-leg entry in the database, that money
is conserved and that the double-entry audit is clean. A bench world with many
families is generated so no balance runs out (no 409s in the measurement).
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


def settlement_body(t: int, i: int) -> tuple[str, bytes]:
    """The i-th 3-leg cascade of till t: (msgid, JSON body), distinct for every i."""
    code = f"B1101050{t:04d}"
    base = f"{t:04d}{i % FAMILIES_PER_TILL:06d}"
    stamp = (dt.datetime(2026, 1, 1) + dt.timedelta(days=t, seconds=i // 10000)).strftime(
        "%Y%m%d%H%M%S")
    msgid = f"{code}{stamp}{i % 10000:04d}"
    legs = [
        {"kind": "personal_account" if r == 0 else "mutual_aid",
         "account_id": f"PA11{base}{r:08d}", "payer_psn_no": f"11{base}{r:08d}",
         "amount": 100 + r, "binding_id": None if r == 0 else f"B{base}{r}"}
        for r in range(3)
    ]
    body = {
        "msgid": msgid, "pharmacy_code": code, "terminal_id": f"T{t}", "operator": "bench",
        "patient_psn_no": f"11{base}{0:08d}",
        "credential": {"kind": "card", "card_no": f"C{base}0", "card_sn": "S" * 32},
        "legs": legs, "cash": 50, "total": LEG_SUM + 50, "lines": [], "proxy": False,
    }
    return msgid, json.dumps(body, separators=(",", ":")).encode()


LEG_SUM = 100 + 101 + 102


def client(tills: list[int], port: int, first: int, prebuilt: int, go: Any, stop_at: Any,
           out: Any) -> None:
    """One client process driving some tills, one keep-alive connection (thread) each.

    Why not ``HttpLedgerClient``: it costs ~2.6 ms of CPU per settlement
    (requests + pydantic) on the same 2 cores as the server, so the bench would
    mostly measure the client. Here each request is still a real, distinct
    3-leg settlement over real HTTP (``http.client``, keep-alive), checked to
    answer 201; bodies are built before the clock starts. The threads spend
    their time in blocking socket calls, which release the GIL.
    """
    import http.client
    import threading

    bodies = {t: [settlement_body(t, first + i) for i in range(prebuilt)] for t in tills}
    lats: dict[int, list[float]] = {t: [] for t in tills}
    done: dict[int, list[str]] = {t: [] for t in tills}
    errors: list[str] = []

    def terminal(t: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer bench-token-{t:04d}",
                   "Content-Type": "application/json"}
        lat, ok, end = lats[t], done[t], stop_at.value
        i = 0
        while time.monotonic() < end:
            msgid, body = bodies[t][i] if i < prebuilt else settlement_body(t, first + i)
            t0 = time.monotonic()
            conn.request("POST", "/v1/settlements", body, {**headers, "Idempotency-Key": msgid})
            r = conn.getresponse()
            data = r.read()
            lat.append(time.monotonic() - t0)
            if r.status != 201:
                errors.append(f"{msgid}: {r.status} {data[:200]!r}")
                break
            ok.append(msgid)
            i += 1
        conn.close()

    out.put(("ready", None, None, None))
    go.wait()
    threads = [threading.Thread(target=terminal, args=(t,)) for t in tills]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.put(("done", [x for t in tills for x in lats[t]], [m for t in tills for m in done[t]],
             errors))


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


def bare_batched(db: str, batch: int, limit: int = 20_000) -> float:
    """The floor for the ledger's writes: the rows it committed (each settlement's entry,
    postings, idempotency row and account balance updates), replayed into a fresh file
    with the same schema and pragmas, ``batch`` settlements per commit, as bare SQL."""
    src = sqlite3.connect(db)
    schema = [r[0] for r in src.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "AND tbl_name IN ('accounts', 'entries', 'postings', 'idempotency') "
        "ORDER BY type = 'index'")]  # fmt: skip
    accounts = src.execute("SELECT * FROM accounts").fetchall()
    entries = src.execute(
        "SELECT * FROM entries WHERE kind = 'sale' ORDER BY seq LIMIT ?", (limit,)
    ).fetchall()
    postings: dict[str, list[tuple[Any, ...]]] = {}
    for row in src.execute("SELECT * FROM postings"):
        postings.setdefault(row[0], []).append(row)
    idem = {r[0]: r for r in src.execute("SELECT * FROM idempotency")}
    src.close()
    bare_db = db + ".bare"
    conn = sqlite3.connect(bare_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for sql in schema:
        conn.execute(sql)
    conn.executemany(f"INSERT INTO accounts VALUES ({','.join('?' * len(accounts[0]))})", accounts)
    marks = ",".join("?" * len(entries[0]))
    t0 = time.perf_counter()
    for i in range(0, len(entries), batch):
        conn.execute("BEGIN IMMEDIATE")
        for entry in entries[i : i + batch]:
            entry_id, msgid = entry[1], entry[2]
            for _, account, amount in postings[entry_id]:
                conn.execute(
                    "UPDATE accounts SET balance = balance + ? WHERE account_id = ?",
                    (amount, account),
                )
            conn.execute(f"INSERT INTO entries VALUES ({marks})", entry)
            conn.executemany("INSERT INTO postings VALUES (?, ?, ?)", postings[entry_id])
            conn.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)", idem[msgid])
        conn.execute("COMMIT")
    rate = len(entries) / (time.perf_counter() - t0)
    conn.close()
    return rate


def verify(db: str, world: dict[str, Any], committed: list[str]) -> list[str]:
    """After the run: every 201 is a committed 3-leg entry, and the books are sound."""
    from pos_plugin.ledger.own.sandbox.store import Store

    problems: list[str] = []
    store = Store(db)
    try:
        with store.read() as tx:
            n = tx.one("SELECT COUNT(*) FROM entries WHERE kind = 'sale'")
            legs = tx.one("SELECT COUNT(*) FROM postings WHERE amount < 0")
            known = {str(r[0]) for r in tx.all("SELECT msgid FROM entries")}
        if int(n[0]) != len(committed) if n else True:
            problems.append(f"{n} sale entries for {len(committed)} answers 201")
        if int(legs[0]) != 3 * len(committed) if legs else True:
            problems.append(f"{legs} debit postings for {len(committed)} 3-leg settlements")
        missing = [m for m in committed if m not in known]
        if missing:
            problems.append(f"{len(missing)} settled msgids not in the ledger, e.g. {missing[0]}")
        money = sum(p["personal_account_balance"] for p in world["persons"])
        if store.total_balance() != money:
            problems.append(f"money not conserved: {store.total_balance()} != {money}")
        problems += store.audit()
    finally:
        store.close()
    return problems


def one_run(args: Any, port: int, first: int) -> tuple[list[float], list[str], list[str], float]:
    """One measured run: the tills settle for ``args.seconds``; (latencies, msgids, errors, s)."""
    q: Any = mp.Queue()
    go = mp.Event()
    stop_at = mp.Value("d", 0.0)
    nproc = max(1, min(args.clients, args.tills))
    prebuilt = int(args.seconds * 3000 / args.tills) + 100
    procs = [mp.Process(target=client, args=(list(range(c, args.tills, nproc)), port,
                                             first, prebuilt, go, stop_at, q))
             for c in range(nproc)]
    for p in procs:
        p.start()
    for _ in procs:  # clients imported and built their bodies: start the clock now
        q.get()
    t0 = time.monotonic()
    stop_at.value = t0 + args.seconds
    go.set()
    lats: list[float] = []
    committed: list[str] = []
    errors: list[str] = []
    for _ in procs:
        _, lat, ok, err = q.get()
        lats += lat
        committed += ok
        errors += err
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join()
    return lats, committed, errors, elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tills", type=int, default=4, help="concurrent tills (connections)")
    ap.add_argument("--clients", type=int, default=2,
                    help="client processes the tills are spread over")
    ap.add_argument("--seconds", type=float, default=4.0, help="per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--db", default=None, help="SQLite path or postgresql:// URL")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    db = args.db or str(tmp / "ledger.db")
    world_doc = bench_world(args.tills)
    world = tmp / "world.json"
    world.write_text(json.dumps(world_doc), "utf-8")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pos_plugin.ledger.own.sandbox.server import main; "
         "sys.exit(main(sys.argv[1:]))",
         "--db", db, "--world", str(world), "--port", str(port), "--workers",
         str(args.workers), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
    )
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
        runs: list[tuple[float, float, float]] = []  # rate, p50, p99
        committed: list[str] = []
        for run in range(args.runs):
            lats, ok, errors, elapsed = one_run(args, port, run * 1_000_000)
            if errors:
                print(f"{len(errors)} requests failed, e.g. {errors[0]}")
                return 1
            committed += ok
            lats.sort()
            runs.append((len(lats) / elapsed, statistics.median(lats) * 1000,
                         lats[int(len(lats) * 0.99) - 1] * 1000))  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    rates, p50s, p99s = ([r[k] for r in runs] for k in range(3))
    rate = statistics.median(rates)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"cores: {os.cpu_count()}  tills: {args.tills} over "
          f"{max(1, min(args.clients, args.tills))} client processes  "
          f"server workers: {args.workers}  "
          f"db: {'postgresql' if db.startswith('postgres') else 'sqlite'}  "
          f"load avg: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"settlements/s over {args.runs} runs of {args.seconds:g} s (3 legs each, loopback "
          f"HTTP): median {rate:.0f} ({min(rates):.0f}-{max(rates):.0f})")
    print(f"latency: p50 {statistics.median(p50s):.2f} ms  p99 {statistics.median(p99s):.2f} ms")
    if db.startswith("postgres"):
        return 0
    problems = verify(db, world_doc, committed)
    print("verified: every 201 is one committed 3-leg entry, money conserved, double-entry "
          "audit clean" if not problems else f"VERIFY FAILED: {problems[:5]}")
    bare = bare_commits(db, min(args.seconds, 5.0))
    print(f"bare one-row insert+commit on the same SQLite file: {bare:.0f}/s")
    # Each till has one request in flight, so the ledger's batches hold at most --tills.
    batched = bare_batched(db, args.tills)
    print(f"bare writer, the same rows in batches of {args.tills} (the most the ledger can "
          f"batch): {batched:.0f}/s  ->  ledger is {batched / rate:.1f}x slower "
          f"(target <= 5x: {'met' if batched / rate <= 5 else 'NOT met'}; "
          f"target >= 1000/s at 16 tills: {'met' if rate >= 1000 else 'NOT met'})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
