"""The sandbox's yuan text read by integers (``wire.fen_of``'s fast path) and written by
integers (``wire.yuan_text``) give exactly what its Decimal check and writer give."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.ledger.nhsa.sandbox.wire import Refused, check_number, fen_of, yuan, yuan_text

YUAN_TEXT = st.text(alphabet="0123456789.+- \t٣e", max_size=20) | st.builds(
    lambda sign, whole, dec, pad: f"{pad}{sign}{whole}{dec}{pad}",
    st.sampled_from(["", "-", "+"]), st.integers(0, 10**15).map(str),
    st.sampled_from(["", "."]) | st.text("0123456789", max_size=5).map(lambda d: "." + d),
    st.sampled_from(["", " ", "\t"]),
)  # fmt: skip


def _checked(value: str) -> int | str:
    try:
        return int(check_number(value, "a", (16, 2)) * 100)
    except Refused:
        return "refused"


def _fast(value: str) -> int | str:
    try:
        return fen_of(value, "a")
    except Refused:
        return "refused"


@given(YUAN_TEXT)
def test_fen_of_text_is_what_the_decimal_check_gives(value: str) -> None:
    assert _fast(value) == _checked(value)


@given(st.integers(min_value=-(10**16) + 1, max_value=10**16 - 1))
def test_yuan_text_is_the_decimal_yuan_written_out(fen: int) -> None:
    assert yuan_text(fen) == str(yuan(fen))
    assert fen_of(yuan_text(fen), "a") == fen


@pytest.mark.parametrize("value", ["1.234", "", "abc", "1" * 15, "NaN"])
def test_what_is_not_a_whole_fen_is_still_refused(value: str) -> None:
    with pytest.raises(Refused):
        fen_of(value, "a")
