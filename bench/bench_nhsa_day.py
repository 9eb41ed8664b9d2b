"""Benchmark (issue 13): a store day of 100,000 settlements through 3202, beside the own API.

One day (``nhsa_day_seed``: the same sales in the national sandbox, the own sandbox
ledger and ten tills' journals) is reconciled both ways in one run, each sandbox a real
HTTP server in its own process (the centre is another machine: its CPU must neither
count against the agent nor take the agent's GIL):

- national: the journals read (with each row's 2102 setlinfo), 3201 per insutype and
  clearing type, the detail file written, zipped, uploaded (9101), 3202, the result
  fetched (9102), read, and matched: each phase timed alone, by the same functions
  ``reconcile_national`` runs, then the whole of it as ``pos-plugin reconcile`` runs it;
- own API: ``reconcile_day`` as ``pos-plugin reconcile`` runs it (the statement's pages
  over HTTP read while the journals are);
- baseline, the floor in the same run: the journals' day rows read raw (msgid and the
  result text, no decoding), the detail file's bytes deflated and inflated back (zlib,
  what any ZIP costs), the upload and the result file's bytes echoed through another
  process over loopback, and one bare HTTP round trip to the platform per exchange.

Time: median and min-max of RUNS runs (>= 5), wall clock, with the load average before
and after (the machine may be shared: read the figures with it). "Waiting on the
platform" is the time inside the HTTP session's ``send`` (the sandbox's own work and
loopback); the agent's own time is the total less that, the only thing subtracted.
The agent's CPU time (``time.process_time``: this process, every thread; the sandboxes
run in theirs) is printed beside the wall clock: it barely moves with the load.
Memory: a separate pass under ``tracemalloc`` (so its slowdown touches no timing): the
Python heap's peak during each phase (what is held from earlier phases included) and
per settlement; C buffers outside Python's allocator (SQLite's page cache, zlib's window)
are not counted. The process's peak RSS (the OS's high-water mark, POSIX only) is
printed at the end.

Run: ``.venv/bin/python bench/bench_nhsa_day.py [N] [TILLS] [RUNS]`` (100000 10 5).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests
from nhsa_day_seed import DAY, SeededDay, seed_day
from sandbox_proc import sandbox_process

from pos_plugin.gcpause import gc_paused
from pos_plugin.ledger.nhsa import daybook
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.sandbox.app import ENDPOINT
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.reconcile.day import reconcile_day
from pos_plugin.reconcile.matching import Reconciliation
from pos_plugin.reconcile.national import (
    detail_file_name,
    detail_request,
    match_day,
    read_day,
    read_results,
    reconcile_national,
    totals_notes,
)

PHASES = ("journals", "3201", "write", "zip", "upload", "3202", "fetch", "read", "match")
PLATFORM_CALLS = ("3201", "upload", "3202", "fetch")  # round trips; the rest is the agent


class Phases:
    """Times (and, when tracing, the Python heap's peak of) each ``with phases(name)``."""

    def __init__(self, trace: bool = False) -> None:
        self.trace = trace
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, int] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.trace:
            tracemalloc.reset_peak()
        t = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t
        if self.trace:
            self.peak[name] = tracemalloc.get_traced_memory()[1]


def national_phased(s: SeededDay, client: NhsaLedgerClient, phase: Phases
                    ) -> tuple[Reconciliation, dict[str, bytes]]:  # fmt: skip
    """``reconcile_national``'s steps one by one (no settling rows to resolve here), with
    the cyclic GC paused as there."""
    with gc_paused():
        return _national_phased(s, client, phase)


def _national_phased(s: SeededDay, client: NhsaLedgerClient, phase: Phases
                     ) -> tuple[Reconciliation, dict[str, bytes]]:  # fmt: skip
    with phase("journals"):
        side, rows = read_day(s.journals, DAY)
    with phase("3201"):
        notes = totals_notes(client, rows, DAY)
    name = detail_file_name(s.code, DAY)
    with phase("write"):
        text = daybook.detail_text(rows)
    with phase("zip"):
        content = daybook.zipped(name, text)
    with phase("upload"):
        file_qury_no = client.upload_file(f"{name}.zip", content)
    with phase("3202"):
        result_no, filename = client.detail_check(detail_request(client, rows, DAY,
                                                                 file_qury_no))  # fmt: skip
    with phase("fetch"):
        result = client.download_file(result_no, filename)
    with phase("read"):
        results = read_results(result)
    with phase("match"):
        rec = match_day(DAY, s.journals, s.code, side, rows, results, notes, [])
    return rec, {"text": text, "zip": content, "result": result,
                 "result_text": daybook.unzipped(result)}  # fmt: skip


def timed_session(client: NhsaLedgerClient) -> Callable[[], float]:
    """Adds up the time the client's HTTP session spends in ``send`` (request out, answer
    in): the wait outside the process. Returns a reader of the running total."""
    session = client.transport.session
    send = session.send
    waited = [0.0]

    def timed(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return send(*args, **kw)
        finally:
            waited[0] += time.perf_counter() - t

    session.send = timed  # type: ignore[method-assign]
    return lambda: waited[0]


# --------------------------------------------------------------------------- baseline
_ECHO = """
import socket, sys
srv = socket.create_server(("127.0.0.1", 0)); print(srv.getsockname()[1], flush=True)
while True:
    c, _ = srv.accept()
    with c:
        head = b""
        while len(head) < 8:
            head += c.recv(8 - len(head))
        n = int.from_bytes(head, "big")
        got = bytearray()
        while len(got) < n:
            got += c.recv(1 << 20)
        c.sendall(got)
"""


@contextmanager
def echo_process() -> Iterator[int]:
    """A process that sends back whatever bytes it is sent: the raw loopback transfer."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)


def echo(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(len(data).to_bytes(8, "big") + data)
        got = 0
        while got < len(data):
            more = c.recv(1 << 20)
            if not more:
                raise RuntimeError("the echo process hung up")
            got += len(more)


def baseline(s: SeededDay, files: dict[str, bytes], port: int, platform_url: str
             ) -> dict[str, float]:  # fmt: skip
    out: dict[str, float] = {}
    result_deflated = zlib.compress(files["result_text"])
    t = time.perf_counter()
    for p in s.journals:
        con = sqlite3.connect(p)
        try:
            con.execute("SELECT msgid, result FROM sales WHERE business_date = ?",
                        (DAY.isoformat(),)).fetchall()  # fmt: skip
        finally:
            con.close()
    out["journal rows raw"] = time.perf_counter() - t
    t = time.perf_counter()
    zlib.compress(files["text"])  # the detail file zipped ...
    zlib.decompress(result_deflated)  # ... and the result file read back
    out["deflate + inflate"] = time.perf_counter() - t
    t = time.perf_counter()
    echo(port, files["zip"])
    echo(port, files["result"])
    out["bytes over loopback"] = time.perf_counter() - t
    t = time.perf_counter()
    with requests.Session() as http:
        http.trust_env = False
        for _ in range(6):  # 9001 sign-in aside: 3201s, 9101, 3202, 9102
            http.get(platform_url + "/nothing-here", timeout=10)
    out["bare round trips"] = time.perf_counter() - t
    return out


# --------------------------------------------------------------------------- report
def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} s ({min(values):.3f}-{max(values):.3f})"


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _peak_rss_mb() -> str:
    try:
        import resource  # POSIX only
    except ImportError:
        return "n/a (not POSIX)"
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return f"{kb / 1024 if sys.platform != 'darwin' else kb / 2**20:.0f} MB"


def _check(rec: Reconciliation, settlements: int, what: str) -> None:
    if not rec.balanced or rec.balanced_count != settlements:
        raise SystemExit(f"{what}: not balanced ({rec.counts}); the bench measures a clean day")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    tills = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    runs = max(5, int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    with tempfile.TemporaryDirectory(prefix="bench-nhsa-day-") as tmp, ExitStack() as stack:
        t0 = time.perf_counter()
        s = seed_day(Path(tmp), n, tills)
        print(f"seeded {n:,} sales ({s.settlements:,} settlements with the reversals) across "
              f"{tills} tills in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        nhsa_url = stack.enter_context(sandbox_process(s.nhsa_db, command="sandbox-nhsa"))
        own_url = stack.enter_context(sandbox_process(s.own_db))
        port = stack.enter_context(echo_process())
        settings = NhsaSettings(fixmedins_code=s.code, fixmedins_name=s.name,
                                mdtrtarea_admvs=s.region, read_timeout=120.0)  # fmt: skip
        national = NhsaLedgerClient(nhsa_url + ENDPOINT, settings)
        stack.callback(national.close)
        own = HttpLedgerClient(own_url, s.token)
        stack.callback(own.close)
        waited = timed_session(national)
        # Warm up both (sign-in, connections, imports); not counted.
        _check(reconcile_day(DAY, s.journals, own, s.code), s.settlements, "own API")
        _check(reconcile_national(DAY, s.journals, national, s.code), s.settlements, "3202")

        load_before = _load()
        times: dict[str, list[float]] = {k: [] for k in (*PHASES, "phases", "national",
                                                          "national wait", "national cpu",
                                                          "own", "own cpu")}  # fmt: skip
        floors: dict[str, list[float]] = {}
        files: dict[str, bytes] = {}
        for _ in range(runs):
            phase = Phases()
            rec, files = national_phased(s, national, phase)
            _check(rec, s.settlements, "3202, phase by phase")
            for k, v in phase.seconds.items():
                times[k].append(v)
            times["phases"].append(sum(phase.seconds.values()))
            w0, c = waited(), time.process_time()
            t = time.perf_counter()
            _check(reconcile_national(DAY, s.journals, national, s.code), s.settlements, "3202")
            times["national"].append(time.perf_counter() - t)
            times["national cpu"].append(time.process_time() - c)
            times["national wait"].append(waited() - w0)
            c = time.process_time()
            t = time.perf_counter()
            _check(reconcile_day(DAY, s.journals, own, s.code), s.settlements, "own API")
            times["own"].append(time.perf_counter() - t)
            times["own cpu"].append(time.process_time() - c)
            for k, v in baseline(s, files, port, nhsa_url).items():
                floors.setdefault(k, []).append(v)
        load_after = _load()

        # Memory, in a pass of its own.
        tracemalloc.start()
        phase = Phases(trace=True)
        national_phased(s, national, phase)
        tracemalloc.reset_peak()
        reconcile_national(DAY, s.journals, national, s.code)
        national_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        reconcile_day(DAY, s.journals, own, s.code)
        own_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    mb = 1024 * 1024
    per = s.settlements
    print(f"{runs} runs; {os.cpu_count()} CPUs; load average (1/5/15 min) {load_before} "
          f"before, {load_after} after")  # fmt: skip
    size = {k: len(v) / mb for k, v in files.items()}
    print(f"detail file {size['text']:.1f} MB, zipped {size['zip']:.1f} MB; "
          f"result file {size['result_text']:.1f} MB, zipped {size['result']:.1f} MB")
    print(f"\n{'national, phase by phase':28} {'time: median (min-max)':>28}   heap peak")
    for k in PHASES:
        print(f"  {k:26} {_fmt(times[k]):>28}   {phase.peak[k] / mb:6.1f} MB")
    print(f"  {'sum of the phases':26} {_fmt(times['phases']):>28}")
    platform = [sum(times[k][i] for k in PLATFORM_CALLS) for i in range(runs)]
    print(f"  {'of which platform calls':26} {_fmt(platform):>28}")
    print(f"\n{'whole days':28} {'time: median (min-max)':>28}   heap peak   per settlement")
    own_t = [a - b for a, b in zip(times["national"], times["national wait"], strict=True)]
    print(f"  {'national (3201 + 3202)':26} {_fmt(times['national']):>28}   "
          f"{national_peak / mb:6.1f} MB   {national_peak / per:5.0f} B")
    print(f"  {'  waiting on the platform':26} {_fmt(times['national wait']):>28}")
    print(f"  {'  the agent own time':26} {_fmt(own_t):>28}")
    print(f"  {'  the agent CPU time':26} {_fmt(times['national cpu']):>28}")
    print(f"  {'own API (statement)':26} {_fmt(times['own']):>28}   "
          f"{own_peak / mb:6.1f} MB   {own_peak / per:5.0f} B")
    print(f"  {'  the agent CPU time':26} {_fmt(times['own cpu']):>28}")
    ratio = statistics.median(times["national"]) / statistics.median(times["own"])
    cpu = statistics.median(times["national cpu"]) / statistics.median(times["own cpu"])
    print(f"  ratio national / own API: {ratio:.2f}x wall clock, {cpu:.2f}x the agent's CPU")
    print(f"\n{'baseline (floor, same run)':28} {'time: median (min-max)':>28}")
    for k, floor in floors.items():
        print(f"  {k:26} {_fmt(floor):>28}")
    total_floor = [sum(v[i] for v in floors.values()) for i in range(runs)]
    print(f"  {'sum':26} {_fmt(total_floor):>28}")
    print(f"\nprocess peak RSS (whole bench, seeding included): {_peak_rss_mb()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
