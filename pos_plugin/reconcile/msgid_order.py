"""One side of the day put in msgid order, in bounded memory.

Why: matching walks both sides in msgid order, side by side (``matching.walk``, a
merge), so a day of any size is matched without an index of all of it. The
journals give their rows in their own order and the statement in commit order, so
each side is gathered here first. Up to ``limit`` entries are kept in memory and
sorted there (a store's ordinary day). Past that, each full batch is sorted and
written to a temporary file (a *run*), and the runs are read back merged
(``heapq.merge``), one block of each at a time: the memory held is ``limit``
entries plus one block per run, whatever the day's size.

Runs are length-prefixed ``marshal`` blocks of plain tuples: the fastest round trip the standard
library has for tuples of str/int/None, and the files live only as long as this
object (``close``); nothing else ever reads them.
"""

from __future__ import annotations

import heapq
import marshal
import tempfile
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import IO

from pos_plugin.reconcile.matching import Entry

MEMORY_ROWS = 64_000  # entries one side keeps in memory before it spills a sorted run (~60 MB)
_BLOCK = 512  # entries per marshal block: what a run holds in memory while merged
_MSGID = itemgetter(0)


class MsgidOrder:
    """Collects entries in any order (``extend``); gives them back once, in msgid order.

    Entries with the same msgid come back in the order they were added (both sorts
    and ``heapq.merge`` are stable), so a duplicate stays a duplicate.
    """

    def __init__(self, limit: int = MEMORY_ROWS) -> None:
        self.limit = max(1, limit)
        self._batch: list[Entry] = []
        self._runs: list[IO[bytes]] = []
        self.count = 0

    def extend(self, entries: Iterable[Entry]) -> None:
        batch = self._batch
        before = len(batch)
        batch.extend(entries)
        self.count += len(batch) - before
        if len(batch) >= self.limit:
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
