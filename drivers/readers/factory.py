"""The device the config asks for: the serial terminal, or a library reader.

Why one function: the agent (``start_from_config``) and ``pos-plugin reader
check`` must build exactly the same thing from the same ``[reader]`` section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.readers.base import CardBackend, CardDevice, VoucherBackend
from drivers.readers.codes import CodeTable
from drivers.readers.settings import ReaderConfig

if TYPE_CHECKING:
    from pos_plugin.config import Config


def build_backend(reader: ReaderConfig) -> CardBackend:
    """Load the configured card library (DeviceError with a bilingual message if it cannot)."""
    assert reader.library is not None  # the config's validator guarantees it
    codes = CodeTable(reader.return_codes)
    if reader.kind == "sscard":
        from drivers.readers.sscard import SSCardBackend

        return SSCardBackend.load(
            reader.library, encoding=reader.encoding, card_type=reader.sscard.card_type,
            codes=codes,
        )  # fmt: skip
    from drivers.readers.heasec import HeaSecBackend

    n = reader.nhsa
    init_info = {
        "IP": n.ip,
        "PORT": n.port,
        "TIMEOUT": n.timeout,
        "LOG_PATH": n.log_path,
        "SFZ_DRIVER_TYPE": n.sfz_driver_type,
        "CARD_PASSTYPE": n.card_passtype,
    } | n.extra
    return HeaSecBackend.load(
        reader.library, encoding=reader.encoding, init_info=init_info, codes=codes
    )


def build_voucher(reader: ReaderConfig, pharmacy_code: str) -> VoucherBackend | None:
    if not reader.voucher_library:
        return None
    from drivers.readers.ecvoucher import VoucherLibrary

    v = reader.voucher
    return VoucherLibrary.load(
        reader.voucher_library,
        encoding=reader.encoding,
        url=v.url,
        org_id=v.org_id or pharmacy_code,
        operator_id=v.operator_id,
        operator_name=v.operator_name,
        office_id=v.office_id,
        office_name=v.office_name,
    )


def build_device(cfg: Config) -> CardDevice:
    """The (not yet opened) device for this till."""
    reader = cfg.reader
    if reader.kind == "serial":
        import logging

        from drivers.terminal import Terminal

        # [serial] trace: every frame, masked, in the log at DEBUG (pos_plugin/logs.py)
        trace = logging.getLogger("drivers.trace").debug if cfg.serial.trace else None
        return Terminal(cfg.serial_url(), baudrate=cfg.serial.baudrate, trace=trace)
    from drivers.readers.device import LibraryReader

    return LibraryReader(
        build_backend(reader),
        voucher=build_voucher(reader, cfg.pharmacy.code),
        call_timeout=reader.call_timeout,
        poll_interval=reader.poll_interval,
    )
