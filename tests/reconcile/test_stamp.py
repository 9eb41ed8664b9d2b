"""A reversal msgid's business date and time (``reconcile.day._stamp``): read by fixed
widths, yyyyMMddHHmmss after the 12-character pharmacy code, in Asia/Shanghai."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.ledger.own.schemas import msgid_stamp
from pos_plugin.reconcile.day import _stamp

SHANGHAI = ZoneInfo("Asia/Shanghai")
CODE = "H11010500001"


def _by_widths(s: str) -> tuple[str, str]:
    """The reference: 14 ASCII digits cut at fixed widths, or nothing."""
    if len(s) != 14 or not all("0" <= c <= "9" for c in s):
        return "", ""
    parts = (s[0:4], s[4:6], s[6:8], s[8:10], s[10:12], s[12:14])
    try:
        t = dt.datetime(*map(int, parts), tzinfo=SHANGHAI)
    except ValueError:
        return "", ""
    return t.date().isoformat(), t.isoformat()


@given(st.datetimes(min_value=dt.datetime(1993, 1, 1), max_value=dt.datetime(2099, 12, 31)))
def test_a_msgid_gives_the_date_and_time_it_was_made(t: dt.datetime) -> None:
    t = t.replace(microsecond=0)
    msgid = f"{CODE}{t:%Y%m%d%H%M%S}0001"
    day, at = _stamp(msgid)
    assert day == t.date().isoformat()
    assert at == t.replace(tzinfo=SHANGHAI).isoformat()
    assert at.endswith("+08:00")


@given(st.text(alphabet="0123456789 T:-+.１٣", min_size=0, max_size=16))
def test_any_stamp_reads_as_its_fixed_widths_or_as_nothing(stamp: str) -> None:
    assert _stamp(CODE + stamp + "0001") == _by_widths((stamp + "0001")[:14])


def test_impossible_instants_and_short_msgids_read_as_nothing() -> None:
    for stamp in ("20261301000000", "20260230120000", "20261201250000", "2026120110", ""):
        assert _stamp(CODE + stamp) == ("", "")
    assert _stamp(f"{CODE}20261201235959") == ("2026-12-01", "2026-12-01T23:59:59+08:00")


def test_msgid_stamp_itself_refuses_what_is_not_14_ascii_digits() -> None:
    """The check is in ``schemas.msgid_stamp``, for every caller: ``fromisoformat`` alone
    reads '2026120110' as 10:00 on 2026-12-01."""
    for stamp in ("2026120110", "202612011000000", "2026120110000Z", "２０２６１２０１１０００００", ""):
        with pytest.raises(ValueError):
            msgid_stamp(stamp)
    assert msgid_stamp("20261201100000") == dt.datetime(2026, 12, 1, 10, 0, 0)
