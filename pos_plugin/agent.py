"""Wiring: build the agent from a config (a real till) or on the simulator and sandbox.

``serve --simulate`` is what a POS vendor integrates against: the device
simulator on a pty, the sandbox ledger on loopback with the example world, a
journal in a temporary folder, and fresh tokens printed for the session.
"""

from __future__ import annotations

import logging
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from pos_plugin.api import create_app
from pos_plugin.config import Config, get_secret, journal_password
from pos_plugin.journal.journal import Journal
from pos_plugin.ledger.backend import LedgerClient
from pos_plugin.reconcile.manager_page import reconciliation_extra, source_for_service
from pos_plugin.sale.service import SaleService, SaleSettings
from pos_plugin.world import World, load_world

log = logging.getLogger("pos_plugin.agent")

RECOVERY_INTERVAL = 5.0


class ApiServer:
    """uvicorn in a background thread, on a port chosen by the OS when asked for 0.

    With ``tls_cert``/``tls_key`` (PEM files) it serves HTTPS: config allows a host off
    loopback only with them (``[api] allow_remote``), so tokens never cross a network
    in clear.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        # Bind here and hand the socket to uvicorn: the port asked for (or the one
        # the OS picks for 0) is held from now on, with no window for another process.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=128)
        self.host, self.port = host, self._socket.getsockname()[1]
        self.scheme = "https" if tls_cert else "http"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=tls_cert,
                ssl_keyfile=tls_key,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="api", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the local API did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class Agent:
    """A running agent: the service, its API, and what must be stopped with it."""

    service: SaleService
    api: ApiServer
    tokens: dict[str, str]
    world: World | None = None
    simulator: Any | None = None
    ledger_sandbox: Any | None = None  # simulate mode: the embedded sandbox (own or nhsa)
    _stops: list[Callable[[], None]] = field(default_factory=list)
    _stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.api.url

    def start_recovery(self, interval: float = RECOVERY_INTERVAL) -> None:
        """Resolve ``settling`` rows now, then keep resolving and sending owed reversals."""

        def loop() -> None:
            while not self._stop_event.is_set():
                try:
                    self.service.resolve_unsettled()
                    self.service.send_owed_reversals()
                except Exception:  # keep the loop alive; the next round tries again
                    log.exception("background recovery round failed")
                self._stop_event.wait(interval)

        # Start-up: nothing is being sent by this process yet, so every open row is a
        # previous run's: one that never reached settling sent nothing; a settling one
        # is settled or voided at the ledger (never concluded on a 404 alone).
        self.service.recover_interrupted()
        self.service.resolve_unsettled()
        threading.Thread(target=loop, name="recovery", daemon=True).start()

    def stop(self) -> None:
        self._stop_event.set()
        self.api.stop()
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:
                log.exception("error while stopping")


def _device_status(terminal: Any) -> Callable[[], dict[str, Any]]:
    def status() -> dict[str, Any]:
        st = terminal.status()
        data = st.model_dump() if hasattr(st, "model_dump") else dict(vars(st))
        return {"terminal": data}

    return status


def start_simulated(
    *,
    world_path: str | Path | None = None,
    workdir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    pace_baud: int | None = None,
    journal_path: str | Path | None = None,
    ledger_url: str | None = None,
    recovery_interval: float = RECOVERY_INTERVAL,
    card_timeout: float = 30.0,
    pin_timeout: float = 30.0,
    device: Any | None = None,
    card_removal_timeout: float = 30.0,
    ledger_kind: str = "own",
) -> Agent:
    """The agent on the device simulator and an embedded sandbox ledger (the example world).

    ``ledger_kind`` "nhsa": settle through the national platform's interface against an
    embedded sandbox-nhsa (or the one at ``ledger_url``), as the world's first pharmacy.

    ``device`` replaces the serial terminal on the simulator (a library reader, in tests).
    """
    from drivers import Terminal
    from drivers.simulator import Simulator
    from pos_plugin.ledger.own.client import HttpLedgerClient
    from pos_plugin.ledger.own.sandbox.server import SandboxServer

    world = load_world(world_path)
    work = Path(workdir or tempfile.mkdtemp(prefix="pos-plugin-"))
    work.mkdir(parents=True, exist_ok=True)
    pharmacy = world.pharmacies[0]
    stops: list[Callable[[], None]] = []

    ledger_sandbox: Any = None
    if ledger_url is None and ledger_kind == "nhsa":
        from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer

        ledger_sandbox = NhsaSandboxServer(str(work / "nhsa.sqlite3"), world)
        ledger_url = ledger_sandbox.start()
        stops.append(ledger_sandbox.stop)
    elif ledger_url is None:
        ledger_sandbox = SandboxServer(str(work / "ledger.sqlite3"), world)
        ledger_url = ledger_sandbox.start()
        stops.append(ledger_sandbox.stop)
    simulator = Simulator(world, pace_baud=pace_baud)
    pty_path = simulator.start()
    stops.append(simulator.stop)
    terminal = device or Terminal(pty_path)
    terminal.open()
    stops.append(terminal.close)

    key_file = work / "journal.key"  # sandbox only: a real till keeps the key in the keyring
    if not key_file.exists():
        key_file.write_bytes(secrets.token_bytes(32))
    journal = Journal(
        journal_path or work / "journal.sqlite3",
        hmac_key=key_file.read_bytes(),
        pharmacy_code=pharmacy.code,
        terminal_id="T01",
    )
    stops.append(journal.close)
    ledger: LedgerClient
    if ledger_kind == "nhsa":
        from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
        from pos_plugin.ledger.nhsa.settings import NhsaSettings

        # The world's first pharmacy is the one on the platform: its code, name, region.
        nhsa = NhsaSettings(
            fixmedins_code=pharmacy.code,
            fixmedins_name=pharmacy.name[:20],
            mdtrtarea_admvs=pharmacy.region,
        )
        ledger = NhsaLedgerClient(ledger_url, nhsa, msgids=journal.next_msgid)
        stops.append(ledger.close)
    else:
        ledger = HttpLedgerClient(ledger_url, pharmacy.api_token)
    settings = SaleSettings(
        pharmacy_code=pharmacy.code,
        terminal_id="T01",
        card_timeout=card_timeout,
        pin_timeout=pin_timeout,
        card_removal_timeout=card_removal_timeout,
        opened_pairs=frozenset(frozenset(p.split("-")) for p in world.cross_province_pairs),
    )
    service = SaleService(settings, journal, ledger, terminal)
    tokens = {
        "pos": "pos-" + secrets.token_urlsafe(16),
        "manager": "mgr-" + secrets.token_urlsafe(16),
    }
    app = create_app(
        service,
        tokens=tokens,
        device_status=_device_status(terminal),
        simulator=simulator,
        extra=reconciliation_extra(source_for_service(service)),
    )
    api = ApiServer(app, host, port)
    api.start()
    agent = Agent(
        service, api, tokens, world=world, simulator=simulator, ledger_sandbox=ledger_sandbox,
        _stops=stops,
    )
    agent.start_recovery(recovery_interval)
    return agent


def start_from_config(cfg: Config) -> Agent:
    """The agent for a real till: devices on the configured port, the real ledger."""
    from drivers.readers.factory import build_device
    terminal = build_device(cfg)  # [reader] kind: the serial terminal or a vendor library
    terminal.open()
    journal = Journal(
        cfg.journal.target,  # the till's SQLite file, or the shared PostgreSQL journal
        hmac_key=get_secret("journal_hmac_key").encode("utf-8"),
        pharmacy_code=cfg.pharmacy.code,
        terminal_id=cfg.pharmacy.terminal_id,
        till_index=cfg.pharmacy.till_index,
        password=journal_password(cfg.journal),
    )
    ledger = _ledger_for(cfg, journal)
    settings = SaleSettings(
        pharmacy_code=cfg.pharmacy.code,
        terminal_id=cfg.pharmacy.terminal_id,
        operator=cfg.pharmacy.operator,
        card_timeout=cfg.serial.card_timeout,
        pin_timeout=cfg.serial.pin_timeout,
        card_removal_timeout=cfg.serial.card_removal_timeout,
        opened_pairs=cfg.ledger.opened_pairs(),
    )
    service = SaleService(settings, journal, ledger, terminal)
    tokens = {"pos": get_secret("pos_token"), "manager": get_secret("manager_token")}
    app = create_app(
        service,
        tokens=tokens,
        device_status=_device_status(terminal),
        extra=reconciliation_extra(source_for_service(service)),
    )
    api = ApiServer(
        app, cfg.api.host, cfg.api.port, tls_cert=cfg.api.tls_cert, tls_key=cfg.api.tls_key
    )
    api.start()
    agent = Agent(service, api, tokens, _stops=[terminal.close, ledger.close, journal.close])
    agent.start_recovery()
    return agent


def _ledger_for(cfg: Config, journal: Journal) -> Any:
    """The configured backend: our own ledger API, or the national platform."""
    if cfg.ledger.kind == "nhsa":
        from pos_plugin.ledger.nhsa.client import NhsaLedgerClient

        assert cfg.nhsa is not None  # the config refuses kind nhsa without the table
        # Every msgid from the till's journal clock (the till index is its first digit):
        # the control calls' msgids can then never collide with a sale's.
        return NhsaLedgerClient(
            cfg.ledger.url,
            cfg.nhsa,
            secrets={name: get_secret(name) for name in cfg.nhsa.secret_names()},
            msgids=journal.next_msgid,
        )
    from pos_plugin.ledger.own.client import HttpLedgerClient

    return HttpLedgerClient(
        cfg.ledger.url,
        get_secret("ledger_token"),
        connect_timeout=cfg.ledger.connect_timeout,
        read_timeout=cfg.ledger.read_timeout,
        ca_bundle=cfg.ledger.ca_bundle,
    )
