"""What a library's return code means, in one table, and the error each becomes.

Why a table with names, overridable from config: the public headers of
SSCardDriver and HeaSecReadInfo say only "0 is success". The negative codes
below are the ones seen in public integrations (``-2`` "insert the card", the
HSM codes ``-2201/-2202/-2203/-27272/-24`` that send a card to the provincial
key service) plus an *assumed* numbering for the rest (docs/readers.md lists
which is which). A vendor whose library numbers differently is configured with
``[reader] return_codes = { "-12" = "no_card" }`` instead of a code change.

PIN outcomes also come from the ISO 7816 status word when the library puts one
in its output (``63Cx``: wrong, x tries left; ``6983`` / ``63C0``: blocked),
which is more reliable than any vendor numbering.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from drivers.errors import DeviceError, ErrorCode
from drivers.results import PinOutcome, PinResult


class Meaning(StrEnum):
    OK = "ok"
    NOT_CONNECTED = "not_connected"  # reader unplugged / port cannot be opened
    NO_CARD = "no_card"  # no card in the reader (keep waiting)
    CARD_MUTE = "card_mute"  # card does not answer (power-on / reset failed)
    NOT_SSC = "not_ssc"  # a card, but not a social-security card
    NEEDS_HSM = "needs_hsm"  # the local PSAM cannot authenticate it: HSM two-step
    PIN_WRONG = "pin_wrong"
    PIN_BLOCKED = "pin_blocked"
    PIN_CANCELLED = "pin_cancelled"
    PIN_TIMEOUT = "pin_timeout"
    FAILED = "failed"  # any other failure


DEFAULT_CODES: dict[int, Meaning] = {
    0: Meaning.OK,
    -1: Meaning.NOT_CONNECTED,  # assumed
    -2: Meaning.NO_CARD,  # seen: integrations answer -2 with "请插入社保卡"
    -3: Meaning.CARD_MUTE,  # assumed
    -4: Meaning.NOT_SSC,  # assumed
    -5: Meaning.PIN_WRONG,  # assumed (the status word in the output decides when present)
    -6: Meaning.PIN_BLOCKED,  # assumed
    -7: Meaning.PIN_CANCELLED,  # assumed
    -8: Meaning.PIN_TIMEOUT,  # assumed
    -11: Meaning.NOT_CONNECTED,  # assumed (several vendors' "读卡器连接错")
    # Seen in public code: the codes for which the card is read through the HSM.
    -24: Meaning.NEEDS_HSM,
    -2201: Meaning.NEEDS_HSM,
    -2202: Meaning.NEEDS_HSM,
    -2203: Meaning.NEEDS_HSM,
    -27272: Meaning.NEEDS_HSM,
}

# After these the library is re-initialised before its next use.
REINIT_AFTER = {Meaning.NOT_CONNECTED, Meaning.CARD_MUTE, Meaning.FAILED}

_SW = re.compile(r"\b(63C[0-9A-Fa-f]|6983|6984|9000)\b")


class CodeTable:
    """Return code -> :class:`Meaning`, with per-installation overrides."""

    def __init__(self, overrides: Mapping[Any, str] | None = None) -> None:
        self._codes = dict(DEFAULT_CODES)
        for code, meaning in (overrides or {}).items():
            self._codes[int(code)] = Meaning(meaning)

    def meaning(self, rc: int) -> Meaning:
        return self._codes.get(rc, Meaning.FAILED)


class ReaderFault(DeviceError):
    """A library call failed; ``reinit`` says the library must be initialised again."""

    def __init__(
        self, code: ErrorCode, message_en: str, message_zh: str, *, reinit: bool = False
    ) -> None:
        super().__init__(code, message_en, message_zh)
        self.reinit = reinit


def error_for(meaning: Meaning, rc: int, what: str) -> ReaderFault:
    """The device error a failed call becomes; the message says what to do."""
    reinit = meaning in REINIT_AFTER
    if meaning is Meaning.NOT_CONNECTED:
        return ReaderFault(
            ErrorCode.DEVICE_UNAVAILABLE,
            f"reader not connected ({what} returned {rc}): check the reader's cable and power",
            f"读卡器未连接（{what} 返回 {rc}），请检查读卡器连接线和电源",
            reinit=reinit,
        )
    if meaning is Meaning.NO_CARD:
        return ReaderFault(
            ErrorCode.CARD_UNREADABLE,
            "no card in the reader, insert the card chip first",
            "读卡器中没有卡，请将卡片芯片朝前插入",
        )
    if meaning is Meaning.CARD_MUTE:
        return ReaderFault(
            ErrorCode.CARD_UNREADABLE,
            f"the card does not answer ({what} returned {rc}): take it out, insert it chip "
            "first and try again",
            f"卡片无响应（{what} 返回 {rc}），请取出卡片，芯片朝前重新插入",
            reinit=reinit,
        )
    if meaning is Meaning.NOT_SSC:
        return ReaderFault(
            ErrorCode.NOT_SOCIAL_SECURITY_CARD,
            f"card not recognised as a social-security card ({what} returned {rc})",
            f"无法识别为社会保障卡（{what} 返回 {rc}），请插入社保卡（医保卡）",
        )
    if meaning is Meaning.NEEDS_HSM:
        return ReaderFault(
            ErrorCode.CARD_UNREADABLE,
            f"this card must be authenticated by the provincial key service ({what} returned "
            f"{rc}), which this till is not set up for; ask for the electronic voucher instead",
            f"该卡需经省级加密机认证（{what} 返回 {rc}），本机未配置，请改用医保电子凭证",
        )
    return ReaderFault(
        ErrorCode.PROTOCOL_ERROR,
        f"the reader library failed {what} with code {rc}; try again, and call support "
        "if it keeps failing",
        f"读卡器动态库执行 {what} 失败（返回 {rc}），请重试，多次失败请联系技术支持",
    )


def pin_result(meaning: Meaning, rc: int, output: str) -> PinResult:
    """iVerifyPIN's outcome: the status word in the output first, else the return code."""
    match = _SW.search(output.upper())
    if match:
        sw = match.group(1)
        if sw == "9000" and meaning is Meaning.OK:
            return PinResult(PinOutcome.VERIFIED)
        if sw in ("6983", "6984", "63C0"):
            return PinResult(PinOutcome.BLOCKED, tries_left=0)
        if sw.startswith("63C"):
            return PinResult(PinOutcome.WRONG, tries_left=int(sw[3], 16))
    if meaning is Meaning.OK:
        return PinResult(PinOutcome.VERIFIED)
    if meaning is Meaning.PIN_WRONG:
        tries = re.search(r"(\d+)", output)
        return PinResult(PinOutcome.WRONG, tries_left=int(tries.group(1)) if tries else None)
    if meaning is Meaning.PIN_BLOCKED:
        return PinResult(PinOutcome.BLOCKED, tries_left=0)
    if meaning is Meaning.PIN_CANCELLED:
        return PinResult(PinOutcome.CANCELLED)
    if meaning is Meaning.PIN_TIMEOUT:
        return PinResult(PinOutcome.TIMEOUT)
    raise error_for(meaning, rc, "iVerifyPIN")
