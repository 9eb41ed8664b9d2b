"""Whose card, and what a proxy buyer must show.

DOMAIN.md: the card used must be the patient's own (using someone else's card is
fraud against the fund); mutual aid shares money, never cards. A proxy buyer uses
the patient's card and shows both the patient's and their own ID documents.
A lost card is refused; an expired one too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pos_plugin.models import Buyer, CardStatus, IdDocument, Notice, Refusal, RefusalCode
from pos_plugin.rules.identity import check_document, mask_name, same_person
from pos_plugin.rules.messages import refusal


@dataclass(frozen=True, slots=True)
class EvidenceDecision:
    """Either a refusal, or a pass with notices for the cashier (never both)."""

    refusal: Refusal | None
    notices: tuple[Notice, ...] = ()

    @property
    def ok(self) -> bool:
        return self.refusal is None


def check_card_status(status: CardStatus, expiry: dt.date | None, today: dt.date) -> Refusal | None:
    """A lost card must be refused; an expired one cannot be used either."""
    if status is CardStatus.LOST:
        return refusal(RefusalCode.CARD_REPORTED_LOST)
    if status is CardStatus.EXPIRED or (expiry is not None and expiry < today):
        return refusal(RefusalCode.CARD_EXPIRED)
    return None


def check_whose_card(
    *,
    holder_id_number: str,
    holder_name: str,
    patient: IdDocument | None,
    buyer: Buyer,
    today: dt.date,
) -> EvidenceDecision:
    """Decide whether this credential may pay for this patient, bought by this buyer.

    ``holder_*`` are the credential's holder as the chip (or the ledger, for an
    electronic voucher) states them. ``patient`` is the ID document of the person
    who takes the medicine, when the POS sent one. For a self purchase without a
    patient document, the verified-PIN holder is the patient. A name that differs
    while the ID number matches is a notice (transliteration, a renamed person),
    never a pass or a refusal on its own.
    """
    if buyer.role == "proxy":
        proxy = _check_proxy(patient, buyer.id_document, today)
        if proxy is not None:
            return EvidenceDecision(proxy)
    if patient is not None:
        check = check_document(patient, today)
        if not check.valid:
            return EvidenceDecision(check.refusal("用药人证件：", "patient's document: "))
        if not same_person(patient.number, holder_id_number):
            # A proxy buyer presenting their *own* card for the patient is the
            # classic mistake: the card is not the patient's, whoever holds it.
            buyer_is_holder = buyer.id_document is not None and same_person(
                buyer.id_document.number, holder_id_number
            )
            code = (
                RefusalCode.PROXY_EVIDENCE_MISMATCH
                if buyer.role == "proxy" and not buyer_is_holder
                else RefusalCode.CARD_NOT_PATIENTS_OWN
            )
            return EvidenceDecision(refusal(code))
    notices: list[Notice] = []
    if patient is not None and patient.name and patient.name.strip() != holder_name.strip():
        notices.append(
            Notice(
                code="holder_name_differs",
                message_zh=(
                    f"证件姓名（{mask_name(patient.name)}）与卡面姓名（{mask_name(holder_name)}）"
                    "不一致，证件号码一致，请核对。"
                ),
                message_en=(
                    "The name on the document differs from the card holder's name although "
                    "the ID numbers match: check the document."
                ),
            )
        )
    for doc in (patient, buyer.id_document):
        if doc is not None:
            check = check_document(doc, today)
            if check.valid and not check.verified:
                notices.append(
                    Notice(
                        code="document_not_verifiable",
                        message_zh=check.reason_zh,
                        message_en=check.reason_en,
                    )
                )
    return EvidenceDecision(None, tuple(notices))


def _check_proxy(
    patient: IdDocument | None,
    buyer_doc: IdDocument | None,
    today: dt.date,
) -> Refusal | None:
    """A proxy buyer shows both documents, the buyer's is valid, and they are two people.

    The patient's document is checked by the caller, as for any sale.
    """
    if patient is None or buyer_doc is None:
        docs = (("用药人证件", patient), ("代购人证件", buyer_doc))
        missing_zh = "缺少" + "和".join(name for name, doc in docs if doc is None)
        missing_en = "missing: " + " and ".join(
            name
            for name, doc in (("the patient's document", patient), ("the buyer's own", buyer_doc))
            if doc is None
        )
        return refusal(RefusalCode.PROXY_EVIDENCE_MISSING, missing_zh, missing_en)
    buyer_check = check_document(buyer_doc, today)
    if not buyer_check.valid:
        return buyer_check.refusal("代购人证件：", "buyer's document: ")
    if same_person(buyer_doc.number, patient.number):
        return refusal(RefusalCode.PROXY_IS_PATIENT)
    return None
