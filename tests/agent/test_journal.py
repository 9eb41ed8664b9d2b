"""The journal on a real SQLite file: msgids, idempotent refs, the hash chain."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from pos_plugin.journal.journal import (
    SETTLED,
    SETTLING,
    SHANGHAI,
    Journal,
    SaleRefReused,
)

PHARMACY = "H11010500001"
PATIENT_ID = "110105198005120319"


def open_journal(path: Path) -> Journal:
    return Journal(path, hmac_key=b"k" * 32, pharmacy_code=PHARMACY, terminal_id="T01")


def test_durability_settings(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_msgids_never_repeat_across_restarts_and_clock_steps(tmp_path: Path) -> None:
    t = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=SHANGHAI)
    j = open_journal(tmp_path / "j.db")
    first = [j.next_msgid(t) for _ in range(3)]
    j.close()
    j = open_journal(tmp_path / "j.db")  # restart within the same second
    later = [j.next_msgid(t), j.next_msgid(t - dt.timedelta(hours=1))]  # clock set back
    ids = first + later
    assert len(set(ids)) == len(ids)
    assert all(len(m) == 30 and m.startswith(PHARMACY) for m in ids)
    assert ids[0] == f"{PHARMACY}202611231000000000"
    assert ids[-1] == f"{PHARMACY}202611231000000004"
    assert ids == sorted(ids)


def test_msgid_sequence_overflow_borrows_the_next_second(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    t = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=SHANGHAI)
    j._db.execute("INSERT INTO msgid_clock VALUES (1, '20261123100000', 999)")
    assert j.next_msgid(t) == f"{PHARMACY}202611231000010000"


def test_two_tills_of_one_pharmacy_never_share_a_msgid(tmp_path: Path) -> None:
    t = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=SHANGHAI)
    till0 = open_journal(tmp_path / "t0.db")
    till1 = Journal(
        tmp_path / "t1.db", hmac_key=b"k", pharmacy_code=PHARMACY, terminal_id="T02", till_index=1
    )
    a = {till0.next_msgid(t) for _ in range(50)}
    b = {till1.next_msgid(t) for _ in range(50)}
    assert not a & b
    assert min(b) == f"{PHARMACY}202611231000001000"
    with pytest.raises(ValueError, match="till_index"):
        Journal(
            tmp_path / "t2.db",
            hmac_key=b"k",
            pharmacy_code=PHARMACY,
            terminal_id="T",
            till_index=10,
        )


def test_same_ref_same_body_returns_the_row_different_body_is_refused(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    assert j.begin_sale("R1", "h1") is None
    again = j.begin_sale("R1", "h1")
    assert again is not None and again.state == "received"
    with pytest.raises(SaleRefReused):
        j.begin_sale("R1", "h2")


def test_intent_is_durable_before_the_outcome(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    j.begin_sale("R1", "h1")
    msgid = j.next_msgid()
    j.update("R1", SETTLING, msgid=msgid, plan={"legs": [{"account_id": "PA1", "amount": 100}]})
    # Another connection (a restarted agent) sees the intent immediately.
    other = open_journal(tmp_path / "j.db")
    (row,) = other.in_state(SETTLING)
    assert row.msgid == msgid and row.plan == {"legs": [{"account_id": "PA1", "amount": 100}]}


def test_verify_detects_an_edited_row_and_an_edited_event(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = open_journal(path)
    for ref in ("R1", "R2"):
        j.begin_sale(ref, "h")
        j.update(ref, SETTLED, total=1000, cash=0, personal_account=1000)
    report = j.verify()
    assert report.ok and report.events == 4 and report.sales == 2
    raw = sqlite3.connect(path)
    raw.execute("UPDATE sales SET cash = 1 WHERE sale_ref = 'R2'")
    raw.commit()
    report = j.verify()
    assert not report.ok
    assert report.problems == ("sale R2: the row was changed outside the journal",)
    raw.execute("UPDATE sales SET cash = 0 WHERE sale_ref = 'R2'")
    raw.execute("UPDATE events SET detail = '{}' WHERE seq = 2")
    raw.commit()
    report = j.verify()
    assert not report.ok and "event 2 (R1): the hash chain is broken" in report.problems


def test_evidence_is_masked_and_keyed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = open_journal(path)
    ev = j.evidence_of("resident_id", PATIENT_ID.lower()[:-1] + "9")
    assert ev["number_masked"] == "110105********0319"
    assert ev["number_hmac"] == j.person_key(PATIENT_ID)
    j.begin_sale("R1", "h")
    j.update("R1", SETTLED, evidence={"patient": ev}, patient_id_hmac=ev["number_hmac"])
    j.close()
    for name in ("j.db", "j.db-wal"):
        f = tmp_path / name
        if f.exists():
            assert PATIENT_ID.encode() not in f.read_bytes()


def test_pending_reversals(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    j.queue_reversal("R1", "M1", "M2")
    j.queue_reversal("R1", "M1", "M2")  # queued once
    (p,) = j.pending_reversals()
    assert (p.msgid, p.reversal_msgid, p.attempts) == ("M1", "M2", 0)
    later = dt.datetime.now(SHANGHAI) + dt.timedelta(minutes=5)
    j.reversal_attempt_failed("M1", "unreachable", later, escalate=True)
    assert j.pending_reversals(due_at=dt.datetime.now(SHANGHAI)) == []
    (p,) = j.pending_reversals(due_at=later)
    assert p.attempts == 1 and p.escalated and p.last_error == "unreachable"
    j.reversal_done("M1")
    assert j.pending_reversals() == []


def test_only_the_received_step_skips_its_fsync(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    seen: list[int] = []
    j._db.set_trace_callback(None)
    original = j._db.execute

    def spy(sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            seen.append(original("PRAGMA synchronous").fetchone()[0])
        return original(sql, *args)

    spied = {"execute": staticmethod(spy), "executemany": staticmethod(j._db.executemany)}
    j._db = type("Spy", (), spied)()  # type: ignore[assignment]
    j.begin_sale("R1", "h")
    j.update("R1", SETTLING, msgid="M")
    j.update("R1", SETTLED)
    assert seen == [1, 2, 2]  # NORMAL for received, FULL for the intent and the outcome
    assert original("PRAGMA synchronous").fetchone()[0] == 2
