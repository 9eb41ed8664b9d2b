"""Host side of the link layer: one request, one answer, with ACK/NAK and re-sends.

An exchange (docs/serial-protocol.md, "Link layer"):

1. The host sends ``request`` in a frame with a fresh sequence number.
2. The device answers ACK (frame intact) or NAK (corrupted): on NAK, or no ACK
   within ``first_byte`` after the frame left the wire, the host re-sends the
   *same* frame (same SEQ); the device recognises the SEQ and never executes a
   request twice, it repeats its cached answer instead.
3. The device sends the answer frame with the request's SEQ. The host ACKs it,
   or NAKs a corrupted one (the device then re-sends it).

Budgets: at most ``max_resends`` (3) re-sends of a request; ``max_bad_frames``
(3) corrupted frames in a row; ``exchange`` seconds for the whole exchange.
Exceeding any of them raises :class:`LinkDown`. Deadlines come from
``time.monotonic()``: first byte of the ACK/answer, inter-byte inside a frame,
whole exchange.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass

import serial

from drivers import packets
from drivers.codec import ACK, NAK, BadFrame, Control, Event, Frame, FrameDecoder, Garbage
from drivers.codec import encode_frame as _encode
from drivers.errors import DeviceError, ErrorCode, LinkDown, PortLost
from drivers.trace import Tracer, frame_line
from drivers.transport import SerialSettings


@dataclass(frozen=True)
class LinkTiming:
    """Host deadlines, in seconds. Wire time of the frames is added on top."""

    first_byte: float = 0.5  # ACK (or answer after NAK) must start within this
    inter_byte: float = 0.1  # gap allowed between two bytes of one frame
    response: float = 1.5  # device processing time allowed after its ACK (+ hold)
    exchange: float = 8.0  # whole exchange, re-sends included (+ hold)
    max_resends: int = 3
    max_bad_frames: int = 3


@dataclass
class LinkStats:
    exchanges: int = 0
    frames_tx: int = 0
    frames_rx: int = 0
    bytes_tx: int = 0
    bytes_rx: int = 0
    resends: int = 0
    naks_rx: int = 0
    naks_tx: int = 0
    bad_frames: int = 0
    garbage_bytes: int = 0


class Link:
    """Frames over an open port. Not thread-safe: the Terminal serialises calls."""

    def __init__(
        self,
        port: serial.SerialBase,
        settings: SerialSettings,
        timing: LinkTiming,
        tracer: Tracer,
    ) -> None:
        self.port = port
        self.settings = settings
        self.timing = timing
        self.trace = tracer
        self.stats = LinkStats()
        self._seq = random.randrange(256)
        self._decoder = FrameDecoder()
        self._events: deque[Event] = deque()
        self._last_rx = 0.0

    # ------------------------------------------------------------ byte level

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except serial.SerialTimeoutException as exc:
            raise PortLost("write timed out (reader not taking data)") from exc
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortLost(f"write failed: {exc}") from exc
        self.stats.bytes_tx += len(data)

    def _read(self) -> bytes:
        try:
            waiting = self.port.in_waiting
            return bytes(self.port.read(waiting if waiting > 0 else 1))
        except (serial.SerialException, OSError, ValueError, TypeError) as exc:
            # TypeError: pyserial may fail inside select() on a closed fd
            raise PortLost(f"read failed: {exc}") from exc

    def _next_event(self, until: float, hard: float) -> Event | None:
        """Next decoder event; None when ``until`` passed with no frame in progress.

        A frame that started before ``until`` may finish after it, bounded by the
        inter-byte deadline and the whole-exchange deadline ``hard``.
        """
        while True:
            if self._events:
                return self._events.popleft()
            now = time.monotonic()
            if self._decoder.in_frame and now - self._last_rx > self.timing.inter_byte:
                self._decoder.reset()
                return BadFrame("inter-byte timeout", 0)
            if now >= hard or (now >= until and not self._decoder.in_frame):
                garbage = self._decoder.flush_garbage()
                return garbage
            data = self._read()
            if data:
                self._last_rx = time.monotonic()
                self.stats.bytes_rx += len(data)
                self._events.extend(self._decoder.feed(data))
                garbage = self._decoder.flush_garbage()
                if garbage:
                    self._events.append(garbage)

    def drain(self) -> None:
        """Discard bytes left over from an earlier exchange (duplicates, noise)."""
        data = b""
        try:
            if self.port.in_waiting:
                data = self._read()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortLost(f"read failed: {exc}") from exc
        self._decoder.feed(data)
        self._decoder.flush_garbage()
        self._decoder.reset()
        self._events.clear()
        if data and self.trace:
            self.trace(f"RX {len(data)} stale bytes discarded before the next request")

    # ------------------------------------------------------------ exchange

    def exchange(
        self, request: packets.Packet, *, hold: float = 0.0, processing: float | None = None
    ) -> packets.Packet:
        """Send ``request``, return the device's answer packet.

        ``hold`` is how long the device may legitimately keep the answer back
        (long polls); ``processing`` overrides the default processing allowance.
        Raises LinkDown, PortLost, or DeviceError("protocol_error").
        """
        t = self.timing
        self.drain()
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        payload = request.encode()
        frame = _encode(seq, request.TYPE, payload)
        start = time.monotonic()
        hard = start + t.exchange + hold + self.settings.wire_time(4 * len(frame))
        allowance = (t.response if processing is None else processing) + hold
        self.stats.exchanges += 1
        sends = 0
        bad_in_row = 0
        while True:
            if sends > t.max_resends:
                raise LinkDown(f"{request.NAME}: no answer after {t.max_resends} re-sends")
            if time.monotonic() >= hard:
                raise LinkDown(f"{request.NAME}: no answer within the exchange deadline")
            if sends:
                self.stats.resends += 1
            self._write(frame)
            self.stats.frames_tx += 1
            if self.trace:
                again = f" (re-send {sends})" if sends else ""
                self.trace(
                    frame_line("TX", seq, request.TYPE, payload, request, len(frame)) + again
                )
            sends += 1
            acked = False
            deadline = time.monotonic() + self.settings.wire_time(len(frame)) + t.first_byte
            while True:
                ev = self._next_event(deadline, hard)
                if ev is None:
                    if self.trace:
                        self.trace(f"RX timeout waiting for {'answer' if acked else 'ACK'}")
                    break  # re-send the request
                if isinstance(ev, Garbage):
                    self.stats.garbage_bytes += ev.count
                    if self.trace:
                        self.trace(f"RX {ev.count} garbage bytes discarded")
                    continue
                if isinstance(ev, Control):
                    if acked:
                        continue  # a late duplicate ACK/NAK: meaningless now
                    if ev.is_ack:
                        acked = True
                        deadline = time.monotonic() + allowance
                        continue
                    self.stats.naks_rx += 1
                    if self.trace:
                        self.trace("RX NAK")
                    break  # re-send the request
                if isinstance(ev, BadFrame):
                    self.stats.bad_frames += 1
                    bad_in_row += 1
                    if self.trace:
                        self.trace(f"RX bad frame ({ev.reason}, {ev.wire_len} bytes) -> NAK")
                    if bad_in_row >= t.max_bad_frames:
                        raise LinkDown(f"{request.NAME}: {bad_in_row} corrupted frames in a row")
                    self._write(bytes((NAK,)))
                    self.stats.naks_tx += 1
                    acked = True  # the device got the request, it is answering
                    deadline = time.monotonic() + t.first_byte
                    continue
                assert isinstance(ev, Frame)
                self.stats.frames_rx += 1
                self._write(bytes((ACK,)))
                if ev.seq != seq:
                    if self.trace:
                        self.trace(f"RX stale frame seq={ev.seq:02X} (want {seq:02X}), ignored")
                    continue
                return self._decode(ev)

    def _decode(self, ev: Frame) -> packets.Packet:
        try:
            answer = packets.decode(ev.ptype, ev.payload)
        except ValueError as exc:
            if self.trace:
                self.trace(f"RX seq={ev.seq:02X} TYPE_{ev.ptype:02X} undecodable: {exc}")
            raise DeviceError(
                ErrorCode.PROTOCOL_ERROR,
                f"the reader sent a frame we cannot decode ({exc}); check the reader "
                "model and firmware, or call support",
            ) from None
        if answer.TYPE < 0x80:
            raise DeviceError(
                ErrorCode.PROTOCOL_ERROR, f"the reader sent a request ({answer.NAME})"
            )
        if self.trace:
            self.trace(frame_line("RX", ev.seq, ev.ptype, ev.payload, answer, ev.wire_len))
        return answer
