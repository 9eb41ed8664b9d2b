"""Waiting in tests for something another thread or process does (a background
reversal, the pad's display, a link coming back up)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call ``check`` until it returns something true or ``timeout`` seconds have passed
    (it is called once more after the deadline); its last value, for ``assert``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
