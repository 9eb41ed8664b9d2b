"""The NHSA platform's HeaSecReadInfo library: Init, ReadCardBas, VerifyPIN, ReadSFZ.

Why it differs from SSCardDriver: it must be initialised with a JSON of the
platform's address and the city's ID-card driver type before any read, and
its ReadCardBas hands back a second, opaque "business" record that the
platform's own transactions may want (kept, never parsed or logged).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from drivers.errors import ErrorCode
from drivers.readers.base import Cancelled
from drivers.readers.cardinfo import CardRecord, IdCardRecord, parse_card_record, parse_id_card
from drivers.readers.codes import CodeTable, Meaning, ReaderFault, error_for, pin_result
from drivers.readers.native import NativeLibrary
from drivers.results import PinResult

REQUIRED = ("Init", "ReadCardBas", "VerifyPIN")
OPTIONAL = ("ReadSFZ", "iGetReaderInfo")
ERR_SIZE, CARD_SIZE, BUSI_SIZE, SFZ_SIZE = 2048, 2048, 8192, 1024


class HeaSecBackend:
    """HeaSecReadInfo behind :class:`drivers.readers.base.CardBackend`."""

    kind = "nhsa-reader"

    def __init__(
        self,
        lib: NativeLibrary,
        *,
        init_info: Mapping[str, Any],
        codes: CodeTable | None = None,
    ) -> None:
        self.lib = lib
        self.init_info = dict(init_info)
        self.codes = codes or CodeTable()
        self.last_busi_info = ""  # the opaque business record of the last read

    @classmethod
    def load(cls, path: str, *, encoding: str, **kw: Any) -> HeaSecBackend:
        lib = NativeLibrary(path, required=REQUIRED, optional=OPTIONAL, encoding=encoding)
        return cls(lib, **kw)

    def init(self, timeout: float) -> str:
        err = self.lib.buffer(ERR_SIZE)
        payload = self.lib.encode(json.dumps(self.init_info, ensure_ascii=False))
        rc = self.lib.call("Init", payload, err, timeout=timeout)
        if rc != 0:
            meaning = self.codes.meaning(rc)
            detail = self.lib.decode(err, "Init").strip()[:200]
            base = error_for(Meaning.FAILED if meaning is Meaning.OK else meaning, rc, "Init")
            raise ReaderFault(
                ErrorCode(base.code),
                f"{base.message_en} ({detail})" if detail else base.message_en,
                f"{base.message_zh}（{detail}）" if detail else base.message_zh,
                reinit=True,
            )
        return "HeaSecReadInfo initialised"

    def read(self, timeout: float, cancelled: Cancelled) -> CardRecord | None:
        card, busi = self.lib.buffer(CARD_SIZE), self.lib.buffer(BUSI_SIZE)
        rc = self.lib.call("ReadCardBas", card, busi, timeout=timeout, cancelled=cancelled)
        meaning = self.codes.meaning(rc)
        if meaning is Meaning.NO_CARD:
            return None
        if meaning is not Meaning.OK:
            raise error_for(meaning, rc, "ReadCardBas")
        record = parse_card_record(self.lib.decode(card, "ReadCardBas"))
        self.last_busi_info = self.lib.decode(busi, "ReadCardBas")
        return record

    def verify_pin(self, timeout: float, cancelled: Cancelled) -> PinResult:
        out = self.lib.buffer(ERR_SIZE)
        rc = self.lib.call("VerifyPIN", out, timeout=timeout, cancelled=cancelled)
        return pin_result(self.codes.meaning(rc), rc, self.lib.decode(out, "VerifyPIN"))

    def read_id_card(self, timeout: float, photo_dir: str | None = None) -> IdCardRecord | None:
        """The resident ID card on the reader's ID-card pad (ReadSFZ); None when none is there."""
        if not self.lib.has("ReadSFZ"):
            raise error_for(Meaning.FAILED, -1, "ReadSFZ (not in this library)")
        out, busi = self.lib.buffer(SFZ_SIZE), self.lib.buffer(BUSI_SIZE)
        path = self.lib.encode(photo_dir) if photo_dir else None
        rc = self.lib.call("ReadSFZ", path, out, busi, timeout=timeout)
        meaning = self.codes.meaning(rc)
        if meaning is Meaning.NO_CARD:
            return None
        if meaning is not Meaning.OK:
            raise error_for(meaning, rc, "ReadSFZ")
        return parse_id_card(self.lib.decode(out, "ReadSFZ"))
