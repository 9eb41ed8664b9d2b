"""The device simulator: a serial line that speaks the protocol as reader + PIN pad + scanner.

The line is a pty on POSIX (``transport="pty"``, the default there) or a TCP
socket on loopback (``transport="socket"``, the default on Windows): the host
opens :attr:`Simulator.path` through pyserial either way (a device path, or
``socket://127.0.0.1:PORT``). See ``drivers.simulator.lines``.

One thread serves the line: it reads the line, decodes frames with the
same codec as the host, ACKs/NAKs, filters duplicate SEQs (re-sends are
answered from a cache, never executed twice), asks the :class:`Firmware` for
the answer and writes it back, applying any injected faults. With
``pace_baud`` every byte costs its wire time in both directions (10 bits per
byte, 8N1), so timings are those of a real 9600-baud line.

``unplug()`` takes the line away (the pty disappears, or the socket stops
listening); ``replug()`` brings it back at the same :attr:`Simulator.path`, so a
Terminal reconnecting to the same path finds the device again.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

from drivers import packets as pk
from drivers.codec import (
    ACK,
    NAK,
    RESERVED,
    STX,
    BadFrame,
    Control,
    Frame,
    FrameDecoder,
    Garbage,
    crc16,
    encode_frame,
    stuff,
)
from drivers.simulator.chip import DEFECTS, Defect, SimChip
from drivers.simulator.firmware import PIN_SCRIPTS, TRACE_SCRIPTS, Firmware
from drivers.simulator.lines import Line, SocketLine, Transport, make_line
from pos_plugin.world import World

FAULTS = ("corrupt_crc", "drop_bytes", "stall", "nak_all", "garbage")
ACK_TIMEOUT = 0.5  # device waits this long for the host's ACK before re-sending
MAX_RESENDS = 3


@dataclass
class SimStats:
    exchanges: int = 0  # requests executed (duplicates excluded)
    duplicates: int = 0  # re-sent requests answered from the cache
    frames_rx: int = 0
    frames_tx: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0
    naks_tx: int = 0
    naks_rx: int = 0
    bad_frames_rx: int = 0
    garbage_rx: int = 0
    resends: int = 0


class Simulator:
    def __init__(
        self,
        world: World,
        *,
        pace_baud: int | None = None,
        transport: Transport = "auto",
        port: int = 0,
    ) -> None:
        self.world = world
        self.pace_baud = pace_baud
        self.stall_seconds = 1.0
        self.firmware = Firmware()
        self.firmware.shelf = {c.med_list_codg: deque(c.trace_codes) for c in world.catalogue}
        self.stats = SimStats()
        self.faults: dict[str, int] = {}
        self._chips: dict[str, SimChip] = {}
        self._line: Line = make_line(transport, port=port)
        self.transport = "socket" if isinstance(self._line, SocketLine) else "pty"
        self._lock = threading.Lock()  # guards the line
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._decoder = FrameDecoder()
        self._last_seq: int | None = None
        self._cached: bytes | None = None
        self._awaiting: tuple[bytes, int, float] | None = None  # frame, re-sends, deadline
        self._rx_free_at = 0.0
        self._tx_free_at = 0.0
        self._rng = random.Random(7)

    # ------------------------------------------------------------ lifecycle

    @property
    def path(self) -> str:
        """What the host opens: the pty's stable symlink, or ``socket://127.0.0.1:PORT``."""
        return self._line.path

    @property
    def pty_path(self) -> str | None:
        return self._line.pty_path

    def start(self) -> str:
        """Plug the line in and serve; returns the stable path (or URL) to open."""
        with self._lock:
            self._plug_locked()
        self._thread = threading.Thread(target=self._serve, name="device-sim", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        self._stop.set()
        self.firmware.power(False)
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._line.close()
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def unplug(self) -> None:
        """The cable is pulled: the line disappears, the host's reads fail.

        The line goes first, so no answer to a held request slips out after the
        pull; then the pad forgets its PIN entry, as it loses power.
        """
        self._wake()
        with self._lock:
            self._line.unplug()
        self.firmware.power(False)
        self.firmware.note("unplug")

    def replug(self) -> str:
        """The cable is back, at the same path: a new pty behind the symlink, or the
        socket listening again on its port."""
        self._wake()
        with self._lock:
            if not self._line.plugged:
                self._plug_locked()
        self.firmware.power(True)
        self.firmware.note("replug")
        return self.path

    # ------------------------------------------------------------ control verbs

    def present_card(
        self,
        card_no: str,
        pin: str | list[str] = "correct",
        *,
        defect: Defect | None = None,
        at_once: bool = False,
    ) -> None:
        """Give the customer a world card. ``pin``: what they do at each verify_pin.

        The customer inserts it when the pad asks for a card (the next
        WAIT_CREDENTIAL, at once if one is being held); ``at_once=True`` puts
        it in the reader now, before any sale asks (a card left in the reader).
        "correct" / "wrong" type that PIN at once; "blocked" presets the chip's
        try counter to 0; "none" types nothing (the entry times out); "cancel"
        presses Cancel. A list is consumed one entry per VERIFY_PIN and its
        last entry repeats. ``defect`` gives a damaged card (see chip.DEFECTS).
        """
        script = [pin] if isinstance(pin, str) else list(pin)
        if not script or any(p not in PIN_SCRIPTS for p in script):
            raise ValueError(f"pin must be one of {PIN_SCRIPTS} or a non-empty list of them")
        if defect is not None and defect not in DEFECTS:
            raise ValueError(f"defect must be one of {DEFECTS}")
        try:
            person, card = self.world.card_owner(card_no)
        except KeyError:
            raise ValueError(f"no card {card_no!r} in the world file") from None
        key = f"{card_no}/{defect}"
        if key not in self._chips:
            self._chips[key] = SimChip.from_world(person, card, defect)
        chip = self._chips[key]
        if script[0] == "blocked":
            chip.tries_left = 0
        self.firmware.insert(chip, script, at_once=at_once)

    def present_foreign_card(self, *, at_once: bool = False) -> None:
        """Present a chip card that is not a social-security card (a bank card)."""
        self.firmware.insert(SimChip.foreign(), ["correct"], at_once=at_once)

    def remove_card(self) -> None:
        """The customer takes the card out (and keeps what they had not presented yet)."""
        self.firmware.remove()

    def scan_voucher(self, token: str, *, at_once: bool = False) -> None:
        """The customer shows a voucher QR code when the pad asks; ``at_once``: scanned now."""
        self.firmware.scan(token, at_once=at_once)

    def script_scans(self, script: str | list[str]) -> None:
        """What the cashier does at the next 追溯码 scans (SCAN_TRACE), one entry per
        code asked: "pack" (scan the next pack of the line's product from the world
        file's shelf; what happens once the script is used up), "garbled" (a misread),
        "repeat" (the last pack again), "cancel" (Cancel on the pad), "none" (scan
        nothing, so the host's wait runs out)."""
        steps = [script] if isinstance(script, str) else list(script)
        if any(step not in TRACE_SCRIPTS for step in steps):
            raise ValueError(f"each scan must be one of {TRACE_SCRIPTS}")
        self.firmware.script_scans(steps)

    def packs_left(self, product: str) -> list[str]:
        """The 追溯码 on the shelf for ``product`` (for tests): not those on the counter
        for the basket being sold, nor those of a refused sale until the next scan puts
        them back (``firmware`` module doc)."""
        return list(self.firmware.shelf.get(product, ()))

    def inject(self, fault: str, count: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        with self._lock:
            self.faults[fault] = self.faults.get(fault, 0) + count

    def tries_left(self, card_no: str) -> int:
        """The chip's PIN try counter (for tests); the PIN itself is never exposed."""
        chip = self._chips.get(f"{card_no}/None")
        if chip is None:
            return self.world.card_owner(card_no)[1].pin_tries_left
        return chip.tries_left

    @property
    def display(self) -> tuple[str, str]:
        return self.firmware.display

    @property
    def amount(self) -> tuple[int, str] | None:
        return self.firmware.amount

    def wait_for(self, kind: str, timeout: float, after: int = 0) -> bool:
        """Wait until event ``kind`` (e.g. "pin_entry", "hello") happened more than ``after`` times."""
        return self.firmware.wait_for(kind, timeout, after)

    def event_count(self, kind: str) -> int:
        return self.firmware.events.get(kind, 0)

    def reset_stats(self) -> None:
        self.stats = SimStats()

    def stats_dict(self) -> dict[str, int]:
        return asdict(self.stats)

    # ------------------------------------------------------------ line

    def _plug_locked(self) -> None:
        self._line.plug()
        self._reset_session()

    def _reset_session(self) -> None:
        self._decoder.reset()
        self._last_seq, self._cached, self._awaiting = None, None, None

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # ------------------------------------------------------------ serving

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                plugged = self._line.plugged
                data = self._line.poll(self._wake_r, 0.05) if plugged else b""
                if self._line.new_session():  # the host (re)connected: a fresh line
                    self._reset_session()
            if not plugged:
                self._stop.wait(0.02)
                continue
            self._check_ack_timeout()
            if data:
                self._on_bytes(data)

    def _on_bytes(self, data: bytes) -> None:
        now = time.monotonic()
        self.stats.bytes_rx += len(data)
        if self.pace_baud:
            self._rx_free_at = max(now, self._rx_free_at) + len(data) * 10 / self.pace_baud
        for ev in self._decoder.feed(data):
            self._pace_rx()
            if isinstance(ev, Garbage):
                self.stats.garbage_rx += ev.count
            elif isinstance(ev, Control):
                self._on_control(ev)
            elif isinstance(ev, BadFrame):
                self.stats.bad_frames_rx += 1
                self._send_raw(bytes((NAK,)))
                self.stats.naks_tx += 1
            else:
                self._on_frame(ev)
        g = self._decoder.flush_garbage()
        if g:
            self.stats.garbage_rx += g.count

    def _pace_rx(self) -> None:
        """Act no earlier than the moment the last byte would have arrived on a real wire."""
        if self.pace_baud:
            _sleep_until(self._rx_free_at)

    def _on_control(self, ev: Control) -> None:
        if ev.is_ack:
            self._awaiting = None
            return
        self.stats.naks_rx += 1
        if self._awaiting is not None:
            frame, resends, _ = self._awaiting
            if resends < MAX_RESENDS:
                self._send_answer(frame, resends + 1)
            else:
                self._awaiting = None

    def _check_ack_timeout(self) -> None:
        if self._awaiting is not None and time.monotonic() > self._awaiting[2]:
            frame, resends, _ = self._awaiting
            if resends < MAX_RESENDS:
                self._send_answer(frame, resends + 1)
            else:
                self._awaiting = None

    def _on_frame(self, ev: Frame) -> None:
        self.stats.frames_rx += 1
        with self._lock:
            nak = self.faults.get("nak_all", 0) > 0
            if nak:
                self.faults["nak_all"] -= 1
        if nak:
            self._send_raw(bytes((NAK,)))
            self.stats.naks_tx += 1
            return
        self._awaiting = None  # a new frame means our last answer arrived
        self._send_raw(bytes((ACK,)))
        if ev.ptype == pk.Hello.TYPE:
            self._last_seq, self._cached = None, None
        elif ev.seq == self._last_seq and self._cached is not None:
            self.stats.duplicates += 1
            self._send_answer(self._cached, 0)
            return
        try:
            request = pk.decode(ev.ptype, ev.payload)
        except ValueError as exc:
            code = (
                pk.DevError.UNKNOWN_COMMAND
                if ev.ptype not in pk.REGISTRY
                else pk.DevError.BAD_PAYLOAD
            )
            answer: pk.Packet = pk.Error(code=code, detail=str(exc)[:60])
        else:
            answer = (
                self.firmware.handle(request)
                if request.TYPE < 0x80
                else pk.Error(code=pk.DevError.UNKNOWN_COMMAND, detail="a response type")
            )
        self.stats.exchanges += 1
        frame = encode_frame(ev.seq, answer.TYPE, answer.encode())
        self._last_seq, self._cached = ev.seq, frame
        self._send_answer(frame, 0)

    def _send_answer(self, frame: bytes, resends: int) -> None:
        if resends:
            self.stats.resends += 1
        self.stats.frames_tx += 1
        deadline = time.monotonic() + ACK_TIMEOUT
        if self.pace_baud:
            deadline += len(frame) * 10 / self.pace_baud
        self._awaiting = (frame, resends, deadline)
        self._send_raw(self._apply_faults(frame))

    def _take(self, fault: str) -> bool:
        with self._lock:
            if self.faults.get(fault, 0) > 0:
                self.faults[fault] -= 1
                return True
        return False

    def _apply_faults(self, frame: bytes) -> bytes | list[bytes]:
        if self._take("corrupt_crc"):
            body = _unstuff_frame(frame)
            bad_crc = (crc16(body[:-2]) ^ 0x5A5A).to_bytes(2, "big")
            frame = bytes((STX,)) + stuff(body[:-2] + bad_crc) + frame[-1:]
        if self._take("drop_bytes"):
            mid = len(frame) // 2
            frame = frame[:mid] + frame[mid + 2 :]
        if self._take("garbage"):
            noise = bytes(self._rng.choice(_NOISE) for _ in range(12))
            frame = noise + frame + noise[:5]
        if self._take("stall"):
            mid = len(frame) // 2
            return [frame[:mid], frame[mid:]]
        return frame

    def _send_raw(self, data: bytes | list[bytes]) -> None:
        parts = data if isinstance(data, list) else [data]
        for i, part in enumerate(parts):
            if i:
                time.sleep(self.stall_seconds)  # a stall mid-frame
            self._paced_write(part)

    def _paced_write(self, data: bytes) -> None:
        if not self.pace_baud:
            self._write(data)
            return
        byte_time = 10 / self.pace_baud
        chunk = max(1, self.pace_baud // 1200)
        t = max(time.monotonic(), self._tx_free_at)
        for i in range(0, len(data), chunk):
            part = data[i : i + chunk]
            t += len(part) * byte_time
            _sleep_until(t)  # store and forward: the chunk's last bit has left
            self._write(part)
        self._tx_free_at = t

    def _write(self, data: bytes) -> None:
        with self._lock:
            self.stats.bytes_tx += self._line.write(data)  # 0 if unplugged: bytes lost


_NOISE = bytes(b for b in range(256) if b not in RESERVED)


def _unstuff_frame(frame: bytes) -> bytes:
    dec = FrameDecoder()
    for ev in dec.feed(frame):
        if isinstance(ev, Frame):
            body = bytes((ev.seq, ev.ptype)) + len(ev.payload).to_bytes(2, "big") + ev.payload
            return body + crc16(body).to_bytes(2, "big")
    raise ValueError("not a frame")


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)
