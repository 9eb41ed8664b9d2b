"""An agent on the real device simulator (pyserial on a pty, and on a TCP socket: the
counter suite runs on both where there is a pty) and a real sandbox ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from drivers.simulator.lines import pty_available
from pos_plugin.agent import Agent, start_simulated
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.schemas import Credential

ZHANG_WEI = "11000000000000000001"
WANG_FANG = "11000000000000000002"
XIAOMING = "11000000000000000003"
WANG_JIANGUO = "11000000000000000004"
LI_NA = "11000000000000000006"


class Pos:
    """The test plays the POS software, over real HTTP."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.http = requests.Session()

    def call(
        self, method: str, path: str, body: Any = None, *, role: str = "pos"
    ) -> tuple[int, dict[str, Any]]:
        token = self.agent.tokens.get(role, role)
        r = self.http.request(
            method,
            self.agent.url + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        return r.status_code, r.json()

    def present(self, card_no: str, pin: Any = "correct") -> None:
        status, body = self.call("POST", "/v1/simulator/present", {"card_no": card_no, "pin": pin})
        assert status == 200, body

    def remove(self) -> None:
        self.call("POST", "/v1/simulator/remove")

    def doc(self, psn_no: str) -> dict[str, str]:
        assert self.agent.world is not None
        p = self.agent.world.person(psn_no)
        return {"doc_type": "resident_id", "number": p.id_number, "name": p.name}

    def sale(
        self,
        ref: str,
        card_no: str | None,
        patient: str | None,
        items: list[dict[str, Any]],
        *,
        buyer: dict[str, Any] | None = None,
        pin: Any = "correct",
    ) -> tuple[int, dict[str, Any]]:
        if card_no is not None:
            self.present(card_no, pin)
        try:
            return self.call(
                "POST",
                "/v1/sales",
                {
                    "sale_ref": ref,
                    "items": items,
                    "patient": self.doc(patient) if patient else None,
                    "buyer": buyer or {"role": "self"},
                    "credential": "card",
                },
            )
        finally:
            if card_no is not None:
                self.remove()


# A catalogue code of each class in the example world's catalogue: the national platform
# settles only lines with a code (and classes them itself); our own ledger records it.
CATALOGUE = {"A": "XA01AAA0001", "B": "XB01BBB0001", "C": "ZC01CCC0001"}


def item(sku: str, cls: str, qty: int, price: int, **kw: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "sku": sku,
        "name": f"药品{sku}",
        "insurance_class": cls,
        "quantity": qty,
        "unit_price": price,
    }
    if cls in CATALOGUE:
        line["catalogue_code"] = CATALOGUE[cls]
    return line | kw


def on_nhsa(agent: Agent) -> bool:
    """True when the agent settles through the national platform (its sandbox)."""
    return type(agent.ledger_sandbox).__name__ == "NhsaSandboxServer"


def balances(agent: Agent, card_no: str, client: HttpLedgerClient | None = None) -> dict[str, int]:
    """What the ledger says now: the holder's account and each binding's payer."""
    assert agent.world is not None
    person, card = agent.world.card_owner(card_no)
    if on_nhsa(agent):  # the platform keeps the bindings: read its books
        books = agent.ledger_sandbox.store.balances()
        payers = [b.payer for b in agent.world.bindings if b.patient == person.psn_no]
        return {p: books.get(f"PA{p}", 0) for p in [*payers, person.psn_no]}
    client = client or agent.service.ledger  # type: ignore[assignment]
    assert isinstance(client, HttpLedgerClient)
    lookup = client.lookup(Credential.card(card.card_no, card.card_sn))
    out = {b.payer_psn_no: b.available_balance for b in lookup.bindings}
    out[person.psn_no] = lookup.personal_account.balance if lookup.personal_account else 0
    return out


@pytest.fixture(params=["pty", "socket"] if pty_available() else ["socket"])
def sim_transport(request: pytest.FixtureRequest) -> str:
    """The simulator's serial line: the pty (POSIX), and the socket a Windows till uses."""
    return str(request.param)


@pytest.fixture
def agent_device() -> Any:
    """The device the agent drives: None is the serial terminal on the simulator's line.
    tests/readers overrides it with a library reader on the stub library."""
    return None


@pytest.fixture
def ledger_kind(request: pytest.FixtureRequest) -> str:
    """The backend: "own" (our ledger API); a module parametrizes it (indirect) to run
    its scenarios through the national platform's interface ("nhsa") as well."""
    return str(getattr(request, "param", "own"))


@pytest.fixture
def agent(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    agent_device: Any,
    sim_transport: str,
    ledger_kind: str,
) -> Iterator[Agent]:
    """The agent on a SQLite journal; ``parametrize("agent", ["postgres"], indirect=True)``
    runs it on a shared PostgreSQL journal (a fresh schema) instead."""
    with ExitStack() as stack:
        journal = None
        if getattr(request, "param", "sqlite") == "postgres":
            from tests.pgschema import fresh_schema

            journal = stack.enter_context(fresh_schema("agent"))
        a = start_simulated(
            workdir=tmp_path,
            journal_path=journal,
            card_timeout=5.0,
            pin_timeout=5.0,
            recovery_interval=0.5,
            device=agent_device,
            transport=sim_transport,
            ledger_kind=ledger_kind,
        )
        try:
            yield a
        finally:
            a.stop()


@pytest.fixture
def pos(agent: Agent) -> Pos:
    return Pos(agent)
