"""One side of the day put in msgid order, in bounded memory.

Why: matching walks both sides in msgid order, side by side (``matching.walk``, a
merge), so a day of any size is matched without an index of all of it. The
journals give their rows in their own order and the statement in commit order, so
each side is gathered here first. Entries are kept in memory up to a size in bytes
(``MEMORY_BYTES``: a store's ordinary day, 100,000 settlements, fits) and sorted
there. Past that, each full batch is sorted and written to a temporary file (a
*run*), and the runs are read back merged (``heapq.merge``), one block of each at a
time: the memory held is one batch plus one block per run, whatever the day's size.

The limit is in bytes, not entries, because what an entry holds varies (a family
sale has a leg per payer; a journal row carries the patient's masked ID): the size
of each chunk handed over is estimated from a few of its entries (``entries_bytes``).

Runs are length-prefixed ``marshal`` blocks of plain tuples: the fastest round trip the standard
library has for tuples of str/int/None, and the files live only as long as this
object (``close``); nothing else ever reads them.
"""

from __future__ import annotations

import heapq
import marshal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import IO

from pos_plugin.reconcile.matching import Entry

# What one side keeps in memory before it spills a sorted run: ~110,000 entries of the
# benchmark's day (~790 bytes each, as estimated), so a 100,000-row day stays whole;
# both sides at the limit, a 1,000,000-row day peaks at 265 MB (docs/reconciliation.md,
# *Benchmark*).
MEMORY_BYTES = 88_000_000
_BLOCK = 512  # entries per marshal block: what a run holds in memory while merged
_SAMPLE = 8  # entries of a chunk whose size is measured
_MSGID = itemgetter(0)


def entries_bytes(entries: Sequence[Entry]) -> int:
    """About how much memory ``entries`` hold: the objects of a few of them, evenly
    spaced, each object counted once (a value they share, such as ``"sale"``, is not
    theirs), scaled to the whole chunk."""
    if not entries:
        return 0
    sample = entries[:: max(1, len(entries) // _SAMPLE)]
    seen: set[int] = set()
    size = 0
    todo: list[object] = list(sample)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj)
        if isinstance(obj, tuple):  # an entry, its legs, a leg
            todo.extend(obj)
    return size * len(entries) // len(sample)


class MsgidOrder:
    """Collects entries in any order (``extend``); gives them back once, in msgid order.

    Spills past ``limit_bytes`` (estimated, ``entries_bytes``) or ``limit`` entries
    (tests use a handful, to spill small days). Entries with the same msgid come back
    in the order they were added (both sorts and ``heapq.merge`` are stable), so a
    duplicate stays a duplicate.
    """

    def __init__(self, limit: int = sys.maxsize, *, limit_bytes: int = MEMORY_BYTES) -> None:
        self.limit = max(1, limit)
        self.limit_bytes = limit_bytes
        self._batch: list[Entry] = []
        self._bytes = 0
        self._runs: list[IO[bytes]] = []
        self.count = 0

    def extend(self, entries: Sequence[Entry]) -> None:
        self._batch.extend(entries)
        self.count += len(entries)
        self._bytes += entries_bytes(entries)
        if len(self._batch) >= self.limit or self._bytes >= self.limit_bytes:
            self._spill()

    @property
    def spilled(self) -> int:
        """How many sorted runs went to disk (0: the side fitted in memory)."""
        return len(self._runs)

    def _spill(self) -> None:
        self._batch.sort(key=_MSGID)
        f = tempfile.TemporaryFile(prefix="reconcile-run-")  # noqa: SIM115  (open until close())
        batch = self._batch
        for i in range(0, len(batch), _BLOCK):
            block = marshal.dumps(list(map(tuple, batch[i : i + _BLOCK])))
            f.write(len(block).to_bytes(4, "little"))
            f.write(block)
        f.seek(0)
        self._runs.append(f)
        self._batch = []
        self._bytes = 0

    def __iter__(self) -> Iterator[Entry]:
        self._batch.sort(key=_MSGID)
        if not self._runs:
            batch, self._batch = self._batch, []
            return iter(batch)
        tail, self._batch = self._batch, []
        return heapq.merge(*(_read_run(f) for f in self._runs), tail, key=_MSGID)

    def close(self) -> None:
        for f in self._runs:
            f.close()
        self._runs = []
        self._batch = []

    def __enter__(self) -> MsgidOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_run(f: IO[bytes]) -> Iterator[Entry]:
    # Each block is its length (4 bytes) then its marshal bytes: ``marshal.loads`` of
    # a whole block is fast, where ``marshal.load`` on a file reads it piece by piece.
    make = Entry._make
    while size := int.from_bytes(f.read(4), "little"):
        yield from map(make, marshal.loads(f.read(size)))
