"""Benchmark: the sandbox ledger's writer alone, without HTTP (issue 17, target 3).

Not a test. One command per figure:
  .venv/bin/python bench/bench_ledger_writer.py          # SQLite store
  .venv/bin/python bench/bench_ledger_writer.py --pg     # PostgreSQL store (fresh database)
Options: [--tills 16] [--seconds 2] [--runs 5] [--pg-base URL]

Why beside ``bench_ledger.py``: there the HTTP layer, the clients and the writer
share 2 cores, so the figure says little about the writer itself. Here ``--tills``
threads call ``Ledger.settle`` directly (the same checks, the same group commit, the
requests parsed before the clock starts), so what is measured is the writer's
capacity: its Python, its round trips to the database and the commits. Prints
settlements/s as the median and min-max of ``--runs`` runs, the load average, and the
floor measured right after each run on that run's rows: ``bench_ledger.BareWriter``,
a bare writer committing the same rows in batches of ``--tills``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ledger as bl  # the sibling bench: its world, bodies and floor

from pos_plugin.ledger.own.sandbox.service import Ledger
from pos_plugin.ledger.own.sandbox.store import Store
from pos_plugin.ledger.own.schemas import SettlementRequest
from pos_plugin.world import World


def one_run(ledger: Ledger, tills: int, first: int, seconds: float) -> float:
    """Each till settles its own 3-leg cascades one after another: settlements/s."""
    reqs = {t: [SettlementRequest.model_validate_json(bl.settlement_body(t, first + i)[1])
                for i in range(int(seconds * 4000 / tills) + 200)] for t in range(tills)}  # fmt: skip
    counts = [0] * tills
    go = threading.Event()
    end = [0.0]

    def till(t: int) -> None:
        go.wait()
        i = 0
        while time.monotonic() < end[0]:
            r = reqs[t][i]
            status, _ = ledger.settle(r.pharmacy_code, r.msgid, r)
            if status != 201:
                raise SystemExit(f"{r.msgid}: {status}")
            i += 1
        counts[t] = i

    threads = [threading.Thread(target=till, args=(t,)) for t in range(tills)]
    for th in threads:
        th.start()
    t0 = time.monotonic()
    end[0] = t0 + seconds
    go.set()
    for th in threads:
        th.join()
    return sum(counts) / (time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tills", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.0, help="per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg", action="store_true", help="the PostgreSQL store (fresh database)")
    ap.add_argument("--pg-base", default=bl.PG_BASE)
    args = ap.parse_args(argv)
    load_before = bl._load()
    rates: list[float] = []
    floors: list[float] = []
    with contextlib.ExitStack() as stack:
        db = (stack.enter_context(bl.pg_database(args.pg_base, "writer")) if args.pg else
              str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "ledger.db"))  # fmt: skip
        world = World.model_validate(bl.bench_world(args.tills))
        store = Store(db)
        stack.callback(store.close)
        store.init(world)
        ledger = Ledger(store)
        bare = stack.enter_context(contextlib.closing(bl.BareWriter(db, args.tills)))
        one_run(ledger, args.tills, 0, 0.5)  # warm-up: connections, prepared statements
        for run in range(args.runs):
            since = bl.last_seq(db)
            rates.append(one_run(ledger, args.tills, (run + 1) * 1_000_000, args.seconds))
            floors.append(bare.replay(since))
        problems = store.audit()
        if store.total_balance() != world.total_money():
            problems.append("money not conserved")
    rate, floor = statistics.median(rates), statistics.median(floors)
    print(f"store: {'postgresql' if args.pg else 'sqlite'}  tills: {args.tills} threads calling "
          f"Ledger.settle (no HTTP)  runs: {args.runs} x {args.seconds:g} s")
    print(f"load avg before: {load_before}  after the runs: {bl._load()}")
    print(f"writer: settlements/s {bl._spread(rates)}")
    print(f"floor, each right after a run: bare writer committing the same rows in batches of "
          f"{args.tills}: {bl._spread(floors, '/s')}  ->  writer is {floor / rate:.1f}x slower")
    print("books: audit clean, money conserved" if not problems else f"BOOKS: {problems[:5]}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
