"""docs/serial-protocol.md must agree with the codec: every worked example is re-checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers import apdu
from drivers import packets as pk
from drivers.codec import Frame, FrameDecoder, crc16, encode_frame, stuff
from pos_plugin.world import World

DOC = Path(__file__).resolve().parents[2] / "docs" / "serial-protocol.md"
TEXT = DOC.read_text("utf-8")
FRAME_BLOCKS = re.findall(r"```frame\n(.*?)```", TEXT, re.S)
EXAMPLES = [
    tuple(line.split(": ", 1)) for block in FRAME_BLOCKS for line in block.strip().splitlines()
]


def test_doc_has_examples_for_every_packet() -> None:
    named = {name for name, _ in EXAMPLES}
    assert named == {cls.NAME for cls in pk.REGISTRY.values()}


@pytest.mark.parametrize(
    ("name", "hexes"), EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES)]
)
def test_doc_example_decodes(name: str, hexes: str) -> None:
    wire = bytes.fromhex(hexes)
    events = FrameDecoder().feed(wire)
    assert len(events) == 1 and isinstance(events[0], Frame), events
    frame = events[0]
    packet = pk.decode(frame.ptype, frame.payload)
    assert name == packet.NAME
    assert encode_frame(frame.seq, packet.TYPE, packet.encode()) == wire


def test_doc_states_crc_and_stuffing_that_the_code_uses() -> None:
    assert "Check value: 0x29B1" in TEXT and crc16(b"123456789") == 0x29B1
    rows = re.findall(r"\| 0x(0[2-6]|1[05]) \| (10 [0-9a-fA-F]{2}) \|", TEXT)
    assert len(rows) == 5
    for raw, sent in rows:
        assert stuff(bytes.fromhex(raw)).hex(" ") == sent.lower()


def test_doc_file_examples_match_the_layout(world: World) -> None:
    person, card = world.card_owner("B11000001")
    info = apdu.build_card_info(
        card_sn=card.card_sn,
        spec_version=card.spec_version,
        region_code=person.insured_region,
        issue_date=card.issue_date,
        expiry_date=card.expiry_date,
        card_no=card.card_no,
    )
    holder = apdu.build_holder(id_number=person.id_number, name=person.name)
    ef05 = re.search(r"EF05: ([0-9A-F ]+(?:\n      [0-9A-F ]+)*)", TEXT)
    ef06 = re.search(r"EF06: ([0-9A-F ]+)", TEXT)
    assert ef05 and ef06
    assert bytes.fromhex(ef05.group(1).replace("\n", " ")) == info
    assert bytes.fromhex(ef06.group(1)) == holder
    assert apdu.select_aid().hex(" ").upper() in TEXT


def test_doc_scan_trace_example_is_what_the_terminal_sends() -> None:
    """Section 6.5's first SCAN_TRACE is the Terminal's request for line 1, pack 1 of 2."""
    from drivers.results import TracePrompt
    from drivers.terminal import _scan_request

    prompt = TracePrompt(line=1, pack=1, packs=2, product="XA01AAA0001", name="阿莫西林胶囊")
    request = _scan_request(prompt, 0.25)
    first = next(hexes for name, hexes in EXAMPLES if name == "SCAN_TRACE")
    assert encode_frame(0x60, request.TYPE, request.encode()) == bytes.fromhex(first)
    (code,) = [h for n, h in EXAMPLES if n == "TRACE_CODE"]
    frame = FrameDecoder().feed(bytes.fromhex(code))[0]
    assert isinstance(frame, Frame)
    answer = pk.decode(frame.ptype, frame.payload)
    assert isinstance(answer, pk.TraceCode) and answer.code == b"80100000000000000001"
