"""``pos-plugin sandbox-nhsa --db PATH --world FILE --port N``: a process of its own,
seeded once, its balances surviving a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from pos_plugin.world import load_world

from ..agent.procs import ROOT, free_port, stop
from .conftest import CODE_A_A, P1, Wire

WORLD = ROOT / "docs" / "world.example.json"


def _start(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pos_plugin.cli", "sandbox-nhsa", "--db", str(db),
         "--world", str(WORLD), "--port", str(port), "--faults", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/_sandbox/audit", timeout=1)
            return proc
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("sandbox-nhsa did not start") from None
            time.sleep(0.1)


def test_the_cli_serves_the_world_and_keeps_its_books_across_a_restart(tmp_path: Path) -> None:
    world = load_world(WORLD)
    db, port = tmp_path / "nhsa.db", free_port()
    proc = _start(db, port)
    try:
        w = Wire(f"http://127.0.0.1:{port}", world)
        w.sign_in()
        assert w.settle(P1, [(CODE_A_A, 1, 1000)])["infcode"] == 0
    finally:
        stop(proc)
    proc = _start(db, port)  # the existing database is not seeded again
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/_sandbox/balances", timeout=5).json()["PA" + P1] == 19000
        audit = requests.get(base + "/_sandbox/audit", timeout=5).json()
        assert audit["problems"] == [] and audit["world_total"] == world.total_money()
    finally:
        stop(proc)


def test_the_cli_help_names_the_options() -> None:
    out = subprocess.run([sys.executable, "-m", "pos_plugin.cli", "sandbox-nhsa", "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0
    for option in ("--db", "--world", "--port", "--faults"):
        assert option in out.stdout
