"""The 3202 detail lines as the database cuts them out of the journaled 2102 answers:
the same lines from a till's SQLite file and from a shared PostgreSQL journal, rows
that are no national settlement left out, and a result that is not JSON named."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.journal.journal import Journal
from pos_plugin.journal.sources import of_pharmacy
from pos_plugin.ledger.nhsa.daybook import DetailRow
from pos_plugin.reconcile.errors import ReconcileError
from pos_plugin.reconcile.national import detail_rows

CODE, DAY = "H11010500001", dt.date(2024, 5, 20)
M1, M2, M3, M4, M5 = (f"{CODE}20240520{h:02d}00000001" for h in (9, 10, 11, 12, 13))
R2 = f"{CODE}202405201030000002"
COLS = ("sale_ref", "request_hash", "state", "msgid", "settlement_id", "business_date",
        "created_at", "updated_at", "terminal_id", "patient_psn_no", "total", "result",
        "reversal_msgid", "reversal_id")  # fmt: skip


def _result(setl_id: str, medfee: int, acct: int, **more: Any) -> str:
    setl = {"setl_id": setl_id, "mdtrt_id": "MD" + setl_id, "psn_no": "P1",
            "medfee_sumamt": medfee, "fund_pay_sumamt": 0, "acct_pay": acct,
            "insutype": "310", "clr_type": "41", "clr_optins": "110105", **more}  # fmt: skip
    return json.dumps({"status": "settled", "receipt": ["..."],
                       "ledger_detail": {"setlinfo": setl, "detlcutinfo": []}})  # fmt: skip


def _rows(bad: bool) -> list[tuple[Any, ...]]:
    at = "2024-05-20T09:00:00+08:00"
    return [
        ("A", "h", "settled", M1, "S1", "2024-05-20", at, at, "T01", "P1", 1500,
         _result("S1", 1500, 1200), None, None),
        ("B", "h", "reversed", M2, "S2", "2024-05-20", at, at, "T01", "P1", 800,
         _result("S2", 800, 800, psn_no=None), R2, "S2R"),  # psn_no from the row
        ("C", "h", "settled", M3, "E3", "2024-05-20", at, at, "T01", "P1", 500,
         json.dumps({"status": "settled"}), None, None),  # an own-API sale: not national
        ("D", "h", "failed", M4, None, "2024-05-20", at, at, "T01", "P1", 500, None, None,
         None),
        ("E", "h", "settled", M5, "S5", "2024-05-20", at, at, "T01", "P1", 300,
         "{not json" if bad else None, None, None),
    ]  # fmt: skip


EXPECTED = [
    DetailRow(M1, "S1", "MDS1", "P1", 1500, 0, 1200, "0", "310", "41", "110105"),
    DetailRow(M2, "S2", "MDS2", "P1", 800, 0, 800, "0", "310", "41", "110105"),
    DetailRow(R2, "S2R", "MDS2", "P1", -800, 0, -800, "1", "310", "41", "110105"),
]


def _sqlite(tmp_path: Path, bad: bool) -> str:
    path = tmp_path / f"journal-{bad}.sqlite3"
    Journal(path, hmac_key=b"k", pharmacy_code=CODE, terminal_id="T01").close()
    con = sqlite3.connect(path)
    con.executemany(f"INSERT INTO sales ({', '.join(COLS)}) VALUES "
                    f"({', '.join('?' * len(COLS))})", _rows(bad))  # fmt: skip
    con.commit()
    con.close()
    return str(path)


def test_detail_lines_from_a_till_file(tmp_path: Path) -> None:
    assert detail_rows([_sqlite(tmp_path, False)], DAY) == EXPECTED


def test_a_result_that_is_not_json_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReconcileError, match=M5):
        detail_rows([_sqlite(tmp_path, True)], DAY)


@pytest.mark.parametrize("bad", [False, True])
def test_the_same_lines_from_a_shared_postgresql_journal(bad: bool) -> None:
    from tests.pgschema import fresh_schema, sql

    with fresh_schema("detail") as url:
        Journal(url, hmac_key=b"k", pharmacy_code=CODE, terminal_id="T01", till_index=1).close()
        for r in _rows(bad):
            sql(url, f"INSERT INTO sales (pharmacy_code, {', '.join(COLS)}) VALUES "
                     f"(%s, {', '.join(['%s'] * len(COLS))})", CODE, *r)  # fmt: skip
        source = of_pharmacy(url, CODE)
        if bad:
            with pytest.raises(ReconcileError, match=M5):
                detail_rows([source], DAY)
        else:
            assert detail_rows([source], DAY) == EXPECTED
