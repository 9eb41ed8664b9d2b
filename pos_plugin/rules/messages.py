"""The cashier-facing words of every refusal, in one place (Chinese first, then English).

Refusal codes are a contract; the messages may be improved freely.
"""

from __future__ import annotations

from pos_plugin.models import Refusal, RefusalCode

_MESSAGES: dict[RefusalCode, tuple[str, str]] = {
    RefusalCode.INVALID_ID_NUMBER: (
        "证件号码无效，请核对证件后重新输入。",
        "The ID number is not valid. Check the document and key it again.",
    ),
    RefusalCode.CARD_NOT_PATIENTS_OWN: (
        "此卡不是用药人本人的卡，不能使用。家庭共济只共享账户资金，不能借用他人医保卡。",
        "This card is not the patient's own. Family mutual aid shares money, never cards: "
        "use the patient's own card.",
    ),
    RefusalCode.PROXY_EVIDENCE_MISSING: (
        "代购药品须同时出示用药人（委托人）和代购人（受托人）的有效身份证件。",
        "A proxy purchase needs both the patient's and the buyer's own valid ID documents.",
    ),
    RefusalCode.PROXY_EVIDENCE_MISMATCH: (
        "出示的用药人证件与医保卡持卡人不符。",
        "The patient's ID document does not match the card holder.",
    ),
    RefusalCode.PROXY_IS_PATIENT: (
        "代购人与用药人是同一人，请按本人购药办理。",
        "The proxy buyer is the patient: ring the sale up as the patient's own purchase.",
    ),
    RefusalCode.CARD_REPORTED_LOST: (
        "此卡已挂失，不能使用。请持卡人到医保经办机构处理。",
        "This card has been reported lost and must not be used. The holder should contact "
        "the insurance office.",
    ),
    RefusalCode.CARD_EXPIRED: (
        "此卡已过有效期，请使用医保电子凭证或更换新卡。",
        "This card has expired. Use the electronic voucher or have the card renewed.",
    ),
    RefusalCode.PRESCRIPTION_REQUIRED: (
        "处方药须凭处方购买，请录入处方编号。",
        "A prescription drug needs a prescription: enter the prescription reference.",
    ),
    RefusalCode.EPHEDRINE_ID_REQUIRED: (
        "含麻黄碱类复方制剂须登记购买人身份证件。",
        "Ephedrine compound preparations need the buyer's ID document registered.",
    ),
    RefusalCode.EPHEDRINE_LIMIT: (
        "含麻黄碱类复方制剂每次最多购买2个最小包装。",
        "Ephedrine compound preparations are limited to 2 minimum packages per purchase.",
    ),
    RefusalCode.NOTHING_TO_PAY: (
        "本单合计金额为0，无需医保结算，请勿让顾客刷卡或输入密码。",
        "This sale's total is 0: there is nothing to settle with insurance, so do not ask "
        "the customer for a card or PIN.",
    ),
}


def refusal(code: RefusalCode, detail_zh: str = "", detail_en: str = "") -> Refusal:
    """Build a refusal with the standard words, plus an optional detail."""
    zh, en = _MESSAGES[code]
    if detail_zh:
        zh = f"{zh}（{detail_zh}）"
    if detail_en:
        en = f"{en} ({detail_en})"
    return Refusal(code=code, message_zh=zh, message_en=en)
