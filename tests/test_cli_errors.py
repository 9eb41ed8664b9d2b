"""Every CLI mistake an installer can make ends in one sentence and a non-zero exit,
never a traceback. Each case runs the real command in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pos_plugin.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "POS_PLUGIN_DATA_DIR": str(cwd or ROOT)},
        timeout=60,
    )


def one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for w in words:
        assert w in done.stderr, done.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield int(s.getsockname()[1])


def test_journal_verify_on_a_missing_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    done = run("journal", "verify", str(tmp_path / "journal.sqlite3"), cwd=tmp_path)
    one_line(done, "no journal at")
    assert list(tmp_path.iterdir()) == []


def test_journal_verify_on_a_folder_or_a_non_database(tmp_path: Path) -> None:
    one_line(run("journal", "verify", str(tmp_path)), "is a folder")
    bogus = tmp_path / "journal.sqlite3"
    bogus.write_bytes(b"this is not SQLite" * 200)
    one_line(run("journal", "verify", str(bogus)), "is not a journal file")
    assert bogus.read_bytes() == b"this is not SQLite" * 200


def test_reconcile_on_a_non_database_journal(tmp_path: Path) -> None:
    bogus = tmp_path / "j.sqlite3"
    bogus.write_bytes(b"x" * 5000)
    done = run("reconcile", "--date", "2026-12-01", "--journal", str(bogus),
               "--pharmacy", "H11010500001", "--ledger-url", "http://127.0.0.1:9", "--token", "t")  # fmt: skip
    one_line(done, "not a database")


def test_a_missing_or_invalid_world(tmp_path: Path) -> None:
    one_line(run("serve", "--simulate", "--world", str(tmp_path / "nope.json")), "not found")
    bad = tmp_path / "bad.json"
    bad.write_text("{", "utf-8")
    one_line(run("serve", "--simulate", "--world", str(bad)), "not valid JSON")
    bad.write_text('{"pharmacies": []}', "utf-8")
    one_line(run("serve", "--simulate", "--world", str(bad)), "invalid", "persons")
    one_line(run("simulate-devices", "--world", str(bad)), "invalid")


def test_a_port_in_use(tmp_path: Path, busy_port: int) -> None:
    one_line(run("serve", "--simulate", "--port", str(busy_port), "--workdir", str(tmp_path)),
             f"port {busy_port} is in use")  # fmt: skip
    one_line(run("simulate-devices", "--control-port", str(busy_port)), "cannot be used")
    config = tmp_path / "config.toml"
    config.write_text(
        '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T01"\n'
        f'[serial]\nurl = "socket://127.0.0.1:9"\n[api]\nport = {busy_port}\n'
        '[data]\ndir = "data"\n[secrets]\nstore = "file"\n',
        "utf-8",
    )
    for name in ("ledger_token", "pos_token", "manager_token", "journal_hmac_key"):
        assert run("secrets", "set", name, "--config", str(config), stdin="v\n").returncode == 0
    done = run("serve", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after the log lines of the start
    assert f"port {busy_port} on 127.0.0.1 is in use" in last and "[api] port" in last


def test_config_problems(tmp_path: Path) -> None:
    one_line(run("serve", "--config", str(tmp_path / "missing.toml")), "not found")
    one_line(run("serve", "--config", str(tmp_path)), "is a folder")
    no_serial = tmp_path / "c.toml"
    no_serial.write_text(
        '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T01"\n[serial]\nurl = ""\n', "utf-8"
    )
    one_line(run("serve", "--config", str(no_serial), cwd=tmp_path), "[serial] url is not set")
    one_line(run("service", "install", "--config", str(no_serial)), "systemd unit")
