"""A real till's wiring (``start_from_config``) with ``[journal] url``: config -> agent -> PostgreSQL.

The devices are the simulator on a pty, the ledger the sandbox over HTTP, the
journal a fresh schema of the real PostgreSQL server (skipped when none
answers). The keyring is replaced by a dictionary: what is tested is which
secrets the agent asks for, not the OS keyring.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from pos_plugin.agent import start_from_config
from pos_plugin.config import load_config
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.world import load_world
from tests.pgschema import fresh_schema, sql

from .conftest import ZHANG_WEI, item

pytestmark = pytest.mark.postgres


def test_a_till_configured_with_a_shared_journal_settles_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drivers.simulator import Simulator

    world = load_world()
    pharmacy = world.pharmacies[0]
    secrets = {
        "ledger_token": pharmacy.api_token,
        "pos_token": "pos-token-cfg",
        "manager_token": "mgr-token-cfg",
        "journal_hmac_key": "k" * 32,
    }
    asked: list[str] = []

    def optional(name: str, store: object = None) -> str | None:
        asked.append(name)
        return None  # unset: libpq's own sources (here: trust authentication)

    monkeypatch.setattr("pos_plugin.agent.get_secret", lambda name, store=None: secrets[name])
    monkeypatch.setattr("pos_plugin.config.get_optional_secret", optional)
    with fresh_schema("cfg") as url:
        sandbox = SandboxServer(str(tmp_path / "ledger.sqlite3"), world)
        ledger_url = sandbox.start()
        simulator = Simulator(world)
        pty = simulator.start()
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[pharmacy]\ncode = "{pharmacy.code}"\nterminal_id = "T07"\ntill_index = 7\n'
            f'[ledger]\nurl = "{ledger_url}"\n[serial]\nurl = "{pty}"\n'
            f'[api]\nport = 0\n[journal]\nurl = "{url}"\n',
            "utf-8",
        )
        agent = start_from_config(load_config(cfg))
        try:
            assert agent.service.journal.is_shared
            assert asked == ["journal_db_password"]  # the URL holds no password
            person = world.person(ZHANG_WEI)
            simulator.present_card("B11000001", "correct")
            try:
                r = requests.post(
                    agent.url + "/v1/sales",
                    json={
                        "sale_ref": "CFG-1",
                        "items": [item("6901", "A", 2, 1850)],
                        "patient": {
                            "doc_type": "resident_id",
                            "number": person.id_number,
                            "name": person.name,
                        },
                        "buyer": {"role": "self"},
                        "credential": "card",
                    },
                    headers={"Authorization": "Bearer pos-token-cfg"},
                    timeout=60,
                )
            finally:
                simulator.remove_card()
            body = r.json()
            assert r.status_code == 200 and body["status"] == "settled", body
            assert body["msgid"][26] == "7"  # this till's digit
            rows = sql(url, "SELECT pharmacy_code, terminal_id, sale_ref, state, msgid FROM sales")
            assert rows == [(pharmacy.code, "T07", "CFG-1", "settled", body["msgid"])]
            assert agent.service.journal.verify().ok
        finally:
            agent.stop()
            simulator.stop()
            sandbox.stop()
