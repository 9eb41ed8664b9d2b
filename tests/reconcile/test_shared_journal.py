"""Reconciling a store from a shared PostgreSQL journal gives what per-till files give.

The same multi-till day (clean sales and every fault a shared journal can hold)
is seeded twice, the way the agent writes it: once into one SQLite file per
till, once into one PostgreSQL journal for both tills (with another pharmacy's
rows beside them). Each store has its own sandbox ledger over HTTP. Real
PostgreSQL, one schema per test; skipped when no server answers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.journal import journal as J
from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.journal.journal import Journal
from pos_plugin.journal.legs import legs_column
from pos_plugin.journal.postgres import JournalUnavailable, SharedJournal
from pos_plugin.reconcile.cli import close_day_main, reconcile_main
from pos_plugin.reconcile.close import closed_record, closed_state, verify_closed_record
from pos_plugin.reconcile.day import reconcile_day
from pos_plugin.reconcile.errors import ReconcileError
from pos_plugin.reconcile.matching import Reconciliation
from tests.pgschema import fresh_schema, sql

from .conftest import seed_clean_day, seed_faults
from .seed import DAY, Store, at

pytestmark = pytest.mark.postgres

INDEX = {"T01": 1, "T02": 2}  # each till its own msgid digit, as configured on a real store
OTHER_PHARMACY = "H11010800002"


class FileStore(Store):
    """One SQLite journal file per till."""

    def index_of(self, till: str) -> int:
        return INDEX[till]


class SharedStore(FileStore):
    """Both tills in one PostgreSQL journal."""

    def __init__(self, tmp: Path, pg_url: str) -> None:
        self.pg_url = pg_url
        super().__init__(tmp)

    def journal_of(self, till: str) -> str | Path:
        return self.pg_url

    @property
    def paths(self) -> list[Any]:
        return [SharedJournal(self.pg_url, self.pharmacy.code)]


@dataclass
class Day:
    breaks: dict[str, str] = field(default_factory=dict)  # msgid -> expected kind
    resolved: list[str] = field(default_factory=list)


def seed_day(s: Store) -> Day:
    """seeded (conftest.py) without the cloned till: a shared journal cannot hold a msgid twice."""
    d = Day()
    seed_clean_day(s)
    seed_faults(s, d.breaks, d.resolved, {})
    return d


def other_pharmacy_rows(url: str) -> None:
    """Another store of the chain writes to the same journal, same terminal id, same day:
    two settled sales, and an intent whose outcome that store has not resolved yet."""
    j = Journal(url, hmac_key=b"o", pharmacy_code=OTHER_PHARMACY, terminal_id="T01", till_index=1)
    try:
        for n, hour in enumerate((9, 14, 15)):
            j.begin_sale(f"A{n}", "h", now=at(hour))
            j.update(f"A{n}", J.SETTLING, msgid=j.next_msgid(at(hour)), plan={"legs": []})
            if n < 2:
                j.update(f"A{n}", J.SETTLED, total=999, personal_account=999, mutual_aid=0, cash=0)
    finally:
        j.close()


@dataclass
class Pair:
    files: FileStore
    shared: SharedStore
    url: str
    day: Day


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with fresh_schema("rec") as url:
        for sub in ("files", "shared"):
            (tmp_path / sub).mkdir()
        files = FileStore(tmp_path / "files")
        shared = SharedStore(tmp_path / "shared", url)
        try:
            day = seed_day(files)
            assert seed_day(shared) == day  # the same msgids, breaks and lost outcomes
            other_pharmacy_rows(url)
            yield Pair(files, shared, url, day)
        finally:
            files.close()
            shared.close()


def comparable(rec: Reconciliation) -> dict[str, Any]:
    """The whole result with details, less where each row was read from and the
    ledger's own ids (each store has its own sandbox). Balanced pairs are listed in
    the order rows were read (file by file, or table order), so by msgid here."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("source", "ref")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    out = dict(strip(rec.as_dict(details=True)))
    out["matches"] = sorted(out["matches"], key=lambda m: (m["msgid"], m["kind"]))
    return out


def test_the_shared_journal_reconciles_like_one_file_per_till(pair: Pair) -> None:
    f, s = pair.files, pair.shared
    rec_f = reconcile_day(DAY, f.paths, f.client)
    # The bare URL holds two pharmacies: reconciling one narrows it to that one.
    rec_s = reconcile_day(DAY, [pair.url], s.client, s.pharmacy.code)

    # The day is not trivial: every break kind a shared journal can hold, a lost
    # outcome resolved by msgid, two tills.
    assert {b.msgid: b.kind.value for b in rec_s.breaks} == pair.day.breaks
    assert rec_s.resolved == tuple(pair.day.resolved)
    assert [t.terminal_id for t in rec_s.terminals] == ["T01", "T02"]
    # ... and the same as from the files: counts, totals, per till, breaks, notes.
    assert rec_s.digest() == rec_f.digest()
    assert rec_s.counts == rec_f.counts and rec_s.balanced_count == rec_f.balanced_count
    assert rec_s.journal.as_dict() == rec_f.journal.as_dict()
    assert rec_s.ledger.as_dict() == rec_f.ledger.as_dict()
    assert [t.as_dict() for t in rec_s.terminals] == [t.as_dict() for t in rec_f.terminals]
    assert comparable(rec_s) == comparable(rec_f)
    # The other pharmacy's rows (same terminal id, same day) were not read, and its
    # open intent was not "resolved" with this store's ledger client.
    assert rec_s.journal.sales_count == rec_f.journal.sales_count == 13
    other = sql(
        pair.url, "SELECT sale_ref, state FROM sales WHERE pharmacy_code = %s", OTHER_PHARMACY
    )
    assert sorted(other) == [("A0", "settled"), ("A1", "settled"), ("A2", "settling")]
    # Resolving wrote the lost outcome into T02's own chain; both chains verify.
    (lost,) = pair.day.resolved
    row = s.journals["T02"].by_msgid(lost)
    assert row is not None and row.state == J.SETTLED
    assert s.journals["T01"].verify().ok and s.journals["T02"].verify().ok


def test_terminal_narrows_the_shared_journal_like_giving_that_tills_file(pair: Pair) -> None:
    f, s = pair.files, pair.shared
    for till in ("T01", "T02"):
        only = SharedJournal(pair.url, s.pharmacy.code, (till,))
        rec_s = reconcile_day(DAY, [only], s.client, resolve=False)
        rec_f = reconcile_day(DAY, [f.journals[till].path], f.client, resolve=False)
        assert comparable(rec_s) == comparable(rec_f)
        given = {t.terminal_id: t.journal_given for t in rec_s.terminals}
        assert given == {"T01": till == "T01", "T02": till == "T02"}
        assert any(n.code == "journal_missing" for n in rec_s.notes)


def test_cli_reconciles_and_closes_the_store_on_the_shared_journal(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s, url = pair.shared, pair.url
    base = ["--date", DAY.isoformat(), "--ledger-url", s.url, "--token", s.pharmacy.api_token]
    # Two pharmacies in the journal: the CLI asks which.
    assert reconcile_main([*base, "--journal", url]) == 2
    assert "--pharmacy" in capsys.readouterr().err
    args = [*base, "--journal", url, "--pharmacy", s.pharmacy.code]
    out_json = tmp_path / "r.json"
    assert reconcile_main([*args, "--json", str(out_json)]) == 1  # breaks
    body = json.loads(out_json.read_text("utf-8"))
    rec_f = reconcile_day(DAY, pair.files.paths, pair.files.client)
    assert body["digest"] == rec_f.digest() and body["closed"] is None
    assert [t["terminal_id"] for t in body["terminals"]] == ["T01", "T02"]

    # Close: refused without a reason, refused for one till only, then one close for the store.
    assert close_day_main(args) == 1
    assert close_day_main([*args, "--terminal", "T01", "--reason", "x"]) == 2
    assert "whole store" in capsys.readouterr().err
    assert close_day_main([*args, "--reason", "中心确认补发对账单", "--by", "店长"]) == 0
    rows = sql(url, "SELECT pharmacy_code, business_date, break_count, reason FROM closed_days")
    assert rows == [(s.pharmacy.code, DAY.isoformat(), len(pair.day.breaks), "中心确认补发对账单")]
    rec = closed_record(url, DAY, pharmacy_code=s.pharmacy.code)
    assert rec is not None and verify_closed_record(rec) and rec["terminals"] == ["T01", "T02"]
    heads = {
        t: sql(
            url,
            "SELECT hash FROM events WHERE pharmacy_code = %s AND terminal_id = %s "
            "ORDER BY seq DESC LIMIT 1",
            s.pharmacy.code,
            t,
        )[0][0]
        for t in ("T01", "T02")
    }
    assert json.loads(rec["chain_head"]) == heads  # every till's head, hashed with the result
    rec["reason"] = "edited"
    assert not verify_closed_record(rec)

    # Every till of the store sees the day closed (so the sale service refuses it);
    # the other pharmacy's day and the next day are open.
    assert is_day_closed(s.journals["T01"], DAY) and is_day_closed(s.journals["T02"], DAY)
    assert not is_day_closed(s.journals["T01"], DAY + dt.timedelta(days=1))
    assert not is_day_closed(url, DAY, pharmacy_code=OTHER_PHARMACY)
    state = closed_state(s.paths, reconcile_day(DAY, s.paths, s.client))
    assert state is not None and state["record_intact"] and not state["changed_since_close"]
    assert close_day_main([*args, "--reason", "again"]) == 1  # closed once
    assert "already closed" in capsys.readouterr().err


def test_an_unreachable_shared_journal_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    code = reconcile_main(
        ["--date", DAY.isoformat(), "--journal", "postgresql://pos:s3cret@127.0.0.1:1/journal",
         "--ledger-url", "http://127.0.0.1:1", "--token", "t"]
    )  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    assert "postgresql://pos@127.0.0.1:1/journal cannot be reached" in err
    assert "s3cret" not in err


@pytest.mark.parametrize("column", ["plan", "legs"])
def test_a_plan_that_is_not_json_in_the_shared_journal_is_named(pair: Pair, column: str) -> None:
    s = pair.shared
    (ref,) = sql(
        pair.url,
        "SELECT sale_ref FROM sales WHERE pharmacy_code = %s AND state = 'settled' "
        "ORDER BY sale_ref LIMIT 1",
        s.pharmacy.code,
    )[0]
    if column == "plan":  # with the legs the journal (and an upgrade) derives from it
        sql(pair.url, "UPDATE sales SET plan = '{\"legs\": [', legs = %s WHERE sale_ref = %s",
            legs_column('{"legs": ['), ref)  # fmt: skip
    else:
        sql(pair.url, "UPDATE sales SET legs = '[[' WHERE sale_ref = %s", ref)
    with pytest.raises(ReconcileError) as err:
        reconcile_day(DAY, [pair.url], s.client, s.pharmacy.code, resolve=False)
    assert f"sale {ref}" in str(err.value) and "journal verify" in str(err.value)


def test_the_manager_tools_on_the_shared_journal(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reverse by msgid, close, reopen and close again on a shared journal: the actions
    join the tills' chains (the reversal the till's, the day's the pharmacy's ``manager``
    chain), and ``journal verify`` passes on every chain."""
    from pos_plugin.cli import main as pos_plugin_main
    from pos_plugin.reconcile.cli import reopen_day_main
    from pos_plugin.reconcile.close import day_history

    s, url = pair.shared, pair.url
    code = s.pharmacy.code
    args = ["--date", DAY.isoformat(), "--ledger-url", s.url, "--token", s.pharmacy.api_token,
            "--journal", url, "--pharmacy", code]  # fmt: skip
    b4 = s.journals["T02"].get("B4")
    assert b4 is not None and b4.msgid is not None and b4.state == J.FAILED
    s.clock.now = dt.datetime.now(J.SHANGHAI)
    assert reconcile_main([*args, "--reverse-msgid", b4.msgid]) == 1
    assert "已完成 done" in capsys.readouterr().out
    row = s.journals["T02"].get("B4")
    assert row is not None and row.state == J.REVERSED and row.reversal_msgid
    assert row.reversal_msgid[:12] == code and row.reversal_msgid[26] == "2"  # T02's own digit
    assert reconcile_main([*args, "--reverse-msgid", b4.msgid]) == 1
    assert "nothing was sent" in capsys.readouterr().out

    assert close_day_main([*args, "--reason", "中心核查中"]) == 0
    assert reopen_day_main(["--date", DAY.isoformat(), "--journal", url, "--pharmacy", code,
                            "--reason", "补录"]) == 0  # fmt: skip
    assert not is_day_closed(s.journals["T01"], DAY)
    assert close_day_main([*args, "--reason", "补录完成"]) == 0
    assert is_day_closed(s.journals["T02"], DAY)
    history = day_history([url], DAY, code)
    assert [(h["action"], h["reason"]) for h in history] == [
        ("closed", "中心核查中"), ("reopened", "补录"), ("closed", "补录完成")]
    assert day_history([url], DAY, OTHER_PHARMACY) == []
    assert sql(url, "SELECT DISTINCT terminal_id FROM day_history") == [("manager",)]
    capsys.readouterr()
    assert pos_plugin_main(["journal", "verify", url]) == 0
    out = capsys.readouterr().out
    assert f"{code} manager: " in out and f"{code} T02: " in out


def test_a_shared_journal_from_before_the_legs_column_is_refused_plainly(pair: Pair) -> None:
    """A shared journal is upgraded by the first till of this release that starts; until
    then reconciliation (which never migrates) says so instead of failing in SQL."""
    sql(pair.url, "ALTER TABLE sales DROP COLUMN legs")
    with pytest.raises(JournalUnavailable, match="before schema version 9"):
        reconcile_day(DAY, [pair.url], pair.shared.client, pair.shared.pharmacy.code,
                      resolve=False)  # fmt: skip
