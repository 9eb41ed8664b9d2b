"""Issue 11, finding 4: the sandbox ledger's bounds on query and body fields.

Raw HTTP (``requests``, not the client, which would never send these) against the
real sandbox. A page, cursor or amount beyond a 64-bit integer used to reach the
database and come back as Starlette's plain-text ``Internal Server Error``; every
answer is now the contract's JSON error shape with the field named.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_plugin.ledger.own.sandbox.app import CURSOR_MAX, STATEMENT_PAGE_NUMBER_MAX
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.models import AMOUNT_MAX

from .conftest import CARDS, CODE_A, P1, PA, TOKEN_A, count_entries, msgid

AUTH = {"Authorization": f"Bearer {TOKEN_A}"}
DAY = "2026-01-15"


def _statement(srv: SandboxServer, query: str) -> requests.Response:
    return requests.get(f"{srv.url}/v1/statements/{CODE_A}/{DAY}?{query}", headers=AUTH,
                        timeout=10)


def _json_error(r: requests.Response, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == "invalid_request" and body["field"] == field, body
    return body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=9223372036854775808", "page"),  # 2^63: was a plain-text 500
        ("page=9223372036854775807", "page"),  # 2^63 - 1: its row offset overflowed too
        (f"page={STATEMENT_PAGE_NUMBER_MAX + 1}", "page"),
        ("page=0", "page"),
        ("after=9223372036854775808", "after"),  # 2^63: was a plain-text 500
        ("after=-1", "after"),
        ("page_size=10001", "page_size"),
        ("terminal_id=" + "T" * 65, "terminal_id"),
    ],
)
def test_statement_query_beyond_its_bounds_is_a_json_422(
    sandbox: SandboxServer, query: str, field: str
) -> None:
    body = _json_error(_statement(sandbox, query), 422, field)
    assert body["message"].startswith(f"{field}:")


def test_statement_query_at_its_bounds_answers(sandbox: SandboxServer) -> None:
    for query in (f"page={STATEMENT_PAGE_NUMBER_MAX}&page_size=10000", f"after={CURSOR_MAX}"):
        r = _statement(sandbox, query)
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == []


def _settlement(**change: Any) -> dict[str, Any]:
    mid = msgid()
    body: dict[str, Any] = {
        "msgid": mid, "pharmacy_code": CODE_A, "terminal_id": "T01", "operator": "op1",
        "patient_psn_no": P1, "credential": CARDS[P1].wire(),
        "legs": [{"kind": "personal_account", "account_id": PA[P1], "payer_psn_no": P1,
                  "amount": 100}],
        "cash": 0, "total": 100,
        "lines": [{"sku": "A1", "name": "阿莫西林", "insurance_class": "A", "quantity": 1,
                   "amount": 100}],
    }  # fmt: skip
    for path, value in change.items():
        if path == "leg_amount":
            body["legs"][0]["amount"] = value
        elif path == "line_amount":
            body["lines"][0]["amount"] = value
        else:
            body[path] = value
    return body


def _post(srv: SandboxServer, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{srv.url}/v1/settlements", json=body,
                         headers=AUTH | {"Idempotency-Key": body["msgid"]}, timeout=10)


WHERE = {"cash": "cash", "total": "total", "leg_amount": "legs[0].amount",
         "line_amount": "lines[0].amount"}  # fmt: skip


@pytest.mark.parametrize("name", list(WHERE))
@pytest.mark.parametrize("value", [2**63, AMOUNT_MAX + 1])
def test_settlement_amount_beyond_the_bound_is_a_json_422_and_books_nothing(
    sandbox: SandboxServer, name: str, value: int
) -> None:
    """2^63 in ``cash`` was a plain-text 500 (SQLite's int64); AMOUNT_MAX + 1 is the
    first amount no till can show its customer. Nothing is booked (the fixture also
    checks conservation and the double-entry audit after the test)."""
    body = _settlement(**{name: value})
    _json_error(_post(sandbox, body), 422, WHERE[name])
    assert count_entries(sandbox, body["msgid"]) == 0


def test_the_largest_settlement_a_till_can_send_commits(sandbox: SandboxServer) -> None:
    body = _settlement(cash=AMOUNT_MAX - 100, total=AMOUNT_MAX,
                       line_amount=AMOUNT_MAX)  # fmt: skip
    r = _post(sandbox, body)
    assert r.status_code == 201, r.text
    assert (r.json()["total"], r.json()["cash"]) == (AMOUNT_MAX, AMOUNT_MAX - 100)
    day = requests.get(f"{sandbox.url}/v1/statements/{CODE_A}/{r.json()['business_date']}",
                       headers=AUTH, timeout=10).json()
    assert day["totals"]["sales"]["total"] == AMOUNT_MAX


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(list(WHERE)), value=st.integers(AMOUNT_MAX + 1, 2**80))
def test_any_amount_beyond_the_bound_is_refused_naming_its_field(
    sandbox: SandboxServer, name: str, value: int
) -> None:
    body = _settlement(**{name: value})
    _json_error(_post(sandbox, body), 422, WHERE[name])
    assert count_entries(sandbox, body["msgid"]) == 0


def test_an_unexpected_error_is_still_json(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth behind the bounds: a bug answers the JSON error shape the
    client parses, never the plain-text 500."""

    def broken(*_: object, **__: object) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(sandbox.ledger, "statement_page", broken)
    r = _statement(sandbox, "page=1")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["code"] == "internal_error"
    assert "Traceback" not in r.text and "boom" not in r.text
