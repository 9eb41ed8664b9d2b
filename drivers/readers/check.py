"""``pos-plugin reader check``: is this till's reader library usable, and what does it read?

Why a command: the first thing an installer (or support, on the phone) needs
is "does the library load, does the reader answer, does a card read", with
every personal field masked so the output can be pasted into a ticket.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.errors import DeviceError
from drivers.readers.base import CardBackend
from drivers.readers.factory import build_backend, build_voucher
from drivers.readers.settings import ReaderConfig
from pos_plugin.rules.identity import mask_card_no, mask_id_number, mask_name


def run_check(reader: ReaderConfig, pharmacy_code: str, out: Callable[[str], None]) -> int:
    """0: library loaded and reader answered; 1: a problem (said in Chinese and English)."""
    if reader.kind == "serial":
        out('reader: serial terminal ([reader] kind = "serial"); nothing to load.')
        out('  (a library reader is configured with kind = "sscard" or "nhsa-reader")')
        return 0
    try:
        backend = build_backend(reader)
    except DeviceError as exc:
        out(f"library: {reader.library}: {exc.message}")
        return 1
    lib = backend.lib
    out(f"library: {lib.path} ({reader.kind}, {lib.convention}, {lib.encoding})")
    try:
        return _check_reader(backend, reader, pharmacy_code, out)
    finally:
        lib.close()


def _check_reader(
    backend: CardBackend, reader: ReaderConfig, pharmacy_code: str, out: Callable[[str], None]
) -> int:
    timeout = reader.call_timeout
    try:
        out(f"init: {backend.init(timeout)}")
        info = getattr(backend, "reader_info", None)
        if info is not None:
            ri = info(timeout)
            out(
                f"iGetReaderInfo: reader SN {ri.reader_sn or '-'}, PSAM terminal {ri.psam_term_no or '-'}"
            )
        else:
            out("iGetReaderInfo: not offered by this library")
        record = backend.read(timeout, lambda: False)
    except DeviceError as exc:
        out(f"reader: {exc.message} [{exc.code}]")
        return 1
    if record is None:
        out("card: no card in the reader (insert one and run again to test a read)")
    else:
        c = record.card
        out(
            f"card: region {c.region_code}, ID {mask_id_number(c.id_number)}, "
            f"card no {mask_card_no(c.card_no)}, holder {mask_name(c.holder_name)}, "
            f"spec {c.spec_version}, valid {c.issue_date or '?'}..{c.expiry_date or '?'}"
        )
    read_id_card = getattr(backend, "read_id_card", None)
    if read_id_card is not None and backend.lib.has("ReadSFZ"):
        try:
            sfz = read_id_card(timeout)
        except DeviceError as exc:
            out(f"ID card (ReadSFZ): {exc.message} [{exc.code}]")
            return 1
        if sfz is None:
            out("ID card (ReadSFZ): none on the reader")
        else:
            out(f"ID card (ReadSFZ): {mask_name(sfz.name)}, {mask_id_number(sfz.id_number)}")
    if reader.voucher_library:
        try:
            voucher = build_voucher(reader, pharmacy_code)
        except DeviceError as exc:
            out(f"voucher library: {reader.voucher_library}: {exc.message}")
            return 1
        assert voucher is not None
        out(f"voucher library: {voucher.lib.path} loaded (NationEcTrans present)")
        voucher.lib.close()
    return 0
