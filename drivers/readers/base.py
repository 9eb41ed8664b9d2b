"""The device interface the sale flow uses, and what a library backend provides.

Why a Protocol: the serial :class:`drivers.terminal.Terminal` and the
library-driven :class:`drivers.readers.device.LibraryReader` are interchangeable
for the sale service and the agent; neither inherits from the other, and a
checker (mypy) proves both fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from drivers.readers.cardinfo import CardRecord
from drivers.readers.native import NativeLibrary
from drivers.results import CardPresented, DeviceStatus, PinResult, TracePrompt, VoucherScanned

Cancelled = Callable[[], bool]


@runtime_checkable
class CardDevice(Protocol):
    """Card reader + PIN pad (+ voucher scanner): what ``SaleService`` and the agent call."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def status(self) -> DeviceStatus: ...
    def cancel(self) -> None: ...
    def show(self, line1: str, line2: str = "") -> None: ...
    def show_amount(self, amount_fen: int, label: str = "") -> None: ...
    def wait_for_credential(
        self,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> CardPresented | VoucherScanned: ...
    def verify_pin(self, timeout: float, cancel: threading.Event | None = None) -> PinResult: ...
    def eject(self) -> None: ...
    def wait_card_removed(self, timeout: float, cancel: threading.Event | None = None) -> None: ...
    def scan_trace_code(
        self,
        prompt: TracePrompt,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> str: ...


class CardBackend(Protocol):
    """One card library (SSCardDriver, HeaSecReadInfo): init, read, verify the PIN.

    Each method makes library calls through ``lib`` (so with its timeout and
    abandonment) and raises :class:`drivers.errors.DeviceError` on failure.
    """

    lib: NativeLibrary
    kind: str

    def init(self, timeout: float) -> str:
        """(Re)initialise the library and check the reader; a model/version line."""
        ...

    def read(self, timeout: float, cancelled: Cancelled) -> CardRecord | None:
        """Read the card's basic information; None when no card is in the reader."""
        ...

    def verify_pin(self, timeout: float, cancelled: Cancelled) -> PinResult:
        """The customer types the PIN on the reader's keypad; the chip verifies it."""
        ...


class VoucherBackend(Protocol):
    """The e-voucher library: one scan (the library drives the scanner)."""

    lib: NativeLibrary

    def scan(self, timeout: float, cancelled: Cancelled) -> VoucherScanned | None:
        """A decoded voucher, or None when nothing was scanned in the library's wait."""
        ...
