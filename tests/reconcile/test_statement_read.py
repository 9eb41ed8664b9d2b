"""Reading the day's statement fast without reading it wrong.

The compact format, the one-page look-ahead (``Link: rel="next"``), and a ledger of
an older version (no compact format, no cursor, pages capped at 200) must all give
exactly the rows the full format gives. The older ledger is a real HTTP server on
127.0.0.1 in front of the sandbox that answers the way such a ledger would.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from pos_plugin.gcpause import gc_paused
from pos_plugin.journal.legs import UNREADABLE, legs_column
from pos_plugin.ledger.errors import LedgerError
from pos_plugin.ledger.own.client import Answer, HttpLedgerClient
from pos_plugin.reconcile.day import (
    JournalSide,
    read_journal,
    reconcile_day,
    rows_entries,
    statement_entries,
)
from pos_plugin.reconcile.errors import ReconcileError
from pos_plugin.reconcile.matching import Entry

from .conftest import seed_clean_day
from .seed import DAY, Store, at

Query = dict[str, str]


class Relay:
    """A ledger in front of the sandbox, a real HTTP server on 127.0.0.1.

    ``ask(query)`` gives the query to pass on, or ``(status, body)`` to answer itself;
    ``tamper(query, body, link)`` may change a 200 answer's body and ``Link`` header.
    Without hooks it passes everything on as it is. Every request's query is kept in
    ``requests``; after 50 it answers 500, so a client that never stops fails."""

    def __init__(
        self,
        upstream: str,
        *,
        ask: Callable[[Query], Query | tuple[int, Any]] | None = None,
        tamper: Callable[[Query, Any, str | None], tuple[Any, str | None]] | None = None,
    ) -> None:
        self.requests: list[dict[str, list[str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                owner.requests.append(parse_qs(url.query))
                if len(owner.requests) > 50:
                    self._send(500, {"code": "loop", "message": "too many requests"}, None)
                    return
                query = {k: v[0] for k, v in owner.requests[-1].items()}
                forward = ask(query) if ask is not None else query
                if isinstance(forward, tuple):
                    self._send(*forward, None)
                    return
                up = requests.get(
                    f"{upstream}{url.path}?{urlencode(forward)}",
                    headers={"Authorization": self.headers["Authorization"]},
                    timeout=10,
                )
                body, link = up.json(), up.headers.get("Link")
                if tamper is not None and up.status_code == 200:
                    body, link = tamper(query, body, link)
                self._send(up.status_code, body, link)

            def _send(self, status: int, body: Any, link: str | None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if link:
                    self.send_header("Link", link)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def older_ledger(
    upstream: str, cap: int = 200, rewrite: Callable[[Any], Any] | None = None
) -> Relay:
    """A ledger of an older version: it knows neither ``format`` nor ``after``, sends
    no ``Link``, and refuses ``page_size`` over ``cap``. ``rewrite`` may change each
    answer's body (to serve a malformed page)."""

    def ask(query: Query) -> Query | tuple[int, Any]:
        if int(query.get("page_size", "200")) > cap:
            return 422, {"code": "invalid_request", "field": "page_size",
                         "message": f"page_size must be at most {cap}"}  # fmt: skip
        return {k: v for k, v in query.items() if k in ("page", "page_size")}

    def tamper(query: Query, body: Any, link: str | None) -> tuple[Any, str | None]:
        return (rewrite(body) if rewrite is not None else body), None

    return Relay(upstream, ask=ask, tamper=tamper)


@pytest.fixture
def day(store: Store) -> Store:
    seed_clean_day(store)
    # a few more sales, so that small pages make several of them
    for i in range(5):
        store.sale("T02", f"C{i}", "11000000000000000006", 500 + i, 500 + i, at(16, i))
    return store


@pytest.fixture
def older(day: Store) -> Iterator[Callable[..., Relay]]:
    made: list[Relay] = []

    def make(**kw: Any) -> Relay:
        made.append(older_ledger(day.url, **kw))
        return made[-1]

    yield make
    for o in made:
        o.close()


def _same_times(entries: list[Entry]) -> list[Entry]:
    """The full format's times go through datetime (``...:01+08:00``); the compact one
    keeps the ledger's text (``...:01.000+08:00``): the same instant."""
    return [e._replace(created_at=dt.datetime.fromisoformat(e.created_at)) for e in entries]


def _client(url: str, token: str) -> HttpLedgerClient:
    return HttpLedgerClient(url, token, retries=0)


def test_the_compact_statement_gives_the_entries_and_totals_of_the_full_one(day: Store) -> None:
    code = day.pharmacy.code
    full = day.client.statement(code, DAY)
    compact = day.client.statement_compact(code, DAY)
    assert len(full.rows) == 11  # 5 + 5 sales, 1 reversal
    assert compact.totals == full.totals
    assert _same_times(statement_entries(compact)) == _same_times(statement_entries(full))
    # Reversals stay negative, with their sale's legs, in both.
    rev = [e for e in statement_entries(compact) if e.kind == "reversal"]
    assert len(rev) == 1 and rev[0].total == -2600 and rev[0].legs[0][2] == 2600


def test_small_pages_are_read_one_ahead_and_none_is_lost_or_repeated(day: Store) -> None:
    code = day.pharmacy.code
    client = _client(day.url, day.pharmacy.api_token)
    client.statement_page_size = 2
    seen: list[Answer] = []
    client.on_answer.append(seen.append)
    try:
        got = client.statement_compact(code, DAY)
    finally:
        client.close()
    full = day.client.statement(code, DAY)
    assert [r[0] for r in got.rows] == [r.msgid for r in full.rows]
    assert len(seen) == 6  # 11 rows in pages of 2
    # every page but the last named the next one, and that is what was asked for next
    for this, following in itertools.pairwise(seen):
        assert following.path_url == this.next_link
    assert seen[-1].next_link == ""


def test_an_older_ledger_is_read_in_the_full_format_with_smaller_pages(
    day: Store, older: Callable[..., Relay]
) -> None:
    code = day.pharmacy.code
    old = older(cap=200)
    client = _client(old.url, day.pharmacy.api_token)
    try:
        got = client.statement_compact(code, DAY)
    finally:
        client.close()
    full = day.client.statement(code, DAY)
    assert _same_times(statement_entries(got)) == _same_times(statement_entries(full))
    # 10,000 refused, then 1,000 refused, then 200: remembered for the next read
    assert [q["page_size"] for q in old.requests] == [["10000"], ["1000"], ["200"]]
    assert client.statement_page_size == 200


def test_an_older_ledger_is_followed_by_page_numbers(
    day: Store, older: Callable[..., Relay]
) -> None:
    code = day.pharmacy.code
    old = older(cap=200)
    client = _client(old.url, day.pharmacy.api_token)
    client.statement_page_size = 3
    try:
        got = client.statement_compact(code, DAY)
    finally:
        client.close()
    assert [r[0] for r in got.rows] == [r.msgid for r in day.client.statement(code, DAY).rows]
    assert [q["page"] for q in old.requests] == [["1"], ["2"], ["3"], ["4"]]


def test_a_compact_page_with_other_columns_is_refused_not_misread(
    day: Store, older: Callable[..., Relay]
) -> None:
    def swap(body: dict[str, Any]) -> dict[str, Any]:
        # total and cash swapped: read by position, the money would land in the wrong fund
        cols = ["msgid", "settlement_id", "terminal_id", "kind", "status", "original_msgid",
                "created_at", "cash", "personal_account", "mutual_aid", "total", "legs"]  # fmt: skip
        return {**body, "columns": cols, "rows": []}

    old = older(rewrite=swap)
    client = _client(old.url, day.pharmacy.api_token)
    try:
        with pytest.raises(LedgerError) as err:
            client.statement_compact(day.pharmacy.code, DAY)
    finally:
        client.close()
    assert err.value.code == "bad_response"
    assert "columns" in str(err.value)


@pytest.mark.parametrize("bad", ["not a time+08:00", "20/05/2024 10:00", ""])
def test_a_statement_time_that_is_not_a_time_is_refused_with_the_row_named(
    day: Store, bad: str
) -> None:
    """A compact row's ``created_at`` kept as sent when it ends in +08:00 (no parse per
    row): the page's check of it is what stops a value that is not a time."""

    def spoil(query: Query, body: Any, link: str | None) -> tuple[Any, str | None]:
        body["rows"][1][6] = bad
        return body, link

    relay = Relay(day.url, tamper=spoil)
    client = _client(relay.url, day.pharmacy.api_token)
    try:
        with pytest.raises(LedgerError) as err:
            reconcile_day(DAY, day.paths, client, resolve=False)
    finally:
        client.close()
        relay.close()
    assert err.value.code == "bad_response"
    assert "$.rows[1][6]" in str(err.value) and "matching regex" in str(err.value)


@pytest.mark.parametrize(
    ("spoil", "where"),
    [
        (lambda b: b["rows"][1].__setitem__(7, True), "$.rows[1][7]"),  # a bool as the total
        (lambda b: b["rows"][1].__setitem__(8, 1200.0), "$.rows[1][8]"),  # a float as a fund
        (lambda b: b["rows"][1].__setitem__(10, "0"), "$.rows[1][10]"),  # a string as cash
        (lambda b: b["rows"][1][11][0].__setitem__(2, 0), "$.rows[1][11][0][2]"),  # a 0 leg
        (lambda b: b["rows"][1][11][0].__setitem__(0, "cash"), "$.rows[1][11][0][0]"),
        (lambda b: b["rows"][1].__setitem__(3, "refund"), "$.rows[1][3]"),  # not a kind
        (lambda b: b["rows"][1].__setitem__(0, ""), "$.rows[1][0]"),  # no msgid
        (lambda b: b["rows"][1].append(None), "$.rows[1]"),  # a thirteenth column
        (lambda b: b.__setitem__("signed_by", "x"), "signed_by"),  # a field we do not know
        (lambda b: b["totals"]["net"].__setitem__("cash", "lots"), "$.totals"),
    ],
    ids=["bool-total", "float-fund", "string-cash", "zero-leg", "leg-kind", "kind",
         "no-msgid", "13-columns", "unknown-field", "totals"],
)
def test_a_compact_page_value_of_the_wrong_kind_is_refused_with_its_place_named(
    day: Store, spoil: Callable[[dict[str, Any]], None], where: str
) -> None:
    """The compact page's checks: integers strict (no bool, float or numeric string), a
    leg's amount positive, the literals, the row's length, no unknown field, the totals'
    own model. A wrong value stops the read with the place it was found, never a money
    column read as something else."""

    def tamper(query: Query, body: Any, link: str | None) -> tuple[Any, str | None]:
        spoil(body)
        return body, link

    err, _ = _refused(day, tamper)
    assert err.code == "bad_response"
    assert "cannot read" in str(err) and where in str(err)


def test_a_statement_time_in_another_offset_is_read_as_shanghai_time() -> None:
    row = ("M1", "STL1", "T01", "sale", "settled", None, "2024-05-20T02:00:00Z", 100, 100,
           0, 0, (("personal_account", "PA1", 100),))  # fmt: skip
    naive = (*row[:6], "2024-05-20T10:00:00", *row[7:])
    utc, local = rows_entries([row, naive], "2024-05-20")  # type: ignore[list-item]
    assert utc.created_at == local.created_at == "2024-05-20T10:00:00+08:00"
    with pytest.raises(ReconcileError, match="time we cannot read: '2024-05-20T99'"):
        rows_entries([(*row[:6], "2024-05-20T99", *row[7:])], "2024-05-20")  # type: ignore[list-item]


@pytest.mark.parametrize("column", ["plan", "legs"])
def test_a_journal_plan_that_is_not_json_is_named_not_a_traceback(day: Store, column: str) -> None:
    """Reconciliation reads the legs from the ``legs`` column (journal/legs.py): one that is
    not JSON, and the one a plan that is not JSON gets (``unreadable``: the function that
    writes the column, and backfills it on upgrade), name the sale."""
    j = day.journals["T01"]
    ref = "A2"
    with sqlite3.connect(j.path) as db:
        if column == "plan":
            db.execute("UPDATE sales SET plan = '{\"legs\": [' WHERE sale_ref = ?", (ref,))
            db.execute("UPDATE sales SET legs = ? WHERE sale_ref = ?",
                       (legs_column('{"legs": ['), ref))  # fmt: skip
            assert legs_column('{"legs": [') == UNREADABLE
        else:
            db.execute("UPDATE sales SET legs = '[[' WHERE sale_ref = ?", (ref,))
    with pytest.raises(ReconcileError) as err:
        reconcile_day(DAY, day.paths, day.client, resolve=False)
    assert f"sale {ref}" in str(err.value) and "journal verify" in str(err.value)


def test_gc_pause_turns_the_collector_back_on_without_a_backlog() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the outer pause owns the collector
            pass
        assert not gc.isenabled()
        kept = [(i, str(i)) for i in range(50_000)]
        assert gc.get_count()[0] > 10_000  # allocations are still counted while off
    assert gc.isenabled()
    # what was built went to the oldest generation: no collection of it is pending
    assert gc.get_count()[0] < 100
    assert len(kept) == 50_000


def _through(day: Store, tamper: Any) -> tuple[Relay, HttpLedgerClient]:
    relay = Relay(day.url, tamper=tamper)
    client = _client(relay.url, day.pharmacy.api_token)
    client.statement_page_size = 4
    return relay, client


def _refused(day: Store, tamper: Any) -> tuple[LedgerError, Relay]:
    """The day's compact statement read through a relay that tampers with its pages: the
    error the read stops with, and the relay (its requests)."""
    relay, client = _through(day, tamper)
    try:
        with pytest.raises(LedgerError) as err:
            client.statement_compact(day.pharmacy.code, DAY)
    finally:
        client.close()
        relay.close()
    return err.value, relay


def test_a_link_past_the_last_page_or_back_to_the_first_is_not_followed(day: Store) -> None:
    first = f"/v1/statements/{day.pharmacy.code}/{DAY.isoformat()}?page=1&page_size=4&after=0"

    def back_to_first(q: dict[str, str], body: dict[str, Any], link: str | None) -> Any:
        return body, f'<{first}&format=compact>; rel="next"'  # on every page, the last too

    relay, client = _through(day, back_to_first)
    try:
        got = client.statement_compact(day.pharmacy.code, DAY)
    finally:
        client.close()
        relay.close()
    full = day.client.statement(day.pharmacy.code, DAY)
    assert [r[0] for r in got.rows] == [r.msgid for r in full.rows]  # each row once
    # 11 rows in pages of 4: three pages used; each wrong look-ahead is asked once and dropped
    assert 3 <= len(relay.requests) <= 6


def test_a_statement_that_does_not_move_forward_is_refused(day: Store) -> None:
    def stuck(q: dict[str, str], body: dict[str, Any], link: str | None) -> Any:
        if body.get("next_page"):
            body = {**body, "next_after": int(q["after"])}  # the cursor stays where it was
        return body, None

    err, relay = _refused(day, stuck)
    assert err.code == "bad_response" and "move forward" in str(err)
    assert len(relay.requests) == 1


@pytest.mark.parametrize(
    "legs",
    [
        "null,null",  # two values where the legs array should be
        '[["mutual_aid","Y",1]',  # half of an array
        '[["mutual_aid","Y","1"]]',  # an amount that is not an integer
        '[["mutual_aid","Y",true]]',  # a bool is not an amount
        '[["mutual_aid","Y",1.0]]',  # nor is a float, whole or not
        '[["mutual_aid",7,100]]',  # an account that is not text
        '[["cash","Y",100]]',  # a kind that is not a leg's
    ],
)
def test_legs_that_are_a_string_are_named_never_shifted_to_another_sale(
    day: Store, legs: str
) -> None:
    """The legs column is read as one document of every row's legs: a row's column that
    is not one array of legs must be named, not spliced into its neighbours'."""
    j = day.journals["T02"]
    with sqlite3.connect(j.path) as db:
        db.execute("UPDATE sales SET legs = ? WHERE sale_ref = 'B1'", (legs,))
    with pytest.raises(ReconcileError) as err:
        read_journal(j.path, DAY, JournalSide())
    assert "sale B1" in str(err.value)


def test_a_journal_file_from_before_the_legs_column_is_reconciled_as_it_is(day: Store) -> None:
    """Reading never migrates (a till not yet upgraded may still be writing its file):
    a version-8 file's legs are derived as it is read (journal/sources.py), the same."""
    before = reconcile_day(DAY, day.paths, day.client, resolve=False)
    path = day.journals["T02"].path
    with sqlite3.connect(path) as db:
        db.executescript("ALTER TABLE sales DROP COLUMN legs; PRAGMA user_version = 8;")
    again = reconcile_day(DAY, day.paths, day.client, resolve=False)
    assert again.digest() == before.digest() and again.counts == before.counts
    assert again.journal.sales_count == before.journal.sales_count > 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8
        assert "legs" not in {c[1] for c in db.execute("PRAGMA table_info(sales)")}


def test_the_day_s_repeated_words_are_one_object_each_on_both_sides(day: Store) -> None:
    """A leg's kind, an entry's kind and status come back as one shared string each, from
    the journals' legs and from the statement's pages alike: a day holds ~10^5 of each,
    and a copy per leg (~65 bytes) would push a 100,000-row day past the in-memory limit
    (``MEMORY_BYTES``: the lean path would spill to disk)."""
    journal = JournalSide()
    for path in day.paths:
        read_journal(path, DAY, journal)
    client = _client(day.url, day.pharmacy.api_token)
    try:
        statement = statement_entries(client.statement_compact(day.pharmacy.code, DAY))
    finally:
        client.close()
    for side in (journal.entries, statement):
        legs = [leg for e in side for leg in e.legs]
        assert len(legs) >= 10
        assert len({id(kind) for kind, _, _ in legs}) <= 2  # personal_account, mutual_aid
        assert len({id(e.kind) for e in side}) <= 2 and len({id(e.status) for e in side}) <= 3
