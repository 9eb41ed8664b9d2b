"""The acceptance contract: ``pos-plugin reconcile --ledger-kind nhsa`` against the
sandbox at a URL, as the world's first pharmacy over ``plain``; exit 0 balanced, 1 breaks;
``--reverse-msgid`` is the break's one action."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.cli import main

from .harness import DAY, P1, P2, Day, at, line


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    d = Day(tmp_path)
    try:
        yield d
    finally:
        d.close()


def _args(d: Day, *more: str) -> list[str]:
    args = ["reconcile", "--date", DAY.isoformat(), "--ledger-kind", "nhsa",
            "--ledger-url", d.server.endpoint]  # fmt: skip
    for p in d.paths:
        args += ["--journal", p]
    return args + list(more)


def test_balanced_day_exits_0_and_writes_the_csv(day: Day, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    day.sale("T01", "A1", P1, line("XA01AAA0001", 1500), when=at(9, 5))
    day.sale("T02", "B1", P2, line("XB01BBB0001", 2200), when=at(9, 40))
    out = tmp_path / "day.csv"
    assert main(_args(day, "--csv", str(out))) == 0
    assert "平账 BALANCED" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")


def test_breaks_exit_1_and_the_action_repairs_them(day: Day, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    day.sale("T01", "A1", P1, line("XA01AAA0001", 1500), when=at(9, 5))
    late = day.late_2102("T02", "B1", P2, line("XB01BBB0001", 700), when=at(13, 0))
    out = tmp_path / "day.csv"
    assert main(_args(day, "--csv", str(out), "--world", str(_world()))) == 1
    text = capsys.readouterr().out
    assert late.msgid in text and "reverse_2601" in text
    rows = list(csv.reader(out.open(encoding="utf-8-sig")))
    assert any(late.msgid in r for r in rows)
    assert main(_args(day, "--reverse-msgid", late.msgid)) == 0
    assert "已完成 done" in capsys.readouterr().out
    assert main(_args(day, "--reverse-msgid", late.msgid)) == 0  # done before: nothing sent
    assert "nothing was sent" in capsys.readouterr().out
    assert main(_args(day, "--reverse-msgid", "H11010500001202612011300009999")) == 2  # no break
    assert main(_args(day)) == 0


def _world() -> Path:
    return Path(__file__).resolve().parents[2] / "pos_plugin" / "data" / "world.example.json"
