"""The 11-field card record and the 9-field ID-card record, validated field by field."""

from __future__ import annotations

import datetime as dt

import pytest

from drivers.errors import DeviceError
from drivers.readers.cardinfo import parse_card_record, parse_id_card

from .conftest import ZHANG_WEI_ID, card_text

# The standard's own test card (NHSA.md section 5).
STANDARD = (
    "639900|111111198101011110|X00000019|639900D15600000500BF7C7A48FB4966|张三|"
    "00814E43238697159900BF7C7A|1.00|20101001|20201001|410100813475|终端设备号|"
)
TODAY = dt.date(2026, 1, 1)


def test_the_standards_test_card_parses() -> None:
    r = parse_card_record(STANDARD, TODAY)
    c = r.card
    assert (c.region_code, c.id_number, c.card_no, c.holder_name) == (
        "639900",
        "111111198101011110",
        "X00000019",
        "张三",
    )
    assert c.card_sn == "639900D15600000500BF7C7A48FB4966" and c.spec_version == "1.00"
    assert (c.issue_date, c.expiry_date) == (dt.date(2010, 10, 1), dt.date(2020, 10, 1))
    assert (r.terminal_no, r.device_no) == ("410100813475", "终端设备号")
    assert r.atr == bytes.fromhex("00814E43238697159900BF7C7A")
    assert "111111198101011110" not in repr(r)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (card_text().rstrip("|"), "does not end with '|'"),
        (card_text(drop="holder_name"), "a field is missing: device_no or an earlier one"),
        (card_text() + "extra|", "12 fields"),
        (card_text(region_code="11010"), "not 6 digits"),
        (card_text(id_number="110105198005120318"), "GB 11643"),
        (card_text(id_number=""), "social-security number is empty"),
        (card_text(card_no=""), "card number is empty"),
        (card_text(card_sn="4D83237335790FB4875C7227C23D73"), "32 hex"),
        (card_text(card_sn="ZZ83237335790FB4875C7227C23D7360"), "32 hex"),
        (card_text(holder_name=""), "holder name is empty"),
        (card_text(issue_date="2020-01-01"), "issue date is not a YYYYMMDD"),
        (card_text(expiry_date="20301301"), "expiry date is not a YYYYMMDD"),
        (card_text(issue_date="20300101", expiry_date="20200101"), "before the issue date"),
    ],
)
def test_bad_records_are_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(DeviceError) as e:
        parse_card_record(text, TODAY)
    assert e.value.code == "card_unreadable"
    assert words in e.value.message_en
    assert ZHANG_WEI_ID not in e.value.message and "张伟" not in e.value.message


def test_optional_terminal_fields_may_be_empty_and_x_is_upper_cased() -> None:
    text = card_text(terminal_no="", device_no="", atr="").replace(ZHANG_WEI_ID, ZHANG_WEI_ID)
    r = parse_card_record(text, TODAY)
    assert r.terminal_no == "" and r.atr == b""
    x = parse_card_record(card_text(id_number="11010519491231002x"), TODAY)
    assert x.card.id_number == "11010519491231002X"


def test_the_id_card_record_has_nine_fields() -> None:
    text = "张三|男|汉|19810101|北京市东城区|111111198101011110|20100101|20300101|东城分局|"
    r = parse_id_card(text)
    assert (r.name, r.sex, r.id_number, r.authority) == (
        "张三",
        "男",
        "111111198101011110",
        "东城分局",
    )
    assert "111111198101011110" not in repr(r) and "张三" not in repr(r)
    with pytest.raises(DeviceError) as e:
        parse_id_card("张三|男|汉|")
    assert "missing" in e.value.message_en
