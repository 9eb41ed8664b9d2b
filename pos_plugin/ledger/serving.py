"""A sandbox's HTTP server in a background thread: what both reference ledgers need.

Why here: the own-API sandbox and the national-platform sandbox serve the same way
(uvicorn on a socket bound before it starts, so port 0 gives a port the OS picked and
held from then on, with no window for another process; wait until it accepts; stop
within seconds), and they had the same thirty lines each.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one); uvicorn takes it as it is."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class BackgroundServer:
    """uvicorn serving ``app`` on ``sock`` in a daemon thread named ``name``."""

    def __init__(self, app: Any, sock: socket.socket, *, name: str, **config: Any) -> None:
        settings: dict[str, Any] = {"access_log": False, "lifespan": "off",
                                    "timeout_keep_alive": 30} | config  # fmt: skip
        self._server = uvicorn.Server(uvicorn.Config(app, **settings))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=name, daemon=True
        )
        self._name = name

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until it accepts; RuntimeError naming it if it does not."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self._name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class ServedSandbox:
    """A sandbox ledger served on ``host:port`` in this process: ``start`` opens it (the
    subclass's ``_open``: seed the store, build the app), listens and waits until it
    accepts; ``stop`` ends the server and closes the store. Both reference ledgers are
    one of these; they differ only in what ``_open`` builds."""

    name = "sandbox"
    host: str
    port: int
    log_level: str
    store: Any
    _server: BackgroundServer | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _open(self) -> tuple[Any, dict[str, Any]]:
        """Open the store and build the ASGI app; returns it and extra uvicorn settings."""
        raise NotImplementedError

    def start(self) -> str:
        """Seed (first start only), listen, serve; returns the base URL once accepting."""
        app, config = self._open()
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = BackgroundServer(
            app, sock, name=self.name, log_level=self.log_level, **config
        )
        self._server.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self.store is not None:
            self.store.close()
        self._server = None

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
