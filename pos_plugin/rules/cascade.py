"""The cascade: who pays how much, exact to the fen.

DOMAIN.md / ARCHITECTURE.md: the patient's personal account pays first, then the
eligible family payers in binding order, each up to its available balance; what
no account covers, plus the cash-only lines, is paid in cash. The agent plans
these legs and the ledger commits them atomically.
"""

from __future__ import annotations

from collections.abc import Sequence

from pos_plugin.models import (
    Allocation,
    FamilyBinding,
    Leg,
    LegKind,
    PersonalAccount,
)


def allocate(
    *,
    account_payable: int,
    cash_only: int,
    patient_psn_no: str,
    personal_account: PersonalAccount | None,
    family_payers: Sequence[FamilyBinding],
) -> Allocation:
    """Plan the legs of one sale.

    ``family_payers`` must already be the *eligible* payers in binding order
    (see ``rules.family.eligible_payers``); a payer without an account id or
    balance simply yields no leg. No leg is ever zero.
    """
    if account_payable < 0 or cash_only < 0:
        raise ValueError("amounts are non-negative fen")
    remaining = account_payable
    legs: list[Leg] = []
    if personal_account is not None and remaining > 0 and personal_account.balance > 0:
        amount = min(remaining, personal_account.balance)
        legs.append(
            Leg(
                kind=LegKind.PERSONAL_ACCOUNT,
                account_id=personal_account.account_id,
                payer_psn_no=patient_psn_no,
                amount=amount,
            )
        )
        remaining -= amount
    for payer in family_payers:
        if remaining == 0:
            break
        if payer.payer_account_id is None or payer.available_balance <= 0:
            continue
        amount = min(remaining, payer.available_balance)
        legs.append(
            Leg(
                kind=LegKind.MUTUAL_AID,
                account_id=payer.payer_account_id,
                payer_psn_no=payer.payer_psn_no,
                amount=amount,
                binding_id=payer.binding_id,
            )
        )
        remaining -= amount
    return Allocation(
        total=account_payable + cash_only,
        account_payable=account_payable,
        legs=tuple(legs),
        cash=remaining + cash_only,
        cash_only=cash_only,
    )
