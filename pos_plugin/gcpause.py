"""Pause the cyclic garbage collector while a day's worth of small objects is built.

Why: reconciling a day builds ~10^6 small objects (rows, tuples, entries) that form
no cycles. With the collector on, every collection rescans all of them (>1 s per
100,000 rows). Merely disabling it is not enough: allocations are still counted, so
the first allocation after re-enabling triggers a collection of the whole young
generation, all those objects at once (~0.5 s for a 100,000-row day).

So on leaving, ``gc.freeze()`` + ``gc.unfreeze()`` first move every tracked object
into the oldest generation (a list splice, O(1)) and reset the allocation count;
the objects are then looked at only by an ordinary full collection. Reference
counting frees them as usual when they are dropped; only cyclic garbage made while
paused waits for that full collection.

Nested pauses are free: only the outermost one turns the collector back on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic GC off; then age what it built without scanning it."""
    if not gc.isenabled():  # an outer pause (or the application) owns the collector
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        gc.enable()
