"""HeaSecReadInfo (Init JSON, ReadCardBas, VerifyPIN, ReadSFZ) and NationECCode through the stub."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from drivers.errors import DeviceError
from drivers.readers import heasec
from drivers.readers.device import LibraryReader
from drivers.readers.ecvoucher import VoucherLibrary, parse_answer
from drivers.readers.heasec import HeaSecBackend
from drivers.readers.native import NativeLibrary
from drivers.results import CardPresented, PinOutcome, VoucherScanned

from .conftest import ZHANG_WEI_ID, Stub, sscard_backend

INIT = {"IP": "10.1.2.3", "PORT": 8080, "TIMEOUT": 30, "LOG_PATH": "/var/log/nhsa",
        "SFZ_DRIVER_TYPE": 1, "CARD_PASSTYPE": "1"}  # fmt: skip
TOKEN = "EV-ZHANGWEI-0001"


def heasec_backend(stub: Stub) -> HeaSecBackend:
    lib = NativeLibrary(stub.path, required=heasec.REQUIRED, optional=heasec.OPTIONAL)
    return HeaSecBackend(lib, init_info=INIT)


def voucher_library(stub: Stub) -> VoucherLibrary:
    lib = NativeLibrary(stub.path, required=("NationEcTrans",), label="voucher library")
    return VoucherLibrary(lib, url="http://ec.example/localQrCodeQuery", org_id="H11010500001")


def voucher_data(token: str = TOKEN, id_no: str = ZHANG_WEI_ID) -> str:
    """The answer's data: a JSON string inside the JSON, escaped as the platform sends it."""
    inner = json.dumps({"ecToken": token, "idNo": id_no, "idType": "01", "userName": "张伟"})
    return inner.replace('"', '\\"')


def test_init_gets_the_json_and_the_card_reads(stub: Stub) -> None:
    r = LibraryReader(heasec_backend(stub), call_timeout=1.0, poll_interval=0.05)
    r.open()
    try:
        assert json.loads(stub.text("init")) == INIT
        stub.insert()
        got = r.wait_for_credential(1.0)
        assert isinstance(got, CardPresented) and got.card.id_number == ZHANG_WEI_ID
        assert isinstance(r.backend, HeaSecBackend) and r.backend.last_busi_info
        stub.set("pin_entry", "wrong")
        assert r.verify_pin(1.0).outcome is PinOutcome.WRONG
        stub.set("pin_entry", "correct")
        assert r.verify_pin(1.0).verified
    finally:
        r.close()


def test_init_failing_is_a_bilingual_error_with_the_librarys_words(stub: Stub) -> None:
    stub.set("plugged", 0)
    r = LibraryReader(heasec_backend(stub), call_timeout=1.0)
    with pytest.raises(DeviceError) as e:
        r.open()
    assert e.value.code == "device_unavailable"
    assert "reader not connected" in e.value.message_en and "读卡器未连接" in e.value.message_zh
    assert r.status().up is False
    stub.set("plugged", 1)
    stub.insert()
    assert isinstance(r.wait_for_credential(1.0), CardPresented)  # re-initialised on use
    assert stub.get("inits") == 2
    r.close()


def test_the_resident_id_card_gives_nine_fields(stub: Stub) -> None:
    backend = heasec_backend(stub)
    assert backend.read_id_card(1.0) is None  # nothing on the pad
    stub.set(
        "sfz",
        "张伟|男|汉|19800512|北京市朝阳区|110105198005120319|20200101|20400101|朝阳分局|".encode(
            "gbk"
        ),
    )
    rec = backend.read_id_card(1.0)
    assert rec is not None and rec.id_number == ZHANG_WEI_ID and rec.nation == "汉"
    backend.lib.close()


# --------------------------------------------------------------------------- e-voucher


@pytest.fixture
def card_and_voucher(stub: Stub) -> Iterator[LibraryReader]:
    r = LibraryReader(
        sscard_backend(stub.path),
        voucher=voucher_library(stub),
        call_timeout=1.0,
        poll_interval=0.05,
        voucher_wait=2.0,
    )
    r.open()
    yield r
    stub.settle()
    r.close()


def test_a_scanned_voucher_gives_the_token_and_holder(
    stub: Stub, card_and_voucher: LibraryReader
) -> None:
    threading.Timer(0.2, lambda: stub.set("voucher", voucher_data())).start()
    got = card_and_voucher.wait_for_credential(3.0)
    assert isinstance(got, VoucherScanned)
    assert got.token == TOKEN and got.holder_id_number == ZHANG_WEI_ID
    asked = json.loads(stub.text("ec_in"))
    assert asked["transType"] == "cn.nhsa.qrcode.get"
    assert asked["data"]["businessType"] == "02121" and asked["orgId"] == "H11010500001"
    assert 0 < len(asked["data"]["outBizNo"]) <= 64
    assert TOKEN not in repr(got)


def test_a_card_still_wins_while_the_voucher_library_waits(
    stub: Stub, card_and_voucher: LibraryReader
) -> None:
    threading.Timer(0.2, stub.insert).start()
    got = card_and_voucher.wait_for_credential(3.0)
    assert isinstance(got, CardPresented)
    assert stub.get("ec") == 1  # the scan ran beside the card polling


def test_a_scan_that_landed_while_nobody_waited_is_dropped(
    stub: Stub, card_and_voucher: LibraryReader
) -> None:
    stub.set("scan_wait_ms", 1500)
    threading.Timer(0.2, stub.insert).start()
    assert isinstance(card_and_voucher.wait_for_credential(2.0), CardPresented)
    stub.remove()
    stub.set("voucher", voucher_data())  # someone scans between two sales...
    time.sleep(0.3)  # ...into the scan still running from the last wait
    assert stub.text("ec_in") and stub.get("ec") == 1
    with pytest.raises(DeviceError) as e:
        card_and_voucher.wait_for_credential(0.5)
    assert e.value.code == "device_timeout"


@pytest.mark.parametrize(
    ("rc", "text", "words"),
    [
        (0, "not json", "not JSON"),
        (0, '{"code":0,"data":"{}"}', "no usable ecToken"),
        (0, '{"code":0,"data":"[1"}', "data is not JSON"),
        (-1, '{"code":"E01","message":"二维码已过期"}', "could not be decoded"),
    ],
)
def test_bad_voucher_answers(rc: int, text: str, words: str) -> None:
    with pytest.raises(DeviceError) as e:
        parse_answer(rc, text)
    assert words in e.value.message_en and e.value.message_zh


def test_nothing_scanned_is_not_an_error() -> None:
    assert parse_answer(-2, '{"code":-2,"message":"no code","data":""}') is None
    got = parse_answer(0, '{"code":"0000","data":{"ecToken":"630000ec01"}}')
    assert got is not None and got.token == "630000ec01" and got.holder_id_number is None
