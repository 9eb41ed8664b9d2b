"""The cascade: exact to the fen, in order, never over a balance, no zero legs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.models import LegKind, PersonalAccount
from pos_plugin.rules.cascade import allocate

from .factories import binding

OWN = PersonalAccount(account_id="PA-P1", balance=5_000)


def test_own_account_covers_everything() -> None:
    a = allocate(
        account_payable=3_000,
        cash_only=0,
        patient_psn_no="P1",
        personal_account=OWN,
        family_payers=[binding(1)],
    )
    assert [(leg.kind, leg.amount) for leg in a.legs] == [(LegKind.PERSONAL_ACCOUNT, 3_000)]
    assert a.cash == 0 and a.total == 3_000


def test_cascade_over_two_family_payers_with_cash_rest() -> None:
    a = allocate(
        account_payable=30_000,
        cash_only=1_500,
        patient_psn_no="P1",
        personal_account=OWN,
        family_payers=[binding(1, balance=10_000), binding(2, balance=8_000)],
    )
    assert [(leg.account_id, leg.amount) for leg in a.legs] == [
        ("PA-P1", 5_000),
        ("PA-F1", 10_000),
        ("PA-F2", 8_000),
    ]
    assert a.cash == 30_000 - 23_000 + 1_500
    assert a.personal_account_paid == 5_000 and a.mutual_aid_paid == 18_000
    assert a.legs[1].binding_id == "B1"


def test_no_personal_account_goes_straight_to_family() -> None:
    a = allocate(
        account_payable=1_000,
        cash_only=0,
        patient_psn_no="P1",
        personal_account=None,
        family_payers=[binding(1, balance=600), binding(2, balance=600)],
    )
    assert [(leg.account_id, leg.amount) for leg in a.legs] == [("PA-F1", 600), ("PA-F2", 400)]
    assert a.cash == 0


def test_empty_accounts_yield_no_zero_legs() -> None:
    a = allocate(
        account_payable=1_000,
        cash_only=0,
        patient_psn_no="P1",
        personal_account=PersonalAccount(account_id="PA-P1", balance=0),
        family_payers=[binding(1, balance=0), binding(2, has_account=False)],
    )
    assert a.legs == () and a.cash == 1_000


def test_nothing_payable_is_all_cash() -> None:
    a = allocate(
        account_payable=0,
        cash_only=2_000,
        patient_psn_no="P1",
        personal_account=OWN,
        family_payers=[binding(1)],
    )
    assert a.legs == () and a.cash == 2_000 and a.cash_only == 2_000


def test_negative_amounts_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        allocate(
            account_payable=-1,
            cash_only=0,
            patient_psn_no="P1",
            personal_account=None,
            family_payers=[],
        )


balances = st.integers(0, 100_000)


@given(
    payable=st.integers(0, 500_000),
    cash_only=st.integers(0, 100_000),
    own=st.one_of(st.none(), balances),
    family=st.lists(balances, max_size=5),
)
def test_cascade_properties(
    payable: int, cash_only: int, own: int | None, family: list[int]
) -> None:
    account = None if own is None else PersonalAccount(account_id="PA-P1", balance=own)
    payers = [binding(i + 1, balance=b) for i, b in enumerate(family)]
    a = allocate(
        account_payable=payable,
        cash_only=cash_only,
        patient_psn_no="P1",
        personal_account=account,
        family_payers=payers,
    )
    available = {"PA-P1": own or 0} | {p.payer_account_id: p.available_balance for p in payers}
    # Legs and cash add up to the total, exactly.
    assert a.accounts_paid + a.cash == a.total == payable + cash_only
    # No leg above its balance, no zero legs, each account at most once.
    assert all(0 < leg.amount <= available[leg.account_id] for leg in a.legs)
    assert len({leg.account_id for leg in a.legs}) == len(a.legs)
    # Cash never less than the cash-only lines; accounts never pay cash-only lines.
    assert a.cash >= cash_only and a.accounts_paid <= payable
    # Order: own account first, then payers in binding order; an account is only
    # drawn on when every earlier one is exhausted.
    order = ["PA-P1"] + [p.payer_account_id for p in payers]
    positions = [order.index(leg.account_id) for leg in a.legs]
    assert positions == sorted(positions)
    for leg in a.legs[:-1]:
        assert leg.amount == available[leg.account_id]
    # Greedy is maximal: the accounts pay as much as they can.
    assert a.accounts_paid == min(payable, sum(available.values()))
