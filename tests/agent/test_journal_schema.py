"""Schema versions and migrations: a journal written by the release before versions
existed (tests/data/journal-v1.sqlite3, made by the code at d43c31a) opens, is backed
up, upgraded, and keeps every row and its hash chain; a journal from the future is
refused before anything is written."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pos_plugin.journal.journal import SETTLED, Journal
from pos_plugin.journal.schema import LATEST, JournalTooNew

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "tests" / "data" / "journal-v1.sqlite3"


def open_journal(path: Path) -> Journal:
    return Journal(path, hmac_key=b"k" * 32, pharmacy_code="H11010500001", terminal_id="T01")


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_journal_of_the_previous_release_is_backed_up_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    shutil.copy(V1, path)
    assert user_version(path) == 0  # no version yet: schema 1
    j = open_journal(path)
    try:
        assert j.upgrade_backup is not None and j.upgrade_backup.parent == tmp_path
        assert j.upgrade_backup.name.startswith("journal.sqlite3.v1-")
        assert user_version(path) == LATEST
        history = j._db.execute("SELECT version, from_version FROM schema_history").fetchall()
        assert [tuple(r) for r in history] == [(v, 1) for v in range(2, LATEST + 1)]
        report = j.verify()
        assert (report.ok, report.sales, report.events) == (True, 3, 8)
        settled = j.get("V1-1")
        assert settled is not None and settled.state == SETTLED and settled.total == 3700
        j.begin_sale("V2-1", "hash-new")  # and it takes new sales
        assert j.verify().ok
    finally:
        j.close()
    # The backup is the old journal as it was: schema 1, its three sales.
    backup = open(j.upgrade_backup, "rb").read()  # noqa: SIM115 - read once
    assert backup[:16] == b"SQLite format 3\x00"
    with sqlite3.connect(j.upgrade_backup) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM sales").fetchone()[0] == 3
    j2 = open_journal(path)  # current now: no second backup
    assert j2.upgrade_backup is None
    j2.close()
    assert len(list(tmp_path.glob("*.bak"))) == 1


def test_a_new_journal_starts_at_the_latest_version_without_a_backup(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "new.sqlite3")
    j.close()
    assert j.upgrade_backup is None and user_version(tmp_path / "new.sqlite3") == LATEST
    assert list(tmp_path.glob("*.bak")) == []


def test_a_journal_from_the_future_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    shutil.copy(V1, path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    before = path.read_bytes()
    with pytest.raises(JournalTooNew, match=rf"schema version {LATEST + 1}, newer than"):
        open_journal(path)
    assert path.read_bytes() == before and list(tmp_path.glob("*.bak")) == []
    done = subprocess.run(
        [sys.executable, "-m", "pos_plugin.cli", "journal", "verify", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "newer than this pos-plugin" in done.stderr


@pytest.mark.postgres
def test_the_shared_journal_gets_a_schema_version_and_refuses_the_future() -> None:
    from pos_plugin.journal.postgres import PG_SCHEMA
    from tests.pgschema import fresh_schema, sql

    with fresh_schema("ver") as url:
        for stmt in PG_SCHEMA.split(";"):  # the tables as the previous release made them
            if stmt.strip():
                sql(url, stmt)
        j = Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T01")
        j.close()
        versions = sql(url, "SELECT version FROM schema_version ORDER BY 1")
        assert versions == [(v,) for v in range(1, LATEST + 1)]
        j = Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T02")
        j.close()  # a second till: nothing to do, nothing added
        assert sql(url, "SELECT count(*) FROM schema_version") == [(LATEST,)]
        sql(url, "INSERT INTO schema_version (version) VALUES (%s)", LATEST + 5)
        with pytest.raises(JournalTooNew, match=rf"schema version {LATEST + 5}"):
            Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T01")


def test_a_failed_migration_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pos_plugin.journal import schema as journal_schema
    from pos_plugin.journal.schema import JournalUpgradeFailed

    path = tmp_path / "journal.sqlite3"
    shutil.copy(V1, path)
    broken = (*journal_schema.SQLITE_MIGRATIONS[:-1], "ALTER TABLE no_such_table ADD COLUMN x")
    monkeypatch.setattr(journal_schema, "SQLITE_MIGRATIONS", broken)
    with pytest.raises(JournalUpgradeFailed, match="it is unchanged; a copy from before is"):
        open_journal(path)
    assert user_version(path) == 0
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "schema_history" not in tables and "sales" in tables


def test_journal_verify_reads_an_old_journal_without_upgrading_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    shutil.copy(V1, path)
    done = subprocess.run(
        [sys.executable, "-m", "pos_plugin.cli", "journal", "verify", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "3 sales, 8 events: chain intact" in done.stdout, done.stderr
    assert user_version(path) == 0 and list(tmp_path.glob("*.bak")) == []
