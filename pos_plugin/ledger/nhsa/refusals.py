"""``infcode -1`` as a typed ledger error with a cashier's message, ID numbers masked.

Why here: the platform says *what* went wrong only in ``err_msg`` free text (often a
Java exception string), so the few cases the sale flow must treat differently (a lost
or expired card, an unknown person, a settlement already reversed, a lost sign-in) are
recognised by their words; everything else is a ``PlatformRefused`` whose message
quotes the platform. An err_msg may quote an ID number, so every 15/18-character ID
number in it is masked before it reaches a log, an error or the POS.
"""

from __future__ import annotations

import re
from typing import Any

from pos_plugin.ledger import errors as e
from pos_plugin.rules.identity import mask_id_number

# 18 characters (17 digits + check digit) or the old 15 digits, standing alone.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_JAVA_PREFIX = re.compile(r"^.*?(?:Exception|Error):\s*")
_NAMES = {
    "9001": "签到", "9002": "签退", "1101": "人员信息获取", "2101": "药店预结算",
    "2102": "药店结算", "2103": "药店结算撤销", "2601": "冲正", "3301": "目录对照上传",
    "3505": "商品销售", "3506": "商品销售退货",
}  # fmt: skip
SIGN_IN_WORDS = ("签到",)  # 未签到, 签到已失效, 请先签到
_LOST = ("挂失",)
_EXPIRED = ("有效期", "过期")
_UNKNOWN_PERSON = ("查无", "不存在", "未找到", "未查询到", "为空", "无此", "无参保")
_ALREADY_REVERSED = ("已撤销", "已冲正", "已经撤销", "重复撤销", "已退费")
_VOIDED = ("已被冲正",)  # a 2102 re-sent under a msgid that a 2601 concluded
_MSGID_REUSED = ("msgid 已被", "报文ID已存在", "报文ID重复")


def mask_ids(text: str) -> str:
    """Every ID number in ``text`` masked (``110105********002X``)."""
    return _ID_NUMBER.sub(lambda m: mask_id_number(m.group(1)), text)


def clean(err_msg: str) -> str:
    """The platform's message for people: masked, without a Java exception prefix, short."""
    text = mask_ids(err_msg.strip())
    text = _JAVA_PREFIX.sub("", text, count=1) or text
    return text[:200]


class PlatformRefused(e.LedgerError):
    """The platform answered ``infcode`` non-zero for a reason the flow has no branch for."""

    code = "platform_refused"

    def __init__(self, message: str, *, infno: str, err_msg: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.infno = infno
        self.err_msg = err_msg  # masked


def is_sign_in_error(err_msg: str) -> bool:
    """The platform says the sign_no is missing, stale or unknown (sign in again)."""
    return any(w in err_msg for w in SIGN_IN_WORDS)


def refusal(infno: str, err_msg: str) -> e.LedgerError:
    """The typed error for ``infcode != 0`` on ``infno`` (module docstring)."""
    said = clean(err_msg) or "（无错误信息 / no err_msg）"
    name = _NAMES.get(infno, infno)
    message = f"医保平台拒绝了{name}：{said} / the insurance platform refused {infno}: {said}"
    if infno in ("1101", "2101", "2102") and any(w in said for w in _LOST):
        return e.CardRefused(message, code="card_lost")
    if infno in ("1101", "2101", "2102") and any(w in said for w in _EXPIRED):
        return e.CardRefused(message, code="card_expired")
    if infno == "1101" and any(w in said for w in _UNKNOWN_PERSON):
        return e.NotFound(message)
    if infno == "2102" and any(w in said for w in _VOIDED):
        return e.MsgidVoided(message)
    if any(w in said for w in _MSGID_REUSED):
        return e.IdempotencyConflict(message)
    if infno == "2103" and any(w in said for w in _ALREADY_REVERSED):
        return e.AlreadyReversed(message)
    return PlatformRefused(message, infno=infno, err_msg=said)
