"""Line faults, link budgets, unplug and re-plug, through real pyserial on the pty."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from drivers import CardPresented, DeviceError, LinkTiming, PinOutcome, Terminal
from tests.waiting import until


def test_nak_storm_recovered_within_resend_budget(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001")
    before = terminal.link_stats.resends
    sim.inject("nak_all", 3)  # the request is NAKed 3 times: 3 re-sends, the 4th goes through
    assert isinstance(terminal.wait_for_credential(5), CardPresented)
    assert terminal.link_stats.resends - before == 3
    assert terminal.status().up


def test_nak_storm_beyond_budget_is_link_down_then_recovers(sim: Any, terminal: Terminal) -> None:
    sim.inject("nak_all", 4)
    with pytest.raises(DeviceError) as err:
        terminal.show("x")
    assert err.value.code == "link_down"
    assert "cable" in err.value.message_en
    assert terminal.status().up is False
    # the reconnector (or the next call) brings it back: the line was fine all along
    assert until(lambda: terminal.status().up, 10)
    terminal.show("back")
    assert sim.display == ("back", "")


def test_three_bad_crcs_in_a_row_is_link_down(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001")
    sim.inject("corrupt_crc", 3)
    with pytest.raises(DeviceError) as err:
        terminal.wait_for_credential(5)
    assert err.value.code == "link_down"


def test_two_bad_crcs_are_recovered_without_acting_twice(sim: Any, terminal: Terminal) -> None:
    sim.present_card("B11000001", pin=["wrong", "correct"])
    terminal.wait_for_credential(5)
    sim.inject("corrupt_crc", 2)
    # The PIN_RESULT arrives corrupted twice; the device re-sends the *cached*
    # answer, so the chip sees one VERIFY and one wrong try, not three.
    assert terminal.verify_pin(5).tries_left == 2
    assert sim.tries_left("B11000001") == 2


def test_resent_request_is_not_executed_twice(sim: Any) -> None:
    # The host allows the device less processing time than the simulated
    # customer takes, so it re-sends VERIFY_PIN once (then waits first_byte=2 s);
    # the device answers the re-send from its cache instead of a second VERIFY.
    sim.firmware.pin_delay = 0.4
    sim.present_card("B11000002", pin="wrong")
    timing = LinkTiming(first_byte=2.0, response=0.1, inter_byte=0.2, exchange=8.0)
    with Terminal(sim.path, timing=timing, hold=0.0) as t:
        t.wait_for_credential(5)
        before = sim.stats.duplicates
        result = t.verify_pin(5)
    assert result.outcome is PinOutcome.WRONG and result.tries_left == 2
    # the device reads the re-sent copy right after answering the first one
    assert until(lambda: sim.stats.duplicates > before, 5)
    assert sim.tries_left("B11000002") == 2


@pytest.mark.parametrize("fault", ["drop_bytes", "garbage"])
def test_damaged_answers_are_recovered(sim: Any, terminal: Terminal, fault: str) -> None:
    sim.present_card("B11000003")
    sim.inject(fault, 2)
    got = terminal.wait_for_credential(5)
    assert isinstance(got, CardPresented) and got.card.card_no == "B11000003"


def test_stall_mid_frame_hits_inter_byte_deadline_and_recovers(sim: Any) -> None:
    sim.stall_seconds = 0.6
    sim.present_card("B11000001")
    lines: list[str] = []
    timing = LinkTiming(first_byte=0.5, inter_byte=0.1, response=1.5, exchange=8.0)
    with Terminal(sim.path, timing=timing, trace=lines.append) as t:
        sim.inject("stall", 1)
        t0 = time.monotonic()
        got = t.wait_for_credential(5)
        assert time.monotonic() - t0 < 5
    assert isinstance(got, CardPresented)
    assert any("inter-byte timeout" in line for line in lines)


def test_unplug_during_pin_entry_gives_clear_error_and_replug_recovers(
    sim: Any, terminal: Terminal
) -> None:
    sim.present_card("B11000001", pin="none")
    terminal.wait_for_credential(5)
    outcome: list[object] = []

    def verify() -> None:
        try:
            outcome.append(terminal.verify_pin(30))
        except DeviceError as exc:
            outcome.append(exc)

    th = threading.Thread(target=verify)
    th.start()
    assert sim.wait_for("pin_entry", timeout=5)
    sim.unplug()
    th.join(timeout=10)
    assert not th.is_alive()
    assert len(outcome) == 1
    err = outcome[0]
    assert isinstance(err, DeviceError), f"no PIN result may come out of an unplug: {err!r}"
    assert err.code in {"device_unavailable", "link_down"}
    assert "cable" in err.message_en and err.message_zh
    assert terminal.status().up is False
    assert terminal.status().last_error

    # while unplugged, calls fail fast with the same clear error
    with pytest.raises(DeviceError) as again:
        terminal.show("x")
    assert again.value.code == "device_unavailable"

    sim.replug()
    assert until(lambda: terminal.status().up, 10), terminal.status()
    assert terminal.status().reconnects >= 1
    sim.remove_card()  # the card stayed in across the unplug: it must go in again
    sim.present_card("B11000001", pin="correct")
    got = terminal.wait_for_credential(5)
    assert isinstance(got, CardPresented)
    assert terminal.verify_pin(5).outcome is PinOutcome.VERIFIED


def test_next_call_reconnects_without_waiting_for_backoff(sim: Any) -> None:
    with Terminal(sim.path, hold=0.1, backoff=(30.0,)) as t:
        sim.unplug()
        with pytest.raises(DeviceError):
            t.wait_for_credential(5)
        sim.replug()
        sim.scan_voucher("EV-LINA-0006")
        assert t.wait_for_credential(5).token == "EV-LINA-0006"  # type: ignore[union-attr]


def test_garbage_from_host_side_is_nakked_by_device(sim: Any, terminal: Terminal) -> None:
    # Write noise straight onto the port between exchanges: the device NAKs or
    # discards it and the next exchange still works.
    port = terminal._port
    assert port is not None
    port.write(b"\x02\x41\x42\x43\x03garbage\x15")
    terminal.show("ok")
    assert sim.display == ("ok", "")


def test_unknown_command_is_a_typed_error(sim: Any, terminal: Terminal) -> None:
    from dataclasses import dataclass

    from drivers import packets as pk

    @dataclass(frozen=True)
    class Bogus(pk.Packet):  # a request type the protocol does not define
        TYPE = 0x7E
        NAME = "BOGUS"

    answer = terminal._call(Bogus())
    assert isinstance(answer, pk.Error) and answer.code == pk.DevError.UNKNOWN_COMMAND
    terminal.show("still fine")
    assert sim.display == ("still fine", "")
