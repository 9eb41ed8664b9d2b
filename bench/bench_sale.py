"""Benchmark: the agent's own time per sale, honestly (issue 17, target 1).

One sale = one ``POST /v1/sales`` from a bare keep-alive ``http.client`` (the POS),
through the local API, the sale service, the journal, the ledger client (the sandbox
ledger in its own process, on loopback) and the serial driver (the simulator,
unpaced, on a pty or a socket).

The agent's own time = POS-observed time minus the time spent waiting outside the
process: inside ledger and driver calls, only the calling thread's CPU time counts
as ours (``time.thread_time``: our Python, requests, urllib3, pydantic, the CRC, the
syscalls); the rest of those calls is the ledger's server time (its
``Server-Timing`` header, printed), the network and the serial wire / the pad.
Everything else (journal with its fsyncs, rules, the API layer) counts whole.
The outcome frame and the card-removal watch follow the POS's answer (not part of
the sale's time); the bench lets them end before the next sale, as at a counter.

Prints, for 0, 2 and 5 family legs: the median and min-max over RUNS runs (each the
median of N sales) of the own time and its breakdown; the load average; and the
physical floor measured in the same run: a bare SQLite commit like the journal's, a
bare HTTP round trip to the ledger, the serial bytes a sale puts on the wire.
Run: ``.venv/bin/python bench/bench_sale.py [N] [RUNS]``.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from floors import bare_commits_ms, pace_ms
from sandbox_proc import sandbox_process

from pos_plugin.agent import start_simulated
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.models import Relation
from pos_plugin.rules.identity import check_character
from pos_plugin.world import World, WorldBinding, load_world


class Meter:
    """Times an object's public methods in place (``isinstance`` still holds).

    ``wall``: time inside them; ``cpu``: the calling thread's CPU time inside them.
    Nested calls count once; calls from the "card-removal" watch are not counted (it
    runs after the POS has its answer).
    """

    def __init__(self, obj: Any, names: list[str] | None = None) -> None:
        self.wall = self.cpu = 0.0
        self._depth = threading.local()
        for name in names or [n for n in dir(obj) if not n.startswith("_")]:
            attr = getattr(obj, name, None)
            if callable(attr) and not isinstance(attr, type):
                setattr(obj, name, self._timed(attr))

    def reset(self) -> None:
        self.wall = self.cpu = 0.0

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            depth = getattr(self._depth, "n", 0)
            if depth or threading.current_thread().name == "card-removal":
                return fn(*a, **kw)
            self._depth.n = 1
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self.cpu += time.thread_time() - c0
                self.wall += time.perf_counter() - w0
                self._depth.n = 0

        return timed


def id_number(birth: dt.date, seq: int) -> str:
    first17 = f"110105{birth:%Y%m%d}{seq % 1000:03d}"
    return first17 + check_character(first17)


def bench_world(patients: dict[int, int]) -> tuple[World, dict[int, list[tuple[str, str]]]]:
    """The example world, rich, plus ``patients[legs]`` patients for each family-leg
    count, each with ``legs`` payers of 1.00 yuan: a sale of (legs + 1) yuan drains
    them all (one leg each) and pays the rest in cash. Returns (world, {legs: [(card,
    id_number)]})."""
    world = load_world()
    rich = [
        p.model_copy(update={"personal_account_balance": 10**12})
        if p.personal_account_balance is not None
        else p
        for p in world.persons
    ]
    payer_t, patient_t = world.persons[0], world.persons[2]  # employee parent, resident child
    persons, bindings, who = list(rich), list(world.bindings), {}
    k = 0
    for legs, count in patients.items():
        who[legs] = []
        for _ in range(count):
            k += 1
            day = dt.timedelta(days=k)
            pat_psn, pat_id = f"12{k:07d}00000000000", id_number(dt.date(2012, 1, 1) + day, k)
            card = patient_t.cards[0].model_copy(
                update={"card_no": f"C{k:08d}", "card_sn": f"{k:032X}"}
            )
            persons.append(
                patient_t.model_copy(
                    update={"psn_no": pat_psn, "id_number": pat_id, "cards": (card,),
                            "evoucher_tokens": ()}
                )
            )  # fmt: skip
            who[legs].append((card.card_no, pat_id))
            for j in range(legs):
                payer_psn = f"12{k:07d}000000000{j + 1:02d}"
                persons.append(
                    payer_t.model_copy(
                        update={"psn_no": payer_psn, "cards": (), "evoucher_tokens": (),
                                "id_number": id_number(dt.date(1980, 1, 1) + day, k * 10 + j),
                                "personal_account_balance": 100}
                    )
                )  # fmt: skip
                bindings.append(
                    WorldBinding(
                        binding_id=f"BB-{k}-{j}", payer=payer_psn, patient=pat_psn,
                        relation=Relation.PARENT, order=j + 1,
                    )
                )  # fmt: skip
    return world.model_copy(update={"persons": tuple(persons), "bindings": tuple(bindings)}), who


def bare_http_ms(url: str, auth: str, credential: Any, n: int = 50) -> tuple[float, float]:
    """A bare http.client round trip to the ledger (a lookup): (total, its server time) ms."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps({"credential": credential.wire()})
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    total, server = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/persons/lookup", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        total.append(time.perf_counter() - t0)
        server.append(server_ms(r.getheader("server-timing")))
    conn.close()
    return statistics.median(total) * 1000, statistics.median(server)


def server_ms(header: str | None) -> float:
    return float(header.split("dur=")[1]) if header and "dur=" in header else 0.0


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main(n: int = 40, runs: int = 5) -> None:
    cases = {0: "own account, 0 family legs", 2: "2 family legs", 5: "5 family legs"}
    pace_before = pace_ms()
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        world, who = bench_world({legs: n * runs for legs in cases if legs})
        world_file = Path(work) / "world.json"
        world_file.write_text(world.model_dump_json(), "utf-8")
        # The ledger is central, not on the till: the sandbox runs in its own process.
        ledger_url = stack.enter_context(sandbox_process(f"{work}/ledger.db", str(world_file)))
        agent = start_simulated(
            world_path=world_file, workdir=work, recovery_interval=3600, ledger_url=ledger_url
        )
        try:
            svc = agent.service
            journal = Meter(svc.journal)
            ledger = Meter(svc.ledger, ["lookup", "settle", "lookup_settlement", "reverse"])
            devices = Meter(svc.devices)
            sell = Meter(svc, ["sell"])
            server = [0.0, 0]  # ms, round trips

            def watch(answer: Any) -> None:
                server[0] += server_ms(answer.headers.get("server-timing"))
                server[1] += 1

            svc.ledger.on_answer.append(watch)  # type: ignore[attr-defined]
            link_stats = svc.devices._stats  # type: ignore[attr-defined]
            baud = svc.devices.settings.baudrate  # type: ignore[attr-defined]
            pos = http.client.HTTPConnection(agent.api.host, agent.api.port, timeout=30)
            auth = {
                "Authorization": f"Bearer {agent.tokens['pos']}",
                "Content-Type": "application/json",
            }
            sim = agent.simulator
            assert sim is not None
            lee = ("B11000006", "110101199007070262")
            lee_card = Credential.card("B11000006", world.card_owner("B11000006")[1].card_sn)
            ledger_auth = svc.ledger.headers["Authorization"]  # type: ignore[attr-defined]
            keys = ("own", "journal", "ledger client", "API", "driver", "rules", "server",
                    "network", "pad+wire", "total")  # fmt: skip
            per_run: dict[int, dict[str, list[float]]] = {
                legs: {k: [] for k in keys} for legs in cases
            }
            facts: dict[int, tuple[float, float, int, float]] = {}
            floors = []
            for run in range(runs):
                floors.append((bare_commits_ms(work, n=30) if run == 0 else None,
                               bare_http_ms(ledger_url, ledger_auth, lee_card)))
                for legs in cases:
                    samples: dict[str, list[float]] = {k: [] for k in keys}
                    trips, leg_counts, wire = [], [], []
                    for i in range(n):
                        card, number = lee if legs == 0 else who[legs][run * n + i]
                        price = 1850 if legs == 0 else (legs + 1) * 100
                        sim.present_card(card, "correct")
                        for m in (journal, ledger, devices, sell):
                            m.reset()
                        server[:] = [0.0, 0]
                        bytes0 = link_stats.bytes_tx + link_stats.bytes_rx
                        body = {
                            "sale_ref": f"B{legs}-{run}-{i}",
                            "items": [{"sku": "1", "name": "药", "insurance_class": "A", "quantity": 1, "unit_price": price}],
                            "patient": {"number": number},
                        }  # fmt: skip
                        t0 = time.perf_counter()
                        pos.request("POST", "/v1/sales", body=json.dumps(body), headers=auth)
                        r = pos.getresponse()
                        text = r.read()
                        total = time.perf_counter() - t0
                        wire.append(link_stats.bytes_tx + link_stats.bytes_rx - bytes0)
                        sim.remove_card()
                        # The sale's tail (the outcome on the pad, the card-removal watch)
                        # follows the answer; the next customer comes seconds later, not
                        # while it still runs: let it end before the next sale starts.
                        tail = svc._tail  # type: ignore[attr-defined]
                        if tail is not None:
                            tail.done.wait(5)
                        assert r.status == 200, text
                        trips.append(server[1])
                        leg_counts.append(len(json.loads(text)["family"]))
                        waits = (ledger.wall - ledger.cpu) + (devices.wall - devices.cpu)
                        ms = {
                            "own": total - waits,
                            "journal": journal.wall,
                            "ledger client": ledger.cpu,
                            "API": total - sell.wall,
                            "driver": devices.cpu,
                            "rules": sell.wall - journal.wall - ledger.wall - devices.wall,
                            "server": server[0] / 1000,
                            "network": ledger.wall - ledger.cpu - server[0] / 1000,
                            "pad+wire": devices.wall - devices.cpu,
                            "total": total,
                        }
                        for k in keys:
                            samples[k].append(ms[k] * 1000)
                    for k in keys:
                        per_run[legs][k].append(statistics.median(samples[k]))
                    facts[legs] = (
                        statistics.mean(trips), statistics.mean(leg_counts),
                        int(statistics.median(wire)), 0.0,
                    )  # fmt: skip
        finally:
            agent.stop()
    pace_after = pace_ms()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bench_sale: {runs} runs x {n} sales per case; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")  # fmt: skip
    print("figures in ms: median of the runs' medians (min-max over runs)")
    for legs, label in cases.items():
        trips, leg_count, wire_bytes, _ = facts[legs]
        r = per_run[legs]
        print(f"{label}: {leg_count:.1f} family legs, {trips:.2f} ledger round trips per sale")
        print(f"  agent's own time     {spread(r['own'])}   (target median < 5 ms)")
        for k in ("journal", "ledger client", "API", "driver", "rules"):
            print(f"    {k:<18} {spread(r[k])}")
        print(f"  waiting outside: ledger server {spread(r['server'])}, network "
              f"{spread(r['network'])}, pad+wire {spread(r['pad+wire'])}")  # fmt: skip
        print(f"  POS-observed total   {spread(r['total'])}")
        print(f"  serial bytes per sale {wire_bytes} = {wire_bytes * 10 / baud * 1000:.0f} ms "
              f"at {baud} baud 8N1 (unpaced here)")  # fmt: skip
    commit = floors[0][0]
    http_ms = [f[1][0] for f in floors]
    http_server = [f[1][1] for f in floors]
    print(f"floor, same run: bare SQLite commit (WAL, synchronous=FULL) {commit:.2f} ms; "
          f"bare HTTP round trip to the ledger {spread(http_ms)} ms "
          f"(of which its server time {spread(http_server)})")  # fmt: skip
    print(f"machine pace (floors.pace_ms, to compare runs of other days): {pace_before} "
          f"before the runs, {pace_after} after")  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
