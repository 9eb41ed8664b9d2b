"""The Terminal: card reader + PIN pad + QR scanner behind one serial link.

This is the API the sale service calls. Design choices, and why:

* **One transaction at a time.** ``wait_for_credential``, ``verify_pin``,
  ``wait_card_removed``, ``eject`` and ``transmit_apdu`` take a non-blocking
  lock; a second concurrent call gets ``DeviceError("device_unavailable")``
  saying the reader is busy, rather than queueing behind a customer who may
  never come. ``show``/``show_amount``/``status``/``cancel`` work at any time
  (display frames slot in between the long polls of a running wait).
* **Long polls, host is master.** Waiting for a card or a PIN is a series of
  short exchanges in which the device holds its answer up to ``hold`` seconds.
  So the host checks its cancel flag at least every ``hold`` seconds, notices
  an unplugged reader within the same time, and never blocks on a read that
  only the customer can end.
* **Presented to this wait.** A card left in the reader by the previous
  customer, or a code scanned while nothing waited, must not pay the next
  sale. The device reports how long ago the card went in / the code was
  scanned (``age_ms``, protocol version 2); ``wait_for_credential`` accepts
  only what arrived after ``presented_after``. A card that was already in is
  neither read nor returned: the pad asks to remove and re-insert it, and the
  wait ends in ``card_not_presented`` if that does not happen. A stale code
  is discarded.
* **追溯码 at the counter.** ``scan_trace_code`` asks the device's scanner for one
  pack's traceability code (SCAN_TRACE, long polls like the card wait); judging the
  code is the sale's business, not the device's.
* **Reconnect.** When the port fails (unplug, EOF, I/O error) or the link goes
  down, the Terminal closes the port, reports ``up=False``, and a background
  thread reopens it with backoff (0.2 s, 0.5 s, 1 s, 2 s, 5 s, 5 s...). A call
  made while down also tries once to reconnect immediately, so the first sale
  after a re-plug does not wait for the next backoff step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Literal, NoReturn

import serial

from drivers import apdu
from drivers import packets as pk
from drivers.errors import DeviceError, ErrorCode, LinkDown, PortLost, ScanUnsupported
from drivers.link import Link, LinkStats, LinkTiming
from drivers.results import (
    CardPresented,
    DeviceState,
    DeviceStatus,
    PinOutcome,
    PinResult,
    TracePrompt,
    VoucherScanned,
)
from drivers.trace import Tracer
from drivers.transport import Parity, SerialSettings, open_port
from pos_plugin.models import CardData

_PIN_OUTCOMES = {
    pk.PinCode.VERIFIED: PinOutcome.VERIFIED,
    pk.PinCode.WRONG: PinOutcome.WRONG,
    pk.PinCode.BLOCKED: PinOutcome.BLOCKED,
    pk.PinCode.CANCELLED: PinOutcome.CANCELLED,
    pk.PinCode.TIMEOUT: PinOutcome.TIMEOUT,
}

_DEVICE_ERRORS: dict[int, tuple[ErrorCode, str | None, str | None]] = {
    pk.DevError.NO_CARD: (
        ErrorCode.CARD_UNREADABLE,
        "no card in the reader, insert the card chip first",
        "读卡器中没有卡，请将卡片芯片朝前插入",
    ),
    pk.DevError.CARD_MUTE: (ErrorCode.CARD_UNREADABLE, None, None),
    pk.DevError.FILE_ERROR: (ErrorCode.CARD_UNREADABLE, None, None),
    pk.DevError.NOT_SSC: (ErrorCode.NOT_SOCIAL_SECURITY_CARD, None, None),
    pk.DevError.CANCELLED: (
        ErrorCode.CANCELLED,
        "cancelled on the PIN pad while it waited for a scan",
        "已在密码键盘上取消扫码",
    ),
    pk.DevError.BUSY: (
        ErrorCode.DEVICE_UNAVAILABLE,
        "the reader is busy with another operation, wait or cancel it",
        "读卡器正忙，请稍候或取消当前操作",
    ),
}

BUSY_EN = "the reader is busy with another transaction, finish or cancel it first"
BUSY_ZH = "读卡器正在处理另一笔交易，请先完成或取消"

STALE_CARD_PROMPT = ("请取出卡片 重新插卡", "Remove card, insert again")
"""The pad's two lines when the card in the reader went in before this wait started."""

ARRIVAL_SLACK = 0.001
"""Seconds of tolerance in the presented-after check: the device truncates age_ms to
whole milliseconds. No more: the simulator's customer can finish a sale within 15 ms
of inserting the card, and that card must still count as "already in" for the next
sale. (A coarse host clock, 15.6 ms ticks on Windows before Python 3.13, blurs the
check only within one tick of the sale's start, where no person inserts a card.)"""

log = logging.getLogger("drivers.terminal")


class Terminal:
    """Reader + PIN pad + scanner on one serial port given as a pyserial URL."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        parity: Parity = "N",
        stopbits: float = 1,
        bytesize: int = 8,
        write_timeout: float = 1.0,
        trace: Callable[[str], None] | None = None,
        timing: LinkTiming | None = None,
        hold: float = 0.25,
        read_mode: Literal["compound", "apdu"] = "compound",
        backoff: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0),
    ) -> None:
        self.url = url
        self.settings = SerialSettings(
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            bytesize=bytesize,
            write_timeout=write_timeout,
        )
        self.timing = timing or LinkTiming()
        self.hold = hold
        self.read_mode = read_mode
        self.backoff = backoff
        self._tracer = Tracer(trace)
        self._io = threading.RLock()  # guards the port and the link
        self._txn = threading.Lock()  # one transaction at a time
        self._cancel = threading.Event()
        self._stop = threading.Event()
        self._port: serial.SerialBase | None = None
        self._link: Link | None = None
        self._opened = False
        self._up = False
        self._state = DeviceState.IDLE
        self._last_error: str | None = None
        self._reconnects = 0
        self._model: str | None = None
        self._reconnector: threading.Thread | None = None
        self._stats = LinkStats()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open the port and greet the device.

        Raises ``device_unavailable`` if no reader answers now; the Terminal
        then keeps trying in the background until :meth:`close`.
        """
        with self._io:
            self._opened = True
            self._stop.clear()
            try:
                self._connect()
            except DeviceError as exc:
                self._mark_down(exc.message_en)
                raise

    def close(self) -> None:
        self._opened = False
        self._stop.set()
        self._cancel.set()
        with self._io:
            worker = self._reconnector
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=10)
        with self._io:
            self._close_port()
            self._up = False

    def __enter__(self) -> Terminal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            up=self._up,
            state=self._state,
            last_error=self._last_error,
            url=self.url,
            reconnects=self._reconnects,
            model=self._model,
        )

    @property
    def link_stats(self) -> LinkStats:
        """Counters of the current and past links (for the bench and support)."""
        return self._stats

    def cancel(self) -> None:
        """Cancel the running transaction from any thread; it raises ``cancelled``."""
        self._cancel.set()

    # ------------------------------------------------------------------ display

    def show(self, line1: str, line2: str = "") -> None:
        """Two lines on the PIN pad; GB18030 on the wire, clipped to 64 bytes each."""
        self._expect_ok(self._call(pk.Display(pk.clip_text(line1), pk.clip_text(line2))))

    def show_amount(self, amount_fen: int, label: str = "") -> None:
        """The amount to pay, in fen; the PIN pad formats it as yuan."""
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen < 0:
            raise ValueError("amount_fen must be a non-negative int (fen)")
        if amount_fen > 0xFFFFFFFF:
            raise ValueError("amount_fen too large for the PIN pad")
        self._expect_ok(self._call(pk.ShowAmount(amount_fen, pk.clip_text(label))))

    # ------------------------------------------------------------------ transactions

    def wait_for_credential(
        self,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> CardPresented | VoucherScanned:
        """Wait for a card (then read it) or a scanned voucher QR code, presented to this wait.

        ``presented_after`` (a ``time.monotonic()`` instant, default: now) is when
        the sale began: a card inserted or a code scanned before it belongs to
        someone else's moment at the counter. Such a card is not read; the pad
        shows :data:`STALE_CARD_PROMPT` once and the wait goes on until the card
        is removed and a card is inserted again (``card_not_presented`` if the
        time runs out while the old card is still in). Such a code is dropped.
        """
        since = time.monotonic() if presented_after is None else presented_after
        with self._transaction(DeviceState.WAITING_FOR_CARD):
            deadline = time.monotonic() + timeout
            stale_in = False  # a card that went in before `since` is in the reader
            prompted = False
            while True:
                self._check_cancel(cancel)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if stale_in:
                        raise DeviceError(ErrorCode.CARD_NOT_PRESENTED)
                    raise DeviceError(
                        ErrorCode.DEVICE_TIMEOUT,
                        f"no card or voucher within {timeout:g} s: insert the card chip first "
                        "or show the voucher QR code, then try again",
                    )
                hold = min(self.hold, remaining)
                asked = time.monotonic()
                ans = self._call(pk.WaitCredential(hold_ms=int(hold * 1000)), hold=hold)
                if isinstance(ans, pk.Pending):
                    continue
                if isinstance(ans, pk.CardInserted):
                    if _arrived_since(ans.age_ms, asked, since):
                        card = self._read_card()
                        self._state = DeviceState.CARD_PRESENT
                        return CardPresented(card=card, atr=ans.atr)
                    stale_in = True
                    if not prompted:
                        log.info("a card inserted before this sale is in the reader: not read")
                        self.show(*STALE_CARD_PROMPT)
                        prompted = True
                    # Hold until it is out rather than re-asking WAIT_CREDENTIAL at once
                    # (which answers immediately while any card is in): one exchange per
                    # hold, and a code scanned meanwhile is picked up by the next round.
                    gone = self._call(pk.WaitRemoved(hold_ms=int(hold * 1000)), hold=hold)
                    if isinstance(gone, pk.CardRemoved):
                        stale_in = False
                    elif not isinstance(gone, pk.Pending):
                        self._raise_for(gone, "WAIT_REMOVED")
                    continue
                if isinstance(ans, pk.Voucher):
                    if not _arrived_since(ans.age_ms, asked, since):
                        log.info("discarded a voucher code scanned before this sale")
                        continue
                    token = ans.token.strip()
                    if not token or not token.isprintable():
                        raise DeviceError(
                            ErrorCode.PROTOCOL_ERROR,
                            "the scanner sent an empty or unprintable code, scan again",
                            "扫码内容无效，请重新扫码",
                        )
                    self._state = DeviceState.DONE
                    return VoucherScanned(token=token)
                self._raise_for(ans, "WAIT_CREDENTIAL")

    def verify_pin(self, timeout: float, cancel: threading.Event | None = None) -> PinResult:
        """The customer types the PIN on the pad; the chip verifies it; we get the outcome."""
        with self._transaction(DeviceState.PIN):
            hold = min(self.hold, timeout)
            ans = self._call(
                pk.VerifyPin(timeout_ms=int(timeout * 1000), hold_ms=int(hold * 1000)), hold=hold
            )
            # The pad enforces the timeout; this is a backstop for a pad that does not.
            backstop = time.monotonic() + timeout + 2.0
            while isinstance(ans, pk.Pending):
                self._check_cancel(cancel)
                if time.monotonic() > backstop:
                    self._abort_quietly()
                    ans = pk.PinResultPacket(outcome=pk.PinCode.TIMEOUT)
                    break
                ans = self._call(pk.Poll(hold_ms=int(hold * 1000)), hold=hold)
            if not isinstance(ans, pk.PinResultPacket):
                self._raise_for(ans, "VERIFY_PIN")
            outcome = _PIN_OUTCOMES.get(pk.PinCode(ans.outcome)) if ans.outcome <= 4 else None
            if outcome is None:
                raise DeviceError(ErrorCode.PROTOCOL_ERROR, f"unknown PIN outcome {ans.outcome}")
            tries = None if ans.tries_left == pk.NO_TRIES else ans.tries_left
            if outcome is PinOutcome.BLOCKED:
                tries = 0
            self._state = {
                PinOutcome.VERIFIED: DeviceState.DONE,
                PinOutcome.WRONG: DeviceState.CARD_PRESENT,
            }.get(outcome, DeviceState.ABORTED)
            return PinResult(outcome=outcome, tries_left=tries)

    def eject(self) -> None:
        """Power the card down and release it (a motorised reader pushes it out)."""
        with self._transaction(self._state):
            self._expect_ok(self._call(pk.Eject()))
            self._state = DeviceState.IDLE

    def wait_card_removed(self, timeout: float, cancel: threading.Event | None = None) -> None:
        """Return once the reader is empty; ``device_timeout`` if the card is still in.

        A cancel raises ``cancelled`` without an ABORT frame: there is no PIN
        entry to stop, and the next sale cancels this wait on every start.
        """
        with self._transaction(self._state):
            deadline = time.monotonic() + timeout
            while True:
                if self._cancel.is_set() or (cancel is not None and cancel.is_set()):
                    raise DeviceError(ErrorCode.CANCELLED)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceError(
                        ErrorCode.DEVICE_TIMEOUT,
                        "the card is still in the reader, ask the customer to take it",
                        "卡片仍在读卡器中，请提醒顾客取卡",
                    )
                hold = min(self.hold, remaining)
                ans = self._call(pk.WaitRemoved(hold_ms=int(hold * 1000)), hold=hold)
                if isinstance(ans, pk.CardRemoved):
                    self._state = DeviceState.IDLE
                    return
                if not isinstance(ans, pk.Pending):
                    self._raise_for(ans, "WAIT_REMOVED")

    def scan_trace_code(
        self,
        prompt: TracePrompt,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> str:
        """The cashier scans one pack's 追溯码 on the device's scanner; the code as read.

        Long polls of SCAN_TRACE, like the wait for a card: the pad shows the line's
        name and the pack asked. A code scanned before ``presented_after`` (default:
        now) is dropped, as a stale voucher is. The code is not judged here (the sale
        checks its format and repeats): bytes that are not ASCII come back escaped, so
        a misread is shown as read. ``cancelled`` when Cancel is pressed on the pad or
        the caller cancels, ``device_timeout`` when nothing is scanned in ``timeout``,
        :class:`ScanUnsupported` when the device has no such request (ERROR 01).
        """
        since = time.monotonic() if presented_after is None else presented_after
        with self._transaction(DeviceState.SCANNING):
            deadline = time.monotonic() + timeout
            while True:
                self._check_cancel(cancel)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceError(
                        ErrorCode.DEVICE_TIMEOUT,
                        f"no traceability code scanned within {timeout:g} s for line "
                        f"{prompt.line}: scan the pack's code, then try again",
                        f"第{prompt.line}行 {timeout:g} 秒内未扫到追溯码，请扫描药盒上的追溯码后重试",
                    )
                hold = min(self.hold, remaining)
                asked = time.monotonic()
                ans = self._call(_scan_request(prompt, hold), hold=hold)
                if isinstance(ans, pk.Pending):
                    continue
                if isinstance(ans, pk.TraceCode):
                    if not _arrived_since(ans.age_ms, asked, since):
                        log.info("discarded a code scanned before this scan was asked")
                        continue
                    self._state = DeviceState.DONE
                    return ans.code.decode("ascii", "backslashreplace").strip()
                if isinstance(ans, pk.Error) and ans.code == pk.DevError.UNKNOWN_COMMAND:
                    raise ScanUnsupported(
                        "the reader has no scanner for traceability codes (it does not know "
                        "SCAN_TRACE): scan them at the POS and send them with the sale"
                    )
                self._raise_for(ans, "SCAN_TRACE")

    def transmit_apdu(self, command: bytes) -> bytes:
        """ISO 7816-4 pass-through for diagnostics; PIN commands are refused here."""
        with self._transaction(self._state):
            return self._apdu(command)

    # ------------------------------------------------------------------ card reading

    def _read_card(self) -> CardData:
        if self.read_mode == "apdu":
            return self._read_card_apdu()
        ans = self._call(pk.ReadCard(), processing=self.timing.response * 2)
        if not isinstance(ans, pk.CardFiles):
            self._raise_for(ans, "READ_CARD")
        return apdu.parse_card_files(ans.card_info, ans.holder)

    def _read_card_apdu(self) -> CardData:
        """The same read, one APDU per exchange, for readers without READ_CARD."""
        _, sw = apdu.split_response(self._apdu(apdu.select_aid()))
        if sw == apdu.SW_FILE_NOT_FOUND:
            raise DeviceError(ErrorCode.NOT_SOCIAL_SECURITY_CARD)
        self._check_sw(sw)
        files = []
        for fid in (apdu.EF_CARD_INFO, apdu.EF_HOLDER):
            self._check_sw(apdu.split_response(self._apdu(apdu.select_ef(fid)))[1])
            data, sw = apdu.split_response(self._apdu(apdu.read_binary()))
            self._check_sw(sw)
            files.append(data)
        return apdu.parse_card_files(files[0], files[1])

    def _apdu(self, command: bytes) -> bytes:
        if len(command) < 4:
            raise ValueError("an APDU has at least CLA INS P1 P2")
        if command[1] in apdu.PIN_INSTRUCTIONS:
            raise ValueError("PIN commands are never sent from the host")
        ans = self._call(pk.Apdu(command))
        if not isinstance(ans, pk.ApduResponse):
            self._raise_for(ans, "APDU")
        return ans.rapdu

    @staticmethod
    def _check_sw(sw: int) -> None:
        if sw != apdu.SW_OK:
            raise DeviceError(
                ErrorCode.CARD_UNREADABLE,
                f"the card refused a read (status {sw:04X}), insert the card chip first "
                "and try again",
            )

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _transaction(self, state: DeviceState) -> Iterator[None]:
        if not self._txn.acquire(blocking=False):
            raise DeviceError(ErrorCode.DEVICE_UNAVAILABLE, BUSY_EN, BUSY_ZH)
        try:
            self._cancel.clear()
            self._state = state
            yield
        except DeviceError as exc:
            self._state = DeviceState.ABORTED
            self._last_error = str(exc)
            raise
        finally:
            self._txn.release()

    def _check_cancel(self, cancel: threading.Event | None) -> None:
        if self._cancel.is_set() or (cancel is not None and cancel.is_set()):
            self._abort_quietly()
            raise DeviceError(ErrorCode.CANCELLED)

    def _abort_quietly(self) -> None:
        """Tell the device to stop (PIN entry); failure is fine, we are leaving anyway."""
        if not self._up:
            return
        with suppress(DeviceError):
            self._call(pk.Abort(), reconnect=False)

    def _call(
        self,
        request: pk.Packet,
        *,
        hold: float = 0.0,
        processing: float | None = None,
        reconnect: bool = True,
    ) -> pk.Packet:
        with self._io:
            if not self._opened:
                raise DeviceError(ErrorCode.DEVICE_UNAVAILABLE, "the terminal is not open")
            if not self._up:
                if not reconnect:
                    raise DeviceError(ErrorCode.DEVICE_UNAVAILABLE)
                self._connect()  # the reconnector keeps trying if this fails
                self._reconnects += 1
            assert self._link is not None
            try:
                return self._link.exchange(request, hold=hold, processing=processing)
            except PortLost as exc:
                self._mark_down(str(exc))
                raise DeviceError(ErrorCode.DEVICE_UNAVAILABLE) from None
            except LinkDown as exc:
                self._mark_down(str(exc))
                raise DeviceError(ErrorCode.LINK_DOWN) from None

    def _expect_ok(self, ans: pk.Packet) -> None:
        if not isinstance(ans, pk.Ok):
            self._raise_for(ans, "command")

    def _raise_for(self, ans: pk.Packet, what: str) -> NoReturn:
        if isinstance(ans, pk.Error):
            code, en, zh = _DEVICE_ERRORS.get(
                ans.code,
                (
                    ErrorCode.PROTOCOL_ERROR,
                    f"the reader refused {what} (error {ans.code:02X})",
                    None,
                ),
            )
            raise DeviceError(code, en, zh)
        raise DeviceError(ErrorCode.PROTOCOL_ERROR, f"unexpected answer {ans.NAME} to {what}")

    def _connect(self) -> None:
        """(Re)open the port and say HELLO; DeviceError("device_unavailable") if it fails."""
        self._close_port()
        try:
            self._port = open_port(self.url, self.settings)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(
                ErrorCode.DEVICE_UNAVAILABLE,
                f"reader disconnected, check the cable (cannot open {self.url}: {exc})",
            ) from None
        self._link = Link(self._port, self.settings, self.timing, self._tracer)
        self._link.stats = self._stats
        try:
            info = self._link.exchange(pk.Hello())
        except (PortLost, LinkDown) as exc:
            self._close_port()
            raise DeviceError(
                ErrorCode.DEVICE_UNAVAILABLE,
                f"no reader answers on {self.url}, check the cable, the port and the baud "
                f"rate ({exc})",
            ) from None
        except DeviceError:
            self._close_port()
            raise
        if not isinstance(info, pk.Info):
            self._close_port()
            raise DeviceError(
                ErrorCode.PROTOCOL_ERROR, f"the device answered HELLO with {info.NAME}"
            )
        if info.version < pk.PROTOCOL_VERSION:
            # A version-1 device sends no age_ms: it cannot tell a card inserted for
            # this sale from one left in the reader, and would not decode anyway.
            self._close_port()
            raise DeviceError(
                ErrorCode.PROTOCOL_ERROR,
                f"the reader speaks protocol version {info.version}; version "
                f"{pk.PROTOCOL_VERSION} is needed (it tells a card inserted for this sale from "
                "one left in the reader): update the reader's firmware",
            )
        self._model = f"{info.model} {info.firmware}".strip()
        self._up = True
        if self._tracer:
            self._tracer(f"-- link up: {self._model} (protocol {info.version})")

    def _close_port(self) -> None:
        port, self._port, self._link = self._port, None, None
        if port is not None:
            with suppress(serial.SerialException, OSError):
                port.close()

    def _mark_down(self, reason: str) -> None:
        with self._io:
            self._close_port()
            self._up = False
            self._last_error = reason
            if self._tracer:
                self._tracer(f"-- link down: {reason}")
            if self._opened and self._reconnector is None:
                self._reconnector = threading.Thread(
                    target=self._reconnect_loop, name="terminal-reconnect", daemon=True
                )
                self._reconnector.start()

    def _reconnect_loop(self) -> None:
        attempt = 0
        try:
            while not self._stop.is_set():
                delay = self.backoff[min(attempt, len(self.backoff) - 1)]
                attempt += 1
                if self._stop.wait(delay):
                    return
                with self._io:
                    if not self._opened or self._up:
                        return
                    try:
                        self._connect()
                    except DeviceError:
                        continue
                    self._reconnects += 1
                    return
        finally:
            with self._io:
                self._reconnector = None


def _scan_request(prompt: TracePrompt, hold: float) -> pk.ScanTrace:
    """SCAN_TRACE for a prompt: numbers bounded to u16, texts clipped to the pad's line."""
    return pk.ScanTrace(
        hold_ms=int(hold * 1000),
        line=min(prompt.line, 0xFFFF),
        pack=min(prompt.pack, 0xFFFF),
        packs=min(prompt.packs, 0xFFFF),
        product=pk.clip_text(prompt.product),
        name=pk.clip_text(prompt.name),
        note=pk.clip_text(prompt.note),
    )


def _arrived_since(age_ms: int, asked: float, since: float) -> bool:
    """True if a card/code reported with ``age_ms`` arrived at or after ``since``.

    ``asked`` is the host's clock just before the request went out. The device
    measured the age later than that (it cannot answer before it is asked, and
    a re-sent answer is older still), so ``asked - age`` is never later than the
    true arrival, give or take :data:`ARRIVAL_SLACK`: a card inserted before the
    sale began is never taken as presented to it, whatever the line delays.
    """
    return asked - age_ms / 1000 >= since - ARRIVAL_SLACK
