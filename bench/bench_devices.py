"""Benchmark: "read card + verify PIN" over a 9600-baud 8N1 line (simulated, paced).

Not a test: prints figures. Run with ``.venv/bin/python bench/bench_devices.py``.

The simulator paces every byte at its wire time in both directions, so the
elapsed time has a floor of ``bytes x 10 / 9600`` seconds. Human wait is
excluded: the card is in the reader before the clock starts and the simulated
customer types the PIN instantly. Targets (issue 3): at most 4 request/response
exchanges, elapsed within 1.3x of the wire-time floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from drivers import CardPresented, PinOutcome, Terminal
from drivers.simulator import Simulator
from pos_plugin.world import load_world

BAUD = 9600
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


def one_run(sim: Simulator, term: Terminal) -> tuple[int, int, float]:
    # The sale began (the pad showed the amount) a moment before the customer inserted
    # the card, so the card is this sale's; the clock starts once it is in.
    sale_began = time.monotonic() - 1.0
    sim.remove_card()
    sim.present_card("B11000001", pin="correct", at_once=True)
    time.sleep(0.05)  # let the line go quiet
    sim.reset_stats()
    t0 = time.perf_counter()
    got = term.wait_for_credential(10, presented_after=sale_began)
    result = term.verify_pin(10)
    elapsed = time.perf_counter() - t0
    assert isinstance(got, CardPresented) and result.outcome is PinOutcome.VERIFIED, (got, result)
    time.sleep(0.05)  # the host's last ACK reaches the simulator
    # The host does not wait for its final ACK to leave the wire: not part of the floor.
    nbytes = sim.stats.bytes_rx + sim.stats.bytes_tx - 1
    return sim.stats.exchanges, nbytes, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    print(f"read card + verify PIN, simulator paced at {BAUD} baud 8N1, {args.runs} runs each")
    print(f"{'read mode':10} {'exchanges':>9} {'bytes':>6} {'floor ms':>9} "
          f"{'median ms':>10} {'worst ms':>9} {'ratio':>6} {'worst':>6}")  # fmt: skip
    ok = True
    for mode in ("compound", "apdu"):
        sim = Simulator(load_world(), pace_baud=BAUD)
        path = sim.start()
        try:
            with Terminal(path, baudrate=BAUD, read_mode=mode) as term:
                runs = [one_run(sim, term) for _ in range(args.runs)]
        finally:
            sim.stop()
        exchanges, nbytes = runs[-1][0], runs[-1][1]
        floor = nbytes * BITS_PER_BYTE / BAUD
        times = [r[2] for r in runs]
        med, worst = statistics.median(times), max(times)
        print(
            f"{mode:10} {exchanges:9d} {nbytes:6d} {floor * 1000:9.1f} {med * 1000:10.1f} "
            f"{worst * 1000:9.1f} {med / floor:6.3f} {worst / floor:6.3f}"
        )
        if mode == "compound":
            ok = exchanges <= 4 and med / floor <= 1.3
    print("targets (compound): exchanges <= 4, ratio <= 1.3 ->", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
