"""The person-key table (journal schema v6, issue 15): written with the row, backfilled
from old rows exactly as it is written live, read by ``journal search`` (no LIKE scan),
checked by ``journal verify``; and on the shared PostgreSQL journal a search lists the
person's rows from every till of the store, each naming its till.

Real parts: SQLite files, the real PostgreSQL at 127.0.0.1 (one fresh schema per test).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pos_plugin.cli import main as cli_main
from pos_plugin.journal import person_keys
from pos_plugin.journal.journal import REFUSED, SETTLED, SETTLING, SHANGHAI, VALIDATED, Journal
from pos_plugin.journal.schema import LATEST
from tests.pgschema import fresh_schema, sql

KEY = b"k" * 32
PHARMACY = "H11010500001"
OTHER = "H11010800002"
ZHANG = "110105198005120319"  # the patient and card holder
LI = "11010119900307026X"  # his daughter: proxy buyer, and a family payer by psn_no
WANG = "110108198203150422"
T = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=SHANGHAI)


def journal(path: str | Path, terminal: str = "T01", code: str = PHARMACY, index: int = 0) -> Journal:
    return Journal(path, hmac_key=KEY, pharmacy_code=code, terminal_id=terminal, till_index=index)


def sell(
    j: Journal,
    ref: str,
    holder: str,
    *,
    buyer: str | None = None,
    family_psn: str | None = None,
    psn: str = "P-ZHANG",
    at: dt.datetime = T,
) -> None:
    """A sale as the service journals it: validated with the evidence, settling with the
    plan (a family payer's leg if given), settled."""
    ev: dict[str, Any] = {
        "buyer_role": "proxy" if buyer else "self",
        "operator": "cashier",
        "holder": j.evidence_of("resident_id", holder, "张伟"),
        "patient": j.evidence_of("resident_id", holder, "张伟"),
        "card_no_masked": "B******01",
    }
    if buyer:
        ev["buyer"] = j.evidence_of("resident_id", buyer, "李娜")
    legs: list[dict[str, Any]] = [
        {"kind": "personal_account", "account_id": "A1", "payer_psn_no": psn, "amount": 1000}
    ]
    if family_psn:
        legs.append(
            {"kind": "mutual_aid", "account_id": "A2", "payer_psn_no": family_psn, "amount": 500}
        )
    j.begin_sale(ref, "h-" + ref, now=at)
    j.update(
        ref, SETTLING, new_msgid=True, plan={"legs": legs, "total": 1500},
        via=[(VALIDATED, {"patient_psn_no": psn, "patient_id_hmac": j.person_key(holder),
                          "patient_id_masked": "110105********0319", "proxy": int(bool(buyer)),
                          "evidence": ev, "total": 1500})],
    )  # fmt: skip
    j.update(ref, SETTLED, settlement_id="S-" + ref, personal_account=1000, mutual_aid=500)


def refuse(j: Journal, ref: str, patient: str, holder: str, at: dt.datetime = T) -> None:
    """An impersonation refused: the patient's document with someone else's card."""
    j.begin_sale(ref, "h-" + ref, now=at)
    ev = {
        "buyer_role": "self",
        "patient": j.evidence_of("resident_id", patient, "张伟"),
        "holder": j.evidence_of("resident_id", holder, "王芳"),
    }
    j.update(ref, REFUSED, refusal_code="card_not_patients_own", evidence=ev,
             patient_id_hmac=j.person_key(holder))  # fmt: skip


def keys(j: Journal) -> set[tuple[str, str, str, str]]:
    return {
        (r["person"], r["terminal_id"], r["sale_ref"], r["role"])
        for r in j.query("SELECT * FROM person_keys")
    }


def search(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    code = cli_main(["journal", "search", *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return out.splitlines()


# --------------------------------------------------------------------------- SQLite


def test_keys_are_written_with_the_row_and_found_in_every_role(tmp_path: Path) -> None:
    j = journal(tmp_path / "j.sqlite3")
    sell(j, "S1", ZHANG, buyer=LI, family_psn="P-LI")
    sell(j, "S2", LI, psn="P-LI", at=T + dt.timedelta(minutes=1))  # Li Na's own card
    refuse(j, "R1", ZHANG, WANG, at=T + dt.timedelta(minutes=2))
    zk, lk, wk = (j.person_key(x) for x in (ZHANG, LI, WANG))
    assert keys(j) == {
        (zk, "T01", "S1", "holder"), (zk, "T01", "S1", "patient"), (lk, "T01", "S1", "buyer"),
        ("psn:P-LI", "T01", "S1", "family_payer"),
        (lk, "T01", "S2", "holder"), (lk, "T01", "S2", "patient"),
        (zk, "T01", "R1", "patient"), (wk, "T01", "R1", "holder"),
    }  # fmt: skip
    assert ZHANG not in str(j.query("SELECT * FROM person_keys"))  # keyed hashes only
    found = [(r.row.sale_ref, r.roles, r.till) for r in j.rows_of_person(LI)]
    # S1 twice over: her document as the buyer, and her account (by psn_no, learnt
    # from S2 where her own card was read) as a family payer.
    assert found == [("S1", ("buyer", "family_payer"), "T01"), ("S2", ("holder", "patient"), "T01")]
    assert [(r.row.sale_ref, r.roles) for r in j.rows_of_person(ZHANG.lower())] == [
        ("S1", ("holder", "patient")), ("R1", ("patient",))
    ]  # fmt: skip
    assert j.rows_of_person("110101200001010011") == []
    assert j.verify().ok


def test_the_search_reads_the_index_not_the_evidence(tmp_path: Path) -> None:
    j = journal(tmp_path / "j.sqlite3")
    sell(j, "S1", ZHANG)
    plan = j.query(
        "EXPLAIN QUERY PLAN SELECT s.* FROM person_keys k JOIN sales s ON s.sale_ref = "
        "k.sale_ref AND s.terminal_id = k.terminal_id WHERE k.person IN (?)",
        (j.person_key(ZHANG),),
    )
    text = " | ".join(str(tuple(r)) for r in plan)
    assert "SEARCH k USING" in text and "SCAN s" not in text, text


def _as_version_5(path: Path) -> None:
    """The file as the release before the person-key table left it."""
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE person_keys; ALTER TABLE sales DROP COLUMN legs;"
        "DELETE FROM schema_history WHERE version >= 6; PRAGMA user_version = 5;"
    )
    db.close()


def test_the_migration_backfills_the_same_keys_as_live_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.sqlite3"
    j = journal(path)
    sell(j, "S1", ZHANG, buyer=LI, family_psn="P-LI")
    refuse(j, "R1", ZHANG, WANG)
    j.begin_sale("X1", "h-X1", now=T)  # a row with no evidence yet: no keys
    live = keys(j)
    j.close()
    _as_version_5(path)
    # Read without upgrading (journal search never migrates): the old scan still finds.
    old = Journal(path, hmac_key=KEY, pharmacy_code=PHARMACY, terminal_id="T01", upgrade=False)
    assert [r.row.sale_ref for r in old.rows_of_person(ZHANG)] == ["S1", "R1"]
    assert old.verify().ok  # no table: nothing to compare
    old.close()
    again = journal(path)  # opened by the till: upgraded, backup made, keys backfilled
    assert again.upgrade_backup is not None and LATEST >= 6
    assert keys(again) == live
    assert again.verify().ok
    again.close()
    lines = search(capsys, str(path), "--key-file", _key_file(tmp_path), "--person", LI)
    assert lines[0] == "110101********026X: 1 record(s)"
    # (only as the buyer: her psn_no is not known here, no card of hers was ever read)
    assert "S1; proxy purchase settled; as proxy buyer; card B******01" in lines[1]
    assert lines[1].endswith("; till T01")


def _key_file(tmp_path: Path) -> str:
    f = tmp_path / "journal.key"
    f.write_bytes(KEY)
    return str(f)


def test_verify_reports_a_key_removed_or_added_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.sqlite3"
    j = journal(path)
    sell(j, "S1", ZHANG, buyer=LI)
    j.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM person_keys WHERE role = 'buyer'")
    db.execute(
        "INSERT INTO person_keys VALUES ('psn:P-X', '', 'T01', 'S1', 'family_payer')"
    )
    db.commit()
    db.close()
    assert cli_main(["journal", "verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "sale S1: its buyer key is missing from person_keys" in out
    assert "sale S1: person_keys holds a family_payer key its row never named" in out


# A property: the SQL backfill and the live derivation agree on any row shape, so a
# journal migrated from an older release is searched exactly like one written today.
_doc = st.fixed_dictionaries(
    {"doc_type": st.just("resident_id"), "number_masked": st.just("x"),
     "number_hmac": st.one_of(st.text("0123456789abcdef", min_size=1, max_size=8),
                              st.integers())}
)  # fmt: skip
_evidence = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["holder", "patient", "buyer", "operator"]),
        st.one_of(_doc, st.text(max_size=3), st.none(), st.integers()),
        max_size=4,
    ),
)
_leg = st.fixed_dictionaries(
    {"kind": st.sampled_from(["personal_account", "mutual_aid"]),
     "payer_psn_no": st.one_of(st.text("P0123", min_size=1, max_size=4), st.none(),
                               st.integers())}
)  # fmt: skip
_plan = st.one_of(
    st.none(), st.fixed_dictionaries({"legs": st.lists(_leg, max_size=3)}),
    st.fixed_dictionaries({"legs": st.just("none")}),
)  # fmt: skip


_sale_rows = st.lists(
    st.tuples(_evidence, st.one_of(st.none(), st.text("abc", max_size=3)), _plan),
    min_size=1, max_size=4,
)  # fmt: skip


def _sales_and_live_keys(
    rows: list[tuple[Any, Any, Any]],
) -> tuple[list[dict[str, Any]], set[tuple[str, str, str]]]:
    """The rows as the sales table holds them (JSON as text), and their keys as written live."""
    import json

    out, live = [], set()
    for i, (ev, hmac, plan) in enumerate(rows):
        row = {"pharmacy_code": "", "sale_ref": f"S{i}", "terminal_id": "T01",
               "evidence": None if ev is None else json.dumps(ev),
               "patient_id_hmac": hmac, "plan": None if plan is None else json.dumps(plan)}  # fmt: skip
        out.append(row)
        live |= {(f"S{i}", p, r) for p, r in person_keys.keys_of(row)}
    return out, live


# A NUL the POS sent in a name or the operator: PostgreSQL's json refuses \u0000.
_NUL = [({"operator": "\x00", "holder": {"number_hmac": "ab"}}, "ab", {"legs": [
    {"kind": "mutual_aid", "payer_psn_no": "P1", "name": "\x00"}]})]  # fmt: skip

_SALES = (
    "CREATE TABLE sales (pharmacy_code TEXT, sale_ref TEXT, terminal_id TEXT, evidence TEXT, "
    "patient_id_hmac TEXT, plan TEXT)"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_sale_rows)
@example(rows=_NUL)
def test_backfill_and_live_writing_derive_the_same_keys(
    rows: list[tuple[Any, Any, Any]],
) -> None:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute(_SALES)
    sales, live = _sales_and_live_keys(rows)
    db.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?)", [tuple(r.values()) for r in sales])
    for stmt in person_keys.SQLITE_MIGRATION.split(";"):
        db.execute(stmt)
    backfilled = {(r["sale_ref"], r["person"], r["role"]) for r in db.execute(
        "SELECT * FROM person_keys")}  # fmt: skip
    assert backfilled == live


@pytest.mark.postgres
def test_the_postgresql_backfill_derives_the_same_keys_too() -> None:
    """The same property against PostgreSQL's JSON functions (one schema, the example's
    tables recreated each time)."""
    import psycopg

    with fresh_schema("pkprop") as url, psycopg.connect(url, autocommit=True) as conn:

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(rows=_sale_rows)
        @example(rows=_NUL)
        def check(rows: list[tuple[Any, Any, Any]]) -> None:
            conn.execute("DROP TABLE IF EXISTS sales")
            conn.execute("DROP TABLE IF EXISTS person_keys")
            conn.execute(_SALES)
            sales, live = _sales_and_live_keys(rows)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO sales VALUES (%s, %s, %s, %s, %s, %s)",
                    [tuple(r.values()) for r in sales],
                )
            for stmt in person_keys.PG_MIGRATION.split(";"):
                conn.execute(stmt)
            got = conn.execute("SELECT sale_ref, person, role FROM person_keys").fetchall()
            assert set(got) == live

        check()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema("pkeys") as u:
        yield u


@pytest.mark.postgres
def test_a_search_on_the_shared_journal_lists_every_till_of_the_store(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t1, t2 = journal(pg_url, "T01", index=1), journal(pg_url, "T02", index=2)
    elsewhere = journal(pg_url, "T01", code=OTHER, index=1)  # another store, same terminal id

    def till_one() -> None:
        for n in range(5):
            sell(t1, f"A{n}", ZHANG, at=T + dt.timedelta(minutes=2 * n))

    def till_two() -> None:
        for n in range(5):
            refuse(t2, f"B{n}", ZHANG, WANG, at=T + dt.timedelta(minutes=2 * n + 1))

    writers = [threading.Thread(target=till_one), threading.Thread(target=till_two)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    sell(elsewhere, "A0", ZHANG, buyer=LI)
    assert {r.row.sale_ref for r in t1.rows_of_person(ZHANG)} == {f"A{n}" for n in range(5)}
    store = t1.rows_of_person(ZHANG, scope="store")
    assert [(r.row.sale_ref, r.till) for r in store] == [
        (f"{ab}{n}", till) for n in range(5) for ab, till in (("A", "T01"), ("B", "T02"))
    ]
    assert {r.pharmacy_code for r in store} == {PHARMACY}
    assert len(t1.rows_of_person(ZHANG, scope="all")) == 11
    for j in (t1, t2, elsewhere):
        assert j.verify().ok

    key = _key_file(tmp_path)
    lines = search(capsys, pg_url, "--key-file", key, "--person", ZHANG, "--pharmacy", PHARMACY)
    assert lines[0] == "110105********0319: 10 record(s)"
    assert [ln.rsplit("; ", 1)[1] for ln in lines[1:]] == ["till T01", "till T02"] * 5
    assert "B0; sale REFUSED (card_not_patients_own); as patient" in lines[2]
    everywhere = search(capsys, pg_url, "--key-file", key, "--person", ZHANG)
    assert everywhere[0].endswith(": 11 record(s)")
    assert sum(ln.endswith(f"till {OTHER} T01") for ln in everywhere) == 1
    assert sum(ln.endswith(f"till {PHARMACY} T02") for ln in everywhere) == 5
    assert ZHANG not in "\n".join(everywhere)
    assert cli_main(["journal", "verify", pg_url]) == 0
    capsys.readouterr()
    for j in (t1, t2, elsewhere):
        j.close()


@pytest.mark.postgres
def test_the_shared_journal_is_backfilled_once_by_the_first_till_upgraded(pg_url: str) -> None:
    t1, t2 = journal(pg_url, "T01", index=1), journal(pg_url, "T02", index=2)
    sell(t1, "A1", ZHANG, buyer=LI, family_psn="P-LI")
    refuse(t2, "B1", ZHANG, WANG)
    live = keys(t1)
    assert len(live) == 6
    t1.close()
    t2.close()
    sql(pg_url, "DROP TABLE person_keys")
    sql(pg_url, "DELETE FROM schema_version WHERE version >= 6")  # before v6 (and later)
    sql(pg_url, "DELETE FROM schema_history WHERE version >= 6")  # before v6 (and later)
    again = journal(pg_url, "T02", index=2)
    assert keys(again) == live
    assert [(r.row.sale_ref, r.till) for r in again.rows_of_person(ZHANG, scope="store")] == [
        ("A1", "T01"), ("B1", "T02")
    ]  # fmt: skip
    assert again.verify().ok
    again.close()


def test_a_payer_dropped_by_a_re_plan_stays_on_record_and_verify_agrees(tmp_path: Path) -> None:
    """Keys are only added (a till's role has no DELETE): a family payer in the first plan
    was asked to pay, and that plan is in the sale's events, so verify accepts the key."""
    j = journal(tmp_path / "j.sqlite3")
    sell(j, "S1", ZHANG, family_psn="P-LI")
    j.update("S1", SETTLED, plan={"legs": [], "total": 1500})  # as a re-plan would leave it
    assert ("psn:P-LI", "T01", "S1", "family_payer") in keys(j)
    assert j.verify().ok


@pytest.mark.postgres
def test_a_search_reads_a_shared_journal_not_yet_upgraded_without_changing_it(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``journal search`` never migrates (an auditor's role may only read): on a shared
    journal from before version 6 it falls back to the scan, store-wide still."""
    t1, t2 = journal(pg_url, "T01", index=1), journal(pg_url, "T02", index=2)
    sell(t1, "A1", ZHANG)
    refuse(t2, "B1", ZHANG, WANG, at=T + dt.timedelta(minutes=1))
    t1.close()
    t2.close()
    sql(pg_url, "DROP TABLE person_keys")
    sql(pg_url, "DELETE FROM schema_version WHERE version >= 6")  # before v6 (and later)
    lines = search(capsys, pg_url, "--key-file", _key_file(tmp_path), "--person", ZHANG,
                   "--pharmacy", PHARMACY)  # fmt: skip
    assert lines[0].endswith(": 2 record(s)")
    assert [ln.rsplit("; ", 1)[1] for ln in lines[1:]] == ["till T01", "till T02"]
    assert sql(pg_url, "SELECT to_regclass('person_keys') IS NULL") == [(True,)]
    assert sql(pg_url, "SELECT max(version) FROM schema_version") == [(5,)]


@pytest.mark.postgres
def test_a_search_of_a_database_without_a_journal_says_so(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["journal", "search", pg_url, "--key-file", _key_file(tmp_path),
                     "--person", ZHANG])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "not found (no table sales)" in err and "Traceback" not in err
    assert sql(pg_url, "SELECT to_regclass('sales') IS NULL") == [(True,)]  # nothing created
