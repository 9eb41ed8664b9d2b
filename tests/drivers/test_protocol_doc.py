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


# The packet tables of section 6: "| 0x01 | HELLO | version u8 (=2) | INFO |" and
# "| 0x81 | INFO | version u8, model ascii8, ... |". Each row's fields are the packet's.
KIND_NAMES = {"u8": pk.U8, "u16": pk.U16, "u32": pk.U32, "bytes8": pk.BYTES8,
              "bytes16": pk.BYTES16, "text8": pk.TEXT8, "ascii8": pk.ASCII8,
              "utf8_16": pk.UTF8_16}  # fmt: skip
TABLE_ROW = re.compile(r"^\| 0x([0-9A-F]{2}) \| (\w+) \| ([^|]*) \|", re.M)


def _section(title: str) -> str:
    start = TEXT.index(title)
    return TEXT[start : TEXT.index("\n### ", start + 1)]


def _documented_fields(cell: str) -> list[tuple[str, str, str | None]]:
    """(name, kind, "(=N)" value or None) of each field a payload cell lists."""
    if cell.strip() == "—":
        return []
    out = []
    for part in re.sub(r"\([^=)][^)]*\)", "", cell).split(","):
        m = re.fullmatch(r"\s*(.*?)\s+(\w+)\s*(?:\(=(\d+)\))?\s*", part)
        assert m, f"cannot read the field {part!r} in {cell!r}"
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


@pytest.mark.parametrize("section", ["### 6.1 Requests", "### 6.2 Responses"])
def test_packet_tables_list_what_the_code_sends(section: str) -> None:
    """Every row of 6.1/6.2: the TYPE and name of a packet, its fields in order with
    their wire kinds, and a pinned value ``(=N)`` where the code sends one."""
    rows = TABLE_ROW.findall(_section(section))
    requests = section.startswith("### 6.1")
    assert {int(t, 16) for t, _, _ in rows} == {t for t in pk.REGISTRY if (t < 0x80) == requests}
    for ptype, name, cell in rows:
        cls = pk.REGISTRY[int(ptype, 16)]
        assert name == cls.NAME
        layout = pk._layout(cls)
        documented = _documented_fields(cell)
        assert [KIND_NAMES[kind] for _, kind, _ in documented] == [k for _, k in layout], name
        for (_, _, value), (field_name, _) in zip(documented, layout, strict=True):
            if value is not None:
                assert int(value) == getattr(cls(), field_name), f"{name}.{field_name}"
