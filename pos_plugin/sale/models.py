"""The local API's sale shapes (a contract: docs/pos-api.md), its error, and the receipt.

Kept apart from the orchestration in ``sale.service`` so that the contract can be read
(and versioned) on its own.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pos_plugin.models import (
    AMOUNT_MAX,
    BasketLine,
    Buyer,
    IdDocument,
    Refusal,
    Relation,
    too_large,
)
from pos_plugin.sale.receipts import Receipt, ReceiptReversal


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


ITEMS_MAX = 200
"""Lines in one sale: a long prescription list, well within one receipt."""


class SaleRequest(_M):
    """``POST /v1/sales``: a contract (docs/pos-api.md).

    The basket's total is bounded here, at the API's edge, and not in the sale
    service: a request is validated before anything is journaled, so a basket the
    PIN pad cannot show (``AMOUNT_MAX``) is a 422 ``invalid_request`` on ``items``
    and leaves no row behind, where the same check after ``received`` would leave a
    sale to answer for.
    """

    sale_ref: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    items: Annotated[list[BasketLine], Field(min_length=1, max_length=ITEMS_MAX)]
    patient: IdDocument | None = None
    buyer: Buyer = Buyer()
    credential: Literal["card", "evoucher"] = "card"
    operator: Annotated[str, Field(min_length=1, max_length=32)] | None = None

    @field_validator("items")
    @classmethod
    def _total_bounded(cls, items: list[BasketLine]) -> list[BasketLine]:
        total = sum(line.amount for line in items)
        if total > AMOUNT_MAX:
            raise too_large("the basket total", total)
        return items


class PayerLine(_M):
    name: str  # masked
    relation: Relation
    relation_zh: str
    amount: int


class SkippedLine(_M):
    name: str  # masked
    relation: Relation
    reason_code: str
    message: str


class NoticeLine(_M):
    code: str
    message: str


SaleCode = Literal[
    # the rules' refusals (RefusalCode)
    "invalid_id_number",
    "card_not_patients_own",
    "proxy_evidence_missing",
    "proxy_evidence_mismatch",
    "proxy_is_patient",
    "card_reported_lost",
    "card_expired",
    "prescription_required",
    "ephedrine_id_required",
    "ephedrine_limit",
    "nothing_to_pay",
    # the national platform's catalogue and the packs' 追溯码, checked before the card
    "catalogue_code_unknown",
    "trace_code_invalid",
    "trace_code_count",
    "trace_code_repeated",
    "trace_code_sold_before",
    "trace_scan_unsupported",
    # the card, the PIN pad, the customer
    "pin_wrong",
    "pin_blocked",
    "card_not_found",
    "credential_mismatch",
    "card_not_presented",
    "cancelled",
    "device_timeout",
    "device_unavailable",
    "protocol_error",
    # the ledger and the outcome
    "outcome_pending",
    "not_charged",
    "interrupted",
    "cash_fallback",
    "msgid_voided",
    "ledger_unavailable",
    "ledger_refused",
    "day_closed",
]
"""Every code a sale's answer may carry (a contract: docs/pos-api.md's table).

Closed on purpose: a POS switches on these, so a code the ledger invents is answered
as ``ledger_refused`` (its own code in the message) rather than leak into the API."""

SALE_CODES: frozenset[str] = frozenset(get_args(SaleCode))

ErrorCode = Literal[
    SaleCode,
    "sale_ref_reused",
    "invalid_request",
    "not_reversible",
    "not_found",
    "not_waiting",
    "unauthorised",
    "forbidden",
    "method_not_allowed",
    "payload_too_large",
    "internal_error",
    "reconciliation_unavailable",
    # the manager's tools (reconcile.manager_page): what refuses a reversal, close or reopen
    "no_action",
    "action_failed",
    "day_not_balanced",
    "day_already_closed",
    "day_not_closed",
    "still_selling",
    "uploads_owed",
]
"""Every code of an error body ``{code, message}`` (the API's own, and a sale's)."""

SaleStatus = Literal["settled", "refused", "failed", "unknown", "reversed", "in_progress"]
Stage = Literal[
    "scanning_trace_codes", "waiting_for_card", "waiting_for_pin", "checking", "settling"
]


def sale_code(code: str) -> SaleCode:
    """A code as the API may say it: one of ``SaleCode``, else ``ledger_refused``."""
    return code if code in SALE_CODES else "ledger_refused"  # type: ignore[return-value]


class SaleResult(_M):
    """The answer to a sale: ``settled`` with the split, or ``refused``/an error with a code."""

    sale_ref: str
    status: SaleStatus
    # While in_progress on this till: what it waits for (GET ?wait= returns on a change).
    stage: Stage | None = None
    code: SaleCode | None = None
    message: str | None = None
    msgid: str | None = None
    settlement_id: str | None = None
    total: int | None = None
    account_payable: int | None = None
    personal_account: int | None = None
    mutual_aid: int | None = None  # the family accounts' share (家庭共济), all payers together
    family: list[PayerLine] = []  # each family payer, where the ledger says who paid
    cash: int | None = None
    skipped: list[SkippedLine] = []
    notices: list[NoticeLine] = []
    # The receipt as lines for the till's printer ([receipt] width: 32 or 48 columns,
    # CJK double width), and the same receipt as facts for a POS that lays it out itself.
    # On a reversed sale both are the reversal's own receipt (冲正/退款, negative amounts).
    receipt: list[str] = []
    receipt_detail: Receipt | None = None
    reversal: ReceiptReversal | None = None  # on a manager's reversal: its msgid, time, reason


class BalanceRequest(_M):
    credential: Literal["card", "evoucher"] = "card"


class BalanceResult(_M):
    holder: str  # masked
    has_personal_account: bool
    balance: int
    balance_yuan: str


# --------------------------------------------------------------------------- errors


class SaleError(Exception):
    """A sale that cannot go on, with a code from the POS API contract."""

    def __init__(self, code: str, message_zh: str, message_en: str, *, http_status: int) -> None:
        super().__init__(f"{code}: {message_en}")
        if code not in SALE_CODES and code not in ("not_found", "not_reversible"):
            message_en = f"{message_en} (ledger code {code})"
            code = "ledger_refused"
        self.code: str = code
        self.message = f"{message_zh} / {message_en}"
        self.http_status = http_status

    @classmethod
    def refused(cls, r: Refusal) -> SaleError:
        """A rule's refusal: the POS shows it as ``status: refused`` (HTTP 422)."""
        return cls(r.code.value, r.message_zh, r.message_en, http_status=422)
