"""Control channel for an out-of-process simulator: JSON lines over TCP on 127.0.0.1.

One JSON object per line in, one per line out. Every verb of the in-process
API is there::

    {"verb": "present_card", "card_no": "B11000001", "pin": "correct"}
    {"verb": "present_card", "card_no": "B11000001", "pin": ["wrong", "correct"]}
    {"verb": "present_card", "card_no": "B11000001", "defect": "malformed_info"}
    {"verb": "present_foreign_card"}
    {"verb": "remove_card"}
    {"verb": "scan_voucher", "token": "EV-ZHANGWEI-0001"}
    {"verb": "present_card", "card_no": "B11000001", "at_once": true}   (in the reader now)
    {"verb": "scan_voucher", "token": "EV-ZHANGWEI-0001", "at_once": true}
    {"verb": "script_scans", "script": ["garbled", "pack", "repeat", "pack"]}   (追溯码)
    {"verb": "inject", "fault": "nak_all", "count": 3}
    {"verb": "unplug"}            {"verb": "replug"}
    {"verb": "stats"}             {"verb": "status"}
    {"verb": "tries_left", "card_no": "B11000001"}

Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The
channel listens on loopback only: it can present cards, so it must not be
reachable from the shop's network.
"""

from __future__ import annotations

import json
import socketserver
import threading
from typing import Any

from drivers.simulator.sim import Simulator


def dispatch(sim: Simulator, msg: dict[str, Any]) -> dict[str, Any]:
    verb = msg.get("verb")
    if verb == "present_card":
        sim.present_card(
            str(msg["card_no"]),
            msg.get("pin", "correct"),
            defect=msg.get("defect"),
            at_once=bool(msg.get("at_once", False)),
        )
    elif verb == "present_foreign_card":
        sim.present_foreign_card(at_once=bool(msg.get("at_once", False)))
    elif verb == "remove_card":
        sim.remove_card()
    elif verb == "scan_voucher":
        sim.scan_voucher(str(msg["token"]), at_once=bool(msg.get("at_once", False)))
    elif verb == "script_scans":
        sim.script_scans(msg["script"])
    elif verb == "inject":
        sim.inject(str(msg["fault"]), int(msg.get("count", 1)))
    elif verb == "unplug":
        sim.unplug()
    elif verb == "replug":
        return {"ok": True, "path": sim.replug(), "pty": sim.pty_path}
    elif verb == "stats":
        return {"ok": True, "stats": sim.stats_dict()}
    elif verb == "tries_left":
        return {"ok": True, "tries_left": sim.tries_left(str(msg["card_no"]))}
    elif verb == "status":
        return {
            "ok": True,
            "path": sim.path,
            "pty": sim.pty_path,
            "display": list(sim.display),
            "amount": list(sim.amount) if sim.amount else None,
            "card_inserted": sim.firmware.chip is not None,
        }
    else:
        raise ValueError(f"unknown verb {verb!r}")
    return {"ok": True}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for raw in self.rfile:
            try:
                msg = json.loads(raw)
                if not isinstance(msg, dict):
                    raise ValueError("send one JSON object per line")
                answer = dispatch(self.server.sim, msg)
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
            self.wfile.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sim: Simulator, port: int) -> None:
        self.sim = sim
        super().__init__(("127.0.0.1", port), _Handler)


class ControlServer:
    """Serve the control channel in a background thread."""

    def __init__(self, sim: Simulator, port: int = 0) -> None:
        self._server = _Server(sim, port)
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> tuple[str, int]:
        self._thread.start()
        return self.address

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
