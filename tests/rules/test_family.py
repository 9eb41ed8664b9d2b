"""Which family payers may pay, and the reason for every one skipped."""

from __future__ import annotations

import pytest

from pos_plugin.models import BindingStatus, InsuranceType, Relation
from pos_plugin.rules.family import (
    CLOSE_RELATIVES,
    eligible_payers,
    parse_province_pair,
    skip_reason,
)

from .factories import binding, person

PATIENT = person()


@pytest.mark.parametrize("relation", sorted(CLOSE_RELATIVES))
def test_every_close_relative_may_pay(relation: Relation) -> None:
    assert skip_reason(PATIENT, binding(1, relation=relation)) is None


def test_spouse_parent_is_skipped_with_its_own_reason() -> None:
    decision = eligible_payers(PATIENT, [binding(1, relation=Relation.SPOUSE_PARENT)])
    assert decision.eligible == ()
    (skipped,) = decision.skipped
    assert skipped.reason_code == "spouse_parent_not_close_relative"
    assert "配偶的父母" in skipped.message_zh


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"relation": Relation.OTHER}, "not_close_relative"),
        ({"status": BindingStatus.SUSPENDED}, "binding_inactive"),
        ({"status": BindingStatus.REVOKED}, "binding_inactive"),
        ({"insurance_type": InsuranceType.RESIDENTS}, "payer_not_employee_insurance"),
        ({"has_account": False}, "payer_has_no_personal_account"),
        ({"region": "130102"}, "cross_province"),
        ({"balance": 0}, "no_balance"),
    ],
)
def test_skip_reasons(kwargs: dict[str, object], reason: str) -> None:
    assert skip_reason(PATIENT, binding(1, **kwargs)) == reason  # type: ignore[arg-type]


def test_same_province_other_city_is_fine() -> None:
    assert skip_reason(PATIENT, binding(1, region="110229")) is None


def test_cross_province_pair_opened_in_config_allows_the_payer() -> None:
    payer = binding(1, region="130102")
    assert skip_reason(PATIENT, payer, [parse_province_pair("13-11")]) is None
    assert skip_reason(PATIENT, payer, [parse_province_pair("12-11")]) == "cross_province"


def test_residents_insurance_patient_may_receive_mutual_aid() -> None:
    child = person(insurance_type=InsuranceType.RESIDENTS)
    assert skip_reason(child, binding(1, relation=Relation.PARENT)) is None


def test_terminated_patient_is_not_insured() -> None:
    from pos_plugin.models import InsuranceStatus, Person

    gone = Person(
        psn_no="P9",
        name="x",
        id_number="x",
        insurance_type=InsuranceType.EMPLOYEE,
        insured_region="110105",
        insurance_status=InsuranceStatus.TERMINATED,
    )
    assert skip_reason(gone, binding(1)) == "patient_not_insured"


def test_order_is_binding_order_not_arrival_order() -> None:
    bindings = [binding(1, order=3), binding(2, order=1), binding(3, order=2)]
    decision = eligible_payers(PATIENT, bindings)
    assert [b.binding_id for b in decision.eligible] == ["B2", "B3", "B1"]


def test_skipped_and_eligible_partition_the_bindings() -> None:
    bindings = [
        binding(1, relation=Relation.SPOUSE),
        binding(2, relation=Relation.SPOUSE_PARENT),
        binding(3, relation=Relation.PARENT, region="130102"),
        binding(4, relation=Relation.SIBLING, balance=0),
    ]
    decision = eligible_payers(PATIENT, bindings)
    assert [b.binding_id for b in decision.eligible] == ["B1"]
    assert [(s.binding_id, s.reason_code) for s in decision.skipped] == [
        ("B2", "spouse_parent_not_close_relative"),
        ("B3", "cross_province"),
        ("B4", "no_balance"),
    ]


@pytest.mark.parametrize("text", ["11", "11-11", "1-13", "aa-bb", "11-13-14", ""])
def test_bad_province_pairs_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="province pair"):
        parse_province_pair(text)
