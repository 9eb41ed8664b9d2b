"""LibraryReader: a vendor card library (+ the voucher library) as the sale flow's device.

Design choices, and why (they mirror :class:`drivers.terminal.Terminal`):

* **One transaction at a time.** ``wait_for_credential``, ``verify_pin``,
  ``eject`` and ``wait_card_removed`` take a non-blocking lock; a second call
  gets ``device_unavailable`` (busy) at once.
* **Polling, host is master.** The libraries answer "no card" at once, so a
  wait is a series of reads ``poll_interval`` apart, checking cancel between
  them; the voucher library's scan runs beside it and the first credential wins.
* **No display.** The libraries drive no customer display; ``show`` and
  ``show_amount`` only validate and remember the lines (the POS screen shows
  the amount). The PIN pad's own prompts come from the library.
* **Presented to this sale, by observation.** The libraries cannot say when a
  card went in (the serial protocol's ``age_ms``), so with ``presented_after``
  a card counts only if a read saw the slot empty at or after that instant:
  otherwise it was already in (the previous customer's), is not returned, and
  the wait goes on until it is removed and a card inserted again
  (``card_not_presented`` when the time runs out). A scan that finished
  before that instant is dropped. ``presented_after=None`` (diagnostics, the
  reader check) applies no such rule.
* **No 追溯码 scanner.** ``scan_trace_code`` raises :class:`ScanUnsupported`: the
  POS scans the packs itself.
* **Unavailable, then re-initialised.** A library call that hangs is abandoned
  (see :mod:`drivers.readers.native`) and the reader reported down; a failure
  that calls for it (reader unplugged, card mute, unknown code) marks the
  library for re-initialisation, which the next call does first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from drivers.errors import DeviceError, ErrorCode, ScanUnsupported
from drivers.readers.base import CardBackend, VoucherBackend
from drivers.readers.codes import ReaderFault
from drivers.readers.native import Busy, _Worker
from drivers.results import (
    CardPresented,
    DeviceState,
    DeviceStatus,
    PinOutcome,
    PinResult,
    TracePrompt,
    VoucherScanned,
)
from drivers.terminal import BUSY_EN, BUSY_ZH, STALE_CARD_PROMPT

log = logging.getLogger("drivers.readers")


class LibraryReader:
    """A card library (and optionally the voucher library) behind the device interface."""

    def __init__(
        self,
        backend: CardBackend,
        *,
        voucher: VoucherBackend | None = None,
        call_timeout: float = 10.0,
        pin_grace: float = 5.0,
        poll_interval: float = 0.3,
        voucher_wait: float = 30.0,
    ) -> None:
        self.backend = backend
        self.voucher = voucher
        self.call_timeout = call_timeout
        self.pin_grace = pin_grace  # the keypad enforces the PIN timeout; this is a backstop
        self.poll_interval = poll_interval
        self.voucher_wait = voucher_wait  # the longest one NationEcTrans may wait for a scan
        self._txn = threading.Lock()
        self._cancel = threading.Event()
        self._opened = False
        self._up = False
        self._state = DeviceState.IDLE
        self._last_error: str | None = None
        self._reconnects = 0
        self._model: str | None = None
        self.display: tuple[str, str] = ("", "")
        self._voucher_worker: _Worker | None = None
        self._voucher_fut: Future[tuple[float, Any]] | None = None
        self._slot_empty_at: float | None = None  # start of the last read that found no card

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Initialise the library and check the reader answers.

        Raises ``device_unavailable`` if it does not; later calls try again.
        """
        self._opened = True
        self._ensure_ready(force=True)

    def close(self) -> None:
        self._opened = False
        self._cancel.set()
        self._up = False
        self.backend.lib.close()
        if self.voucher is not None:
            self.voucher.lib.close()
        if self._voucher_worker is not None:
            self._voucher_worker.stop()
            self._voucher_worker = None

    def __enter__(self) -> LibraryReader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> DeviceStatus:
        stuck = self.backend.lib.stuck
        return DeviceStatus(
            up=self._up and stuck is None,
            state=self._state,
            last_error=self._last_error,
            url=f"{self.backend.kind}:{self.backend.lib.path}",
            reconnects=self._reconnects,
            model=self._model,
        )

    def cancel(self) -> None:
        self._cancel.set()

    # ------------------------------------------------------------------ display

    def show(self, line1: str, line2: str = "") -> None:
        self.display = (line1, line2)

    def show_amount(self, amount_fen: int, label: str = "") -> None:
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen < 0:
            raise ValueError("amount_fen must be a non-negative int (fen)")
        self.display = (label, f"{amount_fen // 100}.{amount_fen % 100:02d}")

    # ------------------------------------------------------------------ transactions

    def wait_for_credential(
        self,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> CardPresented | VoucherScanned:
        """Poll for a card (then it is read) while the voucher library waits for a scan.

        With ``presented_after`` (when the sale began, ``time.monotonic()``) only
        a card inserted and a code scanned since then count (see the module doc).
        """
        with self._transaction(DeviceState.WAITING_FOR_CARD, cancel) as cancelled:
            started = time.monotonic()
            deadline = started + timeout
            voucher_problem: str | None = None
            stale_in = prompted = False
            self._drop_stale_voucher()
            while True:
                if cancelled():
                    raise DeviceError(ErrorCode.CANCELLED)
                self._ensure_ready()
                read_at = time.monotonic()
                record = self.backend.read(self.call_timeout, cancelled)
                if record is None:
                    self._slot_empty_at, stale_in = read_at, False
                elif presented_after is None or (
                    self._slot_empty_at is not None and self._slot_empty_at >= presented_after
                ):
                    self._state = DeviceState.CARD_PRESENT
                    return CardPresented(card=record.card, atr=record.atr)
                else:
                    stale_in = True
                    if not prompted:
                        log.info("a card inserted before this sale is in the reader: not used")
                        self.show(*STALE_CARD_PROMPT)
                        prompted = True
                scanned, problem = self._voucher_step(presented_after)
                voucher_problem = problem or voucher_problem
                if scanned is not None:
                    self._state = DeviceState.DONE
                    return scanned
                if time.monotonic() >= deadline:
                    if stale_in:
                        raise DeviceError(ErrorCode.CARD_NOT_PRESENTED)
                    extra_en = (
                        f" (the voucher library: {voucher_problem})" if voucher_problem else ""
                    )
                    raise DeviceError(
                        ErrorCode.DEVICE_TIMEOUT,
                        f"no card or voucher within {timeout:g} s: insert the card chip first "
                        f"or show the voucher QR code, then try again{extra_en}",
                    )
                self._sleep(
                    min(self.poll_interval, max(0.0, deadline - time.monotonic())), cancelled
                )

    def verify_pin(self, timeout: float, cancel: threading.Event | None = None) -> PinResult:
        """The library runs the keypad and the chip's VERIFY; only the outcome comes back."""
        with self._transaction(DeviceState.PIN, cancel) as cancelled:
            self._ensure_ready()
            result = self.backend.verify_pin(timeout + self.pin_grace, cancelled)
            if result.outcome is PinOutcome.BLOCKED:
                result = PinResult(PinOutcome.BLOCKED, tries_left=0)
            self._state = {
                PinOutcome.VERIFIED: DeviceState.DONE,
                PinOutcome.WRONG: DeviceState.CARD_PRESENT,
            }.get(result.outcome, DeviceState.ABORTED)
            return result

    def eject(self) -> None:
        """The libraries power the card down after each call; nothing to send."""
        with self._transaction(self._state, None):
            self._state = DeviceState.IDLE

    def wait_card_removed(self, timeout: float, cancel: threading.Event | None = None) -> None:
        with self._transaction(self._state, cancel) as cancelled:
            deadline = time.monotonic() + timeout
            while True:
                if cancelled():
                    raise DeviceError(ErrorCode.CANCELLED)
                self._ensure_ready()
                read_at = time.monotonic()
                if self.backend.read(self.call_timeout, cancelled) is None:
                    self._slot_empty_at = read_at
                    self._state = DeviceState.IDLE
                    return
                if time.monotonic() >= deadline:
                    raise DeviceError(
                        ErrorCode.DEVICE_TIMEOUT,
                        "the card is still in the reader, ask the customer to take it",
                        "卡片仍在读卡器中，请提醒顾客取卡",
                    )
                self._sleep(self.poll_interval, cancelled)

    def scan_trace_code(
        self,
        prompt: TracePrompt,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> str:
        """No library here drives a scanner for 追溯码 (the voucher library decodes only
        its own QR codes): the POS scans the packs and sends ``trace_codes``."""
        raise ScanUnsupported(
            f"the {self.backend.kind} reader library cannot scan traceability codes: scan "
            "them at the POS and send them with the sale (trace_codes)"
        )

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _transaction(self, state: DeviceState, cancel: threading.Event | None) -> Iterator[Any]:
        if not self._txn.acquire(blocking=False):
            raise DeviceError(ErrorCode.DEVICE_UNAVAILABLE, BUSY_EN, BUSY_ZH)

        def cancelled() -> bool:
            return self._cancel.is_set() or (cancel is not None and cancel.is_set())

        try:
            if not self._opened:
                raise DeviceError(ErrorCode.DEVICE_UNAVAILABLE, "the reader is not open")
            self._cancel.clear()
            self._state = state
            yield cancelled
        except DeviceError as exc:
            self._state = DeviceState.ABORTED
            self._fault(exc)
            raise
        finally:
            self._txn.release()

    def _fault(self, exc: DeviceError) -> None:
        self._last_error = str(exc)
        if exc.code == ErrorCode.DEVICE_UNAVAILABLE and not isinstance(exc, Busy):
            self._up = False
        if isinstance(exc, ReaderFault) and exc.reinit:
            self.backend.lib.needs_reinit = True

    def _ensure_ready(self, force: bool = False) -> None:
        """Initialise the library when opening, after it was down, or when a fault asks."""
        lib = self.backend.lib
        if not force and self._up and not lib.needs_reinit:
            return
        was_down = not force
        try:
            self._model = self.backend.init(self.call_timeout)
        except DeviceError as exc:
            self._up = False
            self._last_error = str(exc)
            raise
        lib.needs_reinit = False
        self._up = True
        if was_down:
            self._reconnects += 1
        log.info("reader library ready: %s", self._model)

    def _sleep(self, seconds: float, cancelled: Any) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not cancelled():
            time.sleep(min(0.02, max(0.0, end - time.monotonic())))

    # ------------------------------------------------------------------ voucher

    def _drop_stale_voucher(self) -> None:
        """A scan finished while nobody waited belongs to no one: drop it."""
        if self._voucher_fut is not None and self._voucher_fut.done():
            self._voucher_fut = None

    def _voucher_step(
        self, presented_after: float | None = None
    ) -> tuple[VoucherScanned | None, str | None]:
        """Start a scan if none runs; a finished one gives the voucher or a problem.

        A scan that finished before ``presented_after`` is dropped: nobody waited.
        """
        voucher = self.voucher
        if voucher is None:
            return None, None
        fut = self._voucher_fut
        if fut is None:
            if self._voucher_worker is None:
                self._voucher_worker = _Worker("voucher-scan")

            def scan() -> tuple[float, Any]:
                # Not cancelled with the wait: the library ends its own scan, and
                # abandoning it would only leave the voucher library stuck.
                try:
                    return time.monotonic(), voucher.scan(self.voucher_wait, lambda: False)
                except DeviceError as exc:
                    return time.monotonic(), exc

            self._voucher_fut = self._voucher_worker.submit(scan)
            return None, None
        if not fut.done():
            return None, None
        self._voucher_fut = None
        finished_at, outcome = fut.result()
        if presented_after is not None and finished_at < presented_after:
            log.info("discarded a voucher code scanned before this sale")
            return None, None
        if isinstance(outcome, DeviceError):
            log.warning("voucher scan failed: %s", outcome)
            self._last_error = str(outcome)
            return None, outcome.message_en
        return outcome, None
