"""The [reader] config section and ``pos-plugin reader check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.readers.device import LibraryReader
from drivers.readers.factory import build_device
from drivers.terminal import Terminal
from pos_plugin.cli import main
from pos_plugin.config import ConfigError, load_config

from .conftest import ZHANG_WEI_ID, Stub

ROOT = Path(__file__).resolve().parents[2]
PHARMACY = '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T01"\n'


def lit(path: Path) -> str:
    """A TOML literal string: a Windows path's backslashes stay as they are."""
    return f"'{path}'"


def write(tmp_path: Path, reader: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(PHARMACY + reader, "utf-8")
    return p


def test_existing_configs_stay_on_the_serial_terminal(tmp_path: Path) -> None:
    assert load_config(ROOT / "config.example.toml").reader.kind == "serial"
    cfg = load_config(write(tmp_path, ""))
    assert cfg.reader.kind == "serial"
    device = build_device(cfg)
    assert isinstance(device, Terminal) and device.url == cfg.serial.url


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ('[reader]\nkind = "sscard"\n', "needs library"),
        ('[reader]\nkind = "pcsc"\n', "reader.kind"),
        ('[reader]\nkind = "sscard"\nlibrary = "x.so"\nencoding = "klingon"\n', "unknown encoding"),
        (
            '[reader]\nkind = "sscard"\nlibrary = "x.so"\nreturn_codes = { "-12" = "nocard" }\n',
            "not one of",
        ),
        (
            '[reader]\nkind = "sscard"\nlibrary = "x.so"\nvoucher_library = "ec.so"\n',
            "needs [reader.voucher] url",
        ),
        (
            '[reader]\nkind = "nhsa-reader"\nlibrary = "h.dll"\n[reader.nhsa]\nlog_path = "C:\\\\my logs"\n',
            "without spaces",
        ),
        (
            '[reader]\nkind = "nhsa-reader"\nlibrary = "h.dll"\n[reader.nhsa]\ncard_passtype = "2"\n',
            "card_passtype",
        ),
    ],
)
def test_reader_setting_errors_name_the_key(tmp_path: Path, section: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, section))
    assert "reader" in str(e.value) and words in str(e.value)


def test_a_library_kind_builds_a_library_reader(tmp_path: Path, stub: Stub) -> None:
    cfg = load_config(write(tmp_path, f'[reader]\nkind = "sscard"\nlibrary = {lit(stub.path)}\n'))
    device = build_device(cfg)
    assert isinstance(device, LibraryReader) and device.backend.kind == "sscard"


def test_reader_check_reports_the_reader_and_a_masked_card(
    tmp_path: Path, stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, f'[reader]\nkind = "sscard"\nlibrary = {lit(stub.path)}\n')
    assert main(["reader", "check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "reader SN STUB-RDR-0001, PSAM terminal 110105000001" in out
    assert "card: no card in the reader" in out
    stub.insert()
    assert main(["reader", "check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "ID 110105********0319" in out and "card no B******01" in out and "holder 张*" in out
    assert ZHANG_WEI_ID not in out and "B11000001" not in out and "张伟" not in out


def test_reader_check_says_what_is_wrong_in_both_languages(
    tmp_path: Path, stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = write(tmp_path, f'[reader]\nkind = "sscard"\nlibrary = {lit(tmp_path / "none.so")}\n')
    assert main(["reader", "check", "--config", str(missing)]) == 1
    out = capsys.readouterr().out
    assert "does not exist" in out and "找不到" in out and "Traceback" not in out
    stub.set("plugged", 0)
    cfg = write(tmp_path, f'[reader]\nkind = "sscard"\nlibrary = {lit(stub.path)}\n')
    assert main(["reader", "check", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "reader not connected" in out and "读卡器未连接" in out and "[device_unavailable]" in out


def test_reader_check_on_nhsa_and_voucher_libraries(
    tmp_path: Path, stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(
        tmp_path,
        f'[reader]\nkind = "nhsa-reader"\nlibrary = {lit(stub.path)}\nvoucher_library = {lit(stub.path)}\n'
        '[reader.nhsa]\nip = "10.0.0.1"\nport = 9000\n[reader.voucher]\nurl = "http://ec.example/q"\n',
    )
    assert main(["reader", "check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "init: HeaSecReadInfo initialised" in out and "voucher library:" in out
    assert "ID card (ReadSFZ): none on the reader" in out
    stub.set(
        "sfz", "张伟|男|汉|19800512|北京|110105198005120319|20200101|20400101|公安|".encode("gbk")
    )
    assert main(["reader", "check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "ID card (ReadSFZ): 张*, 110105********0319" in out and ZHANG_WEI_ID not in out
    assert '"IP": "10.0.0.1"' in stub.text("init") and '"CARD_PASSTYPE": "1"' in stub.text("init")


def test_serial_needs_no_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reader", "check", "--config", str(write(tmp_path, ""))]) == 0
    assert "serial terminal" in capsys.readouterr().out


def test_serve_with_a_missing_library_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, f'[reader]\nkind = "sscard"\nlibrary = {lit(tmp_path / "none.dll")}\n')
    assert main(["serve", "--config", str(cfg)]) == 3
    err = capsys.readouterr().err
    assert "reader problem [device_unavailable]" in err and "找不到" in err
    assert "Traceback" not in err
