"""Schema versions and migrations: a journal written by the release before versions
existed (tests/data/journal-v1.sqlite3, made by the code at d43c31a) opens, is backed
up, upgraded, and keeps every row and its hash chain; a journal from the future is
refused before anything is written."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.journal.journal import SETTLED, SETTLING, Journal
from pos_plugin.journal.legs import UNREADABLE, legs_column
from pos_plugin.journal.schema import LATEST, JournalTooNew
from pos_plugin.models import LegKind

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


# --------------------------------------------------------------------------- v9: the legs

# Legs out of order, with names the sort and the JSON must both get right: code point
# order (upper case and "_" before lower case), a quote, a backslash, a newline, Chinese.
LEGS = [
    {"kind": "personal_account", "account_id": "PA-张伟", "amount": 4000, "payer_psn_no": "P1"},
    {"kind": "mutual_aid", "account_id": "PA-b", "amount": 700, "name": "李*"},
    {"kind": "mutual_aid", "account_id": "PA-B", "amount": 500},
    {"kind": "mutual_aid", "account_id": 'PA-"q"\\\n', "amount": 300},
    {"kind": "mutual_aid", "account_id": "PA-B", "amount": 90},
]
SORTED = ('[["mutual_aid","PA-\\"q\\"\\\\\\n",300],["mutual_aid","PA-B",90],'
          '["mutual_aid","PA-B",500],["mutual_aid","PA-b",700],'
          '["personal_account","PA-张伟",4000]]')  # fmt: skip
# Plans a journal edited by hand (or by a faulty release) may hold, as text.
ODD_PLANS = [
    '{"legs": [{"kind": "x", "account_id": "y", "amount": 1.5}]}',
    '{"legs": [{"kind": "x", "account_id": 7, "amount": 1}]}',
    '{"legs": [{"kind": "x", "amount": 1}]}',
    '{"legs": [true]}',
    '{"legs": 5}',
    '{"legs": {}}',
    '{"legs": null}',
    "{}",
    "[1]",
    "null",
    '{"legs": [{"kind": "x", "account_id": "y", "amount": -0}]}',
]


def _sell(j: Journal, ref: str, plan: dict[str, Any] | None) -> None:
    j.begin_sale(ref, f"h-{ref}")
    if plan is not None:
        j.update(ref, SETTLING, new_msgid=True, plan=plan)
        j.update(ref, SETTLED, total=plan["total"], cash=0)


def _sales(j: Journal) -> None:
    _sell(j, "L1", {"total": 5590, "legs": LEGS, "cash": 0})
    _sell(j, "L2", {"total": 100, "legs": [], "cash": 100})
    _sell(j, "L3", {"total": 100, "cash": 100})  # no legs member
    _sell(j, "L4", None)  # received only: no plan


def _legs_of(rows: Any) -> dict[str, str | None]:
    return dict(tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in rows)


def test_the_legs_column_is_written_with_the_plan_sorted_and_verified(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.sqlite3")
    try:
        _sales(j)
        got = _legs_of(j.query("SELECT sale_ref, legs FROM sales ORDER BY sale_ref"))
        assert got == {"L1": SORTED, "L2": "[]", "L3": "[]", "L4": None}
        assert legs_column({"legs": LEGS}) == SORTED  # the one function that derives it
        row = j.get("L1")
        assert row is not None and row.plan is not None and row.plan["legs"] == LEGS
        assert j.verify().ok
        # one leg's amount changed by hand: reconciliation would read it, verify says so
        j._db.execute("UPDATE sales SET legs = replace(legs, ',700]', ',7000]') "
                      "WHERE sale_ref = 'L1'")  # fmt: skip
        report = j.verify()
        assert not report.ok
        assert report.problems == (
            "sale L1: its legs column does not match its plan (reconciliation reads the legs "
            "from it)",
        )  # the row's digest does not cover the derived column: only this is reported
        j._db.execute("UPDATE sales SET legs = NULL WHERE sale_ref = 'L2'")
        assert len(j.verify().problems) == 2
    finally:
        j.close()


def _as_version_8(path: Path, plans: list[str]) -> None:
    """The file as the release before the legs column left it, with ``plans`` added by
    hand (rows whose digests no longer match: verify reports those, not their legs)."""
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE sales DROP COLUMN legs; DELETE FROM schema_history "
                     "WHERE version >= 9; PRAGMA user_version = 8;")  # fmt: skip
    for i, plan in enumerate(plans):
        db.execute("UPDATE sales SET plan = ? WHERE sale_ref = ?", (plan, f"X{i}"))
    db.commit()
    db.close()


def test_a_v8_journal_is_upgraded_and_its_legs_backfilled_as_live_writing_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    j = open_journal(path)
    _sales(j)
    for i in range(len(ODD_PLANS) + 1):
        _sell(j, f"X{i}", {"total": 1, "legs": [], "cash": 1})
    live = _legs_of(j.query("SELECT sale_ref, legs FROM sales WHERE sale_ref LIKE 'L%'"))
    j.close()
    _as_version_8(path, [*ODD_PLANS, '{"legs": ['])  # and a plan that is not JSON at all
    again = open_journal(path)
    try:
        assert again.upgrade_backup is not None and user_version(path) == LATEST == 9
        rows = again.query("SELECT sale_ref, plan, legs FROM sales")
        assert _legs_of((r[0], r[2]) for r in rows if r[0].startswith("L")) == live
        assert all(r[2] == legs_column(r[1]) for r in rows)
        odd = [r[2] for r in sorted(rows, key=lambda r: int(r[0][1:])) if r[0].startswith("X")]
        assert odd == [UNREADABLE] * 6 + ["[]", "[]", UNREADABLE, UNREADABLE, '[["x","y",0]]',
                       UNREADABLE]  # fmt: skip
        report = again.verify()
        assert report.problems == tuple(
            f"sale X{i}: the row was changed outside the journal" for i in range(len(ODD_PLANS) + 1)
        )  # the hand-edited plans only: every legs column agrees with its plan
    finally:
        again.close()


@pytest.mark.postgres
def test_a_v8_shared_journal_is_upgraded_and_its_legs_backfilled_as_python_derives_them() -> None:
    """PostgreSQL's backfill is SQL (journal/schema.py): it must build, byte for byte, the
    text ``legs_column`` writes, sorted the way Python sorts, for every plan."""
    from tests.pgschema import fresh_schema, sql

    with fresh_schema("legs") as url:
        j = Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T01")
        _sales(j)
        for i in range(len(ODD_PLANS)):
            _sell(j, f"X{i}", {"total": 1, "legs": [], "cash": 1})
        live = _legs_of(j.query("SELECT sale_ref, legs FROM sales WHERE sale_ref LIKE 'L%'"))
        j.close()
        assert live["L1"] == SORTED
        sql(url, "ALTER TABLE sales DROP COLUMN legs")
        sql(url, "DELETE FROM schema_version WHERE version >= 9")
        sql(url, "DELETE FROM schema_history WHERE version >= 9")
        for i, plan in enumerate(ODD_PLANS):
            sql(url, "UPDATE sales SET plan = %s WHERE sale_ref = %s", plan, f"X{i}")
        again = Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T01")
        try:
            assert sql(url, "SELECT max(version) FROM schema_version") == [(LATEST,)]
            rows = sql(url, "SELECT sale_ref, plan, legs FROM sales")
            assert _legs_of((r[0], r[2]) for r in rows if str(r[0]).startswith("L")) == live
            assert [(r[0], r[2]) for r in rows if r[2] != legs_column(r[1])] == []  # type: ignore[arg-type]
            report = again.verify()
            assert sorted(report.problems) == sorted(
                f"sale X{i}: the row was changed outside the journal" for i in range(len(ODD_PLANS))
            )
        finally:
            again.close()


@pytest.mark.postgres
def test_a_shared_journal_with_a_plan_that_is_not_json_is_not_upgraded_half() -> None:
    """PostgreSQL cannot read the legs of a plan that is not JSON without failing the
    statement (as version 6's backfill): the upgrade stops, and nothing of it stays."""
    from tests.pgschema import fresh_schema, sql

    with fresh_schema("legs") as url:
        j = Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T01")
        _sales(j)
        j.close()
        sql(url, "ALTER TABLE sales DROP COLUMN legs")
        sql(url, "DELETE FROM schema_version WHERE version >= 9")
        sql(url, "DELETE FROM schema_history WHERE version >= 9")
        sql(url, "UPDATE sales SET plan = '{\"legs\": [' WHERE sale_ref = 'L1'")
        with pytest.raises(Exception, match="json"):
            Journal(url, hmac_key=b"k", pharmacy_code="H11010500001", terminal_id="T01")
        assert sql(url, "SELECT max(version) FROM schema_version") == [(8,)]
        assert sql(url, "SELECT count(*) FROM information_schema.columns WHERE "
                        "table_name = 'sales' AND column_name = 'legs' "
                        "AND table_schema = current_schema()") == [(0,)]  # fmt: skip


def test_a_decoded_plan_derives_the_legs_its_json_text_does() -> None:
    """``_apply`` derives the column from the plan as given, ``verify`` from the text the
    table keeps: the two must agree for whatever a caller passes."""
    plans: list[Any] = [json.loads(p) for p in ODD_PLANS if p != "null"]
    plans += [{"legs": LEGS}, {"legs": tuple(LEGS)}, {"legs": [{**LEGS[0], "amount": True}]},
              {"legs": [{**LEGS[0], "kind": LegKind.PERSONAL_ACCOUNT}]}]  # fmt: skip
    for plan in plans:
        assert legs_column(plan) == legs_column(json.dumps(plan, ensure_ascii=False)), plan
    assert legs_column({"legs": tuple(LEGS)}) == SORTED
    assert legs_column({"legs": [{**LEGS[0], "amount": True}]}) == UNREADABLE
