"""`python -m drivers.simulator` out of process, driven through its control channel."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers import CardPresented, DeviceError, PinOutcome, Terminal

from .conftest import TIMING, TRANSPORTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=TRANSPORTS)
def cli_sim(request: pytest.FixtureRequest) -> Iterator[tuple[str, tuple[str, int]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "drivers.simulator", "--transport", request.param],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        serial_line = proc.stdout.readline()
        control_line = proc.stdout.readline()
        assert serial_line.startswith("serial: "), serial_line
        path = serial_line.split()[1]
        assert path.startswith("socket://127.0.0.1:") == (request.param == "socket"), path
        host, port = control_line.split()[1].rsplit(":", 1)
        yield path, (host, int(port))
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


class Control:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=5)
        self.file = self.sock.makefile("rw", encoding="utf-8")

    def __call__(self, **msg: Any) -> dict[str, Any]:
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        answer: dict[str, Any] = json.loads(self.file.readline())
        return answer

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_cli_simulator_with_control_channel(cli_sim: tuple[str, tuple[str, int]]) -> None:
    path, addr = cli_sim
    ctl = Control(addr)
    try:
        assert ctl(verb="present_card", card_no="B11000001", pin=["wrong", "correct"]) == {
            "ok": True
        }
        with Terminal(path, timing=TIMING, hold=0.1, backoff=(0.05, 0.1)) as t:
            got = t.wait_for_credential(5)
            assert isinstance(got, CardPresented) and got.card.holder_name == "张伟"
            assert t.verify_pin(5).outcome is PinOutcome.WRONG
            assert ctl(verb="tries_left", card_no="B11000001")["tries_left"] == 2
            assert t.verify_pin(5).outcome is PinOutcome.VERIFIED
            t.show("你好")
            assert ctl(verb="status")["display"] == ["你好", ""]
            assert ctl(verb="stats")["stats"]["exchanges"] >= 4

            assert ctl(verb="unplug") == {"ok": True}
            end = time.monotonic() + 5
            while t.status().up and time.monotonic() < end:
                with contextlib.suppress(DeviceError):
                    t.show("ping")  # only to let the Terminal notice
            assert not t.status().up
            assert ctl(verb="replug")["ok"]
            end = time.monotonic() + 10
            while not t.status().up and time.monotonic() < end:
                time.sleep(0.05)
            assert t.status().up
            assert ctl(verb="scan_voucher", token="EV-LINA-0006") == {"ok": True}
            assert t.wait_for_credential(5).token == "EV-LINA-0006"  # type: ignore[union-attr]

        bad = ctl(verb="present_card", card_no="NOPE")
        assert bad["ok"] is False and "NOPE" in bad["error"]
        assert ctl(verb="inject", fault="melt")["ok"] is False
        assert ctl(verb="fly")["ok"] is False
    finally:
        ctl.close()
