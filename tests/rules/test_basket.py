"""The basket: account-payable lines, prescriptions, ephedrine compounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.models import BasketLine, InsuranceClass, RefusalCode
from pos_plugin.rules.basket import check_basket


def line(
    sku: str,
    cls: InsuranceClass,
    qty: int = 1,
    price: int = 1000,
    **kw: object,
) -> BasketLine:
    return BasketLine(
        sku=sku, name=f"药品{sku}", insurance_class=cls, quantity=qty, unit_price=price, **kw
    )  # type: ignore[arg-type]


def test_class_a_and_b_are_account_payable_c_and_none_are_cash() -> None:
    decision = check_basket(
        [
            line("a", InsuranceClass.A, 2, 1250),
            line("b", InsuranceClass.B, 1, 3999),
            line("c", InsuranceClass.C, 1, 1500),
            line("n", InsuranceClass.NONE, 3, 100),
        ],
        buyer_id_registered=False,
    )
    assert decision.refusal is None
    assert decision.account_payable == 2 * 1250 + 3999
    assert decision.cash_only == 1500 + 300
    assert decision.total == 2500 + 3999 + 1500 + 300


def test_prescription_drug_needs_a_reference() -> None:
    rx = line("rx", InsuranceClass.A, prescription=True)
    refused = check_basket([rx], buyer_id_registered=True)
    assert refused.refusal is not None
    assert refused.refusal.code is RefusalCode.PRESCRIPTION_REQUIRED
    blank = line("rx", InsuranceClass.A, prescription=True, prescription_ref="  ")
    assert check_basket([blank], buyer_id_registered=True).refusal is not None
    ok = line("rx", InsuranceClass.A, prescription=True, prescription_ref="RX-2026-001")
    assert check_basket([ok], buyer_id_registered=True).refusal is None


def test_ephedrine_needs_the_buyers_id() -> None:
    eph = line("e", InsuranceClass.B, 1, ephedrine_compound=True)
    refused = check_basket([eph], buyer_id_registered=False)
    assert refused.refusal is not None
    assert refused.refusal.code is RefusalCode.EPHEDRINE_ID_REQUIRED
    assert check_basket([eph], buyer_id_registered=True).refusal is None


def test_ephedrine_limit_counts_packages_over_all_lines() -> None:
    two = [
        line("e1", InsuranceClass.B, 1, ephedrine_compound=True),
        line("e2", InsuranceClass.C, 1, ephedrine_compound=True),
    ]
    assert check_basket(two, buyer_id_registered=True).refusal is None
    three = [*two, line("e3", InsuranceClass.B, 1, ephedrine_compound=True)]
    refused = check_basket(three, buyer_id_registered=True)
    assert refused.refusal is not None
    assert refused.refusal.code is RefusalCode.EPHEDRINE_LIMIT
    assert "3" in refused.refusal.message_en


def test_a_basket_that_totals_zero_is_nothing_to_pay() -> None:
    """Finding 5 (issue 11): a 0 total used to go on to the card and PIN, then fail at the
    ledger; the rule refuses it first, so the sale never reaches the PIN pad."""
    for basket in ([], [line("free", InsuranceClass.A, 3, 0)],
                   [line("a", InsuranceClass.A, 1, 0), line("n", InsuranceClass.NONE, 2, 0)]):
        decision = check_basket(basket, buyer_id_registered=False)
        assert decision.refusal is not None
        assert decision.refusal.code is RefusalCode.NOTHING_TO_PAY
        assert "0" in decision.refusal.message_zh and "nothing" in decision.refusal.message_en
    # A free line inside a basket that costs something is fine.
    paid = [line("free", InsuranceClass.A, 1, 0), line("a", InsuranceClass.A, 1, 1)]
    assert check_basket(paid, buyer_id_registered=False).refusal is None


def test_regulatory_refusals_come_before_nothing_to_pay() -> None:
    rx = line("rx", InsuranceClass.A, 1, 0, prescription=True)
    refused = check_basket([rx], buyer_id_registered=False).refusal
    assert refused is not None and refused.code is RefusalCode.PRESCRIPTION_REQUIRED


lines = st.lists(
    st.builds(
        line,
        sku=st.text("abc123", min_size=1, max_size=4),
        cls=st.sampled_from(list(InsuranceClass)),
        qty=st.integers(1, 20),
        price=st.integers(0, 1_000_000),
    ),
    max_size=12,
)


@given(lines)
def test_split_always_adds_up(basket: list[BasketLine]) -> None:
    decision = check_basket(basket, buyer_id_registered=True)
    owed = sum(b.quantity * b.unit_price for b in basket)
    if owed == 0:  # exactly the baskets with nothing to pay are refused as such
        assert decision.refusal is not None
        assert decision.refusal.code is RefusalCode.NOTHING_TO_PAY
        return
    assert decision.refusal is None
    assert decision.account_payable + decision.cash_only == decision.total
    assert decision.total == owed
