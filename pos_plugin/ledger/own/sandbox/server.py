"""Run the sandbox ledger: embedded in a thread (tests, demos) or from the CLI.

``SandboxServer`` binds its own socket first (port 0 picks a free port, with no
race between "find a port" and "listen"), then runs uvicorn on it in a daemon
thread. ``main`` is what ``pos-plugin sandbox-ledger`` calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from pos_plugin.ledger.own.sandbox.app import create_app
from pos_plugin.ledger.own.sandbox.service import Ledger, shanghai_now
from pos_plugin.ledger.own.sandbox.store import Store
from pos_plugin.ledger.serving import BackgroundServer, ServedSandbox
from pos_plugin.world import World, load_world

log = logging.getLogger("pos_plugin.ledger.own.sandbox")

_ENV_DB = "POS_PLUGIN_LEDGER_DB"


class SandboxServer(ServedSandbox):
    """A real sandbox ledger on 127.0.0.1 in a background thread."""

    name = "sandbox-ledger"

    def __init__(
        self,
        db: str,
        world: World,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], dt.datetime] = shanghai_now,
        log_level: str = "warning",
    ) -> None:
        self.db, self.world, self.host, self.port = db, world, host, port
        self.clock = clock
        self.log_level = log_level
        self.store: Store | None = None
        self.ledger: Ledger | None = None
        self._server: BackgroundServer | None = None

    def _open(self) -> tuple[Any, dict[str, Any]]:
        self.store = Store(self.db)
        self.store.init(self.world)
        self.ledger = Ledger(self.store, clock=self.clock)
        return create_app(self.ledger), {}


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn: each worker process opens the store itself."""
    store = Store(os.environ[_ENV_DB])
    return create_app(Ledger(store))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pos-plugin sandbox-ledger",
        description="Run the reference (sandbox) central ledger over HTTP.",
    )
    p.add_argument("--db", required=True,
                   help="SQLite file path, or a postgresql:// URL")
    p.add_argument("--world", default=None,
                   help="world JSON file seeding a new database (default: the embedded example)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn worker processes (they share the database)")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    """Seed the database if new, then serve until interrupted."""
    args = build_parser().parse_args(argv)
    world = load_world(args.world)
    store = Store(args.db)
    seeded = store.init(world)
    store.close()
    print(
        f"sandbox ledger on http://{args.host}:{args.port} "
        f"({'seeded from the world file' if seeded else 'existing database, not re-seeded'})",
        flush=True,
    )
    os.environ[_ENV_DB] = args.db
    uvicorn.run(
        "pos_plugin.ledger.own.sandbox.server:app_from_env", factory=True, host=args.host,
        port=args.port, workers=args.workers, log_level=args.log_level, access_log=False,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
