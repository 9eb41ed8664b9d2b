"""Receipts: a small model of what the customer takes home, rendered for 58 / 80 mm printers.

Why a model and a renderer apart: the POS gets both (``SaleResult.receipt_detail`` and
the rendered ``receipt`` lines), so a POS with its own layout engine prints from the
facts, and one that prints text as it comes gets lines that fit its paper. The model
holds only masked personal data (names ``张*``, documents ``110105********0319``,
card numbers ``B******01``) and money in int fen; yuan strings appear only in the
rendered lines.

Columns: a 58 mm thermal printer prints 32 columns of the ASCII font, an 80 mm one 48.
A CJK character takes two columns, so widths are counted with
``unicodedata.east_asian_width``: wide (W) and fullwidth (F) count 2, and so does
ambiguous (A), since the GB18030 fonts of Chinese receipt printers print those
(``×``, ``—``, ``·``) at double width as well; combining marks count 0.

What the issue asked the receipt to say, and where it is decided here:
- a proxy purchase says 代购 with the buyer's masked document;
- a family payer that could not pay gets one plain sentence with the relation
  (never a reason code), and only when a payer was actually needed: when part of
  what the accounts may pay was left to cash. A payer skipped while the accounts
  covered everything changed nothing for the customer, and printing it would only
  puzzle them;
- the national platform does not say which family payer paid: then the family
  share is one line (``mutual_aid``), not a line per payer;
- a reversal has its own receipt (冲正/退款), with negative amounts, the reversal's
  msgid, reason and time, and the original sale_ref and msgid;
- each line's class (甲类/乙类/丙类) is the POS's, except on the national platform,
  where the 2102 answer classes every line it settled (``chrgitm_lv`` 01/02/03): that
  is what the fund applied, so that is what is printed (``receipt_items``);
- each line's 追溯码 (one per pack) is printed under it, one code a line, so a
  customer or an inspector can match a pack to the sale; a 20-digit national code
  fits on one line at 58 mm, a longer one wraps.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pos_plugin.money import yuan

ReceiptWidth = Literal[58, 80]
COLUMNS: dict[int, int] = {58: 32, 80: 48}

CLASS_ZH = {"A": "甲类", "B": "乙类", "C": "丙类", "none": "自费"}
# The national platform's 收费项目等级 (chrgitm_lv) as our insurance classes.
CHRGITM_LV = {"01": "A", "02": "B", "03": "C"}
TRACE_LABEL = "  追溯码"
DOC_TYPE_ZH = {
    "resident_id": "身份证",
    "foreign_permanent_resident_id": "永居证",
    "hk_macao_residence_permit": "港澳居住证",
    "taiwan_residence_permit": "台湾居住证",
    "passport": "护照",
    "other": "证件",
}

# One plain sentence per reason a bound family payer did not pay, after "<relation> <name>".
# A reason the agent does not know yet still gets a sentence, never its code.
NOT_USED_ZH = {
    "binding_inactive": "的共济绑定未生效，未参与支付",
    "spouse_parent_not_close_relative": "不属于家庭共济的近亲属，未参与支付",
    "not_close_relative": "不属于家庭共济的近亲属，未参与支付",
    "payer_not_employee_insurance": "未参加职工医保，不能共济支付",
    "payer_has_no_personal_account": "没有个人账户，不能共济支付",
    "patient_not_insured": "不能为未参加基本医保的用药人共济支付",
    "cross_province": "在外省参保，两省未开通跨省共济，未参与支付",
    "no_balance": "的个人账户余额为零，未参与支付",
}
NOT_USED_OTHER = "未参与本次共济支付"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReceiptItem(_M):
    name: str
    quantity: int
    amount: int  # fen; negative on a reversal's receipt
    insurance_class: str  # A, B, C, none (the platform's class where it gave one)
    trace_codes: list[str] = []  # 追溯码, one per pack


class ReceiptPayer(_M):
    """A family payer's share: relation in Chinese and masked name."""

    relation_zh: str
    name: str
    amount: int


class ReceiptProxy(_M):
    """The proxy buyer (受托人): the document type and masked number, the masked name."""

    doc_type: str
    number_masked: str
    name: str | None = None


class ReceiptReversal(_M):
    """What a reversal's receipt names besides the sale it undoes."""

    msgid: str
    at: str  # "YYYY-MM-DD HH:MM:SS", China time
    reason: str = ""
    by: str | None = None  # who reversed it, where not the till (the manager, by msgid)
    # The till took the sale's cash part and hands it back. Not so when the manager
    # reverses at the ledger a sale the till concluded failed: no cash was taken for it,
    # so the receipt says the cash part is not returned (the accounts' parts are).
    cash_returned: bool = True


class Receipt(_M):
    """One receipt's facts. Amounts in fen, negative on a reversal (``kind="reversal"``)."""

    kind: Literal["sale", "reversal"] = "sale"
    store_name: str
    pharmacy_code: str
    terminal_id: str
    operator: str | None = None
    at: str  # when the sale was sent to the ledger, "YYYY-MM-DD HH:MM:SS" (from the msgid)
    sale_ref: str
    msgid: str
    settlement_id: str | None = None
    credential: Literal["card", "evoucher"] = "card"
    card_no_masked: str | None = None
    patient_name: str | None = None  # masked
    patient_id_masked: str | None = None
    proxy: ReceiptProxy | None = None
    items: list[ReceiptItem] = []
    total: int
    account_payable: int | None = None
    personal_account: int
    mutual_aid: int = 0
    family: list[ReceiptPayer] = []
    cash: int
    balance_after: int | None = None  # the patient's personal account after the sale
    not_used: list[str] = []
    reversal: ReceiptReversal | None = None


# --------------------------------------------------------------------------- measuring


def char_width(ch: str) -> int:
    """Printer columns of one character (see the module docstring)."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F", "A") else 1


def text_width(text: str) -> int:
    return sum(char_width(c) for c in text)


def wrap(text: str, width: int) -> list[str]:
    """Cut ``text`` into lines of at most ``width`` columns, never inside a wide character."""
    lines: list[str] = []
    line, used = "", 0
    for ch in text:
        w = char_width(ch)
        if used + w > width:
            lines.append(line.rstrip())
            line, used = "", 0
            if ch == " ":
                continue
        line += ch
        used += w
    if line or not lines:
        lines.append(line.rstrip())
    return lines


def row(left: str, right: str, width: int) -> list[str]:
    """``left`` and ``right`` on one line, right-aligned; wrapped when they do not fit."""
    lw, rw = text_width(left), text_width(right)
    if lw + 1 + rw <= width:
        return [left + " " * (width - lw - rw) + right]
    lines = wrap(left, width)
    last = lines[-1]
    if text_width(last) + 1 + rw <= width:
        lines[-1] = last + " " * (width - text_width(last) - rw) + right
    else:
        lines.append(" " * max(0, width - rw) + right)
    return lines


def center(text: str, width: int) -> list[str]:
    out = []
    for line in wrap(text, width):
        pad = (width - text_width(line)) // 2
        out.append(" " * pad + line)
    return out


# --------------------------------------------------------------------------- building


def not_used_sentence(relation_zh: str, name: str, reason_code: str) -> str:
    """A payer that did not pay, as the customer reads it: relation, masked name, why."""
    return f"{relation_zh} {name}{NOT_USED_ZH.get(reason_code, NOT_USED_OTHER)}"


def payer_was_needed(account_payable: int | None, personal_account: int, mutual_aid: int) -> bool:
    """True when part of what the accounts may pay was left to cash, so a payer that
    could not pay made the customer pay more."""
    return account_payable is not None and account_payable > personal_account + mutual_aid


def reversed_receipt(sale: Receipt, reversal: ReceiptReversal) -> Receipt:
    """The reversal's own receipt: the sale's facts with every amount negated."""

    def neg(fen: int) -> int:
        return -fen

    return sale.model_copy(
        update={
            "kind": "reversal",
            "items": [i.model_copy(update={"amount": neg(i.amount)}) for i in sale.items],
            "total": neg(sale.total),
            "account_payable": None if sale.account_payable is None else neg(sale.account_payable),
            "personal_account": neg(sale.personal_account),
            "mutual_aid": neg(sale.mutual_aid),
            "family": [p.model_copy(update={"amount": neg(p.amount)}) for p in sale.family],
            "cash": neg(sale.cash),
            "balance_after": None,  # the ledger's balance after the credit is not the sale's
            "not_used": [],
            "reversal": reversal,
        }
    )


def receipt_items(items: Sequence[Mapping[str, Any]], lines: Sequence[Mapping[str, Any]],
                  levels: Sequence[str | None] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """The receipt's lines (``items``, as the sale's receipt facts hold them) with each
    line's 追溯码 from the journaled plan ``lines`` (what was sent) and, where the national
    platform classed the line (``levels``: its ``chrgitm_lv`` per basket line, None for a
    line it was not sent), the platform's class instead of the POS's. All three are in
    basket order."""
    out = []
    for n, item in enumerate(items):
        line = lines[n] if n < len(lines) else {}
        level = levels[n] if n < len(levels) else None
        out.append(dict(item) | {
            "trace_codes": [str(c) for c in line.get("trace_codes") or ()],
            "insurance_class": CHRGITM_LV.get(level or "", item.get("insurance_class", "none")),
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------- rendering


def trace_lines(code: str, cols: int) -> list[str]:
    """One pack's 追溯码 under its line: ``  追溯码 8123...``, a code too long for the
    paper continued under itself (the code's column stays the same)."""
    indent = text_width(TRACE_LABEL) + 1
    parts = wrap(code, cols - indent)
    return [f"{TRACE_LABEL} {parts[0]}"] + [" " * indent + p for p in parts[1:]]


def _cash_label(r: Receipt) -> str:
    if r.kind != "reversal":
        return "现金支付"
    if r.reversal is not None and not r.reversal.cash_returned:
        return "现金部分 未收不退"
    return "现金退回"


def render(receipt: Receipt, width: int = 80) -> list[str]:
    """The receipt as text lines for a ``width`` mm printer (58 or 80): no line is wider
    than its columns, CJK counted double."""
    if width not in COLUMNS:
        raise ValueError(f"a receipt is 58 or 80 mm wide, not {width}")
    cols = COLUMNS[width]
    r = receipt
    rev = r.kind == "reversal"
    rule = "-" * cols
    out: list[str] = []
    out += center(r.store_name, cols)
    out += center("医保冲正/退款单" if rev else "医保结算单", cols)
    out.append(rule)
    out += row("药店", r.pharmacy_code, cols)
    out += row("终端", r.terminal_id, cols)
    if r.operator:
        out += row("收银员", r.operator, cols)
    if rev and r.reversal is not None:
        out += row("冲正时间", r.reversal.at, cols)
        out += row("原单号", r.sale_ref, cols)
        out += row("原流水", r.msgid, cols)
        out += row("冲正流水", r.reversal.msgid, cols)
        if r.reversal.by:
            out += row("冲正人", r.reversal.by, cols)
        if r.reversal.reason:
            out += wrap(f"原因 {r.reversal.reason}", cols)
    else:
        out += row("时间", r.at, cols)
        out += row("单号", r.sale_ref, cols)
        out += row("流水", r.msgid, cols)
    if r.credential == "evoucher":
        out += row("凭证", "医保电子凭证", cols)
    else:
        out += row("凭证", f"社保卡 {r.card_no_masked}" if r.card_no_masked else "社保卡", cols)
    if r.patient_name or r.patient_id_masked:
        who = " ".join(x for x in (r.patient_name, r.patient_id_masked) if x)
        out += row("用药人", who, cols)
    if r.proxy is not None:
        doc = f"{DOC_TYPE_ZH.get(r.proxy.doc_type, '证件')} {r.proxy.number_masked}"
        out += row("代购", f"{r.proxy.name} {doc}" if r.proxy.name else doc, cols)
    out.append(rule)
    for item in r.items:
        left = f"{item.name} x{item.quantity} {CLASS_ZH.get(item.insurance_class, '')}".rstrip()
        out += row(left, yuan(item.amount), cols)
        for code in item.trace_codes:
            out += trace_lines(code, cols)
    out.append(rule)
    out += row("退款合计" if rev else "合计", yuan(r.total), cols)
    if r.account_payable is not None and not rev:  # what was reversed is the split below
        out += row("医保可付", yuan(r.account_payable), cols)
    out += row("个人账户退回" if rev else "个人账户支付", yuan(r.personal_account), cols)
    if r.family:
        for p in r.family:
            out += row(f"家庭共济 {p.relation_zh} {p.name}", yuan(p.amount), cols)
    elif r.mutual_aid:
        out += row("家庭共济", yuan(r.mutual_aid), cols)
    out += row(_cash_label(r), yuan(r.cash), cols)
    if r.balance_after is not None:
        out += row("个人账户余额", yuan(r.balance_after), cols)
    if r.not_used:
        out.append(rule)
        for sentence in r.not_used:
            out += wrap(sentence, cols)
    out.append(rule)
    if rev:
        out += center("款项已原路退回", cols)
    else:
        out += center("请妥善保管 谢谢惠顾", cols)
    return out
