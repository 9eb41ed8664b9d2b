"""Benchmark: one sale through the local API (simulator unpaced, sandbox on loopback).

Prints, per sale: ledger HTTP round trips (target: 2, whatever the number of
family payers), and the agent's own time = POS-observed total minus time inside
the device driver minus time inside the ledger client (target: median < 5 ms),
as a ratio of the total. Run: ``.venv/bin/python bench/bench_sale.py [N]``.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sandbox_proc import sandbox_process

from pos_plugin.agent import start_simulated
from pos_plugin.world import World, load_world


class Timed:
    """Wraps an object; the time spent inside its methods is added to ``spent``.

    Calls from the agent's "card-removal" thread are not counted: that watch runs
    after the POS has its answer, and may still be ending when the next sale starts.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.spent = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*a: Any, **kw: Any) -> Any:
            if threading.current_thread().name == "card-removal":
                return attr(*a, **kw)
            t0 = time.perf_counter()
            try:
                return attr(*a, **kw)
            finally:
                self.spent += time.perf_counter() - t0

        return timed


def rich_world() -> World:
    """The example world with balances that do not run out during the bench."""
    world = load_world()
    persons = tuple(
        p.model_copy(update={"personal_account_balance": 10**12})
        if p.personal_account_balance is not None
        else p
        for p in world.persons
    )
    return world.model_copy(update={"persons": persons})


def main(n: int = 200) -> None:
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        world_file = Path(work) / "world.json"
        world_file.write_text(rich_world().model_dump_json(), "utf-8")
        # The ledger is central, not on the till: the sandbox runs in its own process.
        ledger_url = stack.enter_context(sandbox_process(f"{work}/ledger.db", str(world_file)))
        agent = start_simulated(
            world_path=world_file, workdir=work, recovery_interval=3600, ledger_url=ledger_url
        )
        try:
            svc = agent.service
            ledger, devices = Timed(svc.ledger), Timed(svc.devices)
            svc.ledger, svc.devices = ledger, devices  # type: ignore[assignment]
            http_calls = [0]
            def hook(response: Any, *args: Any, **kwargs: Any) -> None:
                http_calls[0] += 1

            ledger._inner.session.hooks["response"].append(hook)
            sim = agent.simulator
            sell_spent = [0.0]
            real_sell = svc.sell

            def timed_sell(req: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return real_sell(req)
                finally:
                    sell_spent[0] += time.perf_counter() - t0

            svc.sell = timed_sell  # type: ignore[method-assign]
            # The POS side uses a bare keep-alive http.client connection, so the
            # figure is the agent's time, not a client library's.
            pos = http.client.HTTPConnection(agent.api.host, agent.api.port, timeout=30)
            auth = {
                "Authorization": f"Bearer {agent.tokens['pos']}",
                "Content-Type": "application/json",
            }
            cases = {
                "own account (0 family legs)": ("B11000006", "11000000000000000006", 1850),
                "2 family payers (2 legs)": ("B11000003", "11000000000000000003", 4500),
            }
            for label, (card, psn, price) in cases.items():
                person = agent.world.person(psn) if agent.world else None
                assert person is not None
                own, total, trips, http_layer = [], [], [], []
                for i in range(n):
                    sim.present_card(card, "correct")
                    ledger.spent = devices.spent = sell_spent[0] = 0.0
                    before = http_calls[0]
                    body = {
                        "sale_ref": f"B-{card}-{i}",
                        "items": [{"sku": "1", "name": "药", "insurance_class": "A", "quantity": 1, "unit_price": price}],
                        "patient": {"number": person.id_number},
                    }  # fmt: skip
                    t0 = time.perf_counter()
                    pos.request("POST", "/v1/sales", body=json.dumps(body), headers=auth)
                    r = pos.getresponse()
                    text = r.read()
                    elapsed = time.perf_counter() - t0
                    sim.remove_card()
                    assert r.status == 200, text
                    trips.append(http_calls[0] - before)
                    total.append(elapsed)
                    own.append(elapsed - ledger.spent - devices.spent)
                    http_layer.append(elapsed - sell_spent[0])
                med_own, med_total = statistics.median(own), statistics.median(total)
                print(f"{label}: {n} sales")
                print(f"  ledger round trips per sale: {statistics.mean(trips):.2f} (target 2)")
                print(
                    f"  agent's own time per sale: median {med_own * 1000:.2f} ms, "
                    f"p90 {statistics.quantiles(own, n=10)[-1] * 1000:.2f} ms (target median < 5 ms)"
                )
                print(
                    f"    of which the local API layer (HTTP, FastAPI, JSON): median "
                    f"{statistics.median(http_layer) * 1000:.2f} ms"
                )
                print(
                    f"  total per sale (POS-observed): median {med_total * 1000:.2f} ms; "
                    f"own/total ratio {med_own / med_total:.2f}"
                )
        finally:
            agent.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
