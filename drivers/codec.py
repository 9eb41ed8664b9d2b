"""Frame codec: CRC-16, byte stuffing, and a byte-at-a-time decoder.

Wire format of one frame (see docs/serial-protocol.md)::

    STX | stuffed( SEQ TYPE LEN_HI LEN_LO PAYLOAD... CRC_HI CRC_LO ) | ETX

* CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected,
  xorout 0x0000; check value 0x29B1 for b"123456789") over SEQ, TYPE, LEN and
  PAYLOAD.
* LEN is the payload length. It is there because a CRC without a final XOR
  cannot see zero bytes appended after it (a valid frame's CRC register ends
  at 0 and stays 0); the length check catches any inserted or lost byte.
* Five bytes are reserved on the wire: STX 0x02, ETX 0x03, ACK 0x06, DLE 0x10,
  NAK 0x15. Inside a frame each of them is sent as DLE, byte XOR 0x20, so a
  reserved byte always means the same thing wherever it is seen. That is what
  lets the decoder resynchronise after garbage: an STX always starts a frame.
* ACK and NAK are single bytes outside frames.

The decoder is fed one byte at a time or a chunk (plain runs taken at once) and yields
events; it never raises on bad input, it reports it, because line noise is
normal on a shop counter, not exceptional.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Literal

STX = 0x02
ETX = 0x03
ACK = 0x06
DLE = 0x10
NAK = 0x15
RESERVED = frozenset({STX, ETX, ACK, DLE, NAK})
ESCAPE_XOR = 0x20
# A run of bytes that mean nothing special inside a frame (not reserved).
_PLAIN_RUN = re.compile(b"[^" + re.escape(bytes(sorted(RESERVED))) + b"]+")

MAX_PAYLOAD = 1024
"""Largest PAYLOAD (unstuffed, excluding SEQ, TYPE and CRC) either side may send."""

HEADER = 4  # SEQ TYPE LEN_HI LEN_LO
MAX_BODY = MAX_PAYLOAD + HEADER + 2


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE. ``crc16(b"123456789") == 0x29B1``.

    ``binascii.crc_hqx`` is this CRC (poly 0x1021, not reflected) with the initial
    value as its second argument, computed in C."""
    return binascii.crc_hqx(data, crc)


def stuff(body: bytes) -> bytes:
    out = bytearray()
    for b in body:
        if b in RESERVED:
            out += bytes((DLE, b ^ ESCAPE_XOR))
        else:
            out.append(b)
    return bytes(out)


def unstuff(data: bytes) -> bytes:
    """Inverse of :func:`stuff`; raises ValueError on a malformed escape."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == DLE:
            nxt = next(it, None)
            if nxt is None or (nxt ^ ESCAPE_XOR) not in RESERVED:
                raise ValueError("bad escape")
            out.append(nxt ^ ESCAPE_XOR)
        elif b in RESERVED:
            raise ValueError(f"unescaped reserved byte 0x{b:02X}")
        else:
            out.append(b)
    return bytes(out)


def encode_frame(seq: int, ptype: int, payload: bytes = b"") -> bytes:
    """The exact bytes to put on the wire for one frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes((seq & 0xFF, ptype & 0xFF)) + len(payload).to_bytes(2, "big") + payload
    body += crc16(body).to_bytes(2, "big")
    return bytes((STX,)) + stuff(body) + bytes((ETX,))


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    ptype: int
    payload: bytes
    wire_len: int  # bytes it took on the wire, STX..ETX inclusive


@dataclass(frozen=True, slots=True)
class Control:
    """A bare ACK or NAK byte seen outside a frame."""

    byte: Literal[0x06, 0x15]

    @property
    def is_ack(self) -> bool:
        return self.byte == ACK


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Something framed that failed: wrong CRC, bad escape, too short, oversize."""

    reason: str
    wire_len: int


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes outside any frame that are not STX/ACK/NAK, discarded."""

    count: int


Event = Frame | Control | BadFrame | Garbage


class FrameDecoder:
    """Byte-at-a-time decoder that resynchronises on the next STX.

    ``feed`` returns the events completed by the given bytes. State between
    calls is the partial frame; ``reset`` drops it (used when the inter-byte
    deadline passes mid-frame).
    """

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_body = max_body
        self._in_frame = False
        self._escape = False
        self._body = bytearray()
        self._wire = 0
        self._garbage = 0
        self._oversize = False

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    def reset(self) -> BadFrame | None:
        """Drop a partial frame; returns it as a BadFrame if there was one."""
        bad = BadFrame("truncated", self._wire) if self._in_frame else None
        self._in_frame = False
        self._escape = False
        self._body.clear()
        self._wire = 0
        self._oversize = False
        return bad

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        i = 0
        while i < len(data):
            run = _PLAIN_RUN.match(data, i) if self._in_frame and not self._escape else None
            if run is not None:  # plain payload bytes: taken in one step, not one by one
                self._plain(run.group())
                i = run.end()
                continue
            ev = self._byte(data[i], events)
            if ev is not None:
                events.append(ev)
            i += 1
        return events

    def _plain(self, run: bytes) -> None:
        """What ``_byte`` does for each of these bytes, for all of them at once."""
        self._wire += len(run)
        room = self.max_body - len(self._body)
        if len(run) > room:
            self._oversize = True
        self._body += run[: max(room, 0)]

    def flush_garbage(self) -> Garbage | None:
        if self._garbage:
            g = Garbage(self._garbage)
            self._garbage = 0
            return g
        return None

    def _byte(self, b: int, events: list[Event]) -> Event | None:
        if b == STX:
            g = self.flush_garbage()
            if g:
                events.append(g)
            if self._in_frame:
                events.append(BadFrame("restarted by STX", self._wire))
            self.reset()
            self._in_frame = True
            self._wire = 1
            return None
        if not self._in_frame:
            if b in (ACK, NAK):
                g = self.flush_garbage()
                if g:
                    events.append(g)
                return Control(0x06 if b == ACK else 0x15)
            self._garbage += 1
            return None
        self._wire += 1
        if b == ETX:
            return self._finish()
        if b in (ACK, NAK):
            # A control byte can never be inside a frame: the frame was cut.
            bad = self.reset()
            events.append(bad or BadFrame("cut", 0))
            return Control(0x06 if b == ACK else 0x15)
        if self._escape:
            self._escape = False
            if (b ^ ESCAPE_XOR) not in RESERVED:
                bad = BadFrame("bad escape", self._wire)
                self.reset()
                return bad
            b ^= ESCAPE_XOR
        elif b == DLE:
            self._escape = True
            return None
        if len(self._body) >= self.max_body:
            self._oversize = True  # keep counting until ETX/STX, store nothing more
            return None
        self._body.append(b)
        return None

    def _finish(self) -> Event:
        body, wire, oversize, escape = bytes(self._body), self._wire, self._oversize, self._escape
        self.reset()
        if oversize:
            return BadFrame("oversize", wire)
        if escape:
            return BadFrame("bad escape", wire)
        if len(body) < HEADER + 2:
            return BadFrame("too short", wire)
        if crc16(body[:-2]) != int.from_bytes(body[-2:], "big"):
            return BadFrame("crc", wire)
        if int.from_bytes(body[2:4], "big") != len(body) - HEADER - 2:
            return BadFrame("length", wire)
        return Frame(seq=body[0], ptype=body[1], payload=body[HEADER:-2], wire_len=wire)
