"""A real till, as an installer runs it: ``pos-plugin serve --config`` in its own process.

Real parts throughout: the agent is a subprocess started from another working folder,
its secrets are in a real secrets file written by ``pos-plugin secrets set``, the reader
is the device simulator on a TCP socket (what a Windows till's tests run on), the
ledger is the sandbox on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from drivers.simulator import Simulator
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.world import World, load_world

from .conftest import ZHANG_WEI, item

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"pos_token": "pos-till-test", "manager_token": "mgr-till-test"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pos_plugin.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


@dataclass
class Till:
    folder: Path
    config: Path
    serial_port: int
    world: World

    @property
    def data(self) -> Path:
        return self.folder / "data"


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Till]:
    world = load_world()
    pharmacy = world.pharmacies[0]
    sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
    ledger_url = sandbox.start()
    serial_port = free_port()
    folder = tmp_path / "till"
    folder.mkdir()
    config = folder / "config.toml"
    config.write_text(
        f'[pharmacy]\ncode = "{pharmacy.code}"\nterminal_id = "T01"\n'
        f'[ledger]\nurl = "{ledger_url}"\n'
        f'[serial]\nurl = "socket://127.0.0.1:{serial_port}"\ncard_timeout = 20\npin_timeout = 20\n'
        '[api]\nport = 0\n[data]\ndir = "data"\n[log]\nlevel = "DEBUG"\n'
        '[secrets]\nstore = "file"\n',
        "utf-8",
    )
    secrets = {"ledger_token": pharmacy.api_token, "journal_hmac_key": "k" * 32, **TOKENS}
    for name, value in secrets.items():
        done = cli("secrets", "set", name, "--config", str(config), stdin=value + "\n")
        assert done.returncode == 0, done.stderr
    try:
        yield Till(folder, config, serial_port, world)
    finally:
        sandbox.stop()


class Agent:
    """``pos-plugin serve --config`` running in a subprocess, from an unrelated folder."""

    def __init__(self, till: Till, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pos_plugin.cli", "serve", "--config", str(till.config)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("pos-plugin listening on "), line + self._stderr()
        self.url = line.split()[-1]
        self.http = requests.Session()

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        r = self.http.request(
            method, self.url + path, json=body, timeout=60,
            headers={"Authorization": f"Bearer {TOKENS['pos_token']}"},
        )  # fmt: skip
        return r.status_code, r.json()

    def wait_reader(self, connected: bool, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            _, health = self.call("GET", "/v1/health")
            if (health["devices"]["reader"] == "connected") == connected:
                return health
            assert time.monotonic() < deadline, health
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def sale_body(world: World, ref: str) -> dict[str, Any]:
    person = world.person(ZHANG_WEI)
    return {
        "sale_ref": ref,
        "items": [item("6901", "A", 2, 1850)],
        "patient": {"doc_type": "resident_id", "number": person.id_number, "name": person.name},
        "buyer": {"role": "self"},
        "credential": "card",
    }


def test_starts_without_its_reader_then_reconnects_when_it_is_plugged_in(
    till: Till, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # like System32 under a service
    elsewhere.mkdir()
    agent = Agent(till, cwd=elsewhere)
    sim: Simulator | None = None
    try:
        health = agent.wait_reader(connected=False)
        assert "127.0.0.1" in health["devices"]["terminal"]["last_error"]
        status, body = agent.call("POST", "/v1/sales", sale_body(till.world, "NOREADER-1"))
        assert (status, body["code"]) == (503, "device_unavailable"), body

        sim = Simulator(till.world, transport="socket", port=till.serial_port)
        sim.start()  # the reader is plugged in
        agent.wait_reader(connected=True)
        sim.present_card("B11000001", "correct")
        status, body = agent.call("POST", "/v1/sales", sale_body(till.world, "READER-1"))
        assert (status, body["status"]) == (200, "settled"), body
    finally:
        assert agent.stop() == 0
        if sim is not None:
            sim.stop()
    # The journal and the log are under the data folder, nothing in the working folder.
    assert list(elsewhere.iterdir()) == []
    journal = till.data / "journal.sqlite3"
    rows = dict(sqlite3.connect(journal).execute("SELECT sale_ref, state FROM sales").fetchall())
    assert rows == {"NOREADER-1": "failed", "READER-1": "settled"}
    log = (till.data / "logs" / "pos-plugin.log").read_text("utf-8")
    assert "reader unavailable at start-up" in log and "sale READER-1: settled" in log
    assert till.world.person(ZHANG_WEI).id_number not in log
    verify = cli("journal", "verify", "--config", str(till.config))
    assert verify.returncode == 0 and "2 sales" in verify.stdout, verify.stdout + verify.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_a_sale_leaves_the_journal_consistent(
    till: Till, tmp_path: Path, sig: int
) -> None:
    sim = Simulator(till.world, transport="socket", port=till.serial_port)
    sim.start()
    agent = Agent(till, cwd=tmp_path)
    answers: list[tuple[int, dict[str, Any]]] = []
    try:
        agent.wait_reader(connected=True)
        sim.present_card("B11000001", "none")  # the customer never types the PIN
        after = sim.event_count("pin_entry")
        seller = threading.Thread(
            target=lambda: answers.append(
                agent.call("POST", "/v1/sales", sale_body(till.world, "STOPPED-1"))
            )
        )
        seller.start()
        assert sim.wait_for("pin_entry", 15, after), "the sale never reached the PIN pad"
        started = time.monotonic()
        assert agent.stop(sig) == 0, agent._stderr()
        assert time.monotonic() - started < 15
        seller.join(timeout=30)
    finally:
        agent.stop(signal.SIGTERM)
        sim.stop()
    assert answers and answers[0][0] == 409 and answers[0][1]["code"] == "cancelled", answers
    journal = till.data / "journal.sqlite3"
    rows = sqlite3.connect(journal).execute("SELECT sale_ref, state FROM sales").fetchall()
    assert rows == [("STOPPED-1", "failed")]
    verify = cli("journal", "verify", str(journal))
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout
    log = (till.data / "logs" / "pos-plugin.log").read_text("utf-8")
    assert f"stop requested (signal {signal.Signals(sig).name})" in log and "stopped" in log
