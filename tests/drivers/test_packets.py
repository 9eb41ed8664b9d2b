"""Packets, APDUs, the card file layout and trace redaction (no serial port)."""

from __future__ import annotations

import datetime as dt

import pytest

from drivers import DeviceError, apdu
from drivers import packets as pk
from drivers.trace import frame_line
from pos_plugin.world import World

SAMPLES: list[pk.Packet] = [
    pk.Hello(),
    pk.Abort(),
    pk.Poll(250),
    pk.Display("请插入社保卡", "或出示医保码"),
    pk.ShowAmount(12345, "应付"),
    pk.WaitCredential(250, pk.Source.CARD | pk.Source.QR),
    pk.ReadCard(),
    pk.Apdu(apdu.select_aid()),
    pk.Eject(),
    pk.WaitRemoved(250),
    pk.VerifyPin(30_000, 250),
    pk.ScanTrace(250, 1, 2, 3, "XA01AAA0001", "阿莫西林胶囊", "码无效 请重扫"),
    pk.Ok(),
    pk.Info(1, "POS-SIM-1", "1.0", 1024),
    pk.Pending(),
    pk.CardInserted(b"\x3b\x6c"),
    pk.Voucher("EV-ZHANGWEI-0001"),
    pk.CardFiles(b"\x01\x02AB", b"\x08\x01X"),
    pk.ApduResponse(b"\x90\x00"),
    pk.CardRemoved(),
    pk.TraceCode(b"80100000000000000001", 40),
    pk.TraceCode(b"\xff801\x00", 0),  # a misread travels as read
    pk.PinResultPacket(pk.PinCode.WRONG, 2, 0x63C2),
    pk.Error(pk.DevError.NOT_SSC, 0x6A82, "x"),
]


def test_every_registered_packet_has_a_sample() -> None:
    assert {type(p) for p in SAMPLES} == set(pk.REGISTRY.values())


@pytest.mark.parametrize("packet", SAMPLES, ids=lambda p: p.NAME)
def test_packet_roundtrip(packet: pk.Packet) -> None:
    assert pk.decode(packet.TYPE, packet.encode()) == packet


def test_requests_and_responses_are_split_by_the_high_bit() -> None:
    for ptype, cls in pk.REGISTRY.items():
        is_response = cls.__name__ in {
            "Ok", "Info", "Pending", "CardInserted", "Voucher", "CardFiles",
            "ApduResponse", "CardRemoved", "TraceCode", "PinResultPacket", "Error",
        }  # fmt: skip
        assert (ptype >= 0x80) == is_response, cls


def test_no_request_can_carry_pin_digits() -> None:
    # The only free-form request fields are display text and APDUs; APDUs with
    # PIN instructions are refused by the Terminal and by the device.
    assert {0x20, 0x24, 0x2C} <= apdu.PIN_INSTRUCTIONS
    names = {n for cls in pk.REGISTRY.values() for n in cls.__dataclass_fields__}  # type: ignore[attr-defined]
    assert not {n for n in names if "pin" in n.lower() and n != "tries_left"}


def test_decode_rejects_unknown_truncated_and_trailing() -> None:
    with pytest.raises(ValueError, match="unknown packet type"):
        pk.decode(0x7F, b"")
    with pytest.raises(ValueError, match="too short"):
        pk.decode(pk.Poll.TYPE, b"\x01")
    with pytest.raises(ValueError, match="trailing"):
        pk.decode(pk.Ok.TYPE, b"\x00")


def test_display_is_gb18030_and_clipped_on_a_character_boundary() -> None:
    assert pk.Display("药", "").encode() == b"\x02\xd2\xa9\x00"
    clipped = pk.clip_text("社" * 40)
    assert len(clipped.encode("gb18030")) == 64 and clipped == "社" * 32
    assert pk.clip_text("ab𠀀", 4) == "ab"  # a 4-byte GB18030 character is not split


def _files(world: World, card_no: str = "B11000001") -> tuple[bytes, bytes]:
    person, card = world.card_owner(card_no)
    info = apdu.build_card_info(
        card_sn=card.card_sn,
        spec_version=card.spec_version,
        region_code=person.insured_region,
        issue_date=card.issue_date,
        expiry_date=card.expiry_date,
        card_no=card.card_no,
    )
    return info, apdu.build_holder(id_number=person.id_number, name=person.name)


def test_card_files_parse(world: World) -> None:
    card = apdu.parse_card_files(*_files(world))
    assert card.card_no == "B11000001"
    assert card.id_number == "110105198005120319"
    assert card.holder_name == "张伟"
    assert card.expiry_date == dt.date(2030, 1, 1)


def test_unknown_tags_and_padding_are_skipped(world: World) -> None:
    info, holder = _files(world)
    card = apdu.parse_card_files(apdu.tlv(0x7E, b"new") + info + b"\x00" * 8, holder + b"\xff")
    assert card.card_no == "B11000001"


@pytest.mark.parametrize(
    "damage",
    [
        lambda i, h: (i[:-3], h),  # record runs past the end
        lambda i, h: (i, b""),  # holder file empty
        lambda i, h: (i.replace(b"\x05\x04\x20\x20", b"\x05\x04\x20\x2f"), h),  # bad BCD
        lambda i, h: (i, apdu.tlv(8, b"1") + apdu.tlv(9, b"\x81")),  # broken GB18030
        lambda i, h: (i.replace(b"110105", b"11010X"), h),  # region code not 6 digits
    ],
)
def test_malformed_files_are_card_unreadable_without_leaking(world: World, damage: object) -> None:
    info, holder = damage(*_files(world))  # type: ignore[operator]
    with pytest.raises(DeviceError) as err:
        apdu.parse_card_files(info, holder)
    assert err.value.code == "card_unreadable"
    assert "110105198005120319" not in str(err.value) and "B11000001" not in str(err.value)


def test_trace_masks_card_and_id_numbers(world: World) -> None:
    info, holder = _files(world)
    packet = pk.CardFiles(info, holder)
    line = frame_line("RX", 1, packet.TYPE, packet.encode(), packet, 120)
    assert "B******01" in line and "110105********0319" in line
    for secret in ("B11000001", "110105198005120319", "张伟", "4D83237335790FB4875C7227C23D7360"):
        assert secret not in line
        assert secret.encode("gb18030").hex(" ").upper() not in line
    # the region code and dates stay readable for support
    assert "31 31 30 31 30 35" in line


def test_trace_masks_unparseable_card_files_entirely() -> None:
    packet = pk.CardFiles(b"\x07\x40B11000001", b"")
    line = frame_line("RX", 1, packet.TYPE, packet.encode(), packet, 30)
    assert "42 31 31" not in line and "**" in line


def test_trace_masks_apdu_data_but_keeps_status_word() -> None:
    packet = pk.ApduResponse(b"\x08\x12110105198005120319\x90\x00")
    line = frame_line("RX", 1, packet.TYPE, packet.encode(), packet, 30)
    assert "31 31 30" not in line and "90 00" in line
