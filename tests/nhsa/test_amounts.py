"""Yuan <-> fen: exact round trips, whole fen only, numbers or strings, never floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.amounts import (
    AmountError,
    _decimal,
    count_of,
    fen_from_yuan,
    price_of,
    unit_price_yuan,
    yuan_of,
    yuan_text,
)

FEN = st.integers(min_value=-(10**16) + 1, max_value=10**16 - 1)


@given(FEN)
def test_fen_yuan_round_trip(fen: int) -> None:
    assert fen_from_yuan(yuan_of(fen)) == fen


@given(FEN)
def test_round_trip_through_the_wire_as_number_and_as_string(fen: int) -> None:
    as_number = env.encode({"a": yuan_of(fen)})
    parsed = env.parse(b'{"infcode":0,"output":' + as_number + b"}")
    assert fen_from_yuan(parsed.output["a"]) == fen
    assert fen_from_yuan(str(yuan_of(fen))) == fen


@given(FEN)
def test_requests_carry_at_most_two_decimals(fen: int) -> None:
    text = env.encode({"a": yuan_of(fen)}).decode()
    number = text.split(":")[1].rstrip("}")
    assert "e" not in number.lower() and len(number.partition(".")[2]) == 2


@given(FEN, st.integers(min_value=1, max_value=9))
def test_a_third_decimal_that_is_not_zero_is_refused(fen: int, digit: int) -> None:
    with pytest.raises(AmountError):
        fen_from_yuan(f"{yuan_of(fen)}{digit}")


@pytest.mark.parametrize(
    ("value", "fen"),
    [("12.30", 1230), (Decimal("12.3"), 1230), (12, 1200), ("1.230", 123), (" 0.01 ", 1),
     ("-3.50", -350), (Decimal("0"), 0), ("7", 700)],
)  # fmt: skip
def test_accepted(value: object, fen: int) -> None:
    assert fen_from_yuan(value) == fen


@pytest.mark.parametrize(
    "value", [1.1, True, "1.234", "1e2", "", "abc", None, Decimal("NaN"), "1" * 15, [1], "0x10"]
)
def test_refused(value: object) -> None:
    with pytest.raises(AmountError):
        fen_from_yuan(value)


def _by_decimal(value: str) -> int | str:
    try:
        return int(_decimal(value, 16, 2, "a").scaleb(2))
    except AmountError:
        return "refused"


def _by_integers(value: str) -> int | str:
    try:
        return fen_from_yuan(value, "a")
    except AmountError:
        return "refused"


YUAN_TEXT = st.text(alphabet="0123456789.+- \t٣", max_size=20) | st.builds(
    lambda sign, whole, dec, pad: f"{pad}{sign}{whole}{dec}{pad}",
    st.sampled_from(["", "-", "+"]), st.integers(0, 10**15).map(str),
    st.sampled_from(["", "."]) | st.text("0123456789", max_size=5).map(lambda d: "." + d),
    st.sampled_from(["", " ", "\t"]),
)  # fmt: skip


@given(YUAN_TEXT)
def test_yuan_text_read_by_integers_is_what_decimal_reads(value: str) -> None:
    """The fast path for plain text (_FEN_TEXT) gives the Decimal path's fen or refusal."""
    assert _by_integers(value) == _by_decimal(value)


@given(FEN)
def test_yuan_text_is_the_decimal_yuan_written_out(fen: int) -> None:
    assert yuan_text(fen) == str(yuan_of(fen))
    assert fen_from_yuan(yuan_text(fen)) == fen


def test_yuan_text_refuses_what_is_not_fen() -> None:
    for bad in (True, 1.5, "12"):
        with pytest.raises(AmountError):
            yuan_text(bad)  # type: ignore[arg-type]


def test_counts_and_prices_have_their_own_precision() -> None:
    assert count_of("1.2345") == Decimal("1.2345")
    with pytest.raises(AmountError):
        count_of("1.23456")
    assert price_of("3.333333") == Decimal("3.333333")
    with pytest.raises(AmountError):
        price_of("3.3333333")
    assert unit_price_yuan(1000, 3) == Decimal("3.333333")
