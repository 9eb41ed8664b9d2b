"""Device sessions through real pyserial on the simulator's pty."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from drivers import (
    CardPresented,
    DeviceError,
    DeviceState,
    PinOutcome,
    PinResult,
    Terminal,
    VoucherScanned,
)
from pos_plugin.world import World
from tests.waiting import until

from .conftest import TIMING


def read_card(t: Terminal) -> CardPresented:
    got = t.wait_for_credential(5)
    assert isinstance(got, CardPresented)
    return got


@pytest.mark.parametrize("card_no", ["B11000001", "B11000003", "B13000005", "B11000007"])
def test_read_card_matches_world(sim: Any, terminal: Terminal, world: World, card_no: str) -> None:
    person, wcard = world.card_owner(card_no)
    sim.present_card(card_no)
    card = read_card(terminal).card
    assert card.card_no == wcard.card_no
    assert card.card_sn == wcard.card_sn
    assert card.id_number == person.id_number
    assert card.holder_name == person.name
    assert card.region_code == person.insured_region
    assert card.issue_date == wcard.issue_date
    assert card.expiry_date == wcard.expiry_date
    assert card.spec_version == wcard.spec_version
    assert terminal.status().state == DeviceState.CARD_PRESENT


def test_expired_and_lost_cards_read_fine(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000008")  # expired 2025-01-01: the rules refuse it, not the reader
    assert read_card(terminal).card.card_no == "B11000008"
    sim.remove_card()
    sim.present_card("B11000007")  # reported lost
    assert read_card(terminal).card.card_no == "B11000007"


def test_read_card_with_apdu_pass_through(sim: Any, world: World) -> None:
    sim.present_card("B11000002")
    with Terminal(sim.path, timing=TIMING, read_mode="apdu") as t:
        card = read_card(t).card
    assert (
        card.holder_name == "王芳"
        and card.id_number == world.person("11000000000000000002").id_number
    )


def test_pin_verified(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001", pin="correct")
    read_card(terminal)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.VERIFIED, 3)
    assert terminal.status().state == DeviceState.DONE


def test_wrong_pin_tries_fall_then_blocked(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000002", pin="wrong")
    read_card(terminal)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.WRONG, 2)
    assert terminal.status().state == DeviceState.CARD_PRESENT
    assert terminal.verify_pin(5) == PinResult(PinOutcome.WRONG, 1)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.BLOCKED, 0)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.BLOCKED, 0)
    assert sim.tries_left("B11000002") == 0


def test_pin_script_list_and_counter_reset(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000003", pin=["wrong", "correct"])
    read_card(terminal)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.WRONG, 2)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.VERIFIED, 3)


def test_pin_preset_blocked(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000004", pin="blocked")
    read_card(terminal)
    assert terminal.verify_pin(5) == PinResult(PinOutcome.BLOCKED, 0)
    assert terminal.status().state == DeviceState.ABORTED


def test_pin_customer_types_nothing_times_out(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000006", pin="none")
    read_card(terminal)
    t0 = time.monotonic()
    assert terminal.verify_pin(0.5).outcome is PinOutcome.TIMEOUT
    assert time.monotonic() - t0 < 5


def test_pin_customer_presses_cancel(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000006", pin="cancel")
    read_card(terminal)
    assert terminal.verify_pin(5).outcome is PinOutcome.CANCELLED


def test_verify_pin_without_card(terminal: Terminal) -> None:
    with pytest.raises(DeviceError) as err:
        terminal.verify_pin(1)
    assert err.value.code == "card_unreadable"
    assert "insert the card chip first" in err.value.message_en


def test_voucher_scanned(sim: Any, terminal: Terminal) -> None:
    sim.scan_voucher("EV-LINA-0006")
    assert terminal.wait_for_credential(5) == VoucherScanned("EV-LINA-0006")
    assert terminal.status().state == DeviceState.DONE


def test_wait_times_out_with_device_timeout(terminal: Terminal) -> None:
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as err:
        terminal.wait_for_credential(0.3)
    assert err.value.code == "device_timeout"
    assert time.monotonic() - t0 < 3
    assert terminal.status().state == DeviceState.ABORTED


def test_cancel_while_waiting_for_card(sim: Any, terminal: Terminal) -> None:
    result: list[BaseException | object] = []

    def wait() -> None:
        try:
            result.append(terminal.wait_for_credential(30))
        except DeviceError as exc:
            result.append(exc)

    th = threading.Thread(target=wait)
    th.start()
    assert sim.wait_for("wait_credential", timeout=5)
    t0 = time.monotonic()
    terminal.cancel()
    th.join(timeout=5)
    assert not th.is_alive()
    assert time.monotonic() - t0 < 3
    assert isinstance(result[0], DeviceError) and result[0].code == "cancelled"
    assert sim.wait_for("abort", timeout=2)


def test_cancel_event_argument_while_pin_entry(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001", pin="none")
    read_card(terminal)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(DeviceError) as err:
        terminal.verify_pin(30, cancel=stop)
    assert err.value.code == "cancelled"
    # the PIN pad was told to stop; the next verify works
    sim.present_card("B11000001", pin="correct")
    assert terminal.verify_pin(5).outcome is PinOutcome.VERIFIED


def test_second_concurrent_transaction_is_refused(sim: Any, terminal: Terminal) -> None:
    errors: list[DeviceError] = []

    def wait() -> None:
        try:
            terminal.wait_for_credential(30)
        except DeviceError as exc:
            errors.append(exc)

    th = threading.Thread(target=wait)
    th.start()
    assert sim.wait_for("wait_credential", timeout=5)
    with pytest.raises(DeviceError) as err:
        terminal.verify_pin(1)
    assert err.value.code == "device_unavailable" and "busy" in err.value.message_en
    # the display still works during a wait
    terminal.show("请插卡", "Insert card")
    assert sim.display == ("请插卡", "Insert card")
    terminal.cancel()
    th.join(timeout=5)
    assert not th.is_alive()
    assert [e.code for e in errors] == ["cancelled"]


def test_display_and_amount(sim: Any, terminal: Terminal) -> None:
    terminal.show("应付金额", "请输入密码")
    assert sim.display == ("应付金额", "请输入密码")
    terminal.show_amount(1999, "应付")
    assert sim.amount == (1999, "应付")
    with pytest.raises(ValueError):
        terminal.show_amount(12.5)  # type: ignore[arg-type]


def test_not_a_social_security_card(sim: Any, terminal: Terminal) -> None:
    sim.present_foreign_card()
    with pytest.raises(DeviceError) as err:
        terminal.wait_for_credential(5)
    assert err.value.code == "not_social_security_card"


@pytest.mark.parametrize("defect", ["malformed_info", "malformed_holder", "mute"])
def test_damaged_cards_are_card_unreadable(sim: Any, terminal: Terminal, defect: str) -> None:
    sim.present_card("B11000001", defect=defect)
    with pytest.raises(DeviceError) as err:
        terminal.wait_for_credential(5)
    assert err.value.code == "card_unreadable"
    assert err.value.message_zh and err.value.message_en


def test_eject_and_card_removed(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001")
    read_card(terminal)
    with pytest.raises(DeviceError) as err:
        terminal.wait_card_removed(0.3)
    assert err.value.code == "device_timeout"
    threading.Timer(0.2, sim.remove_card).start()
    terminal.wait_card_removed(5)
    assert terminal.status().state == DeviceState.IDLE
    sim.present_card("B11000001")
    terminal.eject()
    terminal.wait_card_removed(1)


def test_host_never_sends_pin_commands(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001")
    read_card(terminal)
    with pytest.raises(ValueError):
        terminal.transmit_apdu(bytes.fromhex("0020000003123456"))
    rapdu = terminal.transmit_apdu(bytes.fromhex("00A4040000"))  # select nothing
    assert rapdu[-2:] == b"\x6a\x82"


def test_trace_is_redacted(sim: Any, terminal: Terminal, trace_lines: list[str]) -> None:
    sim.present_card("B11000001")
    read_card(terminal)
    terminal.verify_pin(5)
    text = "\n".join(trace_lines)
    assert "READ_CARD" in text and "CARD_FILES" in text and "PIN_RESULT" in text
    for secret in ("B11000001", "110105198005120319", "张伟", "123456"):
        assert secret not in text
    assert "42 31 31 30 30 30 30 30 31" not in text  # "B11000001" in hex


def test_open_on_missing_port_is_device_unavailable() -> None:
    t = Terminal("/nonexistent/ttyUSB9", timing=TIMING, backoff=(0.05,))
    with pytest.raises(DeviceError) as err:
        t.open()
    assert err.value.code == "device_unavailable"
    assert t.status().up is False
    t.close()


def test_loop_url_without_a_device_fails_cleanly() -> None:
    # loop:// echoes our own request back: not a device, a clean error, no hang.
    t = Terminal("loop://", timing=TIMING, backoff=(0.05,))
    with pytest.raises(DeviceError) as err:
        t.open()
    assert err.value.code in {"protocol_error", "device_unavailable"}
    t.close()


# ------------------------------------------------- presented to this wait (issue 11, finding 3)


def test_card_inserted_and_voucher_report_their_age(sim: Any, terminal: Terminal) -> None:
    from drivers import packets as pk

    sim.present_card("B11000001", at_once=True)
    sim.scan_voucher("EV-LINA-0006", at_once=True)
    time.sleep(0.3)
    voucher = terminal._call(pk.WaitCredential(hold_ms=0))
    card = terminal._call(pk.WaitCredential(hold_ms=0))
    assert isinstance(voucher, pk.Voucher) and 300 <= voucher.age_ms < 3000
    assert isinstance(card, pk.CardInserted) and 300 <= card.age_ms < 3000
    time.sleep(0.2)
    again = terminal._call(pk.WaitCredential(hold_ms=0))
    assert isinstance(again, pk.CardInserted) and again.age_ms >= card.age_ms + 200  # same insertion


def test_card_already_in_is_neither_read_nor_returned(sim: Any, terminal: Terminal) -> None:
    from drivers.terminal import STALE_CARD_PROMPT

    sim.present_card("B11000001", at_once=True)  # the previous customer's card
    time.sleep(0.05)
    displays = sim.event_count("display")
    with pytest.raises(DeviceError) as err:
        terminal.wait_for_credential(0.8)
    assert err.value.code == "card_not_presented"
    assert "insert it again" in err.value.message_en and "重新插卡" in err.value.message_zh
    assert sim.event_count("read_card") == 0  # their data stays on their card
    assert sim.display == STALE_CARD_PROMPT
    assert sim.event_count("display") - displays == 1  # shown once, not once per poll
    assert sim.event_count("wait_removed") >= 2  # it held for the removal meanwhile


def test_presented_after_is_the_sale_start_not_the_call(sim: Any, terminal: Terminal) -> None:
    sale_began = time.monotonic()
    sim.present_card("B11000001", at_once=True)  # inserted after the sale began, before the wait
    time.sleep(0.1)
    got = terminal.wait_for_credential(2, presented_after=sale_began)
    assert isinstance(got, CardPresented)
    sim.remove_card()
    sim.present_card("B11000001", at_once=True)
    time.sleep(0.1)
    with pytest.raises(DeviceError) as err:  # ... but not before it began
        terminal.wait_for_credential(0.5, presented_after=time.monotonic())
    assert err.value.code == "card_not_presented"


def test_card_removed_and_inserted_again_is_read(sim: Any, terminal: Terminal) -> None:
    from drivers.terminal import STALE_CARD_PROMPT

    sim.present_card("B11000001", at_once=True)
    time.sleep(0.05)  # a card left behind is older than the sale
    got: list[object] = []
    th = threading.Thread(target=lambda: got.append(terminal.wait_for_credential(10)))
    th.start()
    try:
        assert until(lambda: sim.display == STALE_CARD_PROMPT, 5)
        sim.remove_card()
        sim.present_card("B11000003")  # the customer inserts (again) when the pad asks
    finally:
        th.join(timeout=10)
    assert len(got) == 1 and isinstance(got[0], CardPresented)
    assert got[0].card.card_no == "B11000003"


def test_stale_card_removed_without_a_new_one_is_a_plain_timeout(
    sim: Any, terminal: Terminal
) -> None:
    sim.present_card("B11000001", at_once=True)
    time.sleep(0.05)  # a card left behind is older than the sale
    threading.Timer(0.3, sim.remove_card).start()
    with pytest.raises(DeviceError) as err:
        terminal.wait_for_credential(1.0)
    assert err.value.code == "device_timeout"


def test_voucher_scanned_before_the_wait_is_dropped(sim: Any, terminal: Terminal) -> None:
    sim.scan_voucher("EV-ZHANGWEI-0001", at_once=True)  # nobody was waiting
    time.sleep(0.05)
    waits = sim.event_count("wait_credential")
    got: list[object] = []
    th = threading.Thread(target=lambda: got.append(terminal.wait_for_credential(5)))
    th.start()
    try:
        assert sim.wait_for("wait_credential", 5, after=waits + 1)  # the stray code is gone
        assert not got
        sim.scan_voucher("EV-LINA-0006")
    finally:
        th.join(timeout=10)
    assert got == [VoucherScanned("EV-LINA-0006")]
    assert not sim.firmware.vouchers  # the stray one was consumed and dropped, not kept


def test_a_stale_card_does_not_hide_a_fresh_voucher(sim: Any, terminal: Terminal) -> None:
    from drivers.terminal import STALE_CARD_PROMPT

    sim.present_card("B11000001", at_once=True)
    time.sleep(0.05)  # a card left behind is older than the sale
    got: list[object] = []
    th = threading.Thread(target=lambda: got.append(terminal.wait_for_credential(5)))
    th.start()
    try:
        assert until(lambda: sim.display == STALE_CARD_PROMPT, 5)
        sim.scan_voucher("EV-LINA-0006", at_once=True)
    finally:
        th.join(timeout=10)
    assert got == [VoucherScanned("EV-LINA-0006")]


def test_wait_card_removed_cancel_sends_no_abort(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001")
    read_card(terminal)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    aborts = sim.event_count("abort")
    with pytest.raises(DeviceError) as err:
        terminal.wait_card_removed(10, stop)
    assert err.value.code == "cancelled"
    assert sim.event_count("abort") == aborts


def test_a_version_1_reader_is_refused(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers import packets as pk

    real = sim.firmware.handle

    def v1(req: pk.Packet) -> pk.Packet:
        ans = real(req)
        return pk.Info(version=1, model="OLD", firmware="0.9") if isinstance(ans, pk.Info) else ans

    monkeypatch.setattr(sim.firmware, "handle", v1)
    t = Terminal(sim.path, timing=TIMING, backoff=(30.0,))
    with pytest.raises(DeviceError) as err:
        t.open()
    t.close()
    assert err.value.code == "protocol_error" and "firmware" in err.value.message_en

