"""What the Terminal hands back to the sale service: plain, typed values.

Reprs mask personal data, because results end up in logs and tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from pos_plugin.models import CardData
from pos_plugin.rules.identity import mask_card_no, mask_id_number, mask_name


class PinOutcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"  # tries_left says how many remain
    BLOCKED = "blocked"  # no tries left: the card must be unblocked at a service centre
    CANCELLED = "cancelled"  # the customer pressed Cancel on the PIN pad
    TIMEOUT = "timeout"  # the customer typed nothing in time


@dataclass(frozen=True, slots=True)
class PinResult:
    outcome: PinOutcome
    tries_left: int | None = None

    @property
    def verified(self) -> bool:
        return self.outcome is PinOutcome.VERIFIED


@dataclass(frozen=True, slots=True)
class CardPresented:
    """A social-security card was inserted and read."""

    card: CardData
    atr: bytes = b""

    def __repr__(self) -> str:
        c = self.card
        return (
            f"CardPresented(card_no={mask_card_no(c.card_no)!r}, "
            f"id_number={mask_id_number(c.id_number)!r}, holder={mask_name(c.holder_name)!r}, "
            f"region={c.region_code!r}, expiry={c.expiry_date})"
        )


@dataclass(frozen=True, slots=True)
class VoucherScanned:
    """An electronic-voucher QR code was scanned; the ledger resolves the token."""

    token: str
    # What the voucher library says about the holder (NationEcTrans' idNo / userName);
    # the serial scanner does not know them.
    holder_id_number: str | None = None
    holder_name: str | None = None

    def __repr__(self) -> str:
        return f"VoucherScanned(token={self.token[:6]!r}...)"


@dataclass(frozen=True, slots=True)
class TracePrompt:
    """What the pad asks the cashier to scan: pack ``pack`` of ``packs`` of basket line
    ``line`` (``product``: its catalogue code or SKU; ``name`` shown on the pad);
    ``note`` says why the last scan was not taken ("" for none)."""

    line: int
    pack: int
    packs: int
    product: str
    name: str
    note: str = ""


class DeviceState(StrEnum):
    IDLE = "idle"
    WAITING_FOR_CARD = "waiting_for_card"
    CARD_PRESENT = "card_present"
    PIN = "pin"
    SCANNING = "scanning"  # waiting for a pack's 追溯码 on the scanner
    DONE = "done"
    ABORTED = "aborted"


class DeviceStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    up: bool
    state: DeviceState
    last_error: str | None = None
    url: str = ""
    reconnects: int = 0
    model: str | None = None  # the device's model/firmware from HELLO, when known
