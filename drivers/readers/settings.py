"""The ``[reader]`` section of config.toml: which reader the agent drives, and how.

Why here and not in pos_plugin/config.py: these settings are the reader
backends' own (library path, encoding, return-code overrides, each library's
options); the agent's config only nests them, so a new backend changes this
file alone. Defaults keep ``kind = "serial"``: every existing config works.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SSCardOptions(_Strict):
    card_type: Annotated[int, Field(ge=1, le=4)] = 3  # iType: 1 contact .. 3 auto, contact first


class NhsaReaderOptions(_Strict):
    """HeaSecReadInfo's Init JSON (IP, PORT, TIMEOUT, LOG_PATH, SFZ_DRIVER_TYPE, ...)."""

    ip: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    timeout: Annotated[int, Field(gt=0, le=600)] = 30
    log_path: str = "C:\\nhsa\\log" if sys.platform == "win32" else "/var/log/nhsa"
    sfz_driver_type: Annotated[int, Field(ge=0, le=9)] = 0
    card_passtype: Literal["1"] = "1"  # 1: the chip verifies the PIN (never a host password)
    extra: dict[str, Any] = {}  # further Init keys your province needs (EC_URL, AREA_CODE...)

    @field_validator("log_path")
    @classmethod
    def _log_path(cls, v: str) -> str:
        parts = [p for p in v.replace("\\", "/").split("/") if p and not p.endswith(":")]
        if not v.isascii() or " " in v or len(parts) > 3:
            raise ValueError("the library wants an ASCII path without spaces, at most 3 levels")
        return v


class VoucherOptions(_Strict):
    """NationECCode's request: the platform's URL and who is asking."""

    url: str = ""
    org_id: str | None = None  # default: [pharmacy] code
    operator_id: str = "cashier"
    operator_name: str = "cashier"
    office_id: str = "pharmacy"
    office_name: str = "pharmacy"


class ReaderConfig(_Strict):
    """Which reader the agent drives: the serial terminal, or a vendor library (docs/readers.md)."""

    kind: Literal["serial", "sscard", "nhsa-reader"] = "serial"
    library: str | None = None  # SSCardDriver.dll / libSSCardDriver.so / HeaSecReadInfo.dll
    voucher_library: str | None = None  # NationECCode.dll, for the e-voucher QR code
    encoding: str = "gbk"
    call_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    poll_interval: Annotated[float, Field(gt=0, le=5)] = 0.3
    return_codes: dict[str, str] = {}  # e.g. { "-12" = "no_card" } for a vendor's numbering
    sscard: SSCardOptions = SSCardOptions()
    nhsa: NhsaReaderOptions = NhsaReaderOptions()
    voucher: VoucherOptions = VoucherOptions()

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (the libraries use gbk)") from None
        return v

    @field_validator("return_codes")
    @classmethod
    def _codes(cls, v: dict[str, str]) -> dict[str, str]:
        from drivers.readers.codes import Meaning

        known = {m.value for m in Meaning}
        for code, meaning in v.items():
            if not code.lstrip("-").isdigit():
                raise ValueError(f"{code!r} is not a return code (an integer)")
            if meaning not in known:
                raise ValueError(f"{meaning!r} is not one of {', '.join(sorted(known))}")
        return v

    @model_validator(mode="after")
    def _library_for_kind(self) -> ReaderConfig:
        if self.kind != "serial" and not self.library:
            raise ValueError(f"kind = {self.kind!r} needs library = the vendor library's path")
        if self.voucher_library and not self.voucher.url:
            raise ValueError("voucher_library needs [reader.voucher] url (the platform's address)")
        return self
