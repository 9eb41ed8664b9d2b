"""Benchmark: card in to receipt at the counter, against the wire floor (issue 17, target 2).

One sale as the cashier lives it: the POS (a bare keep-alive ``http.client``, in its
own process) posts the sale, the pad shows the amount and waits; the customer inserts the card
while the pad waits and types the PIN at once; the clock runs from the card going in
(the simulator's insertion instant) to the POS having its whole answer. The device
simulator is paced at the line's baud rate (docs/serial-protocol.md: 9600 baud 8N1,
10 bits a byte, both directions); the sandbox ledger runs in its own process.

The floor, measured in the same run: the wire time of the bytes a sale truly needs
once the card is in (CARD_INSERTED, READ_CARD and CARD_FILES, VERIFY_PIN and
PIN_RESULT with their ACKs; not the host's last ACK, which nobody waits for), counted
on the line for each sale, plus the two ledger round trips made bare (``http.client``:
a lookup, and a settlement of its own msgid). Target: within 1.1x.

The cashier gets the answer before any cosmetic frame: the bench notes when the
outcome frame's first byte reaches the pad, and prints how long after the agent had
sent the answer that was (the target: after, for every sale), and how long after the
POS process had read it whole (that includes the POS's own wake-up and parsing, so it
can be a fraction of a millisecond early on a busy machine: the frame then takes 50 ms
on the wire). Between sales the bench waits until the sale's tail (that frame, the
card-removal watch) has ended.
Run: ``.venv/bin/python bench/bench_counter.py [SALES] [RUNS]`` (default 10 x 5).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench_sale import bench_world
from sandbox_proc import sandbox_process

from drivers import codec
from pos_plugin.agent import start_simulated
from pos_plugin.ledger.own.schemas import Credential, LineSummary, SettlementRequest
from pos_plugin.models import Leg, LegKind

BAUD = 9600  # the protocol's default line (docs/serial-protocol.md, 2.)
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
TARGET = 1.1


def wire_ms(nbytes: int) -> float:
    return nbytes * BITS_PER_BYTE / BAUD * 1000


class BareLedger:
    """The two round trips a sale makes, by a bare ``http.client``: the floor's ledger part."""

    def __init__(self, url: str, token: str, pharmacy: str, card: Credential) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.pharmacy, self.card = pharmacy, card
        self.lookup_body = json.dumps({"credential": card.wire()})
        lookup = self._post("/v1/persons/lookup", self.lookup_body, self.headers)
        self.psn_no = lookup["person"]["psn_no"]
        self.account = lookup["personal_account"]["account_id"]
        self.count = 0

    def _post(self, path: str, body: str, headers: dict[str, str]) -> Any:
        self.conn.request("POST", path, body=body.encode("utf-8"), headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        assert r.status in (200, 201), data
        return json.loads(data)

    def round_trips_ms(self) -> float:
        """A lookup and a one-fen settlement (its own msgid, till digit 9), bodies built
        before the clock starts."""
        self.count += 1
        stamp = dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)
        msgid = f"{self.pharmacy}{stamp:%Y%m%d%H%M%S}9{self.count % 1000:03d}"
        leg = Leg(kind=LegKind.PERSONAL_ACCOUNT, account_id=self.account,
                  payer_psn_no=self.psn_no, amount=1)  # fmt: skip
        req = SettlementRequest(
            msgid=msgid, pharmacy_code=self.pharmacy, terminal_id="T09", operator="bench",
            patient_psn_no=self.psn_no, credential=self.card, legs=(leg,), cash=0, total=1,
            lines=(LineSummary(sku="1", name="药", insurance_class="A", quantity=1, amount=1),),
        )  # fmt: skip
        body = req.model_dump(mode="json") | {"credential": self.card.wire()}
        settle_body = json.dumps(body, ensure_ascii=False)
        settle_headers = {**self.headers, "Idempotency-Key": msgid}
        t0 = time.perf_counter()
        self._post("/v1/persons/lookup", self.lookup_body, self.headers)
        self._post("/v1/settlements", settle_body, settle_headers)
        return (time.perf_counter() - t0) * 1000


def serve_pos(conn: Connection, host: str, port: int, token: str) -> None:
    """The POS: posts each sale body it is sent, answers (status, instant it had the
    whole answer); None ends it."""
    http_conn = http.client.HTTPConnection(host, port, timeout=30)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while (body := conn.recv()) is not None:
        http_conn.request("POST", "/v1/sales", body=body.encode("utf-8"), headers=auth)
        r = http_conn.getresponse()
        text = r.read()
        conn.send({"at": time.monotonic(), "status": r.status, "text": text})


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main(sales: int = 10, runs: int = 5) -> int:
    cases = {0: "own account, 0 family legs", 5: "5 family legs"}
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        world, who = bench_world({legs: sales * runs for legs in cases if legs})
        world_file = Path(work) / "world.json"
        world_file.write_text(world.model_dump_json(), "utf-8")
        ledger_url = stack.enter_context(sandbox_process(f"{work}/ledger.db", str(world_file)))
        agent = start_simulated(
            world_path=world_file, workdir=work, recovery_interval=3600, ledger_url=ledger_url,
            pace_baud=BAUD,
        )  # fmt: skip
        try:
            svc, sim = agent.service, agent.simulator
            assert sim is not None
            link = svc.devices._stats  # type: ignore[attr-defined]  # the host's line counters
            pharmacy = world.pharmacies[0]
            lee_card = Credential.card("B11000006", world.card_owner("B11000006")[1].card_sn)
            bare = BareLedger(ledger_url, pharmacy.api_token, pharmacy.code, lee_card)

            # The line's bytes once the card is in, up to the first ledger call (every
            # serial frame the sale needs is done by then).
            marks: dict[str, int] = {}
            times: dict[str, float] = {}
            lookup = svc.ledger.lookup

            def noted_lookup(credential: Any) -> Any:
                marks.setdefault("serial_done", link.bytes_tx + link.bytes_rx)
                times.setdefault("serial_done", time.monotonic())
                return lookup(credential)

            svc.ledger.lookup = noted_lookup  # type: ignore[method-assign]
            # When a frame's first byte reaches the pad (the outcome frame follows the answer).
            frames_in: list[float] = []
            on_bytes = sim._on_bytes

            def noted_bytes(data: bytes) -> None:
                if data[:1] == bytes((codec.STX,)):
                    frames_in.append(time.monotonic())
                on_bytes(data)

            sim._on_bytes = noted_bytes  # type: ignore[method-assign]
            # When the agent had sent the answer (the response's background task says so).
            answer_sent = svc.answer_sent

            def noted_answer_sent(sale_ref: str) -> None:
                times.setdefault("answer_sent", time.monotonic())
                answer_sent(sale_ref)

            svc.answer_sent = noted_answer_sent  # type: ignore[method-assign]

            # The POS in its own process, as at a counter: it notes the instant its answer
            # is whole without waiting for this process's threads (time.monotonic is one
            # clock for every process of the machine).
            pos, theirs = mp.Pipe()
            pos_process = mp.get_context("spawn").Process(
                target=serve_pos, args=(theirs, agent.api.host, agent.api.port,
                                        agent.tokens["pos"]), daemon=True,
            )  # fmt: skip
            pos_process.start()
            stack.callback(pos_process.join, 10)
            stack.callback(pos.send, None)
            lee = ("B11000006", "110101199007070262")
            per_run: dict[int, dict[str, list[float]]] = {
                legs: {"card_to_answer": [], "floor": [], "wire": [], "ledger": [],
                       "ratio": [], "frame_after": [], "frame_after_sent": [], "serial": [],
                       "rest": []}
                for legs in cases
            }  # fmt: skip
            for run in range(runs):
                for legs in cases:
                    got: dict[str, list[float]] = {k: [] for k in per_run[legs]}
                    for i in range(sales):
                        card, number = lee if legs == 0 else who[legs][run * sales + i]
                        price = 1850 if legs == 0 else (legs + 1) * 100
                        body = json.dumps({
                            "sale_ref": f"C{legs}-{run}-{i}",
                            "items": [{"sku": "1", "name": "药", "insurance_class": "A",
                                       "quantity": 1, "unit_price": price}],
                            "patient": {"number": number},
                        })  # fmt: skip
                        waits = sim.event_count("wait_credential")
                        marks.clear()
                        times.clear()
                        frames_in.clear()
                        pos.send(body)
                        # The pad waits for the card; the customer inserts it a moment later.
                        assert sim.wait_for("wait_credential", 10, after=waits)
                        time.sleep(0.02)
                        bytes_in = link.bytes_tx + link.bytes_rx
                        sim.present_card(card, "correct", at_once=True)
                        card_in = sim.firmware.inserted_at
                        assert pos.poll(30), "the POS got no answer"
                        answer = pos.recv()
                        assert answer.get("status") == 200, answer
                        sim.remove_card()
                        tail = svc._tail  # type: ignore[attr-defined]
                        if tail is not None:  # the outcome frame and the removal watch
                            tail.done.wait(10)
                        ledger_ms = bare.round_trips_ms()
                        needed = marks["serial_done"] - bytes_in - 1  # not the last ACK
                        after = [t for t in frames_in if t > card_in + 0.001]
                        outcome_frame = max(after)  # the last frame in: the outcome's
                        got["card_to_answer"].append((answer["at"] - card_in) * 1000)
                        got["wire"].append(wire_ms(needed))
                        got["ledger"].append(ledger_ms)
                        got["floor"].append(wire_ms(needed) + ledger_ms)
                        got["ratio"].append(got["card_to_answer"][-1] / got["floor"][-1])
                        got["frame_after"].append((outcome_frame - answer["at"]) * 1000)
                        got["frame_after_sent"].append((outcome_frame - times["answer_sent"]) * 1000)
                        got["serial"].append((times["serial_done"] - card_in) * 1000)
                        got["rest"].append((answer["at"] - times["serial_done"]) * 1000)
                    for k, xs in got.items():
                        per_run[legs][k].append(
                            min(xs) if k.startswith("frame_after") else statistics.median(xs)
                        )
        finally:
            agent.stop()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bench_counter: {runs} runs x {sales} sales per case, simulator paced at {BAUD} "
          f"baud 8N1; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("figures in ms: median of the runs' medians (min-max over runs)")
    ok = True
    for legs, label in cases.items():
        r = per_run[legs]
        ratio = statistics.median(r["ratio"])
        ok = ok and ratio <= TARGET and min(r["frame_after_sent"]) > 0
        print(f"{label}:")
        print(f"  card in -> POS has the answer {spread(r['card_to_answer'])}")
        print(f"  floor, same run               {spread(r['floor'])}  = wire "
              f"{statistics.median(r['wire']):.1f} (the frames a sale needs once the card "
              f"is in) + two bare ledger round trips {spread(r['ledger'])}")  # fmt: skip
        print(f"  of which card in -> PIN result {spread(r['serial'])} (its wire floor "
              f"{statistics.median(r['wire']):.1f}), PIN result -> answer {spread(r['rest'])} "
              f"(its floor {statistics.median(r['ledger']):.1f})")  # fmt: skip
        print(f"  ratio                         {ratio:7.3f} ({min(r['ratio']):.3f}-"
              f"{max(r['ratio']):.3f})   (target <= {TARGET})")  # fmt: skip
        print(f"  outcome frame's first byte at the pad: at least {min(r['frame_after_sent']):.2f} "
              f"ms after the agent sent the answer; {min(r['frame_after']):+.2f} ms from the "
              "POS process having read it whole (earliest of every sale)")  # fmt: skip
    print("targets:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
