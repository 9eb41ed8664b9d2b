"""One way to stop: a ``threading.Event`` that Ctrl+C, SIGTERM and a service stop all set.

Why an event and a loop: on Windows a thread blocked in ``Event.wait()`` without a
timeout is not interrupted by Ctrl+C (the signal handler runs only when the main
thread gets back to the interpreter), and SIGTERM never comes there; the Windows
service's stop callback runs on another thread. So the main thread waits in short
ticks, every way of stopping sets the same event, and the caller then shuts down
in one place (the journal is closed after the API stopped taking sales).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger("pos_plugin.shutdown")

TICK = 0.5  # how often the waiting main thread lets a Ctrl+C through

# SIGINT: Ctrl+C everywhere; SIGTERM: systemd / kill on POSIX (settable on Windows, never
# sent there); SIGBREAK: Ctrl+Break and console close on Windows only.
_SIGNALS = tuple(
    s
    for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGBREAK"))
    if s is not None
)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Within the block, Ctrl+C / SIGTERM / SIGBREAK set ``stop`` instead of raising.

    Only the main thread can install handlers; elsewhere (a Windows service's worker
    thread) the block simply yields the event, which the service's stop sets.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested (signal %s)", signal.Signals(signum).name)
        stop.set()

    previous: list[tuple[int, Callable[..., object] | int | None]] = []
    for sig in _SIGNALS:
        try:
            previous.append((sig, signal.signal(sig, handler)))
        except (OSError, ValueError):  # not settable here
            continue
    try:
        yield stop
    finally:
        for sig, old in previous:
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def wait_until_stopped(stop: threading.Event, tick: float = TICK) -> None:
    """Block until ``stop`` is set, in ticks so Ctrl+C gets through on Windows too."""
    try:
        while not stop.wait(tick):
            pass
    except KeyboardInterrupt:  # a handler other than ours was in place
        stop.set()
