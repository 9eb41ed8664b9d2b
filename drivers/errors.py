"""The one exception the device layer raises, with words a cashier can act on.

Why a single class with a ``code``: the sale service maps device failures to
its own answers (retry, ask for the card again, call support) and must not
depend on which layer (serial port, link, chip) noticed the problem. The
message pair is shown to the cashier as is, so each says what to *do*.
Card numbers, ID numbers and names never appear in these messages.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    DEVICE_TIMEOUT = "device_timeout"  # the customer did not act in time
    DEVICE_UNAVAILABLE = "device_unavailable"  # port missing / unplugged / busy
    CANCELLED = "cancelled"  # Terminal.cancel() or the caller's cancel event
    LINK_DOWN = "link_down"  # the serial link failed (re-send budget used up)
    CARD_UNREADABLE = "card_unreadable"  # no card, mute chip, malformed files
    CARD_NOT_PRESENTED = "card_not_presented"  # only a card inserted before this sale is in
    NOT_SOCIAL_SECURITY_CARD = "not_social_security_card"  # no SSC application
    PROTOCOL_ERROR = "protocol_error"  # the device answered something we did not ask
    SCAN_UNSUPPORTED = "scan_unsupported"  # no scanner for 追溯码 (SCAN_TRACE) on this device


# Default (Chinese, English) message per code; callers may pass a more precise one.
MESSAGES: dict[ErrorCode, tuple[str, str]] = {
    ErrorCode.DEVICE_TIMEOUT: (
        "等待超时：请顾客插入社保卡（芯片朝前）或出示医保电子凭证后重试",
        "timed out waiting for the customer: insert the card chip first or show "
        "the voucher QR code, then try again",
    ),
    ErrorCode.DEVICE_UNAVAILABLE: (
        "读卡器未连接，请检查连接线",
        "reader disconnected, check the cable",
    ),
    ErrorCode.CANCELLED: ("操作已取消", "cancelled by the cashier"),
    ErrorCode.LINK_DOWN: (
        "读卡器通讯中断，请检查连接线后重试",
        "reader not answering (serial link down), check the cable and try again",
    ),
    ErrorCode.CARD_UNREADABLE: (
        "无法读取卡片，请将卡片芯片朝前重新插入",
        "card could not be read, insert the card chip first and try again",
    ),
    ErrorCode.CARD_NOT_PRESENTED: (
        "读卡器中的卡不是为本笔交易插入的：请先取出再重新插卡",
        "the card in the reader was not inserted for this sale: remove the card and insert "
        "it again for this sale",
    ),
    ErrorCode.NOT_SOCIAL_SECURITY_CARD: (
        "这不是社会保障卡，请插入社保卡（医保卡）",
        "this is not a social-security card, insert the medical-insurance card",
    ),
    ErrorCode.PROTOCOL_ERROR: (
        "读卡器返回了无法识别的数据，请联系技术支持",
        "the reader answered something unexpected, call support",
    ),
    ErrorCode.SCAN_UNSUPPORTED: (
        "本读卡器不能扫描药品追溯码，请在收银系统扫码后随交易上送",
        "this reader cannot scan traceability codes: scan them at the POS and send them "
        "with the sale (trace_codes)",
    ),
}


class DeviceError(Exception):
    """A device operation failed; ``code`` is one of :class:`ErrorCode`."""

    def __init__(
        self,
        code: ErrorCode | str,
        message_en: str | None = None,
        message_zh: str | None = None,
    ) -> None:
        self.code: str = ErrorCode(code).value
        zh, en = MESSAGES[ErrorCode(code)]
        self.message_en: str = message_en or en
        self.message_zh: str = message_zh or zh
        super().__init__(f"{self.code}: {self.message_en}")

    @property
    def message(self) -> str:
        return f"{self.message_zh} / {self.message_en}"


class ScanUnsupported(DeviceError):
    """The device has no scanner for 追溯码 (a library reader; a serial device that answers
    SCAN_TRACE with ERROR 01): a type of its own, so the sale can tell "send the codes
    from the POS" apart from a scanner that failed."""

    def __init__(self, message_en: str | None = None, message_zh: str | None = None) -> None:
        super().__init__(ErrorCode.SCAN_UNSUPPORTED, message_en, message_zh)


class LinkDown(Exception):
    """Raised inside the link layer; the Terminal turns it into DeviceError("link_down")."""


class PortLost(Exception):
    """The serial port itself failed (unplugged, EOF, I/O error)."""
