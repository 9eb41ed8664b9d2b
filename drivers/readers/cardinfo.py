"""Parsing what the libraries hand back: the card's 11 fields, the ID card's 9.

Why strict: these fields decide whose account pays. A library that hands back a
shifted or truncated record must stop the sale with a clear error, not put a
name where the card number belongs. Error messages name the *field*, never its
value (the values are personal data).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from drivers.errors import DeviceError, ErrorCode
from pos_plugin.models import CardData
from pos_plugin.rules.identity import check_resident_id, mask_id_number, mask_name

CARD_FIELDS = (
    ("region_code", "发卡地区行政区划代码", "issuing-region code"),
    ("id_number", "社会保障号码", "social-security number"),
    ("card_no", "卡号", "card number"),
    ("card_sn", "卡识别码", "card identification code"),
    ("holder_name", "姓名", "holder name"),
    ("atr", "卡复位信息", "card reset answer"),
    ("spec_version", "规范版本", "specification version"),
    ("issue_date", "发卡日期", "issue date"),
    ("expiry_date", "卡有效期", "expiry date"),
    ("terminal_no", "终端机编号", "terminal number"),
    ("device_no", "终端设备号", "terminal device number"),
)
# Fields a record may leave empty: the terminal's own numbers (some libraries only
# fill them when a PSAM is present) and the ATR / version (informational).
OPTIONAL = {"atr", "spec_version", "terminal_no", "device_no"}

SFZ_FIELDS = (
    "name",
    "sex",
    "nation",
    "birth_date",
    "address",
    "id_number",
    "issue_date",
    "valid_until",
    "authority",
)

_REGION = re.compile(r"^\d{6}$")
_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})*$")


@dataclass(frozen=True, slots=True)
class CardRecord:
    """A parsed iReadCardBas record: the card facts plus the reader-side extras."""

    card: CardData
    atr: bytes
    terminal_no: str
    device_no: str

    def __repr__(self) -> str:
        return f"CardRecord(id={mask_id_number(self.card.id_number)!r}, region={self.card.region_code!r})"


@dataclass(frozen=True, slots=True)
class IdCardRecord:
    """The resident ID card's 9 fields (ReadSFZ); repr masked."""

    name: str
    sex: str
    nation: str
    birth_date: str
    address: str
    id_number: str
    issue_date: str
    valid_until: str
    authority: str

    def __repr__(self) -> str:
        return f"IdCardRecord(name={mask_name(self.name)!r}, id={mask_id_number(self.id_number)!r})"


def _bad(en: str, zh: str) -> DeviceError:
    return DeviceError(
        ErrorCode.CARD_UNREADABLE,
        f"the reader library returned an unusable card record: {en}; "
        "take the card out, insert it chip first and try again",
        f"读卡器返回的卡片信息不可用：{zh}，请取出卡片，芯片朝前重新插入",
    )


def split_record(text: str, names: tuple[str, ...], what: str) -> list[str]:
    """``a|b|...|`` -> fields; every item ends with ``|``, including the last."""
    if not text.endswith("|"):
        raise _bad(f"the {what} does not end with '|'", f"{what}格式错误（未以“|”结尾）")
    fields = text[:-1].split("|")
    if len(fields) < len(names):
        # Which one is missing cannot be known from the count: say where it stops matching.
        tail = ", ".join(names[len(fields) :])
        raise _bad(
            f"the {what} has {len(fields)} fields, not {len(names)} (a field is missing: "
            f"{tail} or an earlier one)",
            f"字段数为{len(fields)}，应为{len(names)}（缺少字段：{tail}或之前的某项）",
        )
    if len(fields) > len(names):
        raise _bad(
            f"the {what} has {len(fields)} fields, not {len(names)}",
            f"字段数为{len(fields)}，应为{len(names)}",
        )
    return [f.strip() for f in fields]


def parse_card_record(text: str, today: dt.date | None = None) -> CardRecord:
    """Validate and parse the 11 ``|``-separated fields of iReadCardBas / ReadCardBas."""
    names = tuple(name for name, _, _ in CARD_FIELDS)
    values = dict(zip(names, split_record(text, names, "card record"), strict=True))
    for name, zh, en in CARD_FIELDS:
        if not values[name] and name not in OPTIONAL:
            raise _bad(f"the {en} is empty", f"{zh}为空")
    if not _REGION.match(values["region_code"]):
        raise _bad("the issuing-region code is not 6 digits", "发卡地区代码不是6位数字")
    check = check_resident_id(values["id_number"], today or dt.date.today())
    if not check.valid:
        raise _bad(
            f"the social-security number fails the GB 11643 check ({check.reason_en})",
            f"社会保障号码校验不通过（{check.reason_zh}）",
        )
    if len(values["card_no"]) > 32 or not values["card_no"].isprintable():
        raise _bad("the card number is too long or unprintable", "卡号过长或含不可见字符")
    if not _HEX32.match(values["card_sn"]):
        raise _bad(
            "the card identification code is not 32 hex characters", "卡识别码不是32位十六进制"
        )
    issue = _date(values["issue_date"], "issue date", "发卡日期")
    expiry = _date(values["expiry_date"], "expiry date", "卡有效期")
    if issue is not None and expiry is not None and expiry < issue:
        raise _bad("the expiry date is before the issue date", "卡有效期早于发卡日期")
    atr = values["atr"]
    card = CardData(
        region_code=values["region_code"],
        id_number=values["id_number"].upper(),
        card_no=values["card_no"],
        card_sn=values["card_sn"].upper(),
        holder_name=values["holder_name"],
        spec_version=values["spec_version"] or "3.00",
        issue_date=issue,
        expiry_date=expiry,
    )
    return CardRecord(
        card=card,
        atr=bytes.fromhex(atr) if _HEX.match(atr) else b"",
        terminal_no=values["terminal_no"],
        device_no=values["device_no"],
    )


def parse_id_card(text: str) -> IdCardRecord:
    """The 9 fields of ReadSFZ: 姓名|性别|民族|出生日期|地址|身份证号|发卡日期|有效日期|签发机关|."""
    values = split_record(text, SFZ_FIELDS, "ID-card record")
    record = IdCardRecord(*values)
    if not record.name or not record.id_number:
        raise _bad("the ID card's name or number is empty", "身份证姓名或号码为空")
    return record


def _date(text: str, en: str, zh: str) -> dt.date | None:
    if not text:
        return None
    try:
        if len(text) != 8 or not text.isascii() or not text.isdigit():
            raise ValueError
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise _bad(f"the {en} is not a YYYYMMDD date", f"{zh}不是有效的YYYYMMDD日期") from None
