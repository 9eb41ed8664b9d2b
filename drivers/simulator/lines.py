"""The simulator's end of the serial line: what the host opens, and how bytes cross it.

Two kinds, one interface (:class:`Line`):

* :class:`SocketLine` (every OS): a TCP listener on 127.0.0.1; the host opens
  ``socket://127.0.0.1:PORT``, which pyserial treats like a COM port. Unplugging
  closes the listener and the connection (the host's open then fails with
  "connection refused", as a missing COM port does); replugging listens on the
  same port again.
* ``PtyLine`` (POSIX only, ``drivers.simulator.pty_line``): a pseudo-terminal
  behind a stable symlink, so the host goes through pyserial's real tty code.

``make_line("auto")`` picks the pty where there is one and the socket elsewhere
(Windows). Nothing in this module is POSIX-only; the pty module is imported only
when a pty is asked for.

The Simulator holds its own lock around every call; a Line is not thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from typing import Literal, Protocol

Transport = Literal["auto", "pty", "socket"]
TRANSPORTS: tuple[Transport, ...] = ("auto", "pty", "socket")


class Line(Protocol):
    """The device side of one serial line."""

    @property
    def path(self) -> str:
        """What the host opens (a pyserial URL or a device path); stable across re-plugs."""
        ...

    @property
    def pty_path(self) -> str | None:
        """The pty behind ``path`` (pty lines only), for humans."""
        ...

    @property
    def plugged(self) -> bool: ...

    def plug(self) -> None:
        """Make the line available to the host (start, or replug)."""

    def unplug(self) -> None:
        """Take the line away: the host's reads fail, its opens fail."""

    def poll(self, wake: socket.socket, timeout: float) -> bytes:
        """Bytes from the host, waiting up to ``timeout`` (or until ``wake`` is readable)."""
        ...

    def write(self, data: bytes) -> int:
        """Send to the host; bytes the host does not take are lost, as on a wire."""
        ...

    def new_session(self) -> bool:
        """True once after the host (re)connected: the framing state must be reset."""
        ...

    def close(self) -> None:
        """Unplug for good and release every resource."""


def pty_available() -> bool:
    return os.name == "posix"


def make_line(transport: Transport = "auto", *, port: int = 0) -> Line:
    """A line of the kind asked for; ``auto``: a pty on POSIX, a socket elsewhere."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
    if transport == "pty" or (transport == "auto" and pty_available()):
        if not pty_available():
            raise ValueError("a pty needs a POSIX system: use --transport socket")
        from drivers.simulator.pty_line import PtyLine  # POSIX only

        return PtyLine()
    return SocketLine(port=port)


class SocketLine:
    """The device on a TCP socket on loopback; one host connection at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._new_session = False

    @property
    def path(self) -> str:
        return f"socket://{self.host}:{self._port}"

    @property
    def pty_path(self) -> str | None:
        return None

    @property
    def port(self) -> int:
        return self._port

    @property
    def plugged(self) -> bool:
        return self._listener is not None

    def plug(self) -> None:
        if self._listener is not None:
            return
        # The same port after a re-plug: the host reconnects to the URL it was given.
        # A just-closed listener's port can be briefly unavailable on some systems.
        deadline = time.monotonic() + 5
        while True:
            try:
                listener = socket.create_server((self.host, self._port), backlog=4)
                break
            except OSError:
                if self._port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]

    def unplug(self) -> None:
        for s in (self._conn, self._listener):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self._conn = self._listener = None

    def close(self) -> None:
        self.unplug()

    def new_session(self) -> bool:
        fresh, self._new_session = self._new_session, False
        return fresh

    def poll(self, wake: socket.socket, timeout: float) -> bytes:
        watch: list[socket.socket] = [wake]
        if self._listener is not None:
            watch.append(self._listener)
        if self._conn is not None:
            watch.append(self._conn)
        ready, _, _ = select.select(watch, [], [], timeout)
        if wake in ready:
            with contextlib.suppress(OSError):
                wake.recv(64)
        if self._listener is not None and self._listener in ready:
            self._accept()
        if self._conn is not None and self._conn in ready:
            try:
                data = self._conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                return b""
            except OSError:
                data = b""
            if not data:  # the host closed its port
                with contextlib.suppress(OSError):
                    self._conn.close()
                self._conn = None
            return data
        return b""

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, OSError):
            return
        if self._conn is not None:  # the host reopened its port: the old one is gone
            with contextlib.suppress(OSError):
                self._conn.close()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        self._new_session = True

    def write(self, data: bytes) -> int:
        if self._conn is None:
            return 0  # nobody connected: the bytes go nowhere
        try:
            return self._conn.send(data)
        except (BlockingIOError, InterruptedError):
            return 0  # the host is not reading: lost, as on a wire
        except OSError:
            return 0
