"""Benchmark: 追溯码 of a 10-pack line scanned on the counter device (SCAN_TRACE) over a
9600-baud 8N1 line (simulated, paced).

Not a test: prints figures. Run with ``.venv/bin/python bench/bench_trace_scan.py``.

The simulator paces every byte at its wire time in both directions, so the elapsed time
has a physical floor of ``bytes x 10 / 9600`` seconds, measured in the same run from the
bytes that crossed the line. Human time is excluded: the simulated cashier scans each
pack the moment the pad asks. What is left above the floor is the host's and the
device's own time per exchange (one SCAN_TRACE, one TRACE_CODE, two ACKs per pack).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from drivers import Terminal, TracePrompt
from drivers.simulator import Simulator
from pos_plugin.world import World, load_world

BAUD = 9600
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
PRODUCT = "XA01AAA0001"


def big_shelf(packs: int) -> World:
    """The example world with ``packs`` packs of one product, enough for every run."""
    world = load_world()
    first = world.catalogue[0].model_copy(
        update={"trace_codes": tuple(f"8{k:019d}" for k in range(1, packs + 1))}
    )
    return world.model_copy(update={"catalogue": (first, *world.catalogue[1:])})


def one_run(sim: Simulator, term: Terminal, packs: int) -> tuple[int, int, float]:
    time.sleep(0.05)  # let the line go quiet
    sim.reset_stats()
    t0 = time.perf_counter()
    for pack in range(1, packs + 1):
        prompt = TracePrompt(line=1, pack=pack, packs=packs, product=PRODUCT, name="阿莫西林胶囊")
        term.scan_trace_code(prompt, timeout=10)
    elapsed = time.perf_counter() - t0
    time.sleep(0.05)  # the host's last ACK reaches the simulator
    nbytes = sim.stats.bytes_rx + sim.stats.bytes_tx - 1  # the last ACK is not waited for
    return sim.stats.exchanges, nbytes, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--packs", type=int, default=10)
    args = ap.parse_args()
    sim = Simulator(big_shelf(args.packs * (args.runs + 1)), pace_baud=BAUD)
    path = sim.start()
    try:
        with Terminal(path, baudrate=BAUD) as term:
            one_run(sim, term, args.packs)  # warm-up
            runs = [one_run(sim, term, args.packs) for _ in range(args.runs)]
    finally:
        sim.stop()
    exchanges, nbytes = runs[0][0], runs[0][1]
    floor = nbytes * BITS_PER_BYTE / BAUD
    times = sorted(r[2] for r in runs)
    median = statistics.median(times)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"{args.packs} packs scanned, simulator paced at {BAUD} baud 8N1, {args.runs} runs")
    print(f"exchanges {exchanges}, bytes on the wire {nbytes}, floor {floor * 1000:.0f} ms")
    print(f"elapsed median {median * 1000:.0f} ms (min {times[0] * 1000:.0f}, "
          f"max {times[-1] * 1000:.0f}); median / floor {median / floor:.2f}; "
          f"per pack {median / args.packs * 1000:.1f} ms")  # fmt: skip
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 shared cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
