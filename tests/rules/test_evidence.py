"""Whose card, proxy evidence, card status: every refusal code they can give."""

from __future__ import annotations

import datetime as dt

from pos_plugin.models import Buyer, CardStatus, IdDocType, IdDocument, RefusalCode
from pos_plugin.rules.evidence import check_card_status, check_whose_card

from .factories import BUYER_ID, OTHER_ID, PATIENT_ID

TODAY = dt.date(2026, 11, 23)
SELF = Buyer(role="self")


def doc(number: str, name: str | None = None) -> IdDocument:
    return IdDocument(number=number, name=name)


def decide(patient: IdDocument | None, buyer: Buyer = SELF, holder: str = PATIENT_ID):
    return check_whose_card(
        holder_id_number=holder, holder_name="张伟", patient=patient, buyer=buyer, today=TODAY
    )


def test_own_card_passes() -> None:
    decision = decide(doc(PATIENT_ID, "张伟"))
    assert decision.ok and decision.notices == ()


def test_own_card_without_patient_document_passes() -> None:
    assert decide(None).ok


def test_someone_elses_card_is_refused() -> None:
    decision = decide(doc(OTHER_ID))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.CARD_NOT_PATIENTS_OWN
    assert "patient's own" in decision.refusal.message_en


def test_lowercase_x_matches_card_holder() -> None:
    holder = "11010519491231002X"
    assert decide(doc(holder.lower()), holder=holder).ok


def test_name_mismatch_with_same_id_is_a_notice_not_a_refusal() -> None:
    decision = decide(doc(PATIENT_ID, "章伟"))
    assert decision.ok
    assert [n.code for n in decision.notices] == ["holder_name_differs"]
    assert "张伟" not in decision.notices[0].message_zh  # names are masked


def test_invalid_patient_document_is_refused() -> None:
    decision = decide(doc("110105198005120318"))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.INVALID_ID_NUMBER


def test_proxy_with_both_documents_passes() -> None:
    decision = decide(doc(PATIENT_ID), Buyer(role="proxy", id_document=doc(BUYER_ID)))
    assert decision.ok


def test_proxy_without_buyer_document_is_refused() -> None:
    decision = decide(doc(PATIENT_ID), Buyer(role="proxy"))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.PROXY_EVIDENCE_MISSING
    assert "buyer's own" in decision.refusal.message_en


def test_proxy_without_patient_document_is_refused() -> None:
    decision = decide(None, Buyer(role="proxy", id_document=doc(BUYER_ID)))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.PROXY_EVIDENCE_MISSING
    assert "patient's document" in decision.refusal.message_en


def test_proxy_with_invalid_buyer_document_is_refused() -> None:
    decision = decide(doc(PATIENT_ID), Buyer(role="proxy", id_document=doc("123")))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.INVALID_ID_NUMBER
    assert "buyer's document" in decision.refusal.message_en


def test_proxy_who_is_the_patient_is_refused() -> None:
    decision = decide(doc(PATIENT_ID), Buyer(role="proxy", id_document=doc(PATIENT_ID.lower())))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.PROXY_IS_PATIENT


def test_proxy_patient_document_not_matching_card_is_a_mismatch() -> None:
    decision = decide(doc(OTHER_ID), Buyer(role="proxy", id_document=doc(BUYER_ID)))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.PROXY_EVIDENCE_MISMATCH


def test_proxy_using_their_own_card_for_the_patient_is_not_the_patients_card() -> None:
    # A parent buys for their child with the parent's own card: mutual aid shares
    # money, never cards.
    decision = decide(doc(OTHER_ID), Buyer(role="proxy", id_document=doc(PATIENT_ID)))
    assert decision.refusal is not None
    assert decision.refusal.code is RefusalCode.CARD_NOT_PATIENTS_OWN


def test_passport_buyer_passes_with_a_notice_that_it_is_not_verifiable() -> None:
    passport = IdDocument(doc_type=IdDocType.PASSPORT, number="E12345678")
    decision = decide(doc(PATIENT_ID), Buyer(role="proxy", id_document=passport))
    assert decision.ok
    assert [n.code for n in decision.notices] == ["document_not_verifiable"]


def test_card_status() -> None:
    lost = check_card_status(CardStatus.LOST, None, TODAY)
    assert lost is not None and lost.code is RefusalCode.CARD_REPORTED_LOST
    expired = check_card_status(CardStatus.EXPIRED, None, TODAY)
    assert expired is not None and expired.code is RefusalCode.CARD_EXPIRED
    by_date = check_card_status(CardStatus.ACTIVE, dt.date(2026, 11, 22), TODAY)
    assert by_date is not None and by_date.code is RefusalCode.CARD_EXPIRED
    assert check_card_status(CardStatus.ACTIVE, TODAY, TODAY) is None
    assert check_card_status(CardStatus.ACTIVE, None, TODAY) is None


def test_every_refusal_has_both_languages() -> None:
    from pos_plugin.rules.messages import refusal

    for code in RefusalCode:
        r = refusal(code)
        assert r.message_zh and r.message_en and r.message_zh != r.message_en
        assert r.code.value in {c.value for c in RefusalCode}
