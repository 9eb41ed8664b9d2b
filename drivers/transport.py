"""Open a serial port from a URL, the same way for every kind of port.

``serial.serial_for_url`` accepts ``/dev/ttyUSB0``, ``COM3``, ``socket://host:port``,
``rfc2217://host:port`` and ``loop://`` unchanged, so a pharmacy's config value
is passed straight through. We always set a write timeout (a wedged USB adapter
must not hang the till) and ask for an exclusive open on local ports (two
agents sharing one reader would interleave frames).

The read timeout is a short poll tick only: the link layer keeps its own
deadlines with ``time.monotonic()``, because pyserial's ``inter_byte_timeout``
is unreliable on POSIX and changing ``timeout`` reconfigures the port.
"""

from __future__ import annotations

import socket
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

import serial

Parity = Literal["N", "E", "O", "M", "S"]


@dataclass(frozen=True)
class SerialSettings:
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = "N"
    stopbits: float = 1
    write_timeout: float = 1.0
    poll_tick: float = 0.02  # read timeout: how often a blocked read re-checks deadlines
    exclusive: bool = True

    @property
    def bits_per_byte(self) -> int:
        """Start bit + data bits + parity + stop bits, rounded up (8N1 -> 10)."""
        parity = 0 if self.parity == "N" else 1
        return int(1 + self.bytesize + parity + self.stopbits + 0.5)

    def wire_time(self, nbytes: int) -> float:
        return nbytes * self.bits_per_byte / self.baudrate


def is_local_port(url: str) -> bool:
    """True for a device path or COM name; False for socket://, loop:// and friends."""
    return "://" not in url


def open_port(url: str, settings: SerialSettings) -> serial.SerialBase:
    """Open and configure; raises serial.SerialException when the port is not there."""
    kwargs: dict[str, object] = {
        "baudrate": settings.baudrate,
        "bytesize": settings.bytesize,
        "parity": settings.parity,
        "stopbits": settings.stopbits,
        "timeout": settings.poll_tick,
        "write_timeout": settings.write_timeout,
    }
    if settings.exclusive and is_local_port(url):
        kwargs["exclusive"] = True
    port = serial.serial_for_url(url, **kwargs)
    sock = getattr(port, "_socket", None)  # socket://: no Nagle delay on 1-byte ACKs
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with suppress(serial.SerialException, OSError):
        port.reset_input_buffer()  # stale bytes from before we opened are not ours
    return port
