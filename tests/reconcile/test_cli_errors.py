"""Bad input to `pos-plugin reconcile` ends in one sentence and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pos_plugin.reconcile.cli import reconcile_main

from .conftest import Seeded
from .seed import DAY


def _args(seeded: Seeded, *more: str) -> list[str]:
    s = seeded.store
    out = ["--date", DAY.isoformat(), "--ledger-url", s.url, "--token", s.pharmacy.api_token]
    for p in s.paths:
        out += ["--journal", p]
    return out + list(more)


@pytest.mark.parametrize("flag", ["--csv", "--html", "--json"])
def test_a_report_into_a_missing_folder_says_so_in_one_line(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    target = tmp_path / "no-such-folder" / "report.out"
    assert reconcile_main(_args(seeded, flag, str(target))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(target) in err and "folder exists" in err


def test_a_journal_that_is_not_a_database_says_so_in_one_line(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a journal\n" * 100, "utf-8")
    s = seeded.store
    argv = ["--date", DAY.isoformat(), "--ledger-url", s.url, "--token", s.pharmacy.api_token,
            "--pharmacy", s.pharmacy.code, "--journal", str(bogus)]  # fmt: skip
    assert reconcile_main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a database" in err and "Traceback" not in err
