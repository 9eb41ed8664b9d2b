"""Benchmark: concurrent tills settling 3-leg cascades against the sandbox ledger.

Not a test. Issue 17, target 3; one command per figure:
  .venv/bin/python bench/bench_ledger.py                  # SQLite store, 16 tills
  .venv/bin/python bench/bench_ledger.py --pg             # PostgreSQL store, 16 tills
  .venv/bin/python bench/bench_ledger.py --shared-payer   # 2 tills on one shared family
                                                          # payer vs 2 uncontended (add --pg)
Options: [--tills N] [--clients 2] [--seconds 4] [--runs 5] [--workers 1] [--pg-base URL]

Each prints settlements/s as the median and min-max of ``--runs`` runs, p50/p99
latency, the ledger server's CPU per settlement (Linux: /proc; on PostgreSQL also
its backends' CPU), the load average before and after, and a floor measured in
the same run:
- SQLite and PostgreSQL: a bare writer that commits the very rows the ledger
  wrote (entry, postings, idempotency row, balance updates) into a copy of the
  same tables, in batches of ``--tills`` settlements (the largest batch a group
  commit can form with one request in flight per till), as plain SQL, right after
  each measured run on that run's rows (so both see the same load on this shared
  machine); the ratio is against it (target within 5x). Also a bare one-row
  insert + commit (one durable commit: the disk's fsync rate).
- ``--shared-payer``: the same two tills on a world where every family has its
  own payers (uncontended), in runs alternating with the shared world, where
  every settlement's third leg draws on ONE family payer both tills share
  (target: shared >= 50% of uncontended).

``--pg`` creates a fresh database on ``--pg-base`` (default: trust auth on
127.0.0.1:5432) for each world and drops it afterwards.

The server runs in its own process (the ``pos-plugin sandbox-ledger`` entry point);
the tills (one keep-alive connection each) are spread over ``--clients`` client
processes, so the client's Python does not share a GIL with the server's. The client
is deliberately lean (``http.client``, bodies built before the clock starts): the
bench measures the server, and on a 2-core machine every client CPU cycle is taken
from it. The clock starts only once every client has started and built its bodies.
Afterwards the bench checks that every 201 is one committed 3-leg entry in the
database, that money is conserved and that the double-entry audit is clean. The
bench world has many families, so no balance runs out (no 409s in the measurement).
"""

from __future__ import annotations

import argparse
import contextlib
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FAMILIES_PER_TILL = 200
BALANCE = 10**12  # fen; never runs out
LEG_SUM = 100 + 101 + 102
PG_BASE = "postgresql://postgres@127.0.0.1:5432/postgres"
SHARED_PAYER = f"11{9999:04d}{0:06d}{2:08d}"  # the one family payer of --shared-payer


def person_no(t: int, f: int, role: int) -> str:
    """Till t's family f: role 0 is the patient, roles 1 and 2 the family payers."""
    return f"11{t:04d}{f:06d}{role:08d}"


def payer_no(t: int, f: int, role: int, shared: bool) -> str:
    return SHARED_PAYER if shared and role == 2 else person_no(t, f, role)


def bench_world(tills: int, shared: bool = False) -> dict[str, Any]:
    """One pharmacy per till (msgid sequences never collide), families of three;
    ``shared``: every family's second payer is the same person, ``SHARED_PAYER``."""
    pharmacies, persons, bindings = [], [], []
    for t in range(tills):
        code = f"B1101050{t:04d}"
        pharmacies.append({"code": code, "name": f"bench {t}", "region": "110105",
                           "api_token": f"bench-token-{t:04d}"})
        for f in range(FAMILIES_PER_TILL):
            base = f"{t:04d}{f:06d}"
            for role in range(2 if shared else 3):
                persons.append(_person(person_no(t, f, role), f"C{base}{role}" if role == 0
                                       else None))  # fmt: skip
            for role in (1, 2):
                bindings.append({"binding_id": f"B{base}{role}",
                                 "payer": payer_no(t, f, role, shared),
                                 "patient": person_no(t, f, 0), "relation": "parent",
                                 "order": role})
    if shared:
        persons.append(_person(SHARED_PAYER, None))
    return {"version": 1, "pharmacies": pharmacies, "persons": persons, "bindings": bindings}


def _person(psn_no: str, card_no: str | None) -> dict[str, Any]:
    return {
        "psn_no": psn_no, "name": "测试", "id_number": "x", "insurance_type": "310",
        "insured_region": "110105", "personal_account_balance": BALANCE,
        "cards": [] if card_no is None else [
            {"card_no": card_no, "card_sn": "S" * 32, "issue_date": "2020-01-01",
             "expiry_date": "2099-01-01", "pin": "123456"}],
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settlement_body(t: int, i: int, shared: bool = False) -> tuple[str, bytes]:
    """The i-th 3-leg cascade of till t: (msgid, JSON body), distinct for every i."""
    code = f"B1101050{t:04d}"
    f = i % FAMILIES_PER_TILL
    base = f"{t:04d}{f:06d}"
    stamp = (dt.datetime(2026, 1, 1) + dt.timedelta(days=t, seconds=i // 10000)).strftime(
        "%Y%m%d%H%M%S")
    msgid = f"{code}{stamp}{i % 10000:04d}"
    legs = []
    for r in range(3):
        payer = payer_no(t, f, r, shared)
        legs.append({"kind": "personal_account" if r == 0 else "mutual_aid",
                     "account_id": f"PA{payer}", "payer_psn_no": payer, "amount": 100 + r,
                     "binding_id": None if r == 0 else f"B{base}{r}"})
    body = {
        "msgid": msgid, "pharmacy_code": code, "terminal_id": f"T{t}", "operator": "bench",
        "patient_psn_no": person_no(t, f, 0),
        "credential": {"kind": "card", "card_no": f"C{base}0", "card_sn": "S" * 32},
        "legs": legs, "cash": 50, "total": LEG_SUM + 50, "lines": [], "proxy": False,
    }
    return msgid, json.dumps(body, separators=(",", ":")).encode()


def client(tills: list[int], port: int, first: int, prebuilt: int, shared: bool, go: Any,
           stop_at: Any, out: Any) -> None:
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

    bodies = {t: [settlement_body(t, first + i, shared) for i in range(prebuilt)] for t in tills}
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
            msgid, body = (bodies[t][i] if i < prebuilt
                           else settlement_body(t, first + i, shared))  # fmt: skip
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


# ---------------------------------------------------------------------- CPU accounting
def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU of these processes (all threads), from /proc; None elsewhere."""
    if not Path("/proc/self/stat").exists():
        return None
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a backend that ended: its CPU is lost from the sum, not invented
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def pg_backends(url: str) -> list[int]:
    """PIDs of the PostgreSQL backends serving the ledger's database (not this one)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


# ---------------------------------------------------------------------- one world
@dataclass
class World:
    """One world served by one ledger server, and what its runs measured."""

    name: str
    doc: dict[str, Any]
    db: str
    shared: bool = False
    port: int = 0
    server: subprocess.Popen[bytes] | None = None
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # the ledger process, per settlement
    pg_cpu_ms: list[float] = field(default_factory=list)  # its PostgreSQL backends
    floors: list[float] = field(default_factory=list)  # BareWriter after each run, per s
    committed: list[str] = field(default_factory=list)

    @property
    def pg(self) -> bool:
        return self.db.startswith("postgres")


def start_server(w: World, tmp: Path, workers: int) -> None:
    world_file = tmp / f"{w.name}.json"
    world_file.write_text(json.dumps(w.doc), "utf-8")
    w.port = free_port()
    w.server = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pos_plugin.ledger.own.sandbox.server import main; "
         "sys.exit(main(sys.argv[1:]))",
         "--db", w.db, "--world", str(world_file), "--port", str(w.port), "--workers",
         str(workers), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", w.port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or w.server.poll() is not None:
                raise SystemExit(f"sandbox ({w.name}) did not start") from None
            time.sleep(0.1)


def one_run(args: Any, w: World, first: int, seconds: float) -> tuple[list[float], list[str],
                                                                      list[str], float]:
    """The tills settle for ``seconds``: (latencies, committed msgids, errors, elapsed)."""
    q: Any = mp.Queue()
    go = mp.Event()
    stop_at = mp.Value("d", 0.0)
    nproc = max(1, min(args.clients, args.tills))
    prebuilt = int(seconds * 5000 / args.tills) + 100
    procs = [mp.Process(target=client, args=(list(range(c, args.tills, nproc)), w.port, first,
                                             prebuilt, w.shared, go, stop_at, q))
             for c in range(nproc)]  # fmt: skip
    for p in procs:
        p.start()
    for _ in procs:  # clients imported and built their bodies: start the clock now
        q.get()
    t0 = time.monotonic()
    stop_at.value = t0 + seconds
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


def measured_run(args: Any, w: World, first: int) -> None:
    """One counted run of ``w``: rate, latency and CPU per settlement appended to ``w``."""
    assert w.server is not None
    backends = pg_backends(w.db) if w.pg else []
    cpu0, pg0 = cpu_seconds([w.server.pid]), cpu_seconds(backends)
    lats, ok, errors, elapsed = one_run(args, w, first, args.seconds)
    cpu1, pg1 = cpu_seconds([w.server.pid]), cpu_seconds(backends)
    if errors:
        raise SystemExit(f"{w.name}: {len(errors)} requests failed, e.g. {errors[0]}")
    w.committed += ok
    lats.sort()
    w.rates.append(len(lats) / elapsed)
    w.p50s.append(statistics.median(lats) * 1000)
    w.p99s.append(lats[int(len(lats) * 0.99) - 1] * 1000)
    if cpu0 is not None and cpu1 is not None and args.workers == 1:
        w.cpu_ms.append((cpu1 - cpu0) * 1000 / len(lats))
    if backends and pg0 is not None and pg1 is not None:
        w.pg_cpu_ms.append((pg1 - pg0) * 1000 / len(lats))


def verify(w: World) -> list[str]:
    """After the runs: every 201 is a committed 3-leg entry, and the books are sound."""
    from pos_plugin.ledger.own.sandbox.store import Store

    problems: list[str] = []
    store = Store(w.db)
    try:
        with store.read() as tx:
            n = tx.one("SELECT COUNT(*) FROM entries WHERE kind = 'sale'")
            legs = tx.one("SELECT COUNT(*) FROM postings WHERE amount < 0")
            known = {str(r[0]) for r in tx.all("SELECT msgid FROM entries")}
        if int(n[0]) != len(w.committed) if n else True:
            problems.append(f"{n} sale entries for {len(w.committed)} answers 201")
        if int(legs[0]) != 3 * len(w.committed) if legs else True:
            problems.append(f"{legs} debit postings for {len(w.committed)} 3-leg settlements")
        missing = [m for m in w.committed if m not in known]
        if missing:
            problems.append(f"{len(missing)} settled msgids not in the ledger, e.g. {missing[0]}")
        money = sum(p["personal_account_balance"] for p in w.doc["persons"])
        if store.total_balance() != money:
            problems.append(f"money not conserved: {store.total_balance()} != {money}")
        problems += store.audit()
    finally:
        store.close()
    return problems


# ---------------------------------------------------------------------- the floors
def _connect(db: str) -> tuple[Any, str]:
    """A plain connection to the ledger's database (same pragmas) and its placeholder."""
    if db.startswith("postgres"):
        import psycopg

        return psycopg.connect(db), "%s"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn, "?"


def _begin(conn: Any) -> None:
    if isinstance(conn, sqlite3.Connection):
        conn.execute("BEGIN IMMEDIATE")  # psycopg opens its transaction by itself


def _commit(conn: Any) -> None:
    conn.execute("COMMIT") if isinstance(conn, sqlite3.Connection) else conn.commit()


def bare_commits(db: str, seconds: float) -> float:
    """One durable commit at a time: a one-row insert + commit on the same database."""
    conn, mark = _connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_bare (id BIGINT PRIMARY KEY, v TEXT)")
    conn.commit()  # PostgreSQL: the CREATE opened a transaction; SQLite: no-op
    n = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        _begin(conn)
        conn.execute(f"INSERT INTO bench_bare (id, v) VALUES ({mark}, {mark})", (n, "x" * 64))
        _commit(conn)
        n += 1
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


_FLOOR_TABLES = ("accounts", "entries", "postings", "idempotency")


def _floor_target(db: str) -> tuple[Any, str, str]:
    """An empty copy of the ledger's tables (same columns, keys, indexes and pragmas):
    SQLite: a new file beside the ledger's; PostgreSQL: schema ``bare`` in its database.
    Returns (connection, placeholder, table prefix)."""
    if not db.startswith("postgres"):
        src = sqlite3.connect(db)
        schema = [r[0] for r in src.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            f"AND tbl_name IN {_FLOOR_TABLES} ORDER BY type = 'index'")]  # fmt: skip
        src.close()
        conn, mark = _connect(db + ".bare")
        for sql in schema:
            conn.execute(sql)
        return conn, mark, ""
    conn, mark = _connect(db)
    conn.execute("CREATE SCHEMA bare")
    for t in _FLOOR_TABLES:
        conn.execute(f"CREATE TABLE bare.{t} (LIKE {t} INCLUDING ALL)")
    conn.commit()
    return conn, mark, "bare."


class BareWriter:
    """The floor for the ledger's writes: the rows it committed (each settlement's entry,
    postings, idempotency row and balance updates) written again into an empty copy of
    its tables as plain SQL (one ``executemany`` per table per batch), ``batch``
    settlements per commit. ``replay`` runs right after each measured run, on that
    run's settlements, so the floor and the ledger see the same load."""

    def __init__(self, db: str, batch: int) -> None:
        self.db, self.batch = db, batch
        src, _ = _connect(db)
        accounts = src.execute("SELECT * FROM accounts").fetchall()
        src.close()
        self.conn, m, self.pre = _floor_target(db)
        self.m = m
        _begin(self.conn)
        self.conn.cursor().executemany(
            f"INSERT INTO {self.pre}accounts VALUES ({','.join([m] * len(accounts[0]))})",
            accounts)  # fmt: skip
        _commit(self.conn)

    def replay(self, after_seq: int, limit: int = 4000) -> float:
        """Settlements/s writing the first ``limit`` sales committed after ``after_seq``."""
        src, m = _connect(self.db)
        entries = src.execute(f"SELECT * FROM entries WHERE kind = 'sale' AND seq > {m} "
                              f"ORDER BY seq LIMIT {m}", (after_seq, limit)).fetchall()
        postings: dict[str, list[tuple[Any, ...]]] = {}
        idem: dict[str, tuple[Any, ...]] = {}
        for e in entries:
            for row in src.execute(f"SELECT * FROM postings WHERE entry_id = {m}", (e[1],)):
                postings.setdefault(row[0], []).append(tuple(row))
            for row in src.execute(f"SELECT * FROM idempotency WHERE msgid = {m}", (e[2],)):
                idem[row[0]] = tuple(row)
        src.close()
        conn, pre, m = self.conn, self.pre, self.m
        entry_sql = f"INSERT INTO {pre}entries VALUES ({','.join([m] * len(entries[0]))})"
        t0 = time.perf_counter()
        for i in range(0, len(entries), self.batch):
            chunk = entries[i:i + self.batch]
            legs = [r for e in chunk for r in postings[e[1]]]
            _begin(conn)
            conn.cursor().executemany(
                f"UPDATE {pre}accounts SET balance = balance + {m} WHERE account_id = {m}",
                [(amount, account) for _, account, amount in legs])
            conn.cursor().executemany(entry_sql, [tuple(e) for e in chunk])
            conn.cursor().executemany(f"INSERT INTO {pre}postings VALUES ({m}, {m}, {m})", legs)
            conn.cursor().executemany(
                f"INSERT INTO {pre}idempotency VALUES ({m}, {m}, {m}, {m}, {m})",
                [idem[e[2]] for e in chunk])
            _commit(conn)
        return len(entries) / (time.perf_counter() - t0)

    def close(self) -> None:
        self.conn.close()


def last_seq(db: str) -> int:
    conn, _ = _connect(db)
    row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
    conn.close()
    return int(row[0])


# ---------------------------------------------------------------------- databases
@contextlib.contextmanager
def pg_database(base: str, label: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one world; dropped afterwards."""
    import psycopg

    name = f"bench_ledger_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(base)._replace(path="/" + name))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _load() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return " ".join(f"{x:.2f}" for x in load)


def _spread(xs: list[float], unit: str = "", fmt: str = ".0f") -> str:
    if not xs:
        return "n/a"
    return f"median {statistics.median(xs):{fmt}}{unit} ({min(xs):{fmt}}-{max(xs):{fmt}})"


def report(args: Any, w: World) -> None:
    print(f"{w.name}: settlements/s {_spread(w.rates)}; latency p50 "
          f"{statistics.median(w.p50s):.2f} ms, p99 {statistics.median(w.p99s):.2f} ms")
    cpu = f"ledger server CPU per settlement: {_spread(w.cpu_ms, ' ms', '.3f')}"
    if w.pg_cpu_ms:
        cpu += f"; its PostgreSQL backends: {_spread(w.pg_cpu_ms, ' ms', '.3f')}"
    print("  " + cpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tills", type=int, default=None,
                    help="concurrent tills, one connection each (default 16; 2 with "
                         "--shared-payer)")
    ap.add_argument("--clients", type=int, default=2,
                    help="client processes the tills are spread over")
    ap.add_argument("--seconds", type=float, default=4.0, help="per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--pg", action="store_true", help="the PostgreSQL store (fresh database)")
    ap.add_argument("--pg-base", default=PG_BASE,
                    help="PostgreSQL server URL the fresh databases are created on")
    ap.add_argument("--shared-payer", action="store_true",
                    help="two tills on one shared family payer vs two uncontended tills")
    args = ap.parse_args(argv)
    if args.tills is None:
        args.tills = 2 if args.shared_payer else 16
    load_before = _load()

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ledger-")))
        kinds = [("uncontended", False), ("shared payer", True)] if args.shared_payer else [
            ("ledger", False)]
        worlds = []
        for i, (name, shared) in enumerate(kinds):
            db = (stack.enter_context(pg_database(args.pg_base, str(i))) if args.pg
                  else str(tmp / f"ledger{i}.db"))  # fmt: skip
            worlds.append(World(name, bench_world(args.tills, shared), db, shared))
        try:
            for w in worlds:
                start_server(w, tmp, args.workers)
            bare = {} if args.shared_payer else {
                w.name: stack.enter_context(contextlib.closing(BareWriter(w.db, args.tills)))
                for w in worlds}  # fmt: skip
            for w in worlds:  # warm-up, not counted: connections, caches, prepared statements
                _, ok, errors, _ = one_run(args, w, 0, 1.0)
                if errors:
                    raise SystemExit(f"{w.name}: warm-up failed, e.g. {errors[0]}")
                w.committed += ok
            for run in range(args.runs):  # the worlds take turns, so both see the same load
                for w in worlds:
                    since = last_seq(w.db)
                    measured_run(args, w, (run + 1) * 1_000_000)
                    if w.name in bare:  # the floor on this run's rows, under the same load
                        w.floors.append(bare[w.name].replay(since))
        finally:
            for w in worlds:
                if w.server is not None:
                    w.server.terminate()
                    w.server.wait(10)
        load_runs = _load()

        engine = "postgresql" if args.pg else "sqlite"
        print(f"cores: {os.cpu_count()}  store: {engine}  tills: {args.tills} over "
              f"{max(1, min(args.clients, args.tills))} client processes  server workers: "
              f"{args.workers}  runs: {args.runs} x {args.seconds:g} s (3-leg settlements, "
              f"loopback HTTP)")
        print(f"load avg before: {load_before}  after the runs: {load_runs}")
        problems = []
        for w in worlds:
            report(args, w)
            problems += [f"{w.name}: {p}" for p in verify(w)]
        print("verified: every 201 is one committed 3-leg entry, money conserved, double-entry "
              "audit clean" if not problems else f"VERIFY FAILED: {problems[:5]}")
        if args.shared_payer:
            un, sh = (statistics.median(w.rates) for w in worlds)
            print(f"shared payer / uncontended: {sh / un:.2f} (target >= 0.5: "
                  f"{'met' if sh / un >= 0.5 else 'NOT met'})")
        else:
            w = worlds[0]
            rate = statistics.median(w.rates)
            bare_one = bare_commits(w.db, 2.0)
            floor = statistics.median(w.floors)
            print(f"floor, each right after a run: bare writer committing the same rows in "
                  f"batches of {args.tills}: {_spread(w.floors, '/s')}  ->  ledger is "
                  f"{floor / rate:.1f}x slower (target <= 5x: "
                  f"{'met' if floor / rate <= 5 else 'NOT met'})")
            print(f"  one-row insert + commit, one at a time (load avg {_load()}): "
                  f"{bare_one:.0f}/s")
            goal = 500 if args.pg else 1000
            if args.tills == 16:
                print(f"target >= {goal}/s at 16 tills: {'met' if rate >= goal else 'NOT met'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
