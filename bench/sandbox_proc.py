"""The sandbox ledger in its own process, for the benchmarks.

The ledger is central, not on the till or the manager's machine: in its own
process its CPU neither counts against the code measured nor contends with it
for the GIL. Not a test helper: the tests run the sandbox in-process on purpose.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests


@contextmanager
def sandbox_process(db: str, world_file: str | None = None, *,
                    command: str = "sandbox-ledger") -> Iterator[str]:  # fmt: skip
    """Serve the sandbox ledger on ``db`` (seeded from ``world_file`` when new, else
    from the embedded world) on a free loopback port; yields its base URL.
    ``command="sandbox-nhsa"``: the national platform's sandbox instead."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    args = [sys.executable, "-m", "pos_plugin.cli", command, "--db", db, "--port", str(port)]
    if world_file is not None:
        args += ["--world", world_file]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url + "/openapi.json", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
