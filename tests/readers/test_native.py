"""Loading a library and calling it: missing files, wrong symbols, encoding, hangs, busy."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from pathlib import Path

import pytest

from drivers.errors import DeviceError
from drivers.readers.native import NativeLibrary
from drivers.readers.sscard import REQUIRED

from .conftest import SOURCE, Stub


def test_missing_library_says_where_to_configure_it(tmp_path: Path) -> None:
    with pytest.raises(DeviceError) as e:
        NativeLibrary(tmp_path / "SSCardDriver.dll", required=REQUIRED)
    assert e.value.code == "device_unavailable"
    assert "does not exist" in e.value.message_en and "[reader] library" in e.value.message_en
    assert "找不到" in e.value.message_zh


def test_a_file_that_is_no_library_is_refused_clearly() -> None:
    with pytest.raises(DeviceError) as e:
        NativeLibrary(SOURCE, required=REQUIRED)
    assert e.value.code == "device_unavailable" and "cannot be loaded" in e.value.message_en
    assert "32/64" in e.value.message_zh


def test_a_library_without_the_expected_symbols_names_them(stub_no_verify_path: Path) -> None:
    with pytest.raises(DeviceError) as e:
        NativeLibrary(stub_no_verify_path, required=REQUIRED)
    assert "lacks iVerifyPIN" in e.value.message_en and "iVerifyPIN" in e.value.message_zh
    assert "iReadCardBas" not in e.value.message_en.split("lacks", 1)[1]


def test_the_calling_convention_follows_the_os(stub: Stub) -> None:
    lib = NativeLibrary(stub.path, required=REQUIRED)
    expected = "stdcall (WinDLL)" if sys.platform == "win32" else "cdecl (CDLL)"
    assert lib.convention == expected


def test_text_is_gbk_both_ways_and_bad_bytes_are_a_clear_error(stub: Stub) -> None:
    lib = NativeLibrary(stub.path, required=REQUIRED)
    assert lib.decode("张三|".encode("gbk") + b"\0junk", "iReadCardBas") == "张三|"
    assert lib.encode("医保") == "医保".encode("gbk")
    with pytest.raises(DeviceError) as e:
        lib.decode(b"639900|\xff\xff|", "iReadCardBas")
    assert e.value.code == "protocol_error" and "not GBK" in e.value.message_en
    # A rare name character outside GBK, sent as a GB18030 four-byte sequence, survives.
    assert lib.decode("王䶮|".encode("gb18030"), "iReadCardBas") == "王䶮|"


def test_a_hang_is_abandoned_then_refused_until_it_returns(stub: Stub) -> None:
    lib = NativeLibrary(stub.path, required=REQUIRED)
    stub.insert()
    stub.set("hang_fn", "iReadCardBas")
    stub.set("hang_ms", 60000)
    out = lib.buffer(2048)
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as e:
        lib.call("iReadCardBas", ctypes.c_int(3), out, timeout=0.3)
    assert time.monotonic() - t0 < 2.0 and "did not return" in e.value.message_en
    assert lib.stuck == "iReadCardBas" and lib.needs_reinit
    with pytest.raises(DeviceError) as refused:
        lib.call("iReadCardBas", ctypes.c_int(3), lib.buffer(2048), timeout=0.3)
    assert "has not come back" in refused.value.message_en
    stub.settle()
    assert lib.stuck is None
    assert lib.call("iReadCardBas", ctypes.c_int(3), lib.buffer(2048), timeout=2.0) == 0
    lib.close()


def test_a_second_concurrent_call_is_busy_not_queued(stub: Stub) -> None:
    lib = NativeLibrary(stub.path, required=REQUIRED)
    stub.insert()
    stub.set("hang_fn", "iReadCardBas")
    stub.set("hang_ms", 500)
    worker = threading.Thread(
        target=lib.call, args=("iReadCardBas", ctypes.c_int(3), lib.buffer(2048)),
        kwargs={"timeout": 5.0},
    )  # fmt: skip
    worker.start()
    time.sleep(0.15)
    with pytest.raises(DeviceError) as e:
        lib.call("iGetReaderInfo", lib.buffer(64), lib.buffer(64), timeout=1.0)
    assert "busy" in e.value.message_en
    worker.join()
    assert stub.get("max_in_card") == 1
    lib.close()
