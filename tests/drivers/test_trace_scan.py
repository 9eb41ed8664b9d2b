"""SCAN_TRACE on the wire: the cashier scans each pack's 追溯码 on the counter device.

Real pyserial against the simulator on a pty and on a TCP socket (tests/drivers/conftest):
the packs come off the world file's shelf, and the simulated cashier misreads, scans a
pack twice, presses Cancel, or scans nothing; garbled frames are re-sent by the link."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from drivers import DeviceError, ScanUnsupported, Terminal, TracePrompt
from drivers import packets as pk
from pos_plugin.world import World

PRODUCT = "XA01AAA0001"


def _prompt(pack: int = 1, packs: int = 2, note: str = "") -> TracePrompt:
    return TracePrompt(line=1, pack=pack, packs=packs, product=PRODUCT, name="阿莫西林胶囊",
                       note=note)  # fmt: skip


def test_packs_come_off_the_world_shelf_in_order(sim: Any, terminal: Terminal, world: World) -> None:
    shelf = next(c for c in world.catalogue if c.med_list_codg == PRODUCT).trace_codes
    first = terminal.scan_trace_code(_prompt(1), timeout=2)
    second = terminal.scan_trace_code(_prompt(2), timeout=2)
    assert [first, second] == list(shelf[:2])
    assert sim.packs_left(PRODUCT) == list(shelf[2:])
    assert sim.display == ("阿莫西林胶囊", "请扫追溯码 2/2")  # the pad shows the line and the pack


def test_garbled_and_repeated_scans_come_back_as_read(sim: Any, terminal: Terminal) -> None:
    """The device does not judge codes: a misread and a second scan of one pack reach the
    host as they were read (the sale refuses them and asks again)."""
    shelf = sim.packs_left(PRODUCT)
    sim.script_scans(["garbled", "pack", "repeat"])
    misread = terminal.scan_trace_code(_prompt(1), timeout=2)
    assert misread == shelf[0][:-1]
    assert terminal.scan_trace_code(_prompt(1, note="码无效"), timeout=2) == shelf[0]
    assert sim.display == ("阿莫西林胶囊", "码无效 1/2")
    assert terminal.scan_trace_code(_prompt(2), timeout=2) == shelf[0]  # the same pack again
    assert sim.packs_left(PRODUCT) == shelf[1:]


def test_cancel_on_the_pad_is_cancelled(sim: Any, terminal: Terminal) -> None:
    sim.script_scans(["cancel"])
    with pytest.raises(DeviceError) as e:
        terminal.scan_trace_code(_prompt(), timeout=2)
    assert e.value.code == "cancelled" and "PIN pad" in e.value.message_en
    assert terminal.scan_trace_code(_prompt(), timeout=2)  # the next scan works


def test_nothing_scanned_times_out_naming_the_line(sim: Any, terminal: Terminal) -> None:
    sim.script_scans(["none"])
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as e:
        terminal.scan_trace_code(_prompt(), timeout=0.5)
    assert e.value.code == "device_timeout" and "line 1" in e.value.message_en
    assert 0.5 <= time.monotonic() - t0 < 3
    assert sim.event_count("scan_trace") >= 2  # long polls, not one blocking read


def test_a_caller_cancel_stops_the_wait(sim: Any, terminal: Terminal) -> None:
    sim.script_scans(["none"])
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(DeviceError) as e:
        terminal.scan_trace_code(_prompt(), timeout=10, cancel=cancel)
    assert e.value.code == "cancelled"


def test_a_code_scanned_before_the_scan_was_asked_is_dropped(sim: Any, terminal: Terminal) -> None:
    shelf = sim.packs_left(PRODUCT)
    sim.scan_voucher("80000000000000000999", at_once=True)  # scanned while nothing waited
    time.sleep(0.05)
    assert terminal.scan_trace_code(_prompt(), timeout=2) == shelf[0]
    since = time.monotonic()
    sim.scan_voucher("80000000000000000998", at_once=True)  # scanned for this wait
    assert terminal.scan_trace_code(_prompt(), timeout=2, presented_after=since) \
        == "80000000000000000998"  # fmt: skip


@pytest.mark.parametrize("fault", ["corrupt_crc", "drop_bytes", "garbage", "nak_all"])
def test_garbled_frames_are_re_sent_and_the_pack_is_scanned_once(
    sim: Any, terminal: Terminal, fault: str
) -> None:
    """A damaged answer is NAKed and answered again from the device's cache: the pack is
    taken off the shelf once, and the host gets exactly that code."""
    shelf = sim.packs_left(PRODUCT)
    sim.inject(fault, 1)
    assert terminal.scan_trace_code(_prompt(), timeout=3) == shelf[0]
    assert sim.packs_left(PRODUCT) == shelf[1:]
    assert sim.event_count("trace_pack") == 1


def test_a_device_without_scan_trace_is_scan_unsupported(sim: Any, terminal: Terminal) -> None:
    """A version-2 device that predates SCAN_TRACE answers ERROR 01, as for any unknown
    TYPE: the host reports a typed "unsupported", not a protocol error."""
    real = sim.firmware.handle

    def old_firmware(req: pk.Packet) -> pk.Packet:
        if isinstance(req, pk.ScanTrace):
            return pk.Error(code=pk.DevError.UNKNOWN_COMMAND, detail=req.NAME)
        return real(req)

    sim.firmware.handle = old_firmware
    with pytest.raises(ScanUnsupported) as e:
        terminal.scan_trace_code(_prompt(), timeout=2)
    assert e.value.code == "scan_unsupported" and "at the POS" in e.value.message_en
    assert isinstance(e.value, DeviceError)


def test_a_product_with_no_pack_left_scans_nothing(sim: Any, terminal: Terminal) -> None:
    with pytest.raises(DeviceError) as e:
        terminal.scan_trace_code(
            TracePrompt(line=2, pack=1, packs=1, product="NOPE", name="x"), timeout=0.4
        )
    assert e.value.code == "device_timeout" and "line 2" in e.value.message_en


def test_script_scans_refuses_unknown_steps(sim: Any) -> None:
    with pytest.raises(ValueError, match="one of"):
        sim.script_scans(["scan"])


def test_the_control_channel_scripts_the_scans(sim: Any, terminal: Terminal) -> None:
    from drivers.simulator.control import dispatch

    assert dispatch(sim, {"verb": "script_scans", "script": ["cancel"]}) == {"ok": True}
    with pytest.raises(DeviceError, match="cancelled"):
        terminal.scan_trace_code(_prompt(), timeout=2)
    with pytest.raises(ValueError):
        dispatch(sim, {"verb": "script_scans", "script": "sideways"})


def test_the_packs_of_a_refused_sale_go_back_on_the_shelf(sim: Any, terminal: Terminal) -> None:
    """The agent's last display of a sale it refused after scanning says the packs go back
    (with or without a card to take): the next basket scans them again, in their order. A
    basket that was paid (its amount shown, then the next basket began) stays sold."""
    from pos_plugin.sale.service import NOT_SOLD_AFTER_SCAN, TAKE_CARD_NOT_SOLD

    shelf = sim.packs_left(PRODUCT)
    a = [
        terminal.scan_trace_code(_prompt(1), timeout=2),
        terminal.scan_trace_code(_prompt(2), timeout=2),
    ]
    assert a == shelf[:2]
    terminal.show_amount(3700, "应付 Total")  # sale A reached the card, then was refused
    terminal.show(*TAKE_CARD_NOT_SOLD)
    assert sim.packs_left(PRODUCT) == shelf[2:]  # on the counter until the next scan
    b = terminal.scan_trace_code(_prompt(1, packs=1), timeout=2)
    assert b == shelf[0] and sim.packs_left(PRODUCT) == [shelf[1], *shelf[2:]]
    terminal.show_amount(1850, "应付 Total")  # sale B is paid
    terminal.show("交易成功", "Paid. Cash 0.00")
    c = terminal.scan_trace_code(_prompt(1, packs=1), timeout=2)
    assert c == shelf[1]
    terminal.show(*NOT_SOLD_AFTER_SCAN)  # sale C refused at its scan: only its pack comes back
    assert terminal.scan_trace_code(_prompt(1, packs=1), timeout=2) == shelf[1]
    assert sim.packs_left(PRODUCT) == shelf[2:]
    assert shelf[0] not in sim.packs_left(PRODUCT)  # B's pack left with the customer
