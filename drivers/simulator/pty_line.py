"""The simulator on a pseudo-terminal: POSIX only (os.openpty, tty, os.symlink).

The only POSIX-only module a till could load, and only when a pty is asked for
(``drivers.simulator.lines.make_line``); the import scan test skips it.

The host opens :attr:`PtyLine.path`, a symlink in a private temp directory that
always points at the current pty; a re-plug creates a new pty and moves the
symlink, so a Terminal reconnecting to the same path finds the device again.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import tempfile
import tty


class PtyLine:
    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pos-sim-")
        self._path = os.path.join(self._dir, "ttySIM0")
        self._pty_path: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._new_session = False

    @property
    def path(self) -> str:
        return self._path

    @property
    def pty_path(self) -> str | None:
        return self._pty_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: a serial line, not a terminal
        os.set_blocking(master, False)  # bytes nobody reads are lost, as on a wire
        self._master, self._slave = master, slave
        self._pty_path = os.ttyname(slave)
        tmp = self._path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self._pty_path, tmp)
        os.replace(tmp, self._path)
        self._new_session = True

    def unplug(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def close(self) -> None:
        self.unplug()
        shutil.rmtree(self._dir, ignore_errors=True)

    def new_session(self) -> bool:
        fresh, self._new_session = self._new_session, False
        return fresh

    def poll(self, wake: socket.socket, timeout: float) -> bytes:
        fd = self._master
        if fd is None:
            select.select([wake], [], [], timeout)
            with contextlib.suppress(OSError, BlockingIOError):
                wake.recv(64)
            return b""
        ready, _, _ = select.select([fd, wake.fileno()], [], [], timeout)
        if wake.fileno() in ready:
            with contextlib.suppress(OSError):
                wake.recv(64)
        if fd in ready:
            try:
                return os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return b""
            except OSError:
                return b""
        return b""

    def write(self, data: bytes) -> int:
        if self._master is None:
            return 0  # unplugged: the bytes go nowhere
        try:
            return os.write(self._master, data)
        except OSError:
            return 0  # buffer full / nobody reading: lost, as on a wire
