"""ISO 7816-4 APDUs and the social-security card's file layout.

Both sides use this module: the host parses the files into ``CardData``; the
simulator's chip builds its files with the same layout, so the two cannot drift.

Layout (modelled on the national SSC: application "sx1.sh.社会保障", card
information in EF05, holder information in EF06), each file a sequence of
records ``TAG LEN VALUE`` (1-byte tag, 1-byte length):

EF05 card information            EF06 holder
  01 card identification code      08 social-security number (= ID number), ASCII
     (card_sn), ASCII <= 32        09 holder name, GB18030 <= 30 bytes
  02 card type, ASCII "3"          0A gender, ASCII "1" male / "2" female
  03 specification version, ASCII
  04 issuing region code, 6 ASCII digits
  05 issue date, BCD YYYYMMDD (4 bytes)
  06 expiry date, BCD YYYYMMDD (4 bytes)
  07 card number, ASCII <= 32

Unknown tags are skipped (forward compatibility); a missing required tag or a
value that does not parse makes the card unreadable, never a crash.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from pydantic import ValidationError

from drivers.errors import DeviceError, ErrorCode
from drivers.packets import DISPLAY_ENCODING
from pos_plugin.models import CardData

SSC_AID = "sx1.sh.社会保障".encode(DISPLAY_ENCODING)  # 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF
EF_CARD_INFO = 0xEF05
EF_HOLDER = 0xEF06

# Status words
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY = 0x6982
SW_PIN_BLOCKED = 0x6983
SW_FILE_NOT_FOUND = 0x6A82
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_NO_DIAGNOSIS = 0x6F00
SW_WRONG_PIN_MASK = 0x63C0  # 63Cx: wrong PIN, x tries left (63C0: now blocked)

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
# Instructions that carry PIN digits: the device refuses them from the host.
PIN_INSTRUCTIONS = frozenset({0x20, 0x24, 0x2C})  # VERIFY, CHANGE REF. DATA, RESET RETRY COUNTER

TAG_CARD_SN, TAG_CARD_TYPE, TAG_SPEC, TAG_REGION = 0x01, 0x02, 0x03, 0x04
TAG_ISSUE, TAG_EXPIRY, TAG_CARD_NO = 0x05, 0x06, 0x07
TAG_ID_NUMBER, TAG_NAME, TAG_GENDER = 0x08, 0x09, 0x0A
SENSITIVE_TAGS = frozenset({TAG_CARD_SN, TAG_CARD_NO, TAG_ID_NUMBER, TAG_NAME})


def select_aid(aid: bytes = SSC_AID) -> bytes:
    return bytes((0x00, INS_SELECT, 0x04, 0x00, len(aid))) + aid


def select_ef(fid: int) -> bytes:
    return bytes((0x00, INS_SELECT, 0x02, 0x00, 0x02)) + fid.to_bytes(2, "big")


def read_binary(offset: int = 0, le: int = 0) -> bytes:
    """READ BINARY; Le=0 means "up to 256 bytes"."""
    return bytes((0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, le))


def split_response(rapdu: bytes) -> tuple[bytes, int]:
    if len(rapdu) < 2:
        raise DeviceError(ErrorCode.PROTOCOL_ERROR, "response APDU shorter than its status word")
    return rapdu[:-2], int.from_bytes(rapdu[-2:], "big")


# ----------------------------------------------------------------- TLV


def tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 255:
        raise ValueError("TLV value too long")
    return bytes((tag, len(value))) + value


def iter_tlv(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield (tag, value offset, value); ValueError if a record runs past the end."""
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):  # padding at the end of a file
            return
        if pos + 2 > len(data):
            raise ValueError("truncated record header")
        tag, n = data[pos], data[pos + 1]
        if pos + 2 + n > len(data):
            raise ValueError(f"record {tag:02X} runs past the end of the file")
        yield tag, pos + 2, data[pos + 2 : pos + 2 + n]
        pos += 2 + n


def bcd_date(d: dt.date) -> bytes:
    return bytes.fromhex(d.strftime("%Y%m%d"))


def parse_bcd_date(raw: bytes) -> dt.date:
    text = raw.hex()
    if len(raw) != 4 or not text.isdigit():
        raise ValueError("date is not 4 BCD bytes")
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def build_card_info(
    *,
    card_sn: str,
    spec_version: str,
    region_code: str,
    issue_date: dt.date,
    expiry_date: dt.date,
    card_no: str,
) -> bytes:
    return b"".join(
        (
            tlv(TAG_CARD_SN, card_sn.encode("ascii")),
            tlv(TAG_CARD_TYPE, b"3"),
            tlv(TAG_SPEC, spec_version.encode("ascii")),
            tlv(TAG_REGION, region_code.encode("ascii")),
            tlv(TAG_ISSUE, bcd_date(issue_date)),
            tlv(TAG_EXPIRY, bcd_date(expiry_date)),
            tlv(TAG_CARD_NO, card_no.encode("ascii")),
        )
    )


def build_holder(*, id_number: str, name: str) -> bytes:
    gender = b""
    if len(id_number) == 18 and id_number[16].isdigit():
        gender = tlv(TAG_GENDER, b"1" if int(id_number[16]) % 2 else b"2")
    return (
        tlv(TAG_ID_NUMBER, id_number.encode("ascii"))
        + tlv(TAG_NAME, name.encode(DISPLAY_ENCODING))
        + gender
    )


def parse_card_files(card_info: bytes, holder: bytes) -> CardData:
    """EF05 + EF06 contents -> CardData, or DeviceError("card_unreadable")."""
    try:
        info = {tag: value for tag, _, value in iter_tlv(card_info)}
        hold = {tag: value for tag, _, value in iter_tlv(holder)}
        missing = [
            f"{t:02X}"
            for t, d in (
                (TAG_CARD_SN, info),
                (TAG_REGION, info),
                (TAG_CARD_NO, info),
                (TAG_ID_NUMBER, hold),
                (TAG_NAME, hold),
            )
            if t not in d
        ]
        if missing:
            raise ValueError(f"missing records {', '.join(missing)}")
        return CardData(
            region_code=info[TAG_REGION].decode("ascii"),
            id_number=hold[TAG_ID_NUMBER].decode("ascii"),
            card_no=info[TAG_CARD_NO].decode("ascii"),
            card_sn=info[TAG_CARD_SN].decode("ascii"),
            holder_name=hold[TAG_NAME].decode(DISPLAY_ENCODING).strip(),
            spec_version=info.get(TAG_SPEC, b"3.00").decode("ascii"),
            issue_date=parse_bcd_date(info[TAG_ISSUE]) if TAG_ISSUE in info else None,
            expiry_date=parse_bcd_date(info[TAG_EXPIRY]) if TAG_EXPIRY in info else None,
        )
    except (ValueError, UnicodeDecodeError, ValidationError) as exc:
        # ValidationError is a ValueError subclass; listed for the reader's sake.
        # The reason names record tags only, never their content.
        reason = exc.__class__.__name__ if isinstance(exc, ValidationError) else str(exc)
        raise DeviceError(
            ErrorCode.CARD_UNREADABLE,
            f"the card's data is damaged ({reason}); try the card again or use the "
            "electronic voucher",
            "卡片数据损坏，请重新插卡或改用医保电子凭证",
        ) from None


def sensitive_spans(data: bytes, base: int = 0) -> list[tuple[int, int]] | None:
    """Byte ranges of sensitive TLV values in a file (for trace redaction).

    None when the data does not parse: the caller must then redact everything.
    """
    try:
        return [
            (base + off, base + off + len(value))
            for tag, off, value in iter_tlv(data)
            if tag in SENSITIVE_TAGS
        ]
    except ValueError:
        return None
