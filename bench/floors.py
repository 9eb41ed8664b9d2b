"""Physical floors the benches measure in the same run as what they time."""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from pathlib import Path


def bare_commits_ms(work: str, commits: int = 1, n: int = 50) -> float:
    """Median ms of ``commits`` one-row commits in a row, as the journal commits: WAL,
    synchronous=FULL, a ~200-byte row each (a sale's durable steps: ``commits=2``)."""
    path = Path(work) / "bare.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        for k in range(commits * i, commits * (i + 1)):
            db.execute("BEGIN")
            db.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 200))
            db.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    db.close()
    return statistics.median(times) * 1000


_PACE_DOC = [{"msgid": f"H{i:029d}", "legs": [["personal_account", f"A{i}", i]], "n": i}
             for i in range(2_000)]  # fmt: skip


def pace_ms(repeat: int = 5) -> str:
    """The machine's pace, to compare runs made on different days: the median (min-max)
    ms of a fixed pure-Python workload (JSON out and back, a sort: the kind of work the
    agent does). Not a floor: the same code on this VM has run 1.5x slower or faster
    from one hour to the next, and this line shows which kind of hour a run had."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(5):
            text = json.dumps(_PACE_DOC, sort_keys=True)
            sorted(json.loads(text), key=lambda d: d["msgid"], reverse=True)
        times.append((time.perf_counter() - t0) * 1000)
    return f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f}) ms"
