"""Issue 11, findings 4 and 5: amount bounds at the POS API's edge, and the zero sale.

Through real HTTP to the agent on the device simulator and the sandbox ledger. A
basket the PIN pad's u32 of fen cannot show used to be a 500 with the sale stuck in
``received``; a 0 total asked for the card and PIN and then failed at the ledger.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pos_plugin.agent import Agent
from pos_plugin.journal import journal as J
from pos_plugin.models import AMOUNT_MAX, QUANTITY_MAX
from pos_plugin.sale.models import ITEMS_MAX, SaleRequest
from tests.agent.conftest import ZHANG_WEI, Pos, balances, item

ZHANG_WEI_CARD = "B11000001"


def _rows(agent: Agent) -> int:
    """Every sale row the journal holds, whatever its state."""
    return int(agent.service.journal.query("SELECT COUNT(*) FROM sales")[0][0])


def _assert_refused_at_the_edge(
    pos: Pos, ref: str, items: list[dict[str, Any]], field: str
) -> dict[str, Any]:
    """422 invalid_request naming ``field``, and nothing journaled under ``ref``."""
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": ref, "items": items})
    assert status == 422, body
    assert body["code"] == "invalid_request"
    assert body["field"] == field
    assert field in body["message"]
    assert pos.agent.service.journal.get(ref) is None
    assert pos.agent.service.journal.in_state(J.RECEIVED) == []
    assert pos.call("GET", f"/v1/sales/{ref}")[0] == 404
    return body


def test_a_line_beyond_the_pin_pad_is_refused_naming_the_line(pos: Pos) -> None:
    """10,000 x 1,000,000 fen = 10^10 fen: more than a u32 of fen. It was a 500 and a
    row stuck in ``received``; now the line's unit_price is named and nothing is kept."""
    before = _rows(pos.agent)
    body = _assert_refused_at_the_edge(
        pos, "BIG-LINE", [item("6901", "A", 10_000, 1_000_000)], "items.0.unit_price"
    )
    assert "10000000000" in body["message"] and str(AMOUNT_MAX) in body["message"]
    assert _rows(pos.agent) == before


def test_a_unit_price_beyond_int64_is_refused_naming_it(pos: Pos) -> None:
    _assert_refused_at_the_edge(
        pos, "HUGE-PRICE", [item("6901", "A", 1, 2**63)], "items.0.unit_price"
    )
    _assert_refused_at_the_edge(
        pos, "HUGE-QTY", [item("6901", "A", QUANTITY_MAX + 1, 1)], "items.0.quantity"
    )


def test_a_basket_total_beyond_the_pin_pad_is_refused_on_items(pos: Pos) -> None:
    """Each line fits; together they do not. Checked at the edge, before ``received``."""
    half = AMOUNT_MAX // 2 + 1
    body = _assert_refused_at_the_edge(
        pos, "BIG-TOTAL", [item("1", "A", 1, half), item("2", "C", 1, half)], "items"
    )
    assert "basket total" in body["message"]
    _assert_refused_at_the_edge(
        pos, "TOO-MANY", [item(str(n), "A", 1, 1) for n in range(ITEMS_MAX + 1)], "items"
    )


def test_the_largest_basket_the_pin_pad_can_show_settles(pos: Pos) -> None:
    """The bound is the PIN pad's, not lower: AMOUNT_MAX is shown and settled in full."""
    sim = pos.agent.simulator
    assert sim is not None
    status, body = pos.sale(
        "MAX-TOTAL", ZHANG_WEI_CARD, ZHANG_WEI, [item("6901", "A", 1, AMOUNT_MAX)]
    )
    assert status == 200, body
    assert sim.amount is not None and sim.amount[0] == AMOUNT_MAX
    paid = body["personal_account"] + sum(f["amount"] for f in body["family"]) + body["cash"]
    assert body["total"] == paid == AMOUNT_MAX
    assert balances(pos.agent, ZHANG_WEI_CARD)[ZHANG_WEI] == 0  # 200.00 paid, the rest cash
    row = pos.agent.service.journal.get("MAX-TOTAL")
    assert row is not None and row.state == J.SETTLED


# --------------------------------------------------------------------------- properties

line_within = st.builds(
    lambda qty, price, cls: item("L", cls, qty, price),
    st.integers(1, QUANTITY_MAX),
    st.integers(0, AMOUNT_MAX),
    st.sampled_from(["A", "B", "C", "none"]),
)


@given(st.lists(line_within, min_size=1, max_size=ITEMS_MAX))
def test_any_basket_within_the_bounds_is_accepted_and_beyond_is_refused(
    lines: list[dict[str, Any]],
) -> None:
    """The edge's rule exactly: every line and the total within AMOUNT_MAX is a valid
    request; anything more is refused, on the line or on ``items``."""
    amounts = [x["quantity"] * x["unit_price"] for x in lines]
    body = {"sale_ref": "P", "items": lines}
    if max(amounts) <= AMOUNT_MAX and sum(amounts) <= AMOUNT_MAX:
        req = SaleRequest.model_validate(body)
        assert sum(x.amount for x in req.items) == sum(amounts)
        return
    try:
        SaleRequest.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        assert err["type"] == "amount_too_large"
        first_big = next((i for i, a in enumerate(amounts) if a > AMOUNT_MAX), None)
        expected = ("items",) if first_big is None else ("items", first_big, "unit_price")
        assert err["loc"] == expected
    else:
        raise AssertionError("a basket beyond the PIN pad's bound was accepted")


beyond = st.one_of(
    # one line too dear
    st.tuples(st.integers(1, QUANTITY_MAX), st.integers(AMOUNT_MAX + 1, 2**80)).map(
        lambda qp: [item("X", "A", qp[0], qp[1])]
    ),
    # quantity x price over the bound
    st.integers(2, QUANTITY_MAX).flatmap(
        lambda q: st.integers(AMOUNT_MAX // q + 1, AMOUNT_MAX).map(
            lambda p: [item("X", "B", q, p)]
        )
    ),
    # lines that fit, a total that does not
    st.integers(2, 8).flatmap(
        lambda n: st.lists(
            st.integers(AMOUNT_MAX // n + 1, AMOUNT_MAX), min_size=n, max_size=n
        ).map(lambda ps: [item(str(i), "C", 1, p) for i, p in enumerate(ps)])
    ),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(beyond)
def test_any_basket_beyond_the_bounds_is_refused_over_http_before_journaling(
    pos: Pos, lines: list[dict[str, Any]]
) -> None:
    before = _rows(pos.agent)
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "BEYOND", "items": lines})
    assert status == 422, body
    assert body["code"] == "invalid_request" and body["field"].startswith("items")
    assert _rows(pos.agent) == before
    assert pos.agent.service.journal.in_state(J.RECEIVED) == []


# --------------------------------------------------------------------------- zero


def test_a_zero_sale_is_refused_before_the_customer_is_asked(pos: Pos) -> None:
    """Finding 5: with the card already in the reader, a 0 total went on to show 0.00,
    read the card, ask for the PIN and fail as "ledger refused". Now it is refused
    first: the PIN pad is not touched and the ledger is unchanged."""
    sim = pos.agent.simulator
    assert sim is not None
    asked = {k: sim.event_count(k) for k in ("show_amount", "wait_credential", "verify_pin")}
    before = balances(pos.agent, ZHANG_WEI_CARD)
    status, body = pos.sale("ZERO-1", ZHANG_WEI_CARD, ZHANG_WEI, [item("6901", "A", 2, 0)])
    assert status == 422, body
    assert (body["status"], body["code"]) == ("refused", "nothing_to_pay")
    assert "0" in body["message"] and "nothing to settle" in body["message"]
    assert {k: sim.event_count(k) for k in asked} == asked
    assert balances(pos.agent, ZHANG_WEI_CARD) == before
    row = pos.agent.service.journal.get("ZERO-1")
    assert row is not None and row.state == J.REFUSED and row.msgid is None
    # The same answer again (the journaled refusal), still without the PIN pad.
    assert pos.call("POST", "/v1/sales", {"sale_ref": "ZERO-1", "items": [
        item("6901", "A", 2, 0)], "patient": pos.doc(ZHANG_WEI), "buyer": {"role": "self"},
        "credential": "card"})[1]["code"] == "nothing_to_pay"
    assert {k: sim.event_count(k) for k in asked} == asked


def test_the_simulator_body_is_bounded_too(pos: Pos) -> None:
    """Counts at the edge include the simulator's: a card number as long as a real one,
    a PIN script no longer than a sale can use."""
    status, body = pos.call("POST", "/v1/simulator/present", {"card_no": "B" * 33})
    assert (status, body["code"], body["field"]) == (422, "invalid_request", "card_no")
    status, body = pos.call(
        "POST", "/v1/simulator/present", {"card_no": ZHANG_WEI_CARD, "pin": ["wrong"] * 11}
    )
    assert (status, body["code"]) == (422, "invalid_request") and body["field"].startswith("pin")
