"""Serial devices: card reader, PIN pad and QR scanner behind one serial link.

Layers (each testable alone): ``transport`` (pyserial URL) -> ``codec`` (frames,
stuffing, CRC) -> ``link`` (ACK/NAK, re-sends, deadlines) -> ``packets``
(declared commands) -> ``terminal`` (device sessions). The protocol is
specified in docs/serial-protocol.md; ``drivers.simulator`` speaks it on a pty.

Nothing here assumes POSIX except ``drivers.simulator``.
"""

from drivers.errors import DeviceError, ErrorCode
from drivers.link import LinkStats, LinkTiming
from drivers.results import (
    CardPresented,
    DeviceState,
    DeviceStatus,
    PinOutcome,
    PinResult,
    VoucherScanned,
)
from drivers.terminal import Terminal

__all__ = [
    "CardPresented",
    "DeviceError",
    "DeviceState",
    "DeviceStatus",
    "ErrorCode",
    "LinkStats",
    "LinkTiming",
    "PinOutcome",
    "PinResult",
    "Terminal",
    "VoucherScanned",
]
