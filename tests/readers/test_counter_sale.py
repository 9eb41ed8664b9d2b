"""The counter scenario set of tests/agent/test_sales.py, once, through the stub reader library.

The same tests, the same agent fixture and the same sandbox ledger; only the
device differs: a LibraryReader (SSCardDriver + NationECCode) on the compiled
stub instead of the serial terminal on the simulator. The POS's "present a
card" calls, which the simulator's API serves, are played on the stub here:
the card's record comes from the same world file, and the PIN script becomes
what the stub's keypad does (no PIN digit in any of it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.readers.device import LibraryReader
from drivers.results import DeviceState
from pos_plugin.agent import Agent
from pos_plugin.world import World
from tests.agent import conftest as agent_conftest
from tests.agent import test_sales

from .conftest import Stub, sscard_backend
from .test_heasec_voucher import voucher_library

agent = agent_conftest.agent  # the agent fixture itself, with the device below
ledger_kind = agent_conftest.ledger_kind  # our own ledger: the subject here is the reader


@pytest.fixture
def sim_transport() -> str:
    """Once, not per serial transport: the library reader never opens the serial line."""
    return "socket"

# Every scenario of tests/agent/test_sales.py runs here too, on the library reader.
for _name in dir(test_sales):
    if _name.startswith("test_"):
        globals()[_name] = getattr(test_sales, _name)


def card_record(world: World, card_no: str) -> str:
    """What iReadCardBas returns for a world card: 11 fields, each ending with '|'."""
    person, card = world.card_owner(card_no)
    fields = [
        person.insured_region, person.id_number, card.card_no, card.card_sn, person.name,
        "3B6D000080318065B0", "3.00",
        card.issue_date.strftime("%Y%m%d") if card.issue_date else "",
        card.expiry_date.strftime("%Y%m%d") if card.expiry_date else "",
        "110105000001", "STUB-RDR-0001",
    ]  # fmt: skip
    return "".join(f"{f}|" for f in fields)


class StubControls:
    """Stands in for ``agent.simulator`` where a scenario unplugs the reader."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub

    def unplug(self) -> None:
        self.stub.set("plugged", 0)

    def replug(self) -> None:
        self.stub.set("plugged", 1)


class LibraryPos(agent_conftest.Pos):
    """The POS of tests/agent, whose simulator calls drive the stub library instead."""

    def __init__(self, agent: Agent, stub: Stub) -> None:
        super().__init__(agent)
        self.stub = stub
        self.tries: dict[str, int] = {}  # the chip's try counter per card, across presents
        self.card_no: str | None = None
        self._pending: tuple[threading.Thread, threading.Event] | None = None

    def call(
        self, method: str, path: str, body: Any = None, *, role: str = "pos"
    ) -> tuple[int, dict[str, Any]]:
        if path == "/v1/simulator/present":
            return self._present(body)
        if path == "/v1/simulator/remove":
            if self.card_no is not None:
                self.tries[self.card_no] = self.stub.get("tries")
            self.card_no = None
            self.cancel_pending()
            self.stub.remove()
            return 200, {}
        return super().call(method, path, body, role=role)

    def _present(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        world = self.agent.world
        assert world is not None
        if "evoucher_token" in body:
            token = body["evoucher_token"]
            holder = next(p for p in world.persons if token in p.evoucher_tokens)
            data = json.dumps({"ecToken": token, "idNo": holder.id_number, "idType": "01"})
            self.stub.set("voucher", data.replace('"', '\\"').encode())
            return 200, {}
        card_no, pin = body["card_no"], body.get("pin", "correct")
        script = [pin] if isinstance(pin, str) else list(pin)
        tries = self.tries.get(card_no, world.card_owner(card_no)[1].pin_tries_left)
        if script[0] == "blocked":
            tries, script = 0, ["correct"]
        entries = {"correct": "correct", "wrong": "wrong", "cancel": "cancel", "none": "none"}
        self.stub.set("tries", tries)
        self.stub.set("pin_entry", ",".join(entries[p] for p in script))
        self._insert_when_asked(card_record(world, card_no))
        self.card_no = card_no
        return 200, {}

    def _insert_when_asked(self, record: str) -> None:
        """The customer inserts the card once the sale's wait has polled the empty slot.

        As the simulator's customer does: a card that was in before the sale began
        is refused (the reader must see the slot empty during the sale).
        """
        self.cancel_pending()
        stop = threading.Event()
        reader = self.agent.service.devices

        def insert() -> None:
            end = time.monotonic() + 30
            while not stop.wait(0.005) and time.monotonic() < end:
                if reader.status().state == DeviceState.WAITING_FOR_CARD:  # type: ignore[attr-defined]
                    first = self.stub.get("reads")
                    # two reads began: the first of them has answered "no card"
                    while self.stub.get("reads") < first + 2 and not stop.wait(0.005):
                        pass
                    if not stop.is_set():
                        self.stub.insert(record)
                    return

        thread = threading.Thread(target=insert, name="stub-customer", daemon=True)
        self._pending = (thread, stop)
        thread.start()

    def cancel_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].set()
            pending[0].join(timeout=5)


@pytest.fixture
def agent_device(stub: Stub) -> LibraryReader:
    return LibraryReader(
        sscard_backend(stub.path),
        voucher=voucher_library(stub),
        call_timeout=2.0,
        poll_interval=0.05,
        voucher_wait=1.0,
    )


@pytest.fixture
def pos(agent: Agent, stub: Stub) -> Iterator[LibraryPos]:
    agent.simulator = StubControls(stub)
    pos = LibraryPos(agent, stub)
    yield pos
    pos.cancel_pending()


def test_the_library_reader_is_what_drove_the_sale(
    pos: LibraryPos, agent: Agent, stub: Stub
) -> None:
    """Guard against the scenarios above passing on the simulator by mistake."""
    status, body = pos.sale("LIB-1", "B11000001", agent_conftest.ZHANG_WEI, test_sales.COLD)
    assert status == 200 and body["status"] == "settled", body
    assert stub.get("reads") >= 1 and stub.get("pins") == 1
    status, health = pos.call("GET", "/v1/health")
    assert health["devices"]["terminal"]["url"].startswith("sscard:")
