"""Serial traces for support, in hex like pyserial's spy://, with personal data masked.

A trace line shows the *logical* frame (STX, SEQ TYPE PAYLOAD, CRC, ETX, before
stuffing) so a reader can check it against docs/serial-protocol.md. Bytes that
hold a card number, card serial, ID number or name are printed as ``**``; a
frame whose content cannot be parsed (a bad CRC, garbage) is never printed at
all, only its length, since it might be a damaged card-data frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from drivers import apdu
from drivers.codec import crc16
from drivers.errors import DeviceError
from drivers.packets import ApduResponse, CardFiles, Packet, Voucher
from pos_plugin.rules.identity import mask_card_no, mask_id_number, mask_name

TraceFn = Callable[[str], None]


def _spans(packet: Packet | None, payload: bytes) -> list[tuple[int, int]]:
    """Payload byte ranges to mask."""
    if isinstance(packet, CardFiles):
        n1 = len(packet.card_info)
        s1 = apdu.sensitive_spans(packet.card_info, 2)
        s2 = apdu.sensitive_spans(packet.holder, 2 + n1 + 2)
        if s1 is None or s2 is None:
            return [(0, len(payload))]
        return s1 + s2
    if isinstance(packet, ApduResponse):
        return [(2, 2 + max(0, len(packet.rapdu) - 2))]  # keep only SW1 SW2
    if isinstance(packet, Voucher):
        return [(2 + 6, len(payload))]  # a bearer credential: keep a prefix to tell scans apart
    if packet is not None and packet.SENSITIVE:
        return [(0, len(payload))]
    return []


def hex_masked(data: bytes, spans: list[tuple[int, int]]) -> str:
    masked: set[int] = set()
    for a, b in spans:
        masked.update(range(a, b))
    return " ".join("**" if i in masked else f"{b:02X}" for i, b in enumerate(data))


def summary(packet: Packet | None) -> str:
    """Masked, human summary of a sensitive packet (nothing for the others)."""
    if isinstance(packet, CardFiles):
        try:
            c = apdu.parse_card_files(packet.card_info, packet.holder)
        except DeviceError:
            return " [card files unreadable]"
        return (
            f" [card_no={mask_card_no(c.card_no)} id={mask_id_number(c.id_number)} "
            f"name={mask_name(c.holder_name)} region={c.region_code} expiry={c.expiry_date}]"
        )
    return ""


def frame_line(
    direction: str, seq: int, ptype: int, payload: bytes, packet: Packet | None, wire_len: int
) -> str:
    name = packet.NAME if packet is not None else f"TYPE_{ptype:02X}"
    head = bytes((seq, ptype)) + len(payload).to_bytes(2, "big")
    crc = crc16(head + payload).to_bytes(2, "big")
    body = hex_masked(payload, _spans(packet, payload))
    body = f" {body} |" if body else ""
    return (
        f"{direction} seq={seq:02X} {name}: 02 | {head.hex(' ').upper()} |{body} "
        f"{crc.hex(' ').upper()} | 03 ({wire_len} bytes on the wire){summary(packet)}"
    )


class Tracer:
    """Timestamps and forwards trace lines; a no-op when no callback is given."""

    def __init__(self, fn: TraceFn | None) -> None:
        self.fn = fn
        self.t0 = time.monotonic()

    def __bool__(self) -> bool:
        return self.fn is not None

    def __call__(self, line: str) -> None:
        if self.fn is not None:
            self.fn(f"{time.monotonic() - self.t0:9.3f} {line}")
