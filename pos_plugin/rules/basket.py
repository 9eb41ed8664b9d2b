"""The basket: what the accounts may pay, and what may not be sold as rung up.

DOMAIN.md: the personal account pays catalogue drugs only (class A and B lines);
class C and non-catalogue goods are cash. A prescription drug needs a
prescription. Ephedrine compound preparations need the buyer's ID registered and
are limited to two minimum packages per purchase. A basket whose total is 0 has
nothing to settle: it is refused before the customer is asked for a card or PIN
(the ledger would refuse a zero settlement after the customer had typed the PIN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pos_plugin.models import BasketLine, InsuranceClass, Refusal, RefusalCode
from pos_plugin.rules.messages import refusal

ACCOUNT_PAYABLE_CLASSES = frozenset({InsuranceClass.A, InsuranceClass.B})
EPHEDRINE_MAX_PACKAGES = 2


@dataclass(frozen=True, slots=True)
class BasketDecision:
    """Totals of a basket that may be sold, or the refusal that stops it."""

    refusal: Refusal | None
    total: int = 0
    account_payable: int = 0
    cash_only: int = 0


def account_may_pay(line: BasketLine) -> bool:
    return line.insurance_class in ACCOUNT_PAYABLE_CLASSES


def check_basket(lines: Sequence[BasketLine], *, buyer_id_registered: bool) -> BasketDecision:
    """Check the basket's regulatory rules and split it into account-payable and cash-only.

    The regulatory refusals come first (they are about the goods, whatever they
    cost); a basket that passes them but totals 0 is ``nothing_to_pay``.

    ``buyer_id_registered`` is True when the buyer's ID document was presented and
    will be kept with the sale (needed for ephedrine compounds).
    """
    for line in lines:
        if line.prescription and not (line.prescription_ref or "").strip():
            return BasketDecision(
                refusal(RefusalCode.PRESCRIPTION_REQUIRED, line.name, f"line {line.sku}")
            )
    ephedrine = [line for line in lines if line.ephedrine_compound]
    if ephedrine:
        if not buyer_id_registered:
            return BasketDecision(refusal(RefusalCode.EPHEDRINE_ID_REQUIRED))
        packages = sum(line.quantity for line in ephedrine)
        if packages > EPHEDRINE_MAX_PACKAGES:
            return BasketDecision(
                refusal(
                    RefusalCode.EPHEDRINE_LIMIT,
                    f"本单共{packages}个包装",
                    f"this sale has {packages} packages",
                )
            )
    payable = sum(line.amount for line in lines if account_may_pay(line))
    cash_only = sum(line.amount for line in lines if not account_may_pay(line))
    if payable + cash_only == 0:
        return BasketDecision(refusal(RefusalCode.NOTHING_TO_PAY))
    return BasketDecision(None, payable + cash_only, payable, cash_only)
