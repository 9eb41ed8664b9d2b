"""Identity documents: GB 11643 resident ID numbers, other documents, masking.

Only the mainland resident ID number carries enough structure (region, birth
date, ISO 7064 MOD 11-2 check character) to be verified offline. Every other
document is recognised by its shape and said plainly to be unverifiable beyond
that, so the cashier knows to look at the physical document.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pos_plugin.models import IdDocType, IdDocument, Refusal, RefusalCode
from pos_plugin.rules.messages import refusal

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # remainder 0..10 -> check character

# First two digits of the administrative division code: the provinces of GB/T 2260
# (plus 71 Taiwan, 81 Hong Kong, 82 Macao, which appear on residence permits).
PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82",
    }
)  # fmt: skip

_RESIDENT_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")

_SHAPES: dict[IdDocType, re.Pattern[str]] = {
    # 2017 format: 15 chars, letters + digits; 2023 format: 18 chars starting with 9.
    IdDocType.FOREIGN_PERMANENT_RESIDENT_ID: re.compile(
        r"^(?:[A-Z]{3}[0-9]{12}|9[0-9]{16}[0-9X])$"
    ),
    # Residence permits use an 18-character number with region 810000/820000/830000.
    IdDocType.HK_MACAO_RESIDENCE_PERMIT: re.compile(r"^8[12]0000[0-9]{11}[0-9X]$"),
    IdDocType.TAIWAN_RESIDENCE_PERMIT: re.compile(r"^830000[0-9]{11}[0-9X]$"),
    IdDocType.PASSPORT: re.compile(r"^[A-Z0-9]{5,17}$"),
    IdDocType.OTHER: re.compile(r"^[A-Z0-9\-]{3,32}$"),
}


def normalize_id_number(number: str) -> str:
    """Strip spaces and upper-case, so that a lowercase ``x`` equals ``X``."""
    return "".join(number.split()).upper()


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


@dataclass(frozen=True, slots=True)
class IdCheck:
    """The outcome of checking a document number.

    ``verified`` is True only for a resident ID number that passed every check;
    ``recognised`` is True for other documents whose number has the right shape.
    """

    valid: bool
    verified: bool
    reason_en: str
    reason_zh: str

    def refusal(self, whose_zh: str = "", whose_en: str = "") -> Refusal:
        """The refusal for an invalid number; ``whose`` says which document it was."""
        return refusal(
            RefusalCode.INVALID_ID_NUMBER,
            f"{whose_zh}{self.reason_zh}",
            f"{whose_en}{self.reason_en}",
        )


def check_resident_id(number: str, today: dt.date) -> IdCheck:
    """Check a GB 11643 18-character resident ID number.

    ``today`` is passed in (no clock here) so the rule stays pure and testable.
    """
    n = normalize_id_number(number)
    if len(n) != 18:
        return _bad(f"must have 18 characters, has {len(n)}", f"应为18位，实为{len(n)}位")
    if not _RESIDENT_SHAPE.match(n):  # ASCII only: str.isdigit() would accept '٧'
        return _bad("only digits, and X as the last character", "只能是数字，末位可为X")
    if n[:2] not in PROVINCE_CODES:
        return _bad("the region code is not a real province", "地区代码不存在")
    try:
        born = dt.date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        return _bad("the birth date is not a real date", "出生日期不是有效日期")
    if born > today or born.year < 1880:
        return _bad("the birth date is in the future or implausible", "出生日期不合理")
    if check_character(n[:17]) != n[17]:
        return _bad("the check character does not match", "校验位不符")
    return IdCheck(valid=True, verified=True, reason_en="", reason_zh="")


def check_document(doc: IdDocument, today: dt.date) -> IdCheck:
    """Check any identity document: fully for resident IDs, by shape for the rest."""
    if doc.doc_type is IdDocType.RESIDENT_ID:
        return check_resident_id(doc.number, today)
    n = normalize_id_number(doc.number)
    if not _SHAPES[doc.doc_type].match(n):
        return _bad(
            f"does not have the shape of a {doc.doc_type.value.replace('_', ' ')}",
            "号码格式与证件类型不符",
        )
    return IdCheck(
        valid=True,
        verified=False,
        reason_en=(
            f"a {doc.doc_type.value.replace('_', ' ')} number can only be checked by its shape; "
            "compare the photo and number on the document itself"
        ),
        reason_zh="该类证件只能核对号码格式，请人工核对证件照片与号码",
    )


def _bad(en: str, zh: str) -> IdCheck:
    return IdCheck(valid=False, verified=False, reason_en=en, reason_zh=zh)


def same_person(a: str, b: str) -> bool:
    """Two ID numbers name the same person when equal after normalisation."""
    return normalize_id_number(a) == normalize_id_number(b)


def mask_id_number(number: str) -> str:
    """Mask an ID number for logs, receipts and reports: ``110105********002X``.

    Keeps the region (6) and the last 4 of an 18-character number; for other
    lengths keeps at most a quarter at each end, so short numbers are not exposed.
    """
    n = normalize_id_number(number)
    if len(n) == 18:
        return n[:6] + "*" * 8 + n[-4:]
    keep = len(n) // 4
    if keep == 0:
        return "*" * len(n)
    return n[:keep] + "*" * (len(n) - 2 * keep) + n[-keep:]


def mask_name(name: str) -> str:
    """Mask a person's name: keep the first character (``张*``, ``欧阳**``)."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else name + "*"


def mask_card_no(card_no: str) -> str:
    """Mask a card number: keep the first and the last 2 characters."""
    if len(card_no) <= 4:
        return "*" * len(card_no)
    return card_no[:1] + "*" * (len(card_no) - 3) + card_no[-2:]
