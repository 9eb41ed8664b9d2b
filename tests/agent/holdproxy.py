"""A TCP proxy on 127.0.0.1 that forwards requests but can swallow settlement answers.

It reproduces the worst moment of a sale: the settlement request reached the
ledger (which commits it) and the agent hears nothing back.
"""

from __future__ import annotations

import socket
import threading


class HoldProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.hold_settlements = False
        # When set, the ledger "vanishes" right after the next settlement reaches it:
        # its answer is swallowed and every later connection is cut at once.
        self.vanish_after_settlement = False
        self.down = False
        self.settlements_forwarded = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
                if data.startswith(b"POST /v1/settlements "):
                    state["settlement"] = True
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
