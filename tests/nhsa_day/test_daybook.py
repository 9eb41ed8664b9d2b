"""The 3202 detail file byte for byte, and the result file's reader."""

from __future__ import annotations

import io
import zipfile

import pytest

from pos_plugin.ledger.nhsa.daybook import (
    DaybookError,
    DetailRow,
    ResultRow,
    detail_text,
    read_result,
    unzipped,
    zipped,
)

# Written by hand from 表150: 7 columns, TAB, `null` for empty, a reversed sale as two
# lines (forward flag 0, reverse with the 2103's setl_id, negative amounts, flag 1).
EXPECTED = (
    b"110105202612010905000000000003\t110105202612010905000000000002\t11000000000000000001"
    b"\t15.00\t0.00\t15.00\t0\n"
    b"110105202612011100000000000009\tnull\t11000000000000000001\t8.00\t0.00\t8.00\t0\n"
    b"110105202612011130000000000010\tnull\t11000000000000000001\t-8.00\t0.00\t-8.00\t1\n"
    b"110105202612011200000000000011\t110105202612011200000000000012\t11000000000000000003"
    b"\t1234.56\t0.00\t0.01\t0\n"
)


def test_detail_file_bytes() -> None:
    rows = [
        DetailRow("H11010500001202612011200000000", "110105202612011200000000000011",
                  "110105202612011200000000000012", "11000000000000000003", 123456, 0, 1, "0"),
        DetailRow("H11010500001202612011130000000", "110105202612011130000000000010", "",
                  "11000000000000000001", -800, 0, -800, "1"),
        DetailRow("H11010500001202612011100000000", "110105202612011100000000000009", "",
                  "11000000000000000001", 800, 0, 800, "0"),
        DetailRow("H11010500001202612010905000000", "110105202612010905000000000003",
                  "110105202612010905000000000002", "11000000000000000001", 1500, 0, 1500, "0"),
    ]  # fmt: skip
    assert detail_text(rows) == EXPECTED
    z = zipped("H11010500001_20261201_3202", EXPECTED)
    assert zipped("H11010500001_20261201_3202", EXPECTED) == z  # reproducible
    with zipfile.ZipFile(io.BytesIO(z)) as f:
        assert f.namelist() == ["H11010500001_20261201_3202.txt"]
    assert unzipped(z) == EXPECTED


def test_a_cell_with_a_tab_is_refused() -> None:
    with pytest.raises(ValueError):
        detail_text([DetailRow("m", "a\tb", "", "", 0, 0, 0, "0")])


def test_result_file_rows() -> None:
    text = ("P1\tnull\tnull\tH11010500001202612011300001000\t1\t0\t中心多\t7.00\t0.00\t7.00\n"
            "P2\tM2\tS2\tH2\t3\t0\t数据不一致\t5.00\t0.00\t5.00\n").encode()  # fmt: skip
    rows = list(read_result(zipped("r", text)))
    assert rows[0] == ResultRow("P1", "", "", "H11010500001202612011300001000", "1", "0",
                                "中心多", 700, 0, 700)  # fmt: skip
    assert rows[1].stmt_rslt == "3" and rows[1].medfee_sumamt == 500
    with pytest.raises(DaybookError):
        list(read_result(b"P1\tM\tS\n"))
    with pytest.raises(DaybookError):
        list(read_result(b"P\tM\tS\tH\t1\t0\tm\t1.234\t0\t0\n"))
    with pytest.raises(DaybookError):
        list(read_result(b"P\tM\tS\tH\t9\t0\tm\t1.00\t0\t0\n"))
