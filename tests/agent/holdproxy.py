"""A TCP proxy on 127.0.0.1 that forwards requests but can swallow settlement answers.

It reproduces the worst moments of a sale: the settlement request reached the
ledger (which commits it) and the agent hears nothing back; the request is slow to
reach the ledger (``delay_settlements``); or the request is still in the network
when the agent dies and lands later (``hold_requests``, then ``release``).
"""

from __future__ import annotations

import socket
import threading
import time

SETTLE = b"POST /v1/settlements "


def _read_request(first: bytes, src: socket.socket) -> bytes:
    """The whole HTTP request that ``first`` starts: headers and Content-Length body."""
    data = first
    while b"\r\n\r\n" not in data:
        more = src.recv(65536)
        if not more:
            return data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        more = src.recv(65536)
        if not more:
            break
        body += more
    return head + b"\r\n\r\n" + body


def _read_response(src: socket.socket) -> bytes:
    return _read_request(src.recv(65536), src)


class HoldProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.hold_settlements = False
        # When set, the ledger "vanishes" right after the next settlement reaches it:
        # its answer is swallowed and every later connection is cut at once.
        self.vanish_after_settlement = False
        self.down = False
        self.settlements_forwarded = 0
        self.delay_settlements = 0.0  # s before a settlement request is passed on
        self.hold_requests = False  # keep settlement requests in the "network"
        self.held: list[bytes] = []
        self.older_ledger = False  # answer a void as a ledger without the route does
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> list[bytes]:
        """Deliver every held settlement request now (its sender may be long dead);
        returns the ledger's answers, which nobody else will hear."""
        answers = []
        held, self.held = self.held, []
        for raw in held:
            with socket.create_connection(self.target) as up:
                up.sendall(raw)
                answers.append(_read_response(up))
        return answers

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            state = {"settlement": False}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := src.recv(65536):
                if self.older_ledger and b"/void " in data.split(b"\r\n", 1)[0]:
                    _read_request(data, src)
                    body = b'{"code": "not_found", "message": "Not Found"}'
                    src.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n"
                                b"content-length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                if data.startswith(SETTLE) and self.hold_requests:
                    self.held.append(_read_request(data, src))
                    continue
                if data.startswith(SETTLE):
                    state["settlement"] = True
                    if self.delay_settlements:
                        data = _read_request(data, src)
                        time.sleep(self.delay_settlements)
                    self.settlements_forwarded += 1
                    if self.vanish_after_settlement:
                        self.vanish_after_settlement = False
                        self.down = True
                        dst.sendall(data)
                        continue
                elif data[:4] in (b"GET ", b"POST"):
                    state["settlement"] = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def _down(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := src.recv(65536):
                if self.down or (state["settlement"] and self.hold_settlements):
                    continue  # the ledger answered; the agent never hears it
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()
