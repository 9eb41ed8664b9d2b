"""Every packet of the protocol, declared as a class (ZVT/ecrterm style).

A packet is a frozen dataclass whose fields carry their wire encoding in
``Annotated[...]``; the generic ``encode``/``decode`` below walk the fields in
order. Reading this file top to bottom is reading the command table of
docs/serial-protocol.md.

Requests (host -> device) have TYPE < 0x80, responses have TYPE >= 0x80.
No packet has a field for PIN digits: the PIN is typed on the device's keypad
and verified by the chip inside the device; only the outcome travels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Annotated, Any, ClassVar, TypeVar, get_type_hints

DISPLAY_ENCODING = "gb18030"
"""Encoding of display text and of the holder name on the chip."""

MAX_DISPLAY_BYTES = 64
"""Longest display line in bytes (GB18030: a Chinese character takes 2 or 4)."""


class Kind:
    """How one field is laid out on the wire."""

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        raise NotImplementedError


class _Int(Kind):
    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: Any) -> bytes:
        return int(value).to_bytes(self.size, "big")

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + self.size
        if end > len(data):
            raise ValueError("payload too short")
        return int.from_bytes(data[pos:end], "big"), end


class _Bytes(Kind):
    """Length-prefixed bytes (1- or 2-byte big-endian length)."""

    def __init__(self, len_size: int) -> None:
        self.len_size = len_size

    def encode(self, value: Any) -> bytes:
        raw = bytes(value)
        if len(raw) >= 1 << (8 * self.len_size):
            raise ValueError("field too long")
        return len(raw).to_bytes(self.len_size, "big") + raw

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        n, pos = _Int(self.len_size).decode(data, pos)
        if pos + n > len(data):
            raise ValueError("payload too short")
        return bytes(data[pos : pos + n]), pos + n


class _Text(Kind):
    def __init__(self, len_size: int, encoding: str) -> None:
        self.raw = _Bytes(len_size)
        self.encoding = encoding

    def encode(self, value: Any) -> bytes:
        return self.raw.encode(str(value).encode(self.encoding))

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        raw, pos = self.raw.decode(data, pos)
        return raw.decode(self.encoding), pos


U8, U16, U32 = _Int(1), _Int(2), _Int(4)
BYTES8, BYTES16 = _Bytes(1), _Bytes(2)
TEXT8 = _Text(1, DISPLAY_ENCODING)  # display text, GB18030
ASCII8 = _Text(1, "ascii")
UTF8_16 = _Text(2, "utf-8")  # voucher tokens


class Packet:
    """Base of all packets. ``TYPE`` is the frame's TYPE byte."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    SENSITIVE: ClassVar[bool] = False  # payload may hold card/ID data: trace redacts it

    def encode(self) -> bytes:
        out = bytearray()
        for name, kind in _layout(type(self)):
            out += kind.encode(getattr(self, name))
        return bytes(out)


P = TypeVar("P", bound=type[Packet])
REGISTRY: dict[int, type[Packet]] = {}
_LAYOUTS: dict[type[Packet], list[tuple[str, Kind]]] = {}


def packet(ptype: int, name: str) -> Callable[[P], P]:
    """Class decorator: register a packet dataclass under its TYPE byte."""

    def wrap(cls: P) -> P:
        if ptype in REGISTRY:
            raise ValueError(f"duplicate packet type 0x{ptype:02X}")
        cls.TYPE = ptype
        cls.NAME = name
        REGISTRY[ptype] = cls
        return cls

    return wrap


def _layout(cls: type[Packet]) -> list[tuple[str, Kind]]:
    if cls not in _LAYOUTS:
        hints = get_type_hints(cls, include_extras=True)
        layout = []
        for f in fields(cls):  # type: ignore[arg-type]
            kind = next(m for m in hints[f.name].__metadata__ if isinstance(m, Kind))
            layout.append((f.name, kind))
        _LAYOUTS[cls] = layout
    return _LAYOUTS[cls]


def decode(ptype: int, payload: bytes) -> Packet:
    """Build the packet for a frame; ValueError for unknown types or bad payloads."""
    cls = REGISTRY.get(ptype)
    if cls is None:
        raise ValueError(f"unknown packet type 0x{ptype:02X}")
    values: dict[str, Any] = {}
    pos = 0
    for name, kind in _layout(cls):
        values[name], pos = kind.decode(payload, pos)
    if pos != len(payload):
        raise ValueError(f"{len(payload) - pos} trailing bytes in {cls.NAME}")
    return cls(**values)


# ----------------------------------------------------------------- requests (host -> device)

PROTOCOL_VERSION = 2
"""Version 2 added ``age_ms`` to CARD_INSERTED and VOUCHER (docs/serial-protocol.md 6.4):
without it a host cannot tell a card inserted for this sale from one left in the reader."""

MAX_AGE_MS = 0xFFFFFFFF
"""``age_ms`` saturates here (about 49 days): older is simply "long before"."""


class Source(IntEnum):
    """Bits of WaitCredential.sources."""

    CARD = 0x01
    QR = 0x02


@packet(0x01, "HELLO")
@dataclass(frozen=True)
class Hello(Packet):
    """First frame after opening the port: resets the device's duplicate filter."""

    version: Annotated[int, U8] = PROTOCOL_VERSION


@packet(0x02, "ABORT")
@dataclass(frozen=True)
class Abort(Packet):
    """Stop whatever the device is doing (PIN entry); answered OK."""


@packet(0x03, "POLL")
@dataclass(frozen=True)
class Poll(Packet):
    """Ask for the result of a pending operation, waiting up to hold_ms for it."""

    hold_ms: Annotated[int, U16] = 250


@packet(0x10, "DISPLAY")
@dataclass(frozen=True)
class Display(Packet):
    line1: Annotated[str, TEXT8] = ""
    line2: Annotated[str, TEXT8] = ""


@packet(0x11, "SHOW_AMOUNT")
@dataclass(frozen=True)
class ShowAmount(Packet):
    amount_fen: Annotated[int, U32] = 0
    label: Annotated[str, TEXT8] = ""


@packet(0x20, "WAIT_CREDENTIAL")
@dataclass(frozen=True)
class WaitCredential(Packet):
    """Answer at once if a card is in or a QR code was scanned, else after hold_ms."""

    hold_ms: Annotated[int, U16] = 250
    sources: Annotated[int, U8] = Source.CARD | Source.QR


@packet(0x21, "READ_CARD")
@dataclass(frozen=True)
class ReadCard(Packet):
    """Reader selects the SSC application and returns EF05 and EF06 whole."""


@packet(0x22, "APDU")
@dataclass(frozen=True)
class Apdu(Packet):
    """ISO 7816-4 command APDU pass-through (VERIFY and PIN changes are refused)."""

    apdu: Annotated[bytes, BYTES16] = b""


@packet(0x23, "EJECT")
@dataclass(frozen=True)
class Eject(Packet):
    """Power the card down and release it (motorised readers push it out)."""


@packet(0x24, "WAIT_REMOVED")
@dataclass(frozen=True)
class WaitRemoved(Packet):
    hold_ms: Annotated[int, U16] = 250


@packet(0x30, "VERIFY_PIN")
@dataclass(frozen=True)
class VerifyPin(Packet):
    """Prompt on the PIN pad; the keypad's digits go to the chip, never to the host."""

    timeout_ms: Annotated[int, U32] = 30_000
    hold_ms: Annotated[int, U16] = 250


@packet(0x40, "SCAN_TRACE")
@dataclass(frozen=True)
class ScanTrace(Packet):
    """Wait up to hold_ms for the cashier to scan one pack's 追溯码 (traceability code).

    The pad shows ``name`` and "pack/packs" (or ``note``: why the last scan was not
    taken). ``line`` and ``product`` (the line's catalogue code or SKU) say which basket
    line the code is for; a device may ignore them. Answered by the oldest code in the
    scanner's queue (TRACE_CODE), PENDING, or ERROR 0A when Cancel is pressed."""

    hold_ms: Annotated[int, U16] = 250
    line: Annotated[int, U16] = 1
    pack: Annotated[int, U16] = 1
    packs: Annotated[int, U16] = 1
    product: Annotated[str, TEXT8] = ""
    name: Annotated[str, TEXT8] = ""
    note: Annotated[str, TEXT8] = ""


# ----------------------------------------------------------------- responses (device -> host)


@packet(0x80, "OK")
@dataclass(frozen=True)
class Ok(Packet):
    pass


@packet(0x81, "INFO")
@dataclass(frozen=True)
class Info(Packet):
    version: Annotated[int, U8] = PROTOCOL_VERSION
    model: Annotated[str, ASCII8] = ""
    firmware: Annotated[str, ASCII8] = ""
    max_payload: Annotated[int, U16] = 1024


@packet(0x82, "PENDING")
@dataclass(frozen=True)
class Pending(Packet):
    """Nothing yet: ask again (WAIT_* again, or POLL for a running PIN entry)."""


@packet(0x90, "CARD_INSERTED")
@dataclass(frozen=True)
class CardInserted(Packet):
    """A card is in the reader; ``age_ms``: how long ago it was inserted (truncated, 6.4)."""

    atr: Annotated[bytes, BYTES8] = b""
    age_ms: Annotated[int, U32] = 0


@packet(0x91, "VOUCHER")
@dataclass(frozen=True)
class Voucher(Packet):
    """A scanned code; ``age_ms``: how long ago it was scanned (truncated, 6.4)."""

    token: Annotated[str, UTF8_16] = ""
    age_ms: Annotated[int, U32] = 0


@packet(0x92, "CARD_FILES")
@dataclass(frozen=True)
class CardFiles(Packet):
    SENSITIVE = True
    card_info: Annotated[bytes, BYTES16] = b""  # EF05 content
    holder: Annotated[bytes, BYTES16] = b""  # EF06 content


@packet(0x93, "APDU_RESPONSE")
@dataclass(frozen=True)
class ApduResponse(Packet):
    SENSITIVE = True
    rapdu: Annotated[bytes, BYTES16] = b""  # response data + SW1 SW2


@packet(0x94, "CARD_REMOVED")
@dataclass(frozen=True)
class CardRemoved(Packet):
    pass


@packet(0x95, "TRACE_CODE")
@dataclass(frozen=True)
class TraceCode(Packet):
    """One scanned code as the scanner read it (bytes, no CR/LF: a misread may be
    anything, the host judges it); ``age_ms``: how long ago it was scanned."""

    code: Annotated[bytes, BYTES8] = b""
    age_ms: Annotated[int, U32] = 0


class PinCode(IntEnum):
    VERIFIED = 0
    WRONG = 1
    BLOCKED = 2
    CANCELLED = 3  # the customer pressed the Cancel key
    TIMEOUT = 4  # the customer typed nothing in time


NO_TRIES = 0xFF  # tries_left unknown


@packet(0xA0, "PIN_RESULT")
@dataclass(frozen=True)
class PinResultPacket(Packet):
    outcome: Annotated[int, U8] = PinCode.VERIFIED
    tries_left: Annotated[int, U8] = NO_TRIES
    sw: Annotated[int, U16] = 0x9000


class DevError(IntEnum):
    """Device error codes in ERROR.code."""

    UNKNOWN_COMMAND = 0x01
    BAD_PAYLOAD = 0x02
    NO_CARD = 0x03
    CARD_MUTE = 0x04
    NOT_SSC = 0x05
    BUSY = 0x06
    FORBIDDEN = 0x07
    NO_PENDING = 0x08
    FILE_ERROR = 0x09
    CANCELLED = 0x0A  # Cancel pressed on the pad while it waited for a scan (SCAN_TRACE)


@packet(0xE0, "ERROR")
@dataclass(frozen=True)
class Error(Packet):
    code: Annotated[int, U8] = DevError.UNKNOWN_COMMAND
    sw: Annotated[int, U16] = 0x0000
    detail: Annotated[str, ASCII8] = ""


def clip_text(text: str, limit: int = MAX_DISPLAY_BYTES) -> str:
    """Cut text to at most ``limit`` encoded bytes without splitting a character."""
    out = []
    used = 0
    for ch in text:
        n = len(ch.encode(DISPLAY_ENCODING, errors="replace"))
        if used + n > limit:
            break
        out.append(ch)
        used += n
    return "".join(out).encode(DISPLAY_ENCODING, errors="replace").decode(DISPLAY_ENCODING)
