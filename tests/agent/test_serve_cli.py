"""Issue 11, findings 7 and 8 at the command line: ``serve --simulate`` as a POS vendor
runs it (a real process, real HTTP), and a world file that breaks the domain."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from pos_plugin.world import load_world

BANNER_END = "present a card"


def _serve(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``pos-plugin serve --simulate`` and read its banner (bounded wait)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pos_plugin.cli", "serve", "--simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        banner.append(line)
        if not line or BANNER_END in line:
            break
    return proc, banner


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_serve_simulate_port_0_listens_on_a_free_port_and_masks_card_numbers(
    tmp_path: Path,
) -> None:
    """``--port 0`` used to listen on 8765 and the banner printed a full card number."""
    proc, banner = _serve("--port", "0", "--workdir", str(tmp_path))
    try:
        text = "".join(banner)
        assert BANNER_END in text, text
        m = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", text)
        assert m is not None, text
        url, port = m.group(1), int(m.group(2))
        assert port not in (0, 8765)
        health = requests.get(f"{url}/v1/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        token = re.search(r"pos token:\s+(\S+)", text)
        assert token is not None
        devices = requests.get(
            f"{url}/v1/devices", headers={"Authorization": f"Bearer {token.group(1)}"}, timeout=10
        )
        assert devices.status_code == 200
        for person in load_world().persons:
            for card in person.cards:
                assert card.card_no not in text, "a full card number in the banner"
            assert person.id_number not in text
        assert re.search(r"B\*+01", text), text  # the example card, masked
    finally:
        _stop(proc)


def test_serve_refuses_a_plain_http_ledger_off_loopback(tmp_path: Path) -> None:
    proc, banner = _serve("--port", "0", "--workdir", str(tmp_path),
                          "--ledger-url", "http://ledger.example.com")  # fmt: skip
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        _stop(proc)
    text = "".join(banner)
    assert "--ledger-url" in text and "https://" in text


def test_serve_refuses_a_world_with_a_residents_insurance_account(tmp_path: Path) -> None:
    """Finding 8 end to end: the sandbox never opens the account; the operator reads one
    sentence naming the person and the rule, with no ID number in it."""
    world = load_world().model_dump(mode="json")
    person = next(p for p in world["persons"] if p["insurance_type"] == "390")
    person["personal_account_balance"] = 5000
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world, ensure_ascii=False), "utf-8")
    proc, banner = _serve("--port", "0", "--workdir", str(tmp_path / "w"), "--world", str(path))
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        _stop(proc)
    text = "".join(banner)
    assert person["psn_no"] in text and "390" in text and "no personal account" in text
    assert person["id_number"] not in text and person["name"] not in text
    assert "Traceback" not in text
    assert not (tmp_path / "w" / "ledger.sqlite3").exists()
