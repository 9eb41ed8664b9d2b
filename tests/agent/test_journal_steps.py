"""A sale's steps journaled in one transaction (the row read once, one UPDATE, the events
in one statement, each step's row digested as kept in memory) write exactly what a
statement per step wrote: the same row, the same events, the same hash chain."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pos_plugin.journal.journal as jm
from pos_plugin.journal import person_keys
from pos_plugin.journal.journal import (
    CARD_READ,
    RECEIVED,
    REFUSED,
    SETTLED,
    SETTLING,
    SHANGHAI,
    VALIDATED,
    Journal,
)

PHARMACY = "H11010500001"
PATIENT_ID = "110105198005120319"
AT = dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=SHANGHAI)

# The chain head of the sale below as the journal wrote it with a statement per step
# (before issue 17): the hash-chain format is unchanged, so the head is too.
GOLDEN_HEAD = "16ce4ff5ca5d8b354bc7d09dd6ca979cc51efe0ecaeb2a966e408afa855c6097"


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jm, "now_shanghai", lambda: AT)


def open_journal(path: Path) -> Journal:
    return Journal(path, hmac_key=b"k" * 32, pharmacy_code=PHARMACY, terminal_id="T01")


def rows(j: Journal, table: str, order: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in j._db.execute(f"SELECT * FROM {table} ORDER BY {order}")]


def test_the_chain_is_the_one_a_statement_per_step_wrote(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    j.begin_sale("G1", "h1", now=AT)
    ev = j.evidence_of("resident_id", PATIENT_ID, "张伟")
    validated = {"patient_psn_no": "P1", "patient_id_hmac": j.person_key(PATIENT_ID),
                 "proxy": True, "evidence": {"holder": ev}, "total": 1850,
                 "account_payable": 1850}  # fmt: skip
    plan = {"legs": [{"kind": "mutual_aid", "payer_psn_no": "P2", "amount": 100}], "名": "药"}
    row = j.update("G1", SETTLING, via=[(CARD_READ, {}), (VALIDATED, validated)],
                   new_msgid=True, plan=plan)  # fmt: skip
    assert (row.plan, row.evidence, row.proxy, row.state) == (plan, {"holder": ev}, True, SETTLING)
    j.update("G1", SETTLED, settlement_id="S1", personal_account=1750, mutual_aid=100, cash=0,
             result={"status": 200, "body": {"ok": True}})  # fmt: skip
    j.begin_sale("G2", "h2", now=AT)
    j.update("G2", REFUSED, via=[(CARD_READ, {})], refusal_code="wrong_card",
             result={"status": 422})  # fmt: skip
    assert [r[0] for r in rows(j, "events", "seq")][-1] == 8
    assert j._chain_head(j._db) == GOLDEN_HEAD
    assert j.verify().ok
    keys = [(r[0], r[4]) for r in rows(j, "person_keys", "person, role")]
    assert keys == [(j.person_key(PATIENT_ID), "holder"), ("psn:P2", "family_payer")]
    stored = j.get("G1")
    assert stored is not None and stored.result == {"status": 200, "body": {"ok": True}}


TEXT = st.text(max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
COLUMNS = {
    "settlement_id": st.none() | TEXT,
    "patient_psn_no": st.none() | TEXT,
    "patient_id_masked": st.none() | TEXT,
    "patient_id_hmac": st.none() | TEXT,
    "proxy": st.booleans() | st.integers(0, 1),
    "evidence": st.none() | st.dictionaries(TEXT, JSON, max_size=3),
    "total": st.none() | st.integers(-(2**62), 2**62),
    "cash": st.none() | st.integers(0, 10**9),
    "plan": st.none() | st.dictionaries(TEXT, JSON, max_size=3) | st.lists(JSON, max_size=3),
    "result": st.none() | st.dictionaries(TEXT, JSON, max_size=3),
    "refusal_code": st.none() | TEXT,
}
STEP = st.tuples(
    st.sampled_from([CARD_READ, VALIDATED, SETTLING, SETTLED, REFUSED]),
    st.fixed_dictionaries({}, optional=COLUMNS),  # type: ignore[arg-type]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=4))
def test_steps_in_one_transaction_equal_a_transaction_per_step(
    steps: list[tuple[str, dict[str, Any]]],
) -> None:
    with tempfile.TemporaryDirectory() as d:
        one, each = open_journal(Path(d) / "one.db"), open_journal(Path(d) / "each.db")
        try:
            for j in (one, each):
                j.begin_sale("R1", "h", now=AT)
            *via, (last, cols) = steps
            one.update("R1", last, via=via, **cols)
            for state, step_cols in steps:
                each.update("R1", state, **step_cols)
                # a step's digest of the row it kept in memory is the row's as stored
                assert each.verify().ok
            for table, order in (("sales", "sale_ref"), ("events", "seq")):
                assert rows(one, table, order) == rows(each, table, order)
            # person keys: those of the row the transaction leaves (as before issue 17); a
            # transaction per step also keeps a key a later step took away
            keys = set(rows(one, "person_keys", "person, role"))
            assert keys <= set(rows(each, "person_keys", "person, role"))
            final = dict(one._db.execute("SELECT * FROM sales").fetchone())
            assert {(p, r) for p, _, _, _, r in keys} == person_keys.keys_of(final)
            assert one.verify().ok
        finally:
            one.close()
            each.close()


def test_a_value_the_table_would_store_differently_is_refused(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    j.begin_sale("R1", "h", now=AT)
    for bad in ({"total": 12.5}, {"cash": "100"}, {"refusal_code": 7}, {"settlement_id": b"S"}):
        with pytest.raises(ValueError, match="takes"):
            j.update("R1", SETTLING, via=[(CARD_READ, {})], **bad)
    row = j.get("R1")
    assert row is not None and row.state == RECEIVED
    assert rows(j, "events", "seq")[-1][0] == 1 and j.verify().ok  # nothing written


def test_a_repeated_ref_is_answered_from_the_row_and_a_different_body_refused(
    tmp_path: Path,
) -> None:
    j = open_journal(tmp_path / "j.db")
    assert j.begin_sale("R1", "h", now=AT) is None
    again = j.begin_sale("R1", "h", now=AT + dt.timedelta(seconds=5))
    assert again is not None and (again.state, again.created_at) == (RECEIVED, AT.isoformat())
    with pytest.raises(jm.SaleRefReused):
        j.begin_sale("R1", "other", now=AT)
    assert len(rows(j, "events", "seq")) == 1 and j.verify().ok


def test_an_unknown_sale_is_a_key_error_and_writes_nothing(tmp_path: Path) -> None:
    j = open_journal(tmp_path / "j.db")
    with pytest.raises(KeyError):
        j.update("NOPE", SETTLED, cash=0)
    assert rows(j, "events", "seq") == [] and j.verify().ok
    assert isinstance(j._db, sqlite3.Connection) and not j._db.in_transaction
