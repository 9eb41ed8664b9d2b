"""Fen to yuan, for the edges only (receipts, reports, the demo)."""

from __future__ import annotations


def yuan(fen: int) -> str:
    """Format integer fen as a yuan string: 12345 -> '¥123.45'. Never via float."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
