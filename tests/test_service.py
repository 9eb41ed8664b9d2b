"""Running as a service: the systemd unit, and the Windows actions' answer elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pos_plugin.cli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_service_unit_is_a_systemd_unit_for_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    done = cli("service", "unit", "--config", str(cfg), "--user", "till")
    assert done.returncode == 0, done.stderr
    unit = done.stdout
    sections = [line for line in unit.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    keys = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert keys["ExecStart"].endswith(f"pos-plugin serve --config {cfg}")
    assert Path(keys["ExecStart"].split()[0]).name == "pos-plugin"
    assert (keys["User"], keys["StateDirectory"], keys["LogsDirectory"]) == (
        "till", "pos-plugin", "pos-plugin",
    )  # fmt: skip
    assert keys["KillSignal"] == "SIGTERM" and keys["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "pos-plugin.service"
    unit.write_text(cli("service", "unit").stdout, "utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 even for a key it ignores; it names the file on every complaint
    assert done.returncode == 0 and str(unit) not in done.stderr, done.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text("utf-8").replace("Type=simple", "Type=bogus"), "utf-8")
    complaint = subprocess.run(
        ["systemd-analyze", "verify", str(bad)], capture_output=True, text=True
    )
    assert "Type" in complaint.stderr or "type" in complaint.stderr  # the check does check


@pytest.mark.skipif(sys.platform == "win32", reason="the Windows actions work there")
def test_windows_actions_elsewhere_say_what_to_do_instead() -> None:
    for action in ("install", "uninstall", "start", "stop"):
        done = cli("service", action)
        assert done.returncode == 2 and done.stderr.count("\n") == 1
        assert "systemd unit" in done.stderr and "pos-plugin service unit" in done.stderr


def test_the_service_package_imports_without_pywin32() -> None:
    code = (
        "import sys; import pos_plugin.service, pos_plugin.service.run, pos_plugin.cli; "
        "assert 'pos_plugin.service.windows' not in sys.modules; "
        "assert 'win32serviceutil' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_run_till_as_a_service_thread_stops_on_its_event_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Windows service does: run_till on a worker thread, working folder set to
    the data folder (not System32), stopped by the event its SvcStop sets."""
    import threading

    from pos_plugin.config import load_config, secret_store, set_secret
    from pos_plugin.service.run import run_till

    monkeypatch.chdir(tmp_path)  # restored afterwards; run_till moves away from it
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T01"\n'
        '[serial]\nurl = "socket://127.0.0.1:9"\n[api]\nport = 0\n'
        '[data]\ndir = "data"\n[secrets]\nstore = "file"\n',
        "utf-8",
    )
    store = secret_store(load_config(cfg))
    for name in ("ledger_token", "pos_token", "manager_token", "journal_hmac_key"):
        set_secret(name, "v", store)
    stop, ready, result = threading.Event(), threading.Event(), []
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    worker = threading.Thread(
        target=lambda: result.append(
            run_till(cfg, stop, stderr=False, on_ready=on_ready, service_workdir=True)
        )
    )
    worker.start()
    try:
        assert ready.wait(30), "the till did not come up"
        assert Path.cwd() == tmp_path / "data"
        import requests

        health = requests.get(urls[0] + "/v1/health", timeout=10).json()
        assert health["devices"]["reader"] == "disconnected"
    finally:
        stop.set()  # SvcStop
        worker.join(timeout=30)
    assert result == [0]
    import logging

    for h in list(logging.getLogger().handlers):
        if getattr(h, "pos_plugin_handler", False):
            logging.getLogger().removeHandler(h)
            h.close()
