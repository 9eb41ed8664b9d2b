"""A real TCP fault proxy on 127.0.0.1 for the ledger client's fault tests.

It sits between the client and the sandbox and misbehaves on the first
``faults`` connections it accepts (later connections pass through), so a test
can say "the first attempt fails like this" and watch the client recover:

- ``delay``: forward the request at once, hold the response ``delay`` seconds;
- ``cut``: forward the request, wait until the ledger answers (so it has
  committed), then close the client's connection without a byte;
- ``bad_gateway``: answer 502 without forwarding anything;
- ``bad_gateway_after``: forward, let the ledger answer, then send 502 instead;
- ``drip``: forward, send the response back a few bytes at a time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nbad gateway"
)


class FaultProxy:
    def __init__(self, upstream_port: int, mode: str = "pass", faults: int = 1,
                 delay: float = 0.0, drip_bytes: int = 7, drip_interval: float = 0.002) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode, self.faults, self.delay = mode, faults, delay
        self.drip_bytes, self.drip_interval = drip_bytes, drip_interval
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> str:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        return self.url

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()

    def heal(self) -> None:
        with self._lock:
            self.faults = 0

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                mode = self.mode if self.faults > 0 else "pass"
                self.faults -= 1 if self.faults > 0 else 0
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            if mode == "bad_gateway":
                client.recv(65536)
                client.sendall(BAD_GATEWAY)
                return
            upstream = socket.create_connection(self.upstream)
            up = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            up.start()
            self._down(upstream, client, mode)
        except OSError:
            pass
        finally:
            _close(client)

    def _down(self, upstream: socket.socket, client: socket.socket, mode: str) -> None:
        """Ledger -> client direction, where the faults happen."""
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if mode == "cut":
                    return  # the ledger answered (committed); the client hears nothing
                if mode == "bad_gateway_after":
                    client.sendall(BAD_GATEWAY)
                    return
                if mode == "delay":
                    time.sleep(self.delay)
                if mode == "drip":
                    for i in range(0, len(data), self.drip_bytes):
                        client.sendall(data[i : i + self.drip_bytes])
                        time.sleep(self.drip_interval)
                else:
                    client.sendall(data)
        finally:
            _close(upstream)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    """shutdown() first: close() alone does not send FIN while another thread is in recv()."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
