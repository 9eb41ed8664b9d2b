"""Benchmark: start-up (issue 17, target 5): ``pos-plugin --help`` (< 150 ms) and
``pos-plugin serve --simulate`` until ``/v1/health`` answers (< 1 s).

Median and min-max of RUNS runs, the load average, and the floor in the same run: a
bare interpreter (``python -c pass``). Run: ``.venv/bin/python bench/bench_startup.py [RUNS]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLI = [sys.executable, "-m", "pos_plugin.cli"]


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def serve_healthy() -> float:
    """From spawning ``serve --simulate`` to the first 200 from /v1/health."""
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*CLI, "serve", "--simulate", "--port", "0", "--workdir", work],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "... listening on http://127.0.0.1:PORT"
            url = line.rsplit(" ", 1)[-1].strip()
            while True:
                try:
                    with urllib.request.urlopen(url + "/v1/health", timeout=1) as r:
                        if r.status == 200:
                            return time.perf_counter() - t0
                except OSError:
                    time.sleep(0.005)
        finally:
            proc.terminate()
            proc.wait(10)


def spread(xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"median {statistics.median(ms):.0f} ms ({min(ms):.0f}-{max(ms):.0f})"


def main(runs: int = 5) -> None:
    bare = [timed([sys.executable, "-c", "pass"]) for _ in range(runs)]
    helps = [timed([*CLI, "--help"]) for _ in range(runs)]
    serves = [serve_healthy() for _ in range(runs)]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bench_startup: {runs} runs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  bare interpreter (floor)     {spread(bare)}")
    print(f"  pos-plugin --help            {spread(helps)}   (target < 150 ms)")
    print(f"  serve --simulate -> healthy  {spread(serves)}   (target < 1 s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
