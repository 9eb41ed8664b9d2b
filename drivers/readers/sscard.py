"""The 人社 SSCardDriver library: iReadCardBas, iVerifyPIN, iGetReaderInfo, the HSM read.

Why the HSM step is an interface: a card the local PSAM cannot authenticate
(an out-of-area card) is read in two steps with the provincial encryption
machine in between. That service is out of reach here; a till that has one
plugs a :class:`HsmKeyService` in, and one that has none refuses such a card
with a message that sends the customer to the electronic voucher.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Protocol

from drivers.readers.base import Cancelled
from drivers.readers.cardinfo import CardRecord, parse_card_record
from drivers.readers.codes import CodeTable, Meaning, error_for, pin_result
from drivers.readers.native import NativeLibrary
from drivers.results import PinResult

REQUIRED = ("iReadCardBas", "iVerifyPIN", "iGetReaderInfo")
OPTIONAL = ("iReadCardBas_HSM_Step1", "iReadCardBas_HSM_Step2")
OUT_SIZE = 2048  # the 11 fields are < 300 bytes; vendors' samples allocate 1-4 KiB


class HsmKeyService(Protocol):
    """The provincial key service (1903): Step1's fields in, ``aaa315|aaa316|`` out."""

    def authenticate(self, step1_fields: str) -> str: ...


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    reader_sn: str
    psam_term_no: str


class SSCardBackend:
    """SSCardDriver behind :class:`drivers.readers.base.CardBackend`."""

    kind = "sscard"

    def __init__(
        self,
        lib: NativeLibrary,
        *,
        card_type: int = 3,
        codes: CodeTable | None = None,
        hsm: HsmKeyService | None = None,
    ) -> None:
        self.lib = lib
        self.card_type = card_type  # iType: 1 contact, 2 contactless, 3 auto (contact first), 4
        self.codes = codes or CodeTable()
        self.hsm = hsm

    @classmethod
    def load(cls, path: str, *, encoding: str, **kw: object) -> SSCardBackend:
        lib = NativeLibrary(path, required=REQUIRED, optional=OPTIONAL, encoding=encoding)
        return cls(lib, **kw)  # type: ignore[arg-type]

    def reader_info(self, timeout: float) -> ReaderInfo:
        sn, psam = self.lib.buffer(256), self.lib.buffer(256)
        rc = self.lib.call("iGetReaderInfo", sn, psam, timeout=timeout)
        meaning = self.codes.meaning(rc)
        if meaning is not Meaning.OK:
            raise error_for(meaning, rc, "iGetReaderInfo")
        return ReaderInfo(
            self.lib.decode(sn, "iGetReaderInfo").strip(),
            self.lib.decode(psam, "iGetReaderInfo").strip(),
        )

    def init(self, timeout: float) -> str:
        """SSCardDriver has no Init: asking the reader for its numbers proves it answers."""
        info = self.reader_info(timeout)
        return f"SSCardDriver reader {info.reader_sn or '?'} (PSAM {info.psam_term_no or '?'})"

    def read(self, timeout: float, cancelled: Cancelled) -> CardRecord | None:
        out = self.lib.buffer(OUT_SIZE)
        rc = self.lib.call(
            "iReadCardBas", ctypes.c_int(self.card_type), out, timeout=timeout, cancelled=cancelled
        )
        meaning = self.codes.meaning(rc)
        if meaning is Meaning.OK:
            return parse_card_record(self.lib.decode(out, "iReadCardBas"))
        if meaning is Meaning.NO_CARD:
            return None
        if meaning is Meaning.NEEDS_HSM and self.hsm is not None and self.lib.has(OPTIONAL[0]):
            return self._read_hsm(timeout, cancelled)
        raise error_for(meaning, rc, "iReadCardBas")

    def _read_hsm(self, timeout: float, cancelled: Cancelled) -> CardRecord:
        assert self.hsm is not None
        out = self.lib.buffer(OUT_SIZE)
        rc = self.lib.call(
            "iReadCardBas_HSM_Step1", ctypes.c_int(self.card_type), out, timeout=timeout,
            cancelled=cancelled,
        )  # fmt: skip
        if rc != 0:
            raise error_for(self.codes.meaning(rc), rc, "iReadCardBas_HSM_Step1")
        key = self.hsm.authenticate(self.lib.decode(out, "iReadCardBas_HSM_Step1"))
        out = self.lib.buffer(OUT_SIZE)
        rc = self.lib.call(
            "iReadCardBas_HSM_Step2", self.lib.encode(key), out, timeout=timeout,
            cancelled=cancelled,
        )  # fmt: skip
        if rc != 0:
            meaning = self.codes.meaning(rc)
            # Step2 failing with an "HSM" code means the key did not fit the card.
            raise error_for(
                Meaning.FAILED if meaning is Meaning.NEEDS_HSM else meaning,
                rc,
                "iReadCardBas_HSM_Step2",
            )
        return parse_card_record(self.lib.decode(out, "iReadCardBas_HSM_Step2"))

    def verify_pin(self, timeout: float, cancelled: Cancelled) -> PinResult:
        out = self.lib.buffer(OUT_SIZE)
        rc = self.lib.call(
            "iVerifyPIN", ctypes.c_int(self.card_type), out, timeout=timeout, cancelled=cancelled
        )
        return pin_result(self.codes.meaning(rc), rc, self.lib.decode(out, "iVerifyPIN"))
