"""GB 11643 resident ID numbers, other documents, masking."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.models import IdDocType, IdDocument
from pos_plugin.rules.identity import (
    PROVINCE_CODES,
    check_character,
    check_document,
    check_resident_id,
    mask_card_no,
    mask_id_number,
    mask_name,
    normalize_id_number,
    same_person,
)

TODAY = dt.date(2026, 11, 23)
VALID = "11010519491231002X"  # the GB 11643 standard's own example


def test_standard_example_is_valid() -> None:
    assert check_character("11010519491231002") == "X"
    result = check_resident_id(VALID, TODAY)
    assert result.valid and result.verified


def test_lowercase_x_is_the_same_as_uppercase() -> None:
    assert check_resident_id(VALID.lower(), TODAY).valid
    assert same_person(VALID.lower(), VALID)
    assert normalize_id_number(" 110105 19491231 002x ") == VALID


def test_wrong_length() -> None:
    result = check_resident_id(VALID[:-1], TODAY)
    assert not result.valid and "18" in result.reason_en


def test_letters_inside_are_refused() -> None:
    assert not check_resident_id("1101051949123100AX", TODAY).valid


def test_non_ascii_digits_are_refused() -> None:
    # str.isdigit() is True for Arabic-Indic digits; an ID number is ASCII only.
    assert not check_resident_id(VALID[:15] + "\u0660" + VALID[16:], TODAY).valid


def test_unknown_province() -> None:
    number = "99010519491231002"
    result = check_resident_id(number + check_character(number), TODAY)
    assert not result.valid and "region" in result.reason_en


def test_impossible_date() -> None:
    number = "11010519490230002"  # 30 February
    result = check_resident_id(number + check_character(number), TODAY)
    assert not result.valid and "date" in result.reason_en


def test_future_birth_date() -> None:
    number = "11010520301231002"
    result = check_resident_id(number + check_character(number), TODAY)
    assert not result.valid and "future" in result.reason_en


def test_bad_check_character_gives_invalid_id_refusal() -> None:
    result = check_resident_id("110105194912310021", TODAY)
    assert not result.valid
    refusal = result.refusal("用药人证件：", "patient's document: ")
    assert refusal.code == "invalid_id_number"
    assert "check character" in refusal.message_en and "校验位" in refusal.message_zh


def test_other_documents_are_recognised_by_shape_but_not_verified() -> None:
    cases = [
        (IdDocType.PASSPORT, "E12345678"),
        (IdDocType.FOREIGN_PERMANENT_RESIDENT_ID, "USA110079061502"),
        (IdDocType.HK_MACAO_RESIDENCE_PERMIT, "810000199408230021"),
        (IdDocType.TAIWAN_RESIDENCE_PERMIT, "830000199201300022"),
    ]
    for doc_type, number in cases:
        result = check_document(IdDocument(doc_type=doc_type, number=number), TODAY)
        assert result.valid, doc_type
        assert not result.verified
        assert "only be checked by its shape" in result.reason_en


def test_other_document_with_wrong_shape_is_invalid() -> None:
    result = check_document(IdDocument(doc_type=IdDocType.PASSPORT, number="#"), TODAY)
    assert not result.valid


def test_masking() -> None:
    assert mask_id_number(VALID) == "110105********002X"
    assert mask_id_number("E12345678") == "E1*****78"
    assert mask_id_number("123") == "***"
    assert mask_name("张伟") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("李") == "李*"
    assert mask_name("  ") == ""
    assert mask_card_no("B11000001") == "B******01"
    assert mask_card_no("1234") == "****"


# --------------------------------------------------------------------------- properties

regions = st.builds(
    lambda p, rest: p + rest,
    st.sampled_from(sorted(PROVINCE_CODES - {"71", "81", "82"})),
    st.from_regex(r"[0-9]{4}", fullmatch=True),
)
births = st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY)
sequences = st.from_regex(r"[0-9]{3}", fullmatch=True)


@st.composite
def valid_ids(draw: st.DrawFn) -> str:
    first17 = draw(regions) + draw(births).strftime("%Y%m%d") + draw(sequences)
    return first17 + check_character(first17)


@given(valid_ids())
def test_generated_valid_numbers_pass(number: str) -> None:
    assert check_resident_id(number, TODAY).valid


@given(valid_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_character_change_fails(number: str, pos: int, char: str) -> None:
    if number[pos] == char:
        return
    changed = number[:pos] + char + number[pos + 1 :]
    # MOD 11-2 detects every single substitution: the number must not pass.
    assert not check_resident_id(changed, TODAY).valid


@given(valid_ids())
def test_masked_number_never_shows_the_birth_date(number: str) -> None:
    masked = mask_id_number(number)
    assert number[6:14] not in masked
    assert masked[:6] == number[:6] and masked[-4:] == number[-4:]
