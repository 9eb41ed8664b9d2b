"""The 医保电子凭证 library NationECCode: NationEcTrans with ``cn.nhsa.qrcode.get``.

Why the library and not our scanner protocol: the platform decodes the QR code
itself (the scanner is a registered device the library drives) and answers
the holder's ``ecToken``, which is the voucher credential for the ledger
(mdtrt_cert_type 01), and ``idNo``. businessType 02121 is "pharmacy purchase".
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

from drivers.errors import DeviceError, ErrorCode
from drivers.readers.base import Cancelled
from drivers.readers.native import NativeLibrary
from drivers.results import VoucherScanned

REQUIRED = ("NationEcTrans",)
OUT_SIZE = 20480
PHARMACY_PURCHASE = "02121"
OK_CODES = (0, "0", "0000")
NOTHING_SCANNED = (-2, "-2")  # seen in integrations: no code presented in the library's wait

_seq = itertools.count(1)


class VoucherLibrary:
    """NationECCode behind :class:`drivers.readers.base.VoucherBackend`."""

    def __init__(
        self,
        lib: NativeLibrary,
        *,
        url: str,
        org_id: str,
        operator_id: str = "cashier",
        operator_name: str = "cashier",
        office_id: str = "pharmacy",
        office_name: str = "pharmacy",
        business_type: str = PHARMACY_PURCHASE,
    ) -> None:
        self.lib = lib
        self.url = url
        self.org_id = org_id
        self.data = {
            "orgId": org_id,
            "businessType": business_type,
            "operatorId": operator_id,
            "operatorName": operator_name,
            "officeId": office_id,
            "officeName": office_name,
        }

    @classmethod
    def load(cls, path: str, *, encoding: str, **kw: Any) -> VoucherLibrary:
        lib = NativeLibrary(path, required=REQUIRED, encoding=encoding, label="voucher library")
        return cls(lib, **kw)

    def request(self) -> dict[str, Any]:
        """The request for one scan; outBizNo is unique per request (<= 64 characters)."""
        now = dt.datetime.now().strftime("%Y%m%d%H%M%S")
        biz = f"{self.org_id}{now}{next(_seq) % 10000:04d}"[:64]
        return {
            "orgId": self.org_id,
            "transType": "cn.nhsa.qrcode.get",
            "data": self.data | {"outBizNo": biz},
            "extra": {},
        }

    def scan(self, timeout: float, cancelled: Cancelled) -> VoucherScanned | None:
        out = self.lib.buffer(OUT_SIZE)
        body = self.lib.encode(json.dumps(self.request(), ensure_ascii=False))
        rc = self.lib.call(
            "NationEcTrans", self.lib.encode(self.url), body, out, timeout=timeout,
            cancelled=cancelled,
        )  # fmt: skip
        return parse_answer(rc, self.lib.decode(out, "NationEcTrans"))


def parse_answer(rc: int, text: str) -> VoucherScanned | None:
    """The platform's answer -> the voucher; ``data`` is a JSON *string* inside the JSON."""
    try:
        answer = json.loads(text) if text.strip() else {}
    except ValueError:
        raise _garbage("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise _garbage("the answer is not a JSON object")
    code = answer.get("code")
    if code in NOTHING_SCANNED or (rc in (-2,) and code is None):
        return None
    if rc != 0 or code not in OK_CODES:
        message = str(answer.get("message") or "")[:120]
        raise DeviceError(
            ErrorCode.PROTOCOL_ERROR,
            f"the voucher could not be decoded (NationEcTrans {rc}, code {code}: {message}); "
            "ask the customer to refresh the code and scan again",
            f"电子凭证解码失败（返回 {rc}，代码 {code}：{message}），请顾客刷新二维码后重新扫码",
        )
    data = answer.get("data")
    try:
        inner = json.loads(data) if isinstance(data, str) else data
    except ValueError:
        raise _garbage("its data is not JSON") from None
    if not isinstance(inner, dict):
        raise _garbage("it has no data")
    token = str(inner.get("ecToken") or "").strip()
    if not token or not token.isprintable() or len(token) > 256:
        raise _garbage("it has no usable ecToken")
    id_no = inner.get("idNo")
    return VoucherScanned(
        token=token,
        holder_id_number=str(id_no) if id_no else None,
        holder_name=str(inner.get("userName") or "") or None,
    )


def _garbage(why: str) -> DeviceError:
    return DeviceError(
        ErrorCode.PROTOCOL_ERROR,
        f"the voucher library's answer is unusable: {why}; scan again, call support if it repeats",
        "电子凭证动态库返回的数据无法识别，请重新扫码，多次失败请联系技术支持",
    )
