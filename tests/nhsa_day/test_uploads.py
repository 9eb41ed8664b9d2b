"""3505 after each settled sale and 3506 after each return, from the journal: a till that
dies between settling (or reversing) and uploading, or between uploading and recording the
acknowledgement, uploads each sale and each return exactly once after its restart; a
return never goes before its sale's 3505 is acknowledged; what is still owed (both kinds)
is counted by ``Journal.uploads_owed_count``, the figure /v1/health shows."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pos_plugin.journal.journal import Journal, count_uploads_owed
from pos_plugin.journal.postgres import PgDb, SharedJournal
from pos_plugin.ledger import errors as e
from pos_plugin.sale.service import SaleService, SaleSettings, msgid_time

from .harness import P1, Day, at, line

ROOT = Path(__file__).resolve().parents[2]
C1, C2 = "81234567890123456701", "81234567890123456702"


def _returns(d: Day) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(d.tmp / "nhsa.db")
    try:
        return db.execute("SELECT setl_id, medins_prod_sel_no, lines FROM sales_returns").fetchall()
    finally:
        db.close()


def _stored(d: Day) -> list[tuple[str, str]]:
    db = sqlite3.connect(d.tmp / "nhsa.db")
    try:
        return db.execute("SELECT rtal_docno, lines FROM sales_uploads ORDER BY 1").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("mode", ["after-settle", "after-upload"])
def test_a_killed_till_uploads_each_sale_exactly_once_after_restart(tmp_path: Path,
                                                                     mode: str) -> None:  # fmt: skip
    d = Day(tmp_path, tills=())
    try:
        path = tmp_path / "journal-T01.sqlite3"
        done = subprocess.run(
            [sys.executable, "-m", "tests.nhsa_day.crashing_till", d.server.endpoint,
             str(path), "K1", mode], cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 137, done.stderr
        assert len(_stored(d)) == (1 if mode == "after-upload" else 0)
        # the restarted till
        j = Journal(path, hmac_key=b"k" * 32, pharmacy_code=d.pharmacy.code, terminal_id="T01")
        try:
            assert j.uploads_owed_count() == 1
            svc = SaleService(SaleSettings(d.pharmacy.code, "T01"), j, d.client, None)  # type: ignore[arg-type]
            assert svc.send_owed_uploads() == 1
            assert svc.send_owed_uploads() == 0 and j.uploads_owed_count() == 0
            ((docno, _lines),) = _stored(d)
            assert docno == "K1"
            (attempts,) = j.query("SELECT attempts FROM sales_uploads")[0]
            assert attempts == (2 if mode == "after-upload" else 1)  # same msgid resent
        finally:
            j.close()
    finally:
        d.close()


def test_codes_reach_3505_and_a_failure_backs_off(tmp_path: Path) -> None:
    d = Day(tmp_path, tills=("T01",))
    try:
        d.sale("T01", "A1", P1, line("XA01AAA0001", 1000, qty=2).model_copy(
            update={"trace_codes": (C1, C2)}), when=at(9, 5))  # fmt: skip
        svc = d.services["T01"]
        d.server.faults.fail_next("3505", "系统繁忙")  # type: ignore[attr-defined]
        assert svc.send_owed_uploads() == 0
        j = d.journals["T01"]
        row = j.query("SELECT attempts, last_error, next_attempt_at, done_at FROM sales_uploads")[0]
        assert row[0] == 1 and "系统繁忙" in row[1] and row[3] is None
        assert svc.send_owed_uploads() == 0  # not due yet: backing off
        assert svc.send_owed_uploads(now=at(23, 59)) == 1
        ((_docno, lines),) = _stored(d)
        assert C1 in lines and C2 in lines
    finally:
        d.close()


def test_a_backend_without_3505_owes_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3", hmac_key=b"k" * 32, pharmacy_code="H11010500001",
                terminal_id="T01")  # fmt: skip
    try:
        svc = SaleService(SaleSettings("H11010500001", "T01"), j, object(), None)  # type: ignore[arg-type]
        assert svc.send_owed_uploads() == 0
    finally:
        j.close()
    assert e.LedgerError  # the typed errors are what a failed upload is kept as


@pytest.mark.parametrize("mode", ["after-reverse", "after-return-upload"])
def test_a_return_reaches_3506_exactly_once_across_a_killed_till(tmp_path: Path,
                                                                 mode: str) -> None:  # fmt: skip
    d = Day(tmp_path, tills=())
    try:
        path = tmp_path / "journal-T01.sqlite3"
        done = subprocess.run(
            [sys.executable, "-m", "tests.nhsa_day.crashing_till", d.server.endpoint,
             str(path), "R1", mode], cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 137, done.stderr
        assert len(_stored(d)) == 1  # the sale's 3505 went before the till died
        assert len(_returns(d)) == (1 if mode == "after-return-upload" else 0)
        j = Journal(path, hmac_key=b"k" * 32, pharmacy_code=d.pharmacy.code, terminal_id="T01")
        try:
            row = j.get("R1")
            assert row is not None and row.state == "reversed" and row.reversal_msgid
            assert j.uploads_owed_count() == 1 and j.uploads_owed_count("3506") == 1
            assert j.uploads_owed_count("3505") == 0
            returned = msgid_time(row.reversal_msgid).date()
            assert j.uploads_owed_count(day=returned) == 1
            assert j.uploads_owed_count(day=returned - dt.timedelta(days=1)) == 0
            svc = SaleService(SaleSettings(d.pharmacy.code, "T01"), j, d.client, None)  # type: ignore[arg-type]
            assert svc.send_owed_uploads() == 1
            assert svc.send_owed_uploads() == 0 and j.uploads_owed_count() == 0
            ((setl_id, sel_no, lines),) = _returns(d)
            assert sel_no == row.reversal_msgid
            assert setl_id == row.settlement_id  # the sale's own, as its 3505 carried it
            assert "81234567890123456799" in lines  # the returned pack's 追溯码
            (attempts,) = j.query("SELECT attempts FROM sales_uploads WHERE kind = '3506'")[0]
            assert attempts == (2 if mode == "after-return-upload" else 1)  # same msgid
        finally:
            j.close()
    finally:
        d.close()


def test_a_return_waits_for_its_sales_3505(tmp_path: Path) -> None:
    d = Day(tmp_path, tills=("T01",))
    try:
        sold = d.sale("T01", "A1", P1, line("XA01AAA0001", 1000), when=at(9, 5))
        d.reverse(sold, at(9, 30))
        j, svc = d.journals["T01"], d.services["T01"]
        assert j.uploads_owed_count() == 2  # the sale and its return
        # the same count on a bare connection to the till's file, as close-day reads it
        db = sqlite3.connect(j.path)
        try:
            assert count_uploads_owed(db, d.pharmacy.code, day=at(9).date()) == 2
            assert count_uploads_owed(db, d.pharmacy.code, "T01", kind="3506") == 1
        finally:
            db.close()
        d.server.faults.fail_next("3505", "系统繁忙")  # type: ignore[attr-defined]
        assert svc.send_owed_uploads(now=at(9, 31)) == 0
        assert _stored(d) == [] and _returns(d) == []
        # the return was not even begun: no msgid spent on it while its sale is unreported
        assert [tuple(r) for r in j.query("SELECT kind FROM sales_uploads")] == [("3505",)]
        assert j.uploads_owed_count() == 2
        assert svc.send_owed_uploads(now=at(23, 59)) == 2  # 3505 first, then the 3506
        assert len(_stored(d)) == 1 and len(_returns(d)) == 1 and j.uploads_owed_count() == 0
    finally:
        d.close()


def test_the_sandbox_refuses_a_return_of_a_sale_it_was_never_told_of(tmp_path: Path) -> None:
    d = Day(tmp_path, tills=("T01",))
    try:
        sold = d.sale("T01", "A1", P1, line("XA01AAA0001", 1000), when=at(9, 5))
        d.reverse(sold, at(9, 30))
        row = d.journals["T01"].get("A1")
        assert row is not None
        with pytest.raises(e.LedgerError) as got:
            d.client.sales_return_upload(d.journals["T01"].next_msgid(at(9, 31)), "A1",
                                         (row.result or {})["ledger_detail"],
                                         (row.plan or {})["lines"],
                                         reversal_msgid=row.reversal_msgid or "",
                                         returned_at=at(9, 31))  # fmt: skip
        assert "3505" in got.value.message and _returns(d) == []
    finally:
        d.close()


def test_the_outbox_on_the_shared_postgresql_journal(tmp_path: Path) -> None:
    from tests.pgschema import fresh_schema

    d = Day(tmp_path, tills=())
    try:
        with fresh_schema("uploads") as url:
            j = Journal(url, hmac_key=b"k" * 32, pharmacy_code=d.pharmacy.code, terminal_id="T01")
            try:
                d.journals["T01"] = j
                d.services["T01"] = svc = SaleService(SaleSettings(d.pharmacy.code, "T01"), j,
                                                      d.client, None)  # type: ignore[arg-type]  # fmt: skip
                sold = d.sale("T01", "P1", P1, line("XA01AAA0001", 1000), when=at(9, 5))
                d.reverse(sold, at(9, 30))
                assert j.uploads_owed_count() == 2 and j.uploads_owed_count(day=at(9).date()) == 2
                store = PgDb(SharedJournal(url), dict_rows=True)  # the store as a whole
                try:
                    assert count_uploads_owed(store, d.pharmacy.code, shared=True) == 2
                    assert count_uploads_owed(store, "H99999900001", shared=True) == 0
                finally:
                    store.close()
                assert svc.send_owed_uploads(now=at(9, 31)) == 2
                assert j.uploads_owed_count() == 0 and len(_returns(d)) == 1
            finally:
                del d.journals["T01"]
                j.close()
    finally:
        d.close()


def test_health_counts_sales_and_returns_owed(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import requests

    from pos_plugin.agent import ApiServer
    from pos_plugin.api import create_app

    d = Day(tmp_path, tills=("T01",))
    try:
        sold = d.sale("T01", "H1", P1, line("XA01AAA0001", 1000), when=at(9, 5))
        d.sale("T01", "H2", P1, line("XA01AAA0001", 500), when=at(9, 10))
        d.reverse(sold, at(9, 30))
        service = SimpleNamespace(journal=d.journals["T01"], card_left_in_reader=False)
        api = ApiServer(create_app(service, tokens={"pos": "p", "manager": "m"},  # type: ignore[arg-type]
                                   device_status=lambda: {}))  # fmt: skip
        api.start()
        try:
            def owed() -> int:
                return int(requests.get(f"{api.url}/v1/health", timeout=10).json()["uploads_owed"])

            assert owed() == 3  # two sales' 3505 and one return's 3506
            assert d.services["T01"].send_owed_uploads(now=at(9, 31)) == 3
            assert owed() == 0
        finally:
            api.stop()
    finally:
        d.close()
