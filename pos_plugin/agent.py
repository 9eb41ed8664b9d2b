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
from pos_plugin.catalogues import shared_catalogue
from pos_plugin.config import Config, get_secret, journal_password, secret_store
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
            # log_config=None: uvicorn logs through the root logger we configured
            # (pos_plugin/logs.py: time stamps, the rotating file, masking).
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=tls_cert,
                ssl_keyfile=tls_key,
                log_config=None,
                timeout_graceful_shutdown=8,
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
                    self.service.send_owed_uploads()
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
        """Stop in order: the running device wait is cancelled (that sale ends and is
        journaled as cancelled), the API stops taking requests and finishes the ones in
        flight, then the devices and the journal close. A sale caught mid-settlement
        stays ``settling`` in the journal and is resolved by msgid at the next start."""
        self._stop_event.set()
        try:
            self.service.devices.cancel()
        except Exception:
            log.exception("could not cancel the device transaction")
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
        # "disconnected": unplugged, wrong port or port busy (last_error says which);
        # sales answer device_unavailable and the Terminal keeps reconnecting.
        return {"reader": "connected" if data.get("up") else "disconnected", "terminal": data}

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
    transport: str = "auto",
    receipt_width: int = 80,
) -> Agent:
    """The agent on the device simulator and an embedded sandbox ledger (the example world).

    ``ledger_kind`` "nhsa": settle through the national platform's interface against an
    embedded sandbox-nhsa (or the one at ``ledger_url``), as the world's first pharmacy.

    ``device`` replaces the serial terminal on the simulator (a library reader, in tests).
    ``transport``: the simulator's serial line, "pty" (POSIX), "socket" (any OS: a
    ``socket://127.0.0.1:PORT`` the Terminal opens like a COM port), "auto" (pty where
    there is one).
    """
    from drivers import Terminal
    from drivers.simulator import Simulator
    from pos_plugin.ledger.own.faults import FaultyLedgerClient
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
    simulator = Simulator(world, pace_baud=pace_baud, transport=transport)  # type: ignore[arg-type]
    line_path = simulator.start()
    stops.append(simulator.stop)
    tracer = logging.getLogger("drivers.trace")  # the serial trace when the log is at DEBUG
    terminal = device or Terminal(
        line_path, trace=tracer.debug if tracer.isEnabledFor(logging.DEBUG) else None
    )
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
        if ledger_sandbox is not None:
            # The embedded platform's hooks take faults (POST /v1/simulator/faults).
            from pos_plugin.ledger.nhsa.simulated import SimulatedNhsaLedgerClient

            ledger = SimulatedNhsaLedgerClient(
                ledger_url, nhsa, msgids=journal.next_msgid,
                platform_faults=ledger_sandbox.faults,
            )  # fmt: skip
        else:
            ledger = NhsaLedgerClient(ledger_url, nhsa, msgids=journal.next_msgid)
        stops.append(ledger.close)
        catalogue = _catalogue_for(journal, ledger, download=True)
    else:
        # The sandbox's client takes faults (POST /v1/simulator/faults) for integrators.
        ledger = FaultyLedgerClient(ledger_url, pharmacy.api_token)
        catalogue = None
    settings = SaleSettings(
        pharmacy_code=pharmacy.code,
        terminal_id="T01",
        card_timeout=card_timeout,
        pin_timeout=pin_timeout,
        card_removal_timeout=card_removal_timeout,
        opened_pairs=frozenset(frozenset(p.split("-")) for p in world.cross_province_pairs),
        store_name=pharmacy.name,
        receipt_width=receipt_width,
    )
    service = SaleService(settings, journal, ledger, terminal, catalogue=catalogue)
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
    """The agent for a real till: the configured device, the real ledger.

    Starts without its reader: if none answers at start-up, the agent comes up anyway,
    ``/v1/health`` says the reader is down, sales answer ``device_unavailable``, and
    the device keeps trying (the serial Terminal reconnects in the background, a
    library reader at the next call) until the reader appears. Secrets are read
    first, so a missing one stops the start before anything opens.
    """
    from drivers import DeviceError
    from drivers.readers.factory import build_device
    # [reader] kind: the serial terminal or a vendor library. Built (not opened) first: a
    # library that cannot be loaded is a DeviceError now, an absent reader is not.
    terminal = build_device(cfg)
    store = secret_store(cfg)
    hmac_key = get_secret("journal_hmac_key", store).encode("utf-8")
    # The backend's secrets: our ledger's token, or the platform gateway's keys.
    names = cfg.nhsa.secret_names() if cfg.nhsa is not None else ("ledger_token",)
    ledger_secrets = {name: get_secret(name, store) for name in names}
    tokens = {"pos": get_secret("pos_token", store), "manager": get_secret("manager_token", store)}
    db_password = journal_password(cfg.journal, store)

    journal_target = cfg.journal_target  # the SQLite file under the data folder, or the URL
    if not cfg.journal.url:
        Path(journal_target).parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(
        journal_target,
        hmac_key=hmac_key,
        pharmacy_code=cfg.pharmacy.code,
        terminal_id=cfg.pharmacy.terminal_id,
        till_index=cfg.pharmacy.till_index,
        password=db_password,
    )
    log.info("journal: %s", journal.path)
    try:
        terminal.open()
        st = terminal.status()
        log.info("reader (%s) on %s: %s", cfg.reader.kind, st.url or "-", st.model)
    except DeviceError as e:  # unplugged, busy, wrong port: come up, keep trying
        log.warning(
            "reader unavailable at start-up (%s); serving anyway, sales answer "
            "device_unavailable until it answers, reconnecting in the background",
            e.message_en,
        )
    ledger = _ledger_for(cfg, journal, ledger_secrets)
    settings = SaleSettings(
        pharmacy_code=cfg.pharmacy.code,
        terminal_id=cfg.pharmacy.terminal_id,
        operator=cfg.pharmacy.operator,
        card_timeout=cfg.serial.card_timeout,
        pin_timeout=cfg.serial.pin_timeout,
        card_removal_timeout=cfg.serial.card_removal_timeout,
        opened_pairs=cfg.ledger.opened_pairs(),
        store_name=cfg.receipt.store_name,
        receipt_width=cfg.receipt.width,
    )
    catalogue = _catalogue_for(journal, ledger) if cfg.ledger.kind == "nhsa" else None
    service = SaleService(settings, journal, ledger, terminal, catalogue=catalogue)
    app = create_app(
        service,
        tokens=tokens,
        device_status=_device_status(terminal),
        extra=reconciliation_extra(source_for_service(service)),
    )
    try:
        api = ApiServer(
            app, cfg.api.host, cfg.api.port, tls_cert=cfg.api.tls_cert, tls_key=cfg.api.tls_key
        )
        api.start()
    except BaseException:
        terminal.close()
        journal.close()
        raise
    agent = Agent(service, api, tokens, _stops=[terminal.close, ledger.close, journal.close])
    agent.start_recovery()
    log.info("local API on %s", agent.url)
    return agent


def _catalogue_for(journal: Journal, ledger: Any, *, download: bool = False) -> Any:
    """The national catalogue (``ledger.nhsa.catalogue``) beside the till's journal file,
    or on a shared journal in its database (every till of the store checks against one
    download); ``download``: fetch it now (simulate mode, where the platform is the
    embedded sandbox; a real till runs ``pos-plugin catalogue update``)."""
    from pos_plugin.ledger.nhsa import catalogue as cat

    store: Any
    if journal.is_shared:
        store = shared_catalogue(journal.source, journal.pharmacy_code, query=journal.query)
    else:
        store = cat.Catalogue(cat.path_beside(journal.path))
    if download:
        try:
            cat.update(ledger, store)
        except Exception as e:  # the sale still works: the platform checks at 2102
            log.warning("the national catalogue could not be downloaded: %s", e)
    return store


def _ledger_for(cfg: Config, journal: Journal, ledger_secrets: dict[str, str]) -> Any:
    """The configured backend: our own ledger API, or the national platform."""
    if cfg.ledger.kind == "nhsa":
        from pos_plugin.ledger.nhsa.client import NhsaLedgerClient

        assert cfg.nhsa is not None  # the config refuses kind nhsa without the table
        # Every msgid from the till's journal clock (the till index is its first digit):
        # the control calls' msgids can then never collide with a sale's.
        return NhsaLedgerClient(
            cfg.ledger.url,
            cfg.nhsa,
            secrets=ledger_secrets,
            msgids=journal.next_msgid,
        )
    from pos_plugin.ledger.own.client import HttpLedgerClient

    return HttpLedgerClient(
        cfg.ledger.url,
        ledger_secrets["ledger_token"],
        connect_timeout=cfg.ledger.connect_timeout,
        read_timeout=cfg.ledger.read_timeout,
        ca_bundle=cfg.ledger.ca_bundle,
    )
