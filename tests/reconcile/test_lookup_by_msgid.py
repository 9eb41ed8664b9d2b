"""Looking msgids up in the journals by the thousand (``journal.sources.rows_of_msgids``,
behind ``journal_lookup``, the manager's actions and the national day's states): every
row is found once, in chunks that keep each query's bound values within SQLite's
oldest limit, on real journal files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import pos_plugin.journal.sources as sources
from pos_plugin.journal.journal import Journal
from pos_plugin.journal.legs import legs_column
from pos_plugin.journal.sources import _MAX_PARAMS, rows_of_msgids
from pos_plugin.reconcile.day import journal_lookup

CODE = "H11010500001"
COLS = ("sale_ref, request_hash, state, msgid, business_date, created_at, updated_at, "
        "terminal_id, total, account_payable, personal_account, mutual_aid, cash, plan, legs, "
        "reversal_msgid")  # fmt: skip


def _journal(path: Path, till: str, n: int, first: int) -> list[str]:
    """A till's journal of ``n`` settled sales (every 100th failed, the last reversed)."""
    Journal(path, hmac_key=b"k", pharmacy_code=CODE, terminal_id=till).close()
    rows, msgids = [], []
    for i in range(first, first + n):
        msgid = f"{CODE}20240520{10 + i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}{i:04d}"
        legs = [{"kind": "personal_account", "account_id": "PA1", "amount": 100}]
        plan = json.dumps({"total": 100, "cash": 0, "legs": legs})
        state = "failed" if i % 100 == 0 else "settled"
        rows.append((f"S{i}", "h", state, msgid, "2024-05-20", "2024-05-20T10:00:00+08:00",
                     "2024-05-20T10:00:00+08:00", till, 100, 100, 100, 0, 0, plan,
                     legs_column(plan), None))  # fmt: skip
        msgids.append(msgid)
    with sqlite3.connect(path) as db:
        db.executemany(f"INSERT INTO sales ({COLS}) VALUES ({','.join('?' * 16)})", rows)
    return msgids


def test_thousands_of_msgids_are_found_once_each(tmp_path: Path) -> None:
    a = _journal(tmp_path / "a.sqlite3", "T01", 1500, 0)
    b = _journal(tmp_path / "b.sqlite3", "T02", 1500, 1500)
    paths = [str(tmp_path / "a.sqlite3"), str(tmp_path / "b.sqlite3")]
    asked = a + b + ["H11010500001209901010000000000"]  # one no journal has

    got = list(rows_of_msgids(paths, "SELECT msgid FROM sales WHERE msgid IN ({marks})",
                              reversed(asked)))  # fmt: skip
    assert sorted(r[0] for _, _, r in got) == sorted(a + b)
    assert {label for _, label, _ in got} == {"a.sqlite3", "b.sqlite3"}

    found, states = journal_lookup(paths, asked)
    failed = {m for m in a + b if int(m[-4:]) % 100 == 0}
    assert sorted(e.msgid for e in found) == sorted(set(a + b) - failed)
    assert states == dict.fromkeys(failed, "failed")
    assert all(e.legs == (("personal_account", "PA1", 100),) for e in found)


def test_no_query_binds_more_than_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three IN lists of the same msgids (as journal_lookup asks): each query binds at
    most ``_MAX_PARAMS`` values, however many msgids are asked (counted in the SQL
    SQLite runs, its values filled in, through its trace callback)."""
    msgids = _journal(tmp_path / "a.sqlite3", "T01", 2000, 0)
    bound: list[int] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kw: Any) -> sqlite3.Connection:
        con = connect(*args, **kw)
        con.set_trace_callback(lambda sql: bound.append(sql.count("'H1101")) if "IN (" in sql else None)
        return con

    monkeypatch.setattr(sources.sqlite3, "connect", traced)
    sql = ("SELECT msgid FROM sales WHERE msgid IN ({marks}) OR reversal_msgid IN ({marks}) "
           "OR msgid IN ({marks})")  # fmt: skip
    rows = list(rows_of_msgids([str(tmp_path / "a.sqlite3")], sql, msgids, lists=3))
    assert len(rows) == 2000
    assert len(bound) > 1 and max(bound) <= _MAX_PARAMS and sum(bound) == 3 * 2000
