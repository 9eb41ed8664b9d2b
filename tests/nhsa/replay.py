"""A real HTTP server on 127.0.0.1 that answers envelopes by script (not a mock of requests).

Each POST is recorded (path, headers, parsed envelope) and answered by ``respond``;
a reply may also be ``DROP`` (read the request, close without answering: a lost
answer) or ``Hang(seconds)`` (answer nothing for that long: a read timeout).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import simplejson


@dataclass(frozen=True)
class Hang:
    seconds: float


DROP = object()


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    envelope: dict[str, Any]


Reply = Any  # dict (an answer envelope), (status, bytes), DROP or Hang
Responder = Callable[[dict[str, Any]], Reply]


@dataclass
class ReplayServer:
    respond: Responder
    seen: list[Seen] = field(default_factory=list)

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                doc = json.loads(body, parse_float=Decimal)
                owner.seen.append(Seen(self.path, dict(self.headers), body, doc))
                reply = owner.respond(doc)
                if reply is DROP:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if isinstance(reply, Hang):
                    time.sleep(reply.seconds)
                    self.close_connection = True
                    return
                status, out = (reply if isinstance(reply, tuple)
                               else (200, simplejson.dumps(reply, use_decimal=True,
                                                           ensure_ascii=False).encode()))
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/fsi/api/rsfComIfsService/callService"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posts(self, infno: str) -> list[Seen]:
        return [s for s in self.seen if s.envelope.get("infno") == infno]
