"""The ledger API's request and response bodies (a contract: docs/ledger-api.md).

Why here and not in pos_plugin/models.py: these are the wire format of one
external system. The shared models (``Leg``, ``PersonLookup``) are reused where
the shapes are the same, so the lookup answer parses straight into the type the
rules consume.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pos_plugin.models import InsuranceClass, Leg, LegKind, SaleFen

MSGID_RE = re.compile(r"^([A-Z0-9]{12})(\d{14})(\d{4})$")
PharmacyCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{12}$")]
Text = Annotated[str, Field(min_length=1, max_length=64)]


def msgid_stamp(stamp: str) -> dt.datetime:
    """A msgid's yyyyMMddHHmmss as a naive datetime (ValueError if it is not 14 ASCII
    digits of an instant).

    It is ISO 8601's basic format once a ``T`` is put between date and time, which
    ``fromisoformat`` reads in C: 0.2 us against strptime's 11 us, every settlement.
    ``fromisoformat`` also reads shorter forms ('2026120110' as 10:00 on 2026-12-01),
    so the width is checked first."""
    if len(stamp) != 14 or not (stamp.isascii() and stamp.isdigit()):
        raise ValueError(f"not a yyyyMMddHHmmss stamp: {stamp!r}")
    return dt.datetime.fromisoformat(f"{stamp[:8]}T{stamp[8:]}")


def check_msgid(value: str) -> str:
    """A msgid is pharmacy code (12) + yyyyMMddHHmmss + 4-digit sequence: 30 characters."""
    m = MSGID_RE.match(value)
    if m is None:
        raise ValueError("msgid must be 12-character pharmacy code + yyyyMMddHHmmss + 4 digits")
    try:
        msgid_stamp(m.group(2))
    except ValueError:
        raise ValueError("msgid carries an impossible timestamp") from None
    return value


MsgId = Annotated[str, Field(min_length=30, max_length=30), AfterValidator(check_msgid)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Credential(_Wire):
    """What identifies the patient: their card (number + serial) or an e-voucher token.

    One model with a ``kind`` rather than a union, so callers write
    ``Credential.card(no, sn)`` / ``Credential.evoucher(token)``.
    """

    kind: Literal["card", "evoucher"]
    card_no: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    card_sn: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    token: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Credential:
        if self.kind == "card" and (not self.card_no or not self.card_sn or self.token):
            raise ValueError("a card credential has card_no and card_sn and no token")
        if self.kind == "evoucher" and (not self.token or self.card_no or self.card_sn):
            raise ValueError("an evoucher credential has a token and no card fields")
        return self

    @classmethod
    def card(cls, card_no: str, card_sn: str) -> Credential:
        return cls(kind="card", card_no=card_no, card_sn=card_sn)

    @classmethod
    def evoucher(cls, token: str) -> Credential:
        return cls(kind="evoucher", token=token)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class LookupRequest(_Wire):
    credential: Credential


class LineSummary(_Wire):
    """One basket line as the ledger records it (for audits, not for pricing)."""

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    insurance_class: InsuranceClass
    quantity: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    amount: SaleFen
    # What a backend that prices centrally needs (the national platform's 2102 detail
    # rows); optional, and recorded as is by our own ledger.
    catalogue_code: Annotated[str, Field(max_length=64)] | None = None
    unit_price: SaleFen | None = None
    prescription_ref: Annotated[str, Field(max_length=64)] | None = None
    # 追溯码 of the packs sold (the national platform's 2102 durg_trac_info); split pack 拆零
    trace_codes: tuple[str, ...] = ()
    split_pack: bool = False


class SettlementRequest(_Wire):
    """One sale: all legs commit together or none. ``msgid`` is also the Idempotency-Key.

    Every amount (``cash``, ``total``, each leg's and line's) is at most ``AMOUNT_MAX``
    fen, what a till's PIN pad can show: the ledger refuses a larger one as
    ``invalid_request`` naming the field, before it reaches the 64-bit columns.
    """

    msgid: MsgId
    pharmacy_code: PharmacyCode
    terminal_id: Text
    operator: Text
    patient_psn_no: Text
    credential: Credential
    legs: Annotated[tuple[Leg, ...], Field(max_length=16)] = ()
    cash: SaleFen
    total: SaleFen
    lines: Annotated[tuple[LineSummary, ...], Field(max_length=500)] = ()
    proxy: bool = False


class ReversalRequest(_Wire):
    msgid: MsgId
    reason: Annotated[str, Field(max_length=200)] = ""
    terminal_id: Text | None = None
    operator: Text | None = None


class ReversalRef(_Wire):
    reversal_id: str
    msgid: str
    created_at: dt.datetime


class Settlement(_Wire):
    """A committed sale as the ledger holds it (``status`` moves to reversed on reversal)."""

    settlement_id: str
    msgid: str
    pharmacy_code: str
    terminal_id: str
    operator: str
    patient_psn_no: str
    status: Literal["settled", "reversed"]
    # The legs as committed, in cascade order. Empty where the backend decides the
    # family cascade itself and does not say who paid (the national platform): then
    # only ``personal_account`` / ``mutual_aid`` / ``cash`` are known.
    legs: tuple[Leg, ...] = ()
    balances_after: dict[str, int] = {}
    personal_account: int
    mutual_aid: int
    cash: int
    total: int
    proxy: bool
    created_at: dt.datetime
    business_date: dt.date
    reversal: ReversalRef | None = None
    # A backend's own record of the settlement, journaled as it came (the national
    # platform's setlinfo, detlcutinfo and mdtrt_id); our own ledger sends none.
    detail: dict[str, Any] | None = None


class VoidResult(_Wire):
    """``POST /v1/settlements/{msgid}/void``: the msgid's final word.

    ``voided``: no settlement committed under this msgid and none ever will (a later
    arrival of the request is refused with ``409 msgid_voided``). ``settled``: it had
    committed first; ``settlement`` is what the ledger holds. Either way the outcome
    is no longer unknown, which is why recovery asks this and not a bare GET.
    """

    msgid: str
    status: Literal["voided", "settled"]
    voided_at: dt.datetime | None = None
    settlement: Settlement | None = None


class ReversalResult(_Wire):
    """A committed full reversal: every leg of the original credited back."""

    reversal_id: str
    msgid: str
    settlement_id: str
    original_msgid: str
    pharmacy_code: str
    terminal_id: str
    legs: tuple[Leg, ...]
    balances_after: dict[str, int]
    personal_account: int
    mutual_aid: int
    cash: int
    total: int
    reason: str
    created_at: dt.datetime
    business_date: dt.date


class Totals(_Wire):
    count: int = 0
    total: int = 0
    personal_account: int = 0
    mutual_aid: int = 0
    cash: int = 0


class StatementTotals(_Wire):
    """Sales and reversals apart; reversal amounts are negative, net = sales + reversals."""

    sales: Totals
    reversals: Totals
    net: Totals


class StatementRow(_Wire):
    msgid: str
    settlement_id: str
    terminal_id: str
    kind: Literal["sale", "reversal"]
    status: Literal["settled", "reversed"] | None = None  # sales only
    original_msgid: str | None = None  # reversals only
    created_at: dt.datetime
    total: int
    personal_account: int
    mutual_aid: int
    cash: int
    legs: tuple[Leg, ...]


class Statement(_Wire):
    pharmacy_code: str
    date: dt.date
    terminal_id: str | None = None
    totals: StatementTotals
    rows: tuple[StatementRow, ...]
    page: int = 1
    page_size: int
    next_page: int | None = None
    # Keyset cursor for the next page; sent only to a request that gave ``after``.
    next_after: int | None = None


# ``format=compact``: each statement row as an array in this column order, each leg as
# [kind, account_id, amount]. The keys of the row objects are half of a day's bytes,
# and arrays decode straight into tuples, with no model object or dict per row: a
# 100,000-row day reads in a fraction of the time (docs/ledger-api.md).
COMPACT_COLUMNS = (
    "msgid", "settlement_id", "terminal_id", "kind", "status", "original_msgid",
    "created_at", "total", "personal_account", "mutual_aid", "cash", "legs",
)  # fmt: skip
# The row's checks are msgspec's (``msgspec.Meta``; its integers are strict: no bool,
# no float, no numeric string), as the page's: see ``CompactStatementPage``.
# A leg's kind as text (``LegKind``'s values): decoded as a literal, each comes back as
# the one shared string (a day holds ~10^5 legs); the journals' legs read the same way.
CompactLegKind = Literal["personal_account", "mutual_aid"]
assert set(get_args(CompactLegKind)) == {k.value for k in LegKind}
CompactLeg = tuple[CompactLegKind, str, Annotated[int, msgspec.Meta(gt=0)]]
CompactRow = tuple[
    Annotated[str, msgspec.Meta(min_length=1)],  # msgid
    str,  # settlement_id
    str,  # terminal_id
    Literal["sale", "reversal"],
    Literal["settled", "reversed"] | None,  # status (sales only)
    str | None,  # original_msgid (reversals only)
    Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d")],  # created_at, ISO 8601
    int,  # total
    int,  # personal_account
    int,  # mutual_aid
    int,  # cash
    tuple[CompactLeg, ...],  # legs: [kind, account_id, amount]
]


class CompactStatementPage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One page of ``GET /v1/statements/...?format=compact``: a ``Statement`` page whose
    rows are arrays in ``columns`` order. Read with ``decode_compact_page``.

    Why msgspec here, where every other body is a pydantic model: reconciliation reads a
    day of these (100,000 rows, 20 MB) in one interpreter, and msgspec decodes a page,
    checks included, in 0.6x pydantic-core's time (0.14 s against 0.22 s for the
    benchmark's day), close to a bare ``json.loads`` (bench/bench_reconcile.py). The
    totals stay pydantic's ``StatementTotals`` (one small object a page)."""

    pharmacy_code: str
    date: dt.date
    terminal_id: str | None = None
    totals: StatementTotals
    columns: tuple[str, ...]
    rows: tuple[CompactRow, ...]
    page: int = 1
    page_size: int
    next_page: int | None = None
    next_after: int | None = None


def _pydantic_models(type_: Any, obj: Any) -> Any:
    """msgspec's hook for a pydantic model inside a page (its totals): pydantic validates
    it; its ValidationError is a ValueError, which msgspec reports at the field's path."""
    if isinstance(type_, type) and issubclass(type_, BaseModel):
        return type_.model_validate(obj)
    raise NotImplementedError(type_)


_COMPACT_PAGE = msgspec.json.Decoder(CompactStatementPage, dec_hook=_pydantic_models)


def decode_compact_page(body: bytes) -> CompactStatementPage:
    """A compact page from its JSON bytes; ``msgspec.DecodeError`` (a ``ValidationError``
    naming the value's path, such as ``$.rows[1][6]``) when it is not one."""
    return _COMPACT_PAGE.decode(body)


@dataclass(frozen=True)
class CompactStatement:
    """A whole day's statement for reconciliation: rows as tuples in ``COMPACT_COLUMNS``
    order (``HttpLedgerClient.statement_compact``); totals as the ledger reported them."""

    pharmacy_code: str
    date: dt.date
    terminal_id: str | None
    totals: StatementTotals
    rows: list[CompactRow]


def compact_row(r: StatementRow) -> CompactRow:
    """A full-format statement row as the compact tuple (read from a ledger without
    ``format=compact``, or a ``Statement`` already in hand)."""
    legs = tuple((g.kind.value, g.account_id, g.amount) for g in r.legs)
    return (r.msgid, r.settlement_id, r.terminal_id, r.kind, r.status, r.original_msgid,
            r.created_at.isoformat(), r.total, r.personal_account, r.mutual_aid, r.cash,
            legs)  # type: ignore[return-value]  # LegKind values are those literals  # fmt: skip


class ErrorBody(BaseModel):
    """Every error: a stable ``code`` and a message; some carry more fields."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    field: str | None = None
