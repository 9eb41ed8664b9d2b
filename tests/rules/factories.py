"""Small builders for rule tests: plain models, no I/O."""

from __future__ import annotations

from pos_plugin.models import (
    BindingStatus,
    FamilyBinding,
    InsuranceType,
    Person,
    Relation,
)

PATIENT_ID = "110105198005120319"  # 张伟, as in the example world
OTHER_ID = "110108198208200422"  # 王芳
BUYER_ID = "110101199007070262"  # 李娜


def person(
    *,
    psn_no: str = "P1",
    id_number: str = PATIENT_ID,
    insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
    region: str = "110105",
) -> Person:
    return Person(
        psn_no=psn_no,
        name="张伟",
        id_number=id_number,
        insurance_type=insurance_type,
        insured_region=region,
    )


def binding(
    n: int,
    *,
    relation: Relation = Relation.SPOUSE,
    balance: int = 10_000,
    insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
    region: str = "110108",
    status: BindingStatus = BindingStatus.ACTIVE,
    order: int | None = None,
    has_account: bool = True,
) -> FamilyBinding:
    return FamilyBinding(
        binding_id=f"B{n}",
        payer_psn_no=f"F{n}",
        payer_name=f"家人{n}",
        payer_account_id=f"PA-F{n}" if has_account else None,
        relation=relation,
        order=order if order is not None else n,
        payer_insurance_type=insurance_type,
        payer_region=region,
        status=status,
        available_balance=balance,
    )
