"""Run the national-platform sandbox: embedded in a thread (tests, demos) or from the CLI.

``NhsaSandboxServer`` binds its own socket first (port 0 picks a free port, with no
race between "find a port" and "listen"), then runs uvicorn on it in a daemon
thread, as the own sandbox does. ``main`` is what ``pos-plugin sandbox-nhsa`` calls.
Nothing here is POSIX-only: no signals, no fork; uvicorn handles Ctrl+C itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

import uvicorn

from pos_plugin.ledger.nhsa.sandbox.app import ENDPOINT, create_app
from pos_plugin.ledger.nhsa.sandbox.faults import Faults
from pos_plugin.ledger.nhsa.sandbox.platform import Platform, shanghai_now
from pos_plugin.ledger.nhsa.sandbox.store import Store
from pos_plugin.ledger.serving import BackgroundServer, ServedSandbox
from pos_plugin.world import World, load_world

DEFAULT_PORT = 8766  # beside the own sandbox's 8765


class NhsaSandboxServer(ServedSandbox):
    """A real national-platform sandbox on 127.0.0.1 in a background thread.

    ``faults`` is the Python fault API (always there); ``faults=True`` at construction
    also serves it over HTTP (``POST /_sandbox/faults``) with the audit endpoints.
    """

    name = "sandbox-nhsa"

    def __init__(
        self,
        db_path: str,
        world: World,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: bool = False,
        clock: Callable[[], dt.datetime] = shanghai_now,
        log_level: str = "warning",
    ) -> None:
        self.db_path, self.world, self.host, self.port = db_path, world, host, port
        self.test_endpoints = faults
        self.faults = Faults()
        self.clock = clock
        self.log_level = log_level
        self.store: Store | None = None
        self.platform: Platform | None = None
        self._server: BackgroundServer | None = None

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT

    def _open(self) -> tuple[Any, dict[str, Any]]:
        self.store = Store(self.db_path)
        self.store.init(self.world)
        self.platform = Platform(self.store, clock=self.clock)
        app = create_app(self.platform, self.faults, test_endpoints=self.test_endpoints)
        return app, {"timeout_graceful_shutdown": 2}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pos-plugin sandbox-nhsa",
        description="Run the reference national healthcare-security platform (sandbox) "
                    "over HTTP: 9001/9002, 1101, 2101/2102, 2103, 2601.",
    )
    p.add_argument("--db", required=True, help="SQLite file path (created and seeded if new)")
    p.add_argument("--world", default=None,
                   help="world JSON file seeding a new database (default: the embedded example)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--faults", action="store_true",
                   help="also serve POST /_sandbox/faults and GET /_sandbox/audit (tests only)")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    """Seed the database if new, then serve until interrupted."""
    args = build_parser().parse_args(argv)
    world = load_world(args.world)
    store = Store(args.db)
    seeded = store.init(world)
    platform = Platform(store)
    print(
        f"national-platform sandbox on http://{args.host}:{args.port}{ENDPOINT} (and /) "
        f"({'seeded from the world file' if seeded else 'existing database, not re-seeded'})",
        flush=True,
    )
    try:
        uvicorn.run(create_app(platform, Faults(), test_endpoints=args.faults),
                    host=args.host, port=args.port, log_level=args.log_level,
                    access_log=False, timeout_graceful_shutdown=2)
    finally:
        store.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
