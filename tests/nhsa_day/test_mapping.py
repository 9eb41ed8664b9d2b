"""3301: the store's SKU -> national catalogue mapping from a CSV, through the real
sandbox over HTTP. A bad file is refused whole (exit 2, every bad row named, nothing
sent, no traceback); a good one goes in batches and each row gets its own result."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.cli import main
from pos_plugin.ledger.nhsa import mapping

from .harness import Day

HEADER = "fixmedins_hilist_id,fixmedins_hilist_name,med_list_codg,list_type,begndate,enddate,spec\n"


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    d = Day(tmp_path, tills=())
    try:
        yield d
    finally:
        d.close()


def _mapped(d: Day) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(d.tmp / "nhsa.db")
    try:
        return db.execute("SELECT fixmedins_hilist_id, med_list_codg, fixmedins_hilist_name "
                          "FROM catalogue_mappings ORDER BY 1").fetchall()  # fmt: skip
    finally:
        db.close()


def _run(d: Day, path: Path) -> int:
    return main(["catalogue", "upload-mapping", "--file", str(path),
                 "--ledger-url", d.server.endpoint])  # fmt: skip


def test_a_good_file_is_mapped_row_by_row(day: Day, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    f = tmp_path / "mapping.csv"
    f.write_bytes(("\ufeff" + HEADER + "6901,阿莫西林胶囊 0.25g*24,XA01AAA0001,101,2026-01-01,"
                   "2099-12-31,0.25g\n8802,头孢克肟分散片,XB01BBB0001,,,,\n\n").encode())  # fmt: skip
    assert _run(day, f) == 0
    out = capsys.readouterr().out
    assert "row 2 6901: ok" in out and "row 3 8802: ok" in out and "2 of 2 rows accepted" in out
    assert _mapped(day) == [("6901", "XA01AAA0001", "阿莫西林胶囊 0.25g*24"),
                            ("8802", "XB01BBB0001", "头孢克肟分散片")]  # fmt: skip
    # a corrected file replaces the SKU's mapping, it does not add a second one
    f.write_text("sku,name,catalogue_code\n6901,阿莫西林胶囊,XA02AAA0002\n", encoding="gb18030")
    assert _run(day, f) == 0
    assert _mapped(day)[0] == ("6901", "XA02AAA0002", "阿莫西林胶囊")


def test_batches_and_a_row_the_platform_refuses(day: Day, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    codes = [c.med_list_codg for c in day.world.catalogue]
    lines = [f"S{n:04d},药{n},{codes[n % len(codes)]},101,2026-01-01,2099-12-31,\n"
             for n in range(250)]  # fmt: skip
    lines[120] = "S0120,不在目录的药,XZ99ZZZ9999,101,2026-01-01,2099-12-31,\n"
    f = tmp_path / "mapping.csv"
    f.write_text(HEADER + "".join(lines), encoding="utf-8")
    rows = mapping.read_mapping(f)
    assert [len(b) for b in mapping.batches(rows)] == [100, 100, 50]
    before = day.client.platform.posts.get("3301", 0)
    results = mapping.upload(day.client.catalogue_mapping_upload, rows)
    # 3 batches; the refused one again row by row (100)
    assert day.client.platform.posts.get("3301", 0) - before == 3 + 100
    bad = [r for r in results if not r.ok]
    assert [(r.row, r.sku) for r in bad] == [(122, "S0120")] and "XZ99ZZZ9999" in bad[0].message
    assert len(results) == 250 and len(_mapped(day)) == 249
    assert _run(day, f) == 1  # the command says so too, naming the row
    assert "row 122 S0120: refused" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "says"), [
    ("", "empty"),
    ("fixmedins_hilist_id,fixmedins_hilist_name\n1,a\n", "missing column(s) med_list_codg"),
    ("sku,name,catalogue_code,colour\n1,a,XA01AAA0001,red\n", "unknown column(s) colour"),
    (HEADER, "no rows"),
    (HEADER + "6901,药,XA01AAA0001,101,2026-13-01,2099-12-31,\n", "row 3 (6901): begndate"),
    (HEADER + "6901,药,XA01AAA0001,101,2026-01-01,2025-12-31,\n", "enddate is before begndate"),
    (HEADER + "6901,药,XA01AAA0001\n", "row 3: 3 values for 7 columns"),
    (HEADER + "6901,,XA01AAA0001,,,,\n", "row 3 (6901): fixmedins_hilist_name is empty"),
    (HEADER + "6901,药,XA01AAA0001,西药,,,\n", "list_type '西药' is not a code"),
    (HEADER + "6901,药,XA01AAA0001,,,,\n7702,药,XA01AAA0001,,,,\n6901,药,XB01BBB0001,,,,\n",
     "row 5 (6901): SKU 6901 is already mapped in row 3"),
    (HEADER + f"{'9' * 31},药,XA01AAA0001,,,,\n", "longer than 30"),
    (HEADER + "6901,药\x00,XA01AAA0001,,,,\n", "fixmedins_hilist_name holds a control character"),
    (HEADER + f"6901,{'x' * 140_000},XA01AAA0001,,,,\n", "row 3: not readable as CSV"),
])  # fmt: skip
def test_a_bad_file_is_refused_whole_and_nothing_is_sent(
    day: Day, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    f = tmp_path / "mapping.csv"
    # a good row first (row 2): it must not be sent either
    f.write_text(content.replace(HEADER, HEADER + "1111,好药,XA01AAA0001,,,,\n", 1)
                 if content.startswith(HEADER) and content != HEADER else content,
                 encoding="utf-8")  # fmt: skip
    assert _run(day, f) == 2
    err = capsys.readouterr().err
    assert says in err and str(f) in err, err
    assert "Traceback" not in err
    assert _mapped(day) == [] and day.server.store is not None


def test_no_file_and_an_unreachable_platform(day: Day, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert _run(day, tmp_path / "absent.csv") == 2
    assert "cannot read" in capsys.readouterr().err
    f = tmp_path / "mapping.csv"
    f.write_text(HEADER + "6901,药,XA01AAA0001,,,,\n", encoding="utf-8")
    assert main(["catalogue", "upload-mapping", "--file", str(f),
                 "--ledger-url", "http://127.0.0.1:9/"]) == 3  # fmt: skip
    out = capsys.readouterr().out
    assert "row 2 6901: refused 未对照: not sent" in out and "0 of 1" in out
