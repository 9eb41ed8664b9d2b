"""Yuan <-> fen: exact round trips, whole fen only, numbers or strings, never floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.amounts import (
    AmountError,
    count_of,
    fen_from_yuan,
    price_of,
    unit_price_yuan,
    yuan_of,
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


def test_counts_and_prices_have_their_own_precision() -> None:
    assert count_of("1.2345") == Decimal("1.2345")
    with pytest.raises(AmountError):
        count_of("1.23456")
    assert price_of("3.333333") == Decimal("3.333333")
    with pytest.raises(AmountError):
        price_of("3.3333333")
    assert unit_price_yuan(1000, 3) == Decimal("3.333333")
