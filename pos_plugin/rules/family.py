"""Family mutual aid (家庭共济): which bound family payers may pay for this patient.

DOMAIN.md: the payer (sharer) is on employee insurance with a personal account;
the patient is insured in basic insurance; the relation is a close relative
(spouse, parents, children, siblings, grandparents on both sides, grandchildren
on both sides, never the spouse's parents); both are insured in the same
province unless that pair of provinces has opened cross-province mutual aid;
the binding is active; and an account with nothing in it cannot pay.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pos_plugin.models import (
    RELATION_ZH,
    BindingStatus,
    FamilyBinding,
    InsuranceStatus,
    InsuranceType,
    Person,
    Relation,
    SkippedPayer,
)

CLOSE_RELATIVES = frozenset(
    {
        Relation.SPOUSE,
        Relation.PARENT,
        Relation.CHILD,
        Relation.SIBLING,
        Relation.PATERNAL_GRANDPARENT,
        Relation.MATERNAL_GRANDPARENT,
        Relation.PATERNAL_GRANDCHILD,
        Relation.MATERNAL_GRANDCHILD,
    }
)

BASIC_INSURANCE = frozenset({InsuranceType.EMPLOYEE, InsuranceType.RESIDENTS})

ProvincePair = frozenset[str]


def province_of(region: str) -> str:
    """The province is the first two digits of the administrative division code."""
    return region[:2]


def parse_province_pair(text: str) -> ProvincePair:
    """Parse ``"11-13"`` into an unordered pair; raises ValueError on anything else."""
    parts = text.split("-")
    if len(parts) != 2 or not all(re.fullmatch(r"[0-9]{2}", p) for p in parts):
        raise ValueError(f"a province pair looks like '11-13', not {text!r}")
    if parts[0] == parts[1]:
        raise ValueError(f"a province pair names two different provinces, not {text!r}")
    return frozenset(parts)


@dataclass(frozen=True, slots=True)
class FamilyDecision:
    eligible: tuple[FamilyBinding, ...]
    skipped: tuple[SkippedPayer, ...]


_REASONS: dict[str, tuple[str, str]] = {
    "binding_inactive": ("共济绑定未生效或已解除", "the mutual-aid binding is not active"),
    "spouse_parent_not_close_relative": (
        "配偶的父母不属于家庭共济的近亲属范围",
        "a spouse's parent is not a close relative for mutual aid",
    ),
    "not_close_relative": ("不属于近亲属", "not a close relative"),
    "payer_not_employee_insurance": (
        "共济人须参加职工医保",
        "the payer is not on employee insurance",
    ),
    "payer_has_no_personal_account": ("共济人没有个人账户", "the payer has no personal account"),
    "patient_not_insured": (
        "用药人未参加基本医疗保险",
        "the patient is not insured in basic medical insurance",
    ),
    "cross_province": (
        "共济人与用药人不在同一省份参保，且两省未开通跨省共济",
        "the payer is insured in another province and cross-province mutual aid "
        "is not open between them",
    ),
    "no_balance": ("共济人账户余额为零", "the payer's account has no balance"),
}


def skip_reason(
    patient: Person, binding: FamilyBinding, opened_pairs: Collection[ProvincePair] = ()
) -> str | None:
    """The first rule this binding breaks, as a reason code, or None if it may pay."""
    if binding.status is not BindingStatus.ACTIVE:
        return "binding_inactive"
    if binding.relation is Relation.SPOUSE_PARENT:
        return "spouse_parent_not_close_relative"
    if binding.relation not in CLOSE_RELATIVES:
        return "not_close_relative"
    if binding.payer_insurance_type is not InsuranceType.EMPLOYEE:
        return "payer_not_employee_insurance"
    if binding.payer_account_id is None:
        return "payer_has_no_personal_account"
    if (
        patient.insurance_type not in BASIC_INSURANCE
        or patient.insurance_status is InsuranceStatus.TERMINATED
    ):
        return "patient_not_insured"
    a, b = province_of(binding.payer_region), province_of(patient.insured_region)
    if a != b and frozenset({a, b}) not in opened_pairs:
        return "cross_province"
    if binding.available_balance <= 0:
        return "no_balance"
    return None


def eligible_payers(
    patient: Person,
    bindings: Iterable[FamilyBinding],
    opened_pairs: Collection[ProvincePair] = (),
) -> FamilyDecision:
    """Split the patient's bindings into eligible payers (in binding order) and skipped ones.

    Ties in ``order`` (which the ledger should not produce) are broken by binding id,
    so the outcome is deterministic whatever order the bindings arrive in.
    """
    eligible: list[FamilyBinding] = []
    skipped: list[SkippedPayer] = []
    for binding in sorted(bindings, key=lambda b: (b.order, b.binding_id)):
        reason = skip_reason(patient, binding, opened_pairs)
        if reason is None:
            eligible.append(binding)
            continue
        zh, en = _REASONS[reason]
        skipped.append(
            SkippedPayer(
                binding_id=binding.binding_id,
                payer_psn_no=binding.payer_psn_no,
                payer_name=binding.payer_name,
                relation=binding.relation,
                reason_code=reason,
                message_zh=f"{RELATION_ZH[binding.relation]}：{zh}",
                message_en=f"{binding.relation.value.replace('_', ' ')}: {en}",
            )
        )
    return FamilyDecision(tuple(eligible), tuple(skipped))
