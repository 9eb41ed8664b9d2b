"""Pydantic models shared by every layer of the agent.

Why one module: the rules, the drivers, the ledger client, the journal and the
local API all speak about the same few things (a patient, a card, a basket, an
allocation of money over accounts). Declaring them once keeps the contracts
between layers visible and checked.

Money is always ``int`` fen (0.01 yuan). ``Fen`` is a strict int, so a float or
a numeric string is rejected at the boundary instead of being rounded silently.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from pos_plugin.money import yuan

Fen = Annotated[int, Field(strict=True, ge=0)]
"""A non-negative amount of money in fen (0.01 yuan)."""

AMOUNT_MAX = 0xFFFF_FFFF
"""The largest amount of one sale, in fen: 4,294,967,295 fen (¥42,949,672.95).

Why this number: the PIN pad shows the customer the amount to pay as a u32 of fen
(``SHOW_AMOUNT``, docs/serial-protocol.md), and a sale the customer cannot be shown
cannot be paid. Every unit price, line amount, basket total and settlement leg is
bounded by it, at the local API and at the ledger, so an absurd amount is a clear
``invalid_request`` naming the field instead of a crash half-way through a sale;
and any sum the journal or the ledger keeps (200 lines, a day's rows) stays far
inside the 64-bit integers of SQLite and PostgreSQL.
"""

SaleFen = Annotated[int, Field(strict=True, ge=0, le=AMOUNT_MAX)]
"""An amount of a sale in fen: non-negative and at most ``AMOUNT_MAX``."""

PositiveFen = Annotated[int, Field(strict=True, gt=0, le=AMOUNT_MAX)]
"""A strictly positive amount of a sale in fen (a leg never moves zero), at most ``AMOUNT_MAX``."""


def too_large(what: str, amount: int) -> PydanticCustomError:
    """The validation error for an amount beyond ``AMOUNT_MAX``, in words for the cashier.

    A custom error (not a ``ValueError``) so that the API's ``invalid_request`` message
    reads as a sentence, without pydantic's "Value error," prefix.
    """
    return PydanticCustomError(
        "amount_too_large",
        "{what} {amount} fen is more than one sale may be: at most {max} fen ({max_yuan}), "
        "the largest amount the PIN pad can show",
        {"what": what, "amount": amount, "max": AMOUNT_MAX, "max_yuan": yuan(AMOUNT_MAX)},
    )

RegionCode = Annotated[str, Field(pattern=r"^\d{6}$")]
"""A six-digit administrative division code; the first two digits are the province."""


class Frozen(BaseModel):
    """Base for value objects: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- identity


class IdDocType(StrEnum):
    """Identity documents a person may show at the counter."""

    RESIDENT_ID = "resident_id"  # 居民身份证 (GB 11643), the only one we can verify fully
    FOREIGN_PERMANENT_RESIDENT_ID = "foreign_permanent_resident_id"  # 外国人永久居留身份证
    HK_MACAO_RESIDENCE_PERMIT = "hk_macao_residence_permit"  # 港澳居民居住证
    TAIWAN_RESIDENCE_PERMIT = "taiwan_residence_permit"  # 台湾居民居住证
    PASSPORT = "passport"
    OTHER = "other"


class IdDocument(Frozen):
    """An identity document as keyed in or scanned by the cashier."""

    doc_type: IdDocType = IdDocType.RESIDENT_ID
    number: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(max_length=128)] | None = None


# --------------------------------------------------------------------------- insurance


class InsuranceType(StrEnum):
    """National insurance type codes (险种)."""

    EMPLOYEE = "310"  # 职工基本医疗保险: has a personal account
    RESIDENTS = "390"  # 城乡居民基本医疗保险: no personal account


class InsuranceStatus(StrEnum):
    ACTIVE = "active"  # 参保缴费正常
    # 暂停参保: contributions lapsed; the account still pays while it has money
    SUSPENDED = "suspended"
    TERMINATED = "terminated"  # 终止参保


class CardStatus(StrEnum):
    ACTIVE = "active"
    LOST = "lost"  # 挂失: must be refused
    EXPIRED = "expired"


class BindingStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class Relation(StrEnum):
    """Relation of the family payer to the patient (payer *is the patient's* ...)."""

    SPOUSE = "spouse"  # 配偶
    PARENT = "parent"  # 父母
    CHILD = "child"  # 子女
    SIBLING = "sibling"  # 兄弟姐妹
    PATERNAL_GRANDPARENT = "paternal_grandparent"  # 祖父母
    MATERNAL_GRANDPARENT = "maternal_grandparent"  # 外祖父母
    PATERNAL_GRANDCHILD = "paternal_grandchild"  # 孙子女
    MATERNAL_GRANDCHILD = "maternal_grandchild"  # 外孙子女
    SPOUSE_PARENT = "spouse_parent"  # 配偶的父母: NOT a close relative for mutual aid
    OTHER = "other"


RELATION_ZH: dict[Relation, str] = {
    Relation.SPOUSE: "配偶",
    Relation.PARENT: "父母",
    Relation.CHILD: "子女",
    Relation.SIBLING: "兄弟姐妹",
    Relation.PATERNAL_GRANDPARENT: "祖父母",
    Relation.MATERNAL_GRANDPARENT: "外祖父母",
    Relation.PATERNAL_GRANDCHILD: "孙子女",
    Relation.MATERNAL_GRANDCHILD: "外孙子女",
    Relation.SPOUSE_PARENT: "配偶的父母",
    Relation.OTHER: "其他",
}


# --------------------------------------------------------------------------- card and person


class CardData(Frozen):
    """What the social-security card's chip yields (the iReadCardBas facts we use).

    No PIN and no PIN block is ever part of this model: the chip verifies its PIN
    itself and the host only learns the result.
    """

    region_code: RegionCode  # issuing / insured region
    id_number: str  # social-security number = the holder's resident ID number
    card_no: Annotated[str, Field(min_length=1, max_length=32)]
    card_sn: Annotated[str, Field(min_length=1, max_length=32)]  # card identification code
    holder_name: str
    spec_version: str = "3.00"
    issue_date: dt.date | None = None
    expiry_date: dt.date | None = None


class Person(Frozen):
    """An insured person as the ledger knows them."""

    psn_no: str
    name: str
    id_number: str
    insurance_type: InsuranceType
    insured_region: RegionCode
    insurance_status: InsuranceStatus = InsuranceStatus.ACTIVE


class PersonalAccount(Frozen):
    """A personal account (个人账户) and what it may pay now."""

    account_id: str
    balance: Fen


class FamilyBinding(Frozen):
    """A bound family payer (共济人) whose personal account may pay for the patient.

    ``order`` ranks the family payers: the patient's own account always pays
    first, then the binding with the lowest order, and so on.
    """

    binding_id: str
    payer_psn_no: str
    payer_name: str
    payer_account_id: str | None
    relation: Relation
    order: Annotated[int, Field(ge=1)]
    payer_insurance_type: InsuranceType
    payer_region: RegionCode
    status: BindingStatus = BindingStatus.ACTIVE
    available_balance: Fen = 0


class PersonLookup(Frozen):
    """The ledger's one-round-trip answer about a credential's holder."""

    person: Person
    card_status: CardStatus = CardStatus.ACTIVE
    card_expiry: dt.date | None = None
    personal_account: PersonalAccount | None = None
    bindings: tuple[FamilyBinding, ...] = ()


# --------------------------------------------------------------------------- basket


class InsuranceClass(StrEnum):
    """Catalogue class of a line: A and B may be paid by accounts, C and none are cash."""

    A = "A"  # 甲类
    B = "B"  # 乙类
    C = "C"  # 丙类 (self-paid)
    NONE = "none"  # not in the catalogue (cosmetics, food, daily goods)


QUANTITY_MAX = 10_000
"""Packages on one basket line: far more than a pharmacy counter sells of one item."""


class BasketLine(Frozen):
    """One line of the basket as the POS rang it up.

    ``quantity``, ``unit_price`` and the line's amount are bounded (``QUANTITY_MAX``,
    ``AMOUNT_MAX``) so that no line can make a total the PIN pad or the journal cannot
    hold; a line beyond them is refused with its field named.
    """

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    catalogue_code: Annotated[str, Field(max_length=64)] | None = None
    insurance_class: InsuranceClass = InsuranceClass.NONE
    quantity: Annotated[int, Field(strict=True, ge=1, le=QUANTITY_MAX)]
    unit_price: SaleFen
    prescription: bool = False
    prescription_ref: Annotated[str, Field(max_length=64)] | None = None
    ephedrine_compound: bool = False
    # 追溯码: one per pack sold (``quantity`` packs), scanned at the counter; a split-pack
    # line (拆零) sells part of one opened pack and carries that pack's code.
    trace_codes: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=100)], ...],
        Field(max_length=QUANTITY_MAX),
    ] = ()
    split_pack: bool = False
    # No codes from the POS: the agent asks the counter device's scanner for one per
    # pack before the card (pos_plugin.sale.trace_scan); the POS sends one or the other.
    scan_trace: bool = False

    @field_validator("scan_trace")
    @classmethod
    def _codes_or_scan(cls, scan_trace: bool, info: ValidationInfo) -> bool:
        if scan_trace and info.data.get("trace_codes"):
            raise ValueError(
                "give the line's trace_codes or ask for scan_trace (the cashier scans the "
                "packs on the counter device), not both"
            )
        return scan_trace

    @field_validator("unit_price")
    @classmethod
    def _line_amount_bounded(cls, unit_price: int, info: ValidationInfo) -> int:
        """quantity x unit_price within ``AMOUNT_MAX``: named on ``unit_price``, the field
        that makes a valid quantity too much (quantity is validated first)."""
        quantity = info.data.get("quantity")
        if isinstance(quantity, int) and quantity * unit_price > AMOUNT_MAX:
            raise too_large(f"the line amount {quantity} x {unit_price} =", quantity * unit_price)
        return unit_price

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


# --------------------------------------------------------------------------- decisions


class RefusalCode(StrEnum):
    """Refusal codes: a contract, returned by every API of the agent."""

    INVALID_ID_NUMBER = "invalid_id_number"
    CARD_NOT_PATIENTS_OWN = "card_not_patients_own"
    PROXY_EVIDENCE_MISSING = "proxy_evidence_missing"
    PROXY_EVIDENCE_MISMATCH = "proxy_evidence_mismatch"
    PROXY_IS_PATIENT = "proxy_is_patient"
    CARD_REPORTED_LOST = "card_reported_lost"
    CARD_EXPIRED = "card_expired"
    PRESCRIPTION_REQUIRED = "prescription_required"
    EPHEDRINE_ID_REQUIRED = "ephedrine_id_required"
    EPHEDRINE_LIMIT = "ephedrine_limit"
    NOTHING_TO_PAY = "nothing_to_pay"


class Refusal(Frozen):
    """Why a sale may not go ahead, in words for the cashier (Chinese and English)."""

    code: RefusalCode
    message_zh: str
    message_en: str

    @property
    def message(self) -> str:
        return f"{self.message_zh} / {self.message_en}"


class Notice(Frozen):
    """Something the cashier should see that does not stop the sale (a warning)."""

    code: str
    message_zh: str
    message_en: str


class LegKind(StrEnum):
    PERSONAL_ACCOUNT = "personal_account"  # the patient's own account
    MUTUAL_AID = "mutual_aid"  # a family payer's account (家庭共济)


class Leg(Frozen):
    """One account's part of a settlement."""

    kind: LegKind
    account_id: str
    payer_psn_no: str
    amount: PositiveFen
    binding_id: str | None = None


class SkippedPayer(Frozen):
    """A bound family payer that may not pay for this sale, and why."""

    binding_id: str
    payer_psn_no: str
    payer_name: str
    relation: Relation
    reason_code: str
    message_zh: str
    message_en: str


class Allocation(Frozen):
    """How a sale's total is split: account legs in cascade order, then cash."""

    total: Fen
    account_payable: Fen  # the part the accounts may pay (catalogue A/B lines)
    legs: tuple[Leg, ...]
    cash: Fen
    cash_only: Fen  # lines that must be cash whatever the balances (class C / none)

    @property
    def accounts_paid(self) -> int:
        return sum(leg.amount for leg in self.legs)

    @property
    def personal_account_paid(self) -> int:
        return sum(leg.amount for leg in self.legs if leg.kind is LegKind.PERSONAL_ACCOUNT)

    @property
    def mutual_aid_paid(self) -> int:
        return sum(leg.amount for leg in self.legs if leg.kind is LegKind.MUTUAL_AID)


class Buyer(Frozen):
    """Who stands at the counter: the patient themself, or a proxy buyer with their ID."""

    role: Literal["self", "proxy"] = "self"
    id_document: IdDocument | None = None
