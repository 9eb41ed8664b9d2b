"""A simulated social-security card chip: ISO 7816-4 APDUs over its files.

The chip is the only place where a PIN exists in the simulator; it compares
what the simulated keypad typed and answers 9000 / 63Cx / 6983, like a real
card. Its files use the layout of ``drivers.apdu`` (EF05 card information,
EF06 holder), built from the world file.
"""

from __future__ import annotations

from typing import Literal

from drivers import apdu
from pos_plugin.world import WorldCard, WorldPerson

Defect = Literal["malformed_info", "malformed_holder", "mute"]
DEFECTS: tuple[str, ...] = ("malformed_info", "malformed_holder", "mute")
MAX_TRIES = 3
SSC_ATR = bytes.fromhex("3B6C00000086380C53534333202020")  # opaque to the host
BANK_ATR = bytes.fromhex("3B6800000073C84013009000")


class ChipMute(Exception):
    """The chip does not answer (dirty contacts, card inserted the wrong way)."""


class SimChip:
    def __init__(
        self,
        *,
        card_info: bytes,
        holder: bytes,
        pin: str | None,
        tries_left: int = MAX_TRIES,
        atr: bytes = SSC_ATR,
        has_ssc: bool = True,
        mute: bool = False,
    ) -> None:
        self.files = {apdu.EF_CARD_INFO: card_info, apdu.EF_HOLDER: holder}
        self._pin = pin
        self.tries_left = tries_left
        self.atr = atr
        self.has_ssc = has_ssc
        self.mute = mute
        self._app_selected = False
        self._current: int | None = None

    @classmethod
    def from_world(
        cls, person: WorldPerson, card: WorldCard, defect: Defect | None = None
    ) -> SimChip:
        info = apdu.build_card_info(
            card_sn=card.card_sn,
            spec_version=card.spec_version,
            region_code=person.insured_region,
            issue_date=card.issue_date,
            expiry_date=card.expiry_date,
            card_no=card.card_no,
        )
        holder = apdu.build_holder(id_number=person.id_number, name=person.name)
        if defect == "malformed_info":
            info = info[: len(info) - 3]  # the last record runs past the end of the file
        elif defect == "malformed_holder":
            holder = apdu.tlv(apdu.TAG_ID_NUMBER, b"\xff\xfe") + apdu.tlv(apdu.TAG_NAME, b"\x81")
        return cls(
            card_info=info,
            holder=holder,
            pin=card.pin,
            tries_left=card.pin_tries_left,
            mute=defect == "mute",
        )

    @classmethod
    def foreign(cls) -> SimChip:
        """A bank card: a chip without the social-security application."""
        return cls(card_info=b"", holder=b"", pin=None, atr=BANK_ATR, has_ssc=False)

    def power_on(self) -> bytes:
        if self.mute:
            raise ChipMute()
        self._app_selected = False
        self._current = None
        return self.atr

    def transmit(self, command: bytes) -> bytes:
        """One command APDU in, response data + SW1 SW2 out."""
        if self.mute:
            raise ChipMute()
        if len(command) < 4:
            return _sw(apdu.SW_WRONG_LENGTH)
        cla, ins, p1, p2 = command[:4]
        body = command[5 : 5 + command[4]] if len(command) > 5 else b""
        if cla != 0x00:
            return _sw(apdu.SW_CLA_NOT_SUPPORTED)
        if ins == apdu.INS_SELECT:
            return self._select(p1, body)
        if ins == apdu.INS_READ_BINARY:
            le = command[4] if len(command) == 5 else 0
            return self._read(p1 << 8 | p2, le or 256)
        if ins == apdu.INS_VERIFY:
            return self._verify(body)
        return _sw(apdu.SW_INS_NOT_SUPPORTED)

    def _select(self, p1: int, body: bytes) -> bytes:
        if p1 == 0x04:
            if self.has_ssc and body == apdu.SSC_AID:
                self._app_selected, self._current = True, None
                return _sw(apdu.SW_OK)
            return _sw(apdu.SW_FILE_NOT_FOUND)
        if p1 == 0x02 and self._app_selected and len(body) == 2:
            fid = int.from_bytes(body, "big")
            if fid in self.files:
                self._current = fid
                return _sw(apdu.SW_OK)
        return _sw(apdu.SW_FILE_NOT_FOUND)

    def _read(self, offset: int, le: int) -> bytes:
        if self._current is None:
            return _sw(apdu.SW_FILE_NOT_FOUND)
        return self.files[self._current][offset : offset + le] + _sw(apdu.SW_OK)

    def _verify(self, body: bytes) -> bytes:
        if self._pin is None or not self._app_selected:
            return _sw(apdu.SW_SECURITY)
        if self.tries_left <= 0:
            return _sw(apdu.SW_PIN_BLOCKED)
        if body.hex() == self._pin:
            self.tries_left = MAX_TRIES
            return _sw(apdu.SW_OK)
        self.tries_left -= 1
        return _sw(apdu.SW_WRONG_PIN_MASK | self.tries_left)

    # -- the keypad side, inside the reader: never reachable from the host link

    def typed_pin(self, correct: bool) -> bytes:
        """BCD digits the simulated customer types: the right PIN or a wrong one."""
        pin = self._pin or "000000"
        if not correct:
            pin = f"{(int(pin) + 1) % 10**6:06d}"
        return bytes.fromhex(pin)


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")
