"""Benchmark: the same sale through both backends in one run, our own ledger API and the
national platform's interface (issue 12).

Each ledger runs in a process of its own (``pos-plugin sandbox-ledger`` /
``sandbox-nhsa``), reached through a timing proxy on 127.0.0.1 that measures, per
exchange, the time from the request's first byte to the answer's last byte: that is
the time the agent waits outside itself (the ledger's server time and loopback), the
only thing subtracted. Everything the agent does counts: the HTTP client, the
envelope, Decimal conversions, pydantic, the journal, the local API, the serial driver.
The device simulator runs unpaced in this process (its CPU is counted against the
agent on both backends alike: the comparison stays fair, the absolute figure is an
upper bound).

Prints, per backend: ledger round trips per sale (target: 2 on each with presettle
off, whatever the family cascade), the POS-observed time and the agent's own time per
sale (median, min-max of >= 5 runs of N sales), the load average, and the ratio nhsa /
own of the agent's own time (target <= 1.2). The baseline printed beside them is the
bare round trip of the same proxy to each ledger (an empty GET): the floor the wait
cannot go below. Run: ``.venv/bin/python bench/bench_nhsa.py [N] [RUNS]``.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from pos_plugin.agent import start_simulated

CARD, PATIENT = "B11000001", "11000000000000000001"
BASKETS = {  # the own account; a family payer (the platform decides that centrally)
    "own account": ("B11000001", [("6901", "A", 1, 100)]),
    "family-paid": ("B11000003", [("8801", "A", 1, 100)]),  # a resident: no own account
}


class TimingProxy:
    """Forwards TCP to the ledger and adds up the time each exchange spends out there."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.waited = 0.0
        self.exchanges = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        up = socket.create_connection(self.target)
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while request := _read_message(client):
                t0 = time.perf_counter()
                up.sendall(request)
                answer = _read_message(up)
                with self._lock:
                    self.waited += time.perf_counter() - t0
                    self.exchanges += 1
                client.sendall(answer)
        except OSError:
            pass
        finally:
            client.close()
            up.close()

    def close(self) -> None:
        self._listener.close()


def _read_message(s: socket.socket) -> bytes:
    """One HTTP/1.1 message with a Content-Length body (what requests and uvicorn send)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = s.recv(65536)
        if not more:
            return b""
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


@contextmanager
def ledger_process(kind: str, db: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    command = "sandbox-nhsa" if kind == "nhsa" else "sandbox-ledger"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pos_plugin.cli", command, "--db", db, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(url + "/openapi.json", timeout=1)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{command} did not start") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _sale(url: str, token: str, ref: str, card: str, lines: list[tuple[str, str, int, int]]
          ) -> float:  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    items = [{"sku": sku, "name": "药", "insurance_class": cls, "quantity": q, "unit_price": p,
              "catalogue_code": {"A": "XA01AAA0001", "B": "XB01BBB0001"}.get(cls)}
             for sku, cls, q, p in lines]  # fmt: skip
    requests.post(f"{url}/v1/simulator/present", json={"card_no": card}, headers=auth, timeout=10)
    t0 = time.perf_counter()
    r = requests.post(f"{url}/v1/sales", json={"sale_ref": ref, "items": items},
                      headers=auth, timeout=30)  # fmt: skip
    took = time.perf_counter() - t0
    requests.post(f"{url}/v1/simulator/remove", headers=auth, timeout=10)
    if r.status_code != 200:
        raise RuntimeError(f"sale {ref}: {r.status_code} {r.text}")
    return took


def run(kind: str, n: int, runs: int, work: Path) -> dict[str, Any]:
    with ledger_process(kind, str(work / f"{kind}.sqlite3")) as ledger_url:
        host, port = ledger_url.removeprefix("http://").split(":")
        proxy = TimingProxy((host, int(port)))
        agent = start_simulated(workdir=work / f"agent-{kind}", ledger_url=proxy.url,
                                ledger_kind=kind, transport="socket", card_timeout=10,
                                pin_timeout=10, recovery_interval=3600)  # fmt: skip
        try:
            token = agent.tokens["pos"]
            _sale(agent.url, token, "WARM", CARD, [("1", "A", 1, 100)])  # 9001, connections
            floor = []
            for _ in range(20):
                t0 = time.perf_counter()
                requests.get(ledger_url + "/openapi.json", timeout=5)
                floor.append(time.perf_counter() - t0)
            out: dict[str, Any] = {"floor_ms": statistics.median(floor) * 1000}
            for label, (card, lines) in BASKETS.items():
                pos_ms, own_ms, trips = [], [], []
                for r in range(runs):
                    waited0, ex0 = proxy.waited, proxy.exchanges
                    total = sum(_sale(agent.url, token, f"{label[:3]}-{r}-{i}", card, lines)
                                for i in range(n))  # fmt: skip
                    waited = proxy.waited - waited0
                    pos_ms.append(total / n * 1000)
                    own_ms.append((total - waited) / n * 1000)
                    trips.append((proxy.exchanges - ex0) / n)
                out[label] = (pos_ms, own_ms, trips)
            return out
        finally:
            agent.stop()
            proxy.close()


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ms ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    runs = max(5, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    print(f"{runs} runs of {n} sales per basket and backend; load average {load}")
    with tempfile.TemporaryDirectory(prefix="bench-nhsa-") as work:
        results = {kind: run(kind, n, runs, Path(work)) for kind in ("own", "nhsa")}
    for kind, res in results.items():
        print(f"\n{kind}: bare round trip to the ledger (baseline) {res['floor_ms']:.2f} ms")
        for label in BASKETS:
            pos_ms, own_ms, trips = res[label]
            print(f"  {label:18} round trips/sale {statistics.median(trips):.1f}   "
                  f"POS-observed {_fmt(pos_ms)}   agent's own {_fmt(own_ms)}")  # fmt: skip
    for label in BASKETS:
        ratio = statistics.median(results["nhsa"][label][1]) / statistics.median(
            results["own"][label][1]
        )
        print(f"agent's own time, nhsa / own, {label}: {ratio:.2f}x (target <= 1.2)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
