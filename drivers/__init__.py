"""Serial devices: card reader, PIN pad and QR scanner behind one serial link.

Layers (each testable alone): ``transport`` (pyserial URL) -> ``codec`` (frames,
stuffing, CRC) -> ``link`` (ACK/NAK, re-sends, deadlines) -> ``packets``
(declared commands) -> ``terminal`` (device sessions). The protocol is
specified in docs/serial-protocol.md; ``drivers.simulator`` speaks it on a pty.

Nothing here assumes POSIX except ``drivers.simulator``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.errors import DeviceError, ErrorCode, ScanUnsupported
    from drivers.link import LinkStats, LinkTiming
    from drivers.results import (
        CardPresented,
        DeviceState,
        DeviceStatus,
        PinOutcome,
        PinResult,
        TracePrompt,
        VoucherScanned,
    )
    from drivers.terminal import Terminal

# Imported on first use (PEP 562), so that ``drivers.errors`` alone (the CLI's error
# handling) does not load the serial stack, pyserial and pydantic.
_HOME = {
    "DeviceError": "drivers.errors", "ErrorCode": "drivers.errors",
    "ScanUnsupported": "drivers.errors", "TracePrompt": "drivers.results",
    "LinkStats": "drivers.link", "LinkTiming": "drivers.link",
    "CardPresented": "drivers.results", "DeviceState": "drivers.results",
    "DeviceStatus": "drivers.results", "PinOutcome": "drivers.results",
    "PinResult": "drivers.results", "VoucherScanned": "drivers.results",
    "Terminal": "drivers.terminal",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'drivers' has no attribute {name!r}")
    return getattr(import_module(_HOME[name]), name)


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
    "ScanUnsupported",
    "Terminal",
    "TracePrompt",
    "VoucherScanned",
]
