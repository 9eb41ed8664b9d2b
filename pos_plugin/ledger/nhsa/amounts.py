"""Yuan on the wire, fen inside, and ``Decimal`` between: never a float.

Why: the platform's amounts are decimal yuan (16,2: 14 integer digits, 2 decimals),
counts 16,4 and prices 16,6, arriving as JSON numbers in some systems and strings in
others. A binary float cannot hold 0.10 exactly, so answers are parsed with
``parse_float=Decimal`` (envelope.py) and converted here; a value that is not a whole
fen where fen are meant is refused (it is a fault of the answer, not a rounding
matter). Requests carry ``Decimal`` yuan, which the envelope encoder writes as JSON
numbers with at most 2 decimals.
"""

from __future__ import annotations

import re
from decimal import Decimal

_PLAIN = re.compile(r"^[+-]?(\d+)(?:\.(\d*))?$")
# Yuan text that is whole fen within 16,2 on its face: at most 14 integer digits and two
# decimals (trailing zeros aside). ``fen_from_yuan`` reads it by integers (exactly what
# the ``Decimal`` path gives; tests/nhsa/test_amounts.py holds the two equal), because a
# day's 3202 result file is three amounts a row, 10^5 rows; anything else, the full path.
_FEN_TEXT = re.compile(r"\s*([+-]?)(\d{1,14})(?:\.(\d{0,2})0*)?\s*")
FEN = Decimal("0.01")


class AmountError(ValueError):
    """An amount, count or price that the field's (digits, decimals) cannot be."""


def _decimal(value: object, digits: int, places: int, what: str) -> Decimal:
    """``value`` (int, Decimal or a plain decimal string) checked against ``digits,places``.

    Floats and bools are refused: a float has already lost the exact value, and a bool
    is an int by accident of Python. Exponent forms ("1E+2") are refused in strings:
    no system sends them and they hide the number of decimals.
    """
    if isinstance(value, (bool, float)):
        raise AmountError(f"{what} must be a decimal number, not {type(value).__name__}")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise AmountError(f"{what} is not a finite number: {value}")
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _PLAIN.match(text) is None:
            raise AmountError(f"{what} is not a plain decimal number: {value!r}")
        number = Decimal(text)
    else:
        raise AmountError(f"{what} must be a number or a string, not {type(value).__name__}")
    if abs(number) >= Decimal(10) ** (digits - places):
        raise AmountError(f"{what} {number} has more than {digits - places} integer digits")
    exact = number.quantize(Decimal(1).scaleb(-places))
    if exact != number:
        raise AmountError(f"{what} {number} has more than {places} decimals")
    return exact


def fen_from_yuan(value: object, what: str = "amount") -> int:
    """Yuan (16,2) as int fen: ``"12.30"``, ``Decimal("12.3")`` or ``12`` -> 1230.

    Negative values are kept (a 2103 answer carries them); ``1.234`` is refused, while
    ``1.230`` is a whole fen and accepted.
    """
    if type(value) is str and (m := _FEN_TEXT.fullmatch(value)) is not None:
        sign, whole, cents = m.groups()
        fen = int(whole) * 100 + int((cents or "").ljust(2, "0"))
        return -fen if sign == "-" else fen
    return int(_decimal(value, 16, 2, what).scaleb(2))


def yuan_of(fen: int) -> Decimal:
    """Int fen as ``Decimal`` yuan with exactly 2 decimals, for a request: 1230 -> 12.30."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise AmountError(f"fen must be an int, not {type(fen).__name__}")
    return (Decimal(fen) / 100).quantize(FEN)


def yuan_text(fen: int) -> str:
    """``str(yuan_of(fen))`` by integers: 1230 -> "12.30", -5 -> "-0.05" (a file's cell)."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise AmountError(f"fen must be an int, not {type(fen).__name__}")
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


def count_of(value: object, what: str = "cnt") -> Decimal:
    """A count (16,4): an int quantity in a request, a decimal in an answer."""
    return _decimal(value, 16, 4, what)


def price_of(value: object, what: str = "pric") -> Decimal:
    """A unit price in yuan (16,6), as an answer's ``pric`` or ``pric_uplmt_amt``."""
    return _decimal(value, 16, 6, what)


def unit_price_yuan(amount_fen: int, quantity: int) -> Decimal:
    """A line's unit price in yuan (16,6) from its amount and quantity: what the POS did
    not give explicitly. Rounded half-even to 6 decimals (the field's precision)."""
    if quantity <= 0:
        raise AmountError("quantity must be positive")
    return (Decimal(amount_fen) / 100 / quantity).quantize(Decimal("0.000001"))


def ratio_of(value: object, what: str = "ratio") -> Decimal:
    """A proportion (5,4) such as ``selfpay_prop`` or ``pool_prop_selfpay``."""
    return _decimal(value, 5, 4, what)
