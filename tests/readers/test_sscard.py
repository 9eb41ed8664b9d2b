"""SSCardDriver through the compiled stub: cards, PINs, an unplugged reader, hangs, bad output."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from drivers.errors import DeviceError
from drivers.readers.codes import CodeTable
from drivers.readers.device import LibraryReader
from drivers.results import CardPresented, PinOutcome

from .conftest import ZHANG_WEI_ID, Stub, card_text, sscard_backend


def test_a_card_in_the_reader_is_read_into_the_card_fields(
    stub: Stub, reader: LibraryReader
) -> None:
    stub.insert()
    got = reader.wait_for_credential(2.0)
    assert isinstance(got, CardPresented)
    c = got.card
    assert (c.region_code, c.id_number, c.card_no, c.card_sn, c.holder_name) == (
        "110105",
        ZHANG_WEI_ID,
        "B11000001",
        "4D83237335790FB4875C7227C23D7360",
        "张伟",
    )
    assert str(c.issue_date) == "2020-01-01" and str(c.expiry_date) == "2030-01-01"
    assert got.atr == bytes.fromhex("3B6D000080318065B0")
    assert reader.status().up and reader.status().state == "card_present"
    assert ZHANG_WEI_ID not in repr(got)


def test_no_card_waits_then_times_out_with_a_clear_message(
    stub: Stub, reader: LibraryReader
) -> None:
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(0.4)
    assert e.value.code == "device_timeout"
    assert 0.35 < time.monotonic() - t0 < 3.0
    assert "insert the card" in e.value.message_en and "插入" in e.value.message_zh
    assert stub.get("reads") >= 3  # it polled


def test_a_card_inserted_during_the_wait_is_read(stub: Stub, reader: LibraryReader) -> None:
    threading.Timer(0.3, stub.insert).start()
    got = reader.wait_for_credential(3.0)
    assert isinstance(got, CardPresented) and got.card.card_no == "B11000001"


def test_cancel_ends_the_wait(stub: Stub, reader: LibraryReader) -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(5.0, cancel)
    assert e.value.code == "cancelled"


def test_unplugged_reader_is_unavailable_and_comes_back_after_replug(
    stub: Stub, reader: LibraryReader
) -> None:
    stub.set("plugged", 0)
    stub.insert()
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(1.0)
    assert e.value.code == "device_unavailable"
    assert "reader not connected" in e.value.message_en and "读卡器未连接" in e.value.message_zh
    assert reader.status().up is False
    with pytest.raises(DeviceError):  # still unplugged: re-init fails too
        reader.wait_for_credential(1.0)
    stub.set("plugged", 1)
    infos = stub.get("infos")
    got = reader.wait_for_credential(1.0)
    assert isinstance(got, CardPresented)
    assert stub.get("infos") == infos + 1  # re-initialised before the read
    assert reader.status().up and reader.status().reconnects == 1


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("mute", "card_unreadable", "does not answer"),
        ("notssc", "not_social_security_card", "not recognised"),
        ("garbage", "card_unreadable", "unusable card record"),
        ("nongbk", "protocol_error", "not GBK"),
        ("hsm", "card_unreadable", "provincial key service"),
    ],
)
def test_card_faults_become_bilingual_errors(
    stub: Stub, reader: LibraryReader, mode: str, code: str, words: str
) -> None:
    stub.insert()
    stub.set("mode", mode)
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(1.0)
    assert e.value.code == code
    assert words in e.value.message_en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in e.value.message_zh)


def test_a_missing_field_is_named_and_the_values_are_not(stub: Stub, reader: LibraryReader) -> None:
    stub.insert(card_text(drop="device_no"))
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(1.0)
    assert e.value.code == "card_unreadable"
    assert "10 fields, not 11" in e.value.message_en and "device_no" in e.value.message_en
    assert ZHANG_WEI_ID not in e.value.message and "张伟" not in e.value.message


def test_unknown_failure_asks_for_reinit(stub: Stub, reader: LibraryReader) -> None:
    stub.insert()
    stub.set("mode", "mute")
    with pytest.raises(DeviceError):
        reader.wait_for_credential(1.0)
    stub.set("mode", "ok")
    infos = stub.get("infos")
    assert isinstance(reader.wait_for_credential(1.0), CardPresented)
    assert stub.get("infos") == infos + 1


def test_vendor_numbering_is_configured_not_coded(stub: Stub) -> None:
    """A vendor whose -3 means 'no card': the override makes the wait keep polling."""
    r = LibraryReader(
        sscard_backend(stub.path, codes=CodeTable({"-3": "no_card"})),
        call_timeout=1.0,
        poll_interval=0.05,
    )
    r.open()
    try:
        stub.insert()
        stub.set("mode", "mute")  # the stub answers -3
        with pytest.raises(DeviceError) as e:
            r.wait_for_credential(0.3)
        assert e.value.code == "device_timeout"
    finally:
        r.close()


# --------------------------------------------------------------------------- PIN


def test_pin_verified_wrong_with_tries_then_blocked(stub: Stub, reader: LibraryReader) -> None:
    stub.insert()
    reader.wait_for_credential(1.0)
    stub.set("pin_entry", "wrong")
    first = reader.verify_pin(2.0)
    assert (first.outcome, first.tries_left) == (PinOutcome.WRONG, 2)
    second = reader.verify_pin(2.0)
    assert (second.outcome, second.tries_left) == (PinOutcome.WRONG, 1)
    third = reader.verify_pin(2.0)
    assert (third.outcome, third.tries_left) == (PinOutcome.BLOCKED, 0)
    stub.set("pin_entry", "correct")  # too late: the chip is blocked
    assert reader.verify_pin(2.0).outcome is PinOutcome.BLOCKED
    assert stub.get("tries") == 0


def test_pin_right_after_a_wrong_one_is_verified(stub: Stub, reader: LibraryReader) -> None:
    stub.insert()
    stub.set("pin_entry", "wrong")
    assert reader.verify_pin(2.0).outcome is PinOutcome.WRONG
    stub.set("pin_entry", "correct")
    result = reader.verify_pin(2.0)
    assert result.verified and stub.get("tries") == 3
    assert reader.status().state == "done"


@pytest.mark.parametrize(("entry", "outcome"), [("cancel", "cancelled"), ("none", "timeout")])
def test_pin_cancelled_or_not_typed(
    stub: Stub, reader: LibraryReader, entry: str, outcome: str
) -> None:
    stub.insert()
    stub.set("pin_entry", entry)
    assert reader.verify_pin(2.0).outcome.value == outcome


def test_no_pin_digit_goes_to_the_library(stub: Stub, reader: LibraryReader) -> None:
    """iVerifyPIN gets the card type and an empty buffer: nothing the customer types."""
    calls: list[tuple[object, ...]] = []
    real = reader.backend.lib.call

    def spy(name: str, *args: object, **kw: object) -> int:
        if name == "iVerifyPIN":
            calls.append(tuple(bytes(a) if hasattr(a, "raw") else a for a in args))  # type: ignore[arg-type]
        return real(name, *args, **kw)  # type: ignore[arg-type]

    reader.backend.lib.call = spy  # type: ignore[method-assign]
    stub.insert()
    stub.set("pin_entry", "correct")
    assert reader.verify_pin(2.0).verified
    ((card_type, buffer),) = calls
    assert getattr(card_type, "value", None) == 3
    assert isinstance(buffer, bytes) and set(buffer) == {0}


# --------------------------------------------------------------------------- hangs, one at a time


def test_a_hanging_call_is_abandoned_and_the_reader_comes_back(
    stub: Stub, reader: LibraryReader
) -> None:
    stub.insert()
    stub.set("hang_fn", "iReadCardBas")
    stub.set("hang_ms", 60000)
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(10.0)
    assert time.monotonic() - t0 < 4.0  # call_timeout is 1 s: the agent did not hang
    assert e.value.code == "device_unavailable" and "did not return" in e.value.message_en
    assert reader.status().up is False
    with pytest.raises(DeviceError) as again:  # still stuck: refused at once, not queued
        reader.wait_for_credential(1.0)
    assert "has not come back from iReadCardBas" in again.value.message_en
    stub.settle()  # the reader answers again (replugged)
    infos = stub.get("infos")
    assert isinstance(reader.wait_for_credential(2.0), CardPresented)
    assert stub.get("infos") == infos + 1  # re-initialised first
    assert reader.status().up


def test_cancel_abandons_a_pin_entry_that_does_not_end(stub: Stub, reader: LibraryReader) -> None:
    stub.insert()
    stub.set("hang_fn", "iVerifyPIN")
    stub.set("hang_ms", 60000)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as e:
        reader.verify_pin(30.0, cancel)
    assert e.value.code == "cancelled" and time.monotonic() - t0 < 2.0


def test_one_call_at_a_time(stub: Stub, reader: LibraryReader) -> None:
    errors: list[str] = []

    def wait() -> None:
        try:
            reader.wait_for_credential(0.8)
        except DeviceError as exc:
            errors.append(exc.code)

    first = threading.Thread(target=wait)
    first.start()
    time.sleep(0.2)
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(0.5)
    assert e.value.code == "device_unavailable" and "busy" in e.value.message_en
    reader.show("请插卡", "Insert card")  # display calls never block
    reader.status()
    first.join()
    assert errors == ["device_timeout"]
    assert stub.get("max_in_card") == 1


# --------------------------------------------------------------------------- HSM


class FakeKeyService:
    """A test double of the provincial key service: Step1's fields in, the two keys out."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def authenticate(self, step1_fields: str) -> str:
        self.asked.append(step1_fields)
        return "AUTH315|AUTH316|"


def test_an_out_of_area_card_is_read_through_the_key_service(stub: Stub) -> None:
    service = FakeKeyService()
    r = LibraryReader(sscard_backend(stub.path, hsm=service), call_timeout=1.0, poll_interval=0.05)
    r.open()
    try:
        stub.insert()
        stub.set("mode", "hsm")
        got = r.wait_for_credential(1.0)
        assert isinstance(got, CardPresented) and got.card.card_no == "B11000001"
        assert service.asked and service.asked[0].startswith("110105|")
    finally:
        r.close()


# --------------------------------------------------------------------------- logs


def test_logs_and_status_keep_personal_data_masked(
    stub: Stub, reader: LibraryReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stub.insert()
    got = reader.wait_for_credential(1.0)
    logging.getLogger("test").info("presented %r", got)
    stub.insert(card_text(id_number="110105198005120318"))  # a bad check character
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(1.0)
    assert "GB 11643" in e.value.message_en
    text = caplog.text + str(reader.status().model_dump()) + e.value.message
    assert ZHANG_WEI_ID not in text and "110105198005120318" not in text and "B11000001" not in text
    assert "110105********0319" in caplog.text


def test_a_card_in_before_the_sale_began_is_not_presented_to_it(
    stub: Stub, reader: LibraryReader
) -> None:
    """The library cannot date an insertion: the reader must see the slot empty first."""
    from drivers.terminal import STALE_CARD_PROMPT

    stub.insert()  # the previous customer's card, still in
    with pytest.raises(DeviceError) as e:
        reader.wait_for_credential(0.4, presented_after=time.monotonic())
    assert e.value.code == "card_not_presented" and "insert it again" in e.value.message_en
    assert reader.display == STALE_CARD_PROMPT
    began = time.monotonic()
    threading.Timer(0.2, stub.remove).start()
    threading.Timer(0.4, stub.insert).start()  # out, and in again for this sale
    got = reader.wait_for_credential(3.0, presented_after=began)
    assert isinstance(got, CardPresented) and got.card.card_no == "B11000001"
