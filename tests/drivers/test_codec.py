"""Codec: CRC and stuffing vectors, split frames, garbage resync (hypothesis)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codec import (
    ACK,
    DLE,
    ETX,
    MAX_PAYLOAD,
    NAK,
    STX,
    BadFrame,
    Control,
    Frame,
    FrameDecoder,
    crc16,
    encode_frame,
    stuff,
    unstuff,
)


def frames(events: Sequence[object]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert crc16(b"") == 0xFFFF
    assert crc16(b"A") == 0xB915


@pytest.mark.parametrize(
    ("raw", "stuffed"),
    [
        (b"\x01\x04", b"\x01\x04"),
        (bytes([STX]), bytes([DLE, 0x22])),
        (bytes([ETX]), bytes([DLE, 0x23])),
        (bytes([ACK]), bytes([DLE, 0x26])),
        (bytes([DLE]), bytes([DLE, 0x30])),
        (bytes([NAK]), bytes([DLE, 0x35])),
        (b"\x00\x02\x10\xff", b"\x00\x10\x22\x10\x30\xff"),
    ],
)
def test_stuffing_vectors(raw: bytes, stuffed: bytes) -> None:
    assert stuff(raw) == stuffed
    assert unstuff(stuffed) == raw


def test_frame_vector() -> None:
    # HELLO, SEQ 0x01, LEN 1, version 1; CRC over SEQ TYPE LEN PAYLOAD.
    frame = encode_frame(0x01, 0x01, b"\x01")
    body = b"\x01\x01\x00\x01\x01"
    assert frame == bytes([STX]) + stuff(body + crc16(body).to_bytes(2, "big")) + bytes([ETX])
    assert frame.hex(" ") == "02 01 01 00 01 01 ee f9 03"
    # a reserved byte in the body is stuffed: SEQ 0x02 becomes 10 22
    assert encode_frame(0x02, 0x80).hex(" ").startswith("02 10 22 80 00 00")


def test_appended_zero_bytes_are_caught_by_the_length() -> None:
    wire = encode_frame(5, 0x92)
    evs = FrameDecoder().feed(wire[:-1] + b"\x00\x00" + wire[-1:])
    assert evs == [BadFrame("length", len(wire) + 2)]


def test_unstuff_rejects_bad_escapes() -> None:
    with pytest.raises(ValueError):
        unstuff(bytes([DLE, 0x41]))
    with pytest.raises(ValueError):
        unstuff(bytes([DLE]))
    with pytest.raises(ValueError):
        unstuff(bytes([STX]))


@given(st.binary(max_size=300))
def test_stuff_roundtrip_and_no_reserved_bytes(body: bytes) -> None:
    s = stuff(body)
    assert unstuff(s) == body
    assert not {STX, ETX, ACK, NAK} & set(s)


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=200))
def test_frame_roundtrip(seq: int, ptype: int, payload: bytes) -> None:
    wire = encode_frame(seq, ptype, payload)
    evs = FrameDecoder().feed(wire)
    assert evs == [Frame(seq, ptype, payload, len(wire))]


def test_frame_split_at_every_offset() -> None:
    payload = bytes(range(256)) * 2  # every reserved byte included
    wire = encode_frame(0x10, 0x92, payload)
    for cut in range(len(wire) + 1):
        dec = FrameDecoder()
        got = dec.feed(wire[:cut]) + dec.feed(wire[cut:])
        assert frames(got) == [Frame(0x10, 0x92, payload, len(wire))], cut


def test_byte_at_a_time() -> None:
    wire = encode_frame(7, 0x21, b"\x02\x03\x10")
    dec = FrameDecoder()
    got = [ev for b in wire for ev in dec.feed(bytes([b]))]
    assert frames(got) == [Frame(7, 0x21, b"\x02\x03\x10", len(wire))]


def test_control_bytes_outside_frames() -> None:
    evs = FrameDecoder().feed(bytes([ACK, NAK]))
    assert evs == [Control(0x06), Control(0x15)]


def test_bad_crc_reported_not_raised() -> None:
    wire = bytearray(encode_frame(1, 0x80))
    wire[-2] ^= 0x01
    evs = FrameDecoder().feed(bytes(wire))
    assert [type(e) for e in evs] == [BadFrame]
    assert isinstance(evs[0], BadFrame) and evs[0].reason == "crc"


def test_truncated_frame_then_good_frame_resyncs() -> None:
    good = encode_frame(2, 0x80)
    evs = FrameDecoder().feed(good[:4] + good)
    assert [type(e) for e in evs] == [BadFrame, Frame]


def test_oversize_frame_rejected_and_decoder_recovers() -> None:
    big = bytes([STX]) + b"\x41" * (MAX_PAYLOAD + 100) + bytes([ETX])
    good = encode_frame(3, 0x80)
    evs = FrameDecoder().feed(big + good)
    assert isinstance(evs[0], BadFrame) and evs[0].reason == "oversize"
    assert frames(evs) == [Frame(3, 0x80, b"", len(good))]
    with pytest.raises(ValueError):
        encode_frame(1, 1, b"x" * (MAX_PAYLOAD + 1))


def test_too_short_and_bad_escape() -> None:
    assert FrameDecoder().feed(bytes([STX, 0x41, ETX]))[0] == BadFrame("too short", 3)
    assert FrameDecoder().feed(bytes([STX, 1, 4, 0, 9, ETX]))[0] == BadFrame("too short", 6)
    ev = FrameDecoder().feed(bytes([STX, 0x41, DLE, 0x41, ETX]))
    assert isinstance(ev[0], BadFrame) and ev[0].reason == "bad escape"


noise = st.binary(max_size=64)


@settings(max_examples=300)
@given(noise, noise, st.binary(max_size=120), st.integers(0, 255))
def test_garbage_before_and_after_never_loses_a_frame(
    before: bytes, after: bytes, payload: bytes, seq: int
) -> None:
    wire = encode_frame(seq, 0x92, payload)
    dec = FrameDecoder()
    evs = dec.feed(before + wire + after)
    # The frame survives whatever came before: an STX always restarts framing.
    assert Frame(seq, 0x92, payload, len(wire)) in evs


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=64), st.binary(max_size=120), st.data())
def test_garbage_inside_a_frame_is_detected_then_next_frame_decodes(
    junk: bytes, payload: bytes, data: st.DataObject
) -> None:
    wire = encode_frame(5, 0x92, payload)
    cut = data.draw(st.integers(1, len(wire) - 1))
    damaged = wire[:cut] + junk + wire[cut:]
    good = encode_frame(6, 0x80, b"ok")
    evs = FrameDecoder().feed(damaged + good)
    # A damaged frame is never delivered as a *different* valid frame.
    assert all(f.payload == payload for f in frames(evs) if f.seq == 5)
    # ...and the decoder is back in sync for the next one.
    assert frames(evs)[-1] == Frame(6, 0x80, b"ok", len(good))


@given(st.binary(max_size=400))
def test_decoder_never_raises_on_noise(junk: bytes) -> None:
    dec = FrameDecoder(max_body=64)
    for i in range(0, len(junk), 7):
        dec.feed(junk[i : i + 7])
