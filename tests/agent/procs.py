"""Agents and ledgers in processes of their own, for the tests that SIGKILL them.

POSIX-only where they send SIGKILL (the tests that use them say so); starting and
stopping works anywhere.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]  # so ``-m tests.agent...`` imports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_agent_process(
    workdir: Path, ledger_url: str, port: int, *, module: str = "pos_plugin.cli",
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``serve --simulate`` against ``ledger_url``; returns the process and its tokens."""
    args = [sys.executable, "-m", module]
    if module == "pos_plugin.cli":
        args.append("serve")
    args += ["--simulate", "--port", str(port), "--workdir", str(workdir),
             "--ledger-url", ledger_url, *extra]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)  # fmt: skip
    tokens: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while len(tokens) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "pos token:" in line:
            tokens["pos"] = line.split(":", 1)[1].strip()
        if "manager token:" in line:
            tokens["manager"] = line.split(":", 1)[1].strip()
    assert len(tokens) == 2, "the agent did not start"
    return proc, tokens


def start_ledger_process(db: Path, port: int) -> subprocess.Popen[bytes]:
    """The sandbox ledger (example world) in its own process, answering on ``port``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pos_plugin.cli", "sandbox-ledger", "--db", str(db),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return proc
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the sandbox ledger did not start") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
