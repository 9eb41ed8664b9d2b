"""Physical floors the benches measure in the same run as what they time."""

from __future__ import annotations

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
