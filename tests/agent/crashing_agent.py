"""``serve --simulate`` that SIGKILLs itself at one named point of a sale (POSIX-only
test helper for the crash matrix; never loaded by a till).

    python -m tests.agent.crashing_agent --workdir W --port P --ledger-url U --kill-at POINT

POINT is ``none`` or one of ``POINTS``: ``after:<state>`` kills right after the journal
committed that state; ``sent:<call>`` right after the ledger answered that request (so
the ledger committed it and the agent never journals the answer); ``marker:settle``
writes ``W/settle-sending`` just before the settlement request leaves and kills
nothing (the test kills the ledger then). ``--outcome unknown-committed`` makes the
first settlement commit and then look unknown to the agent (the ledger "vanished"),
``unknown-unsent`` look unknown without reaching the ledger: the paths where the
customer pays cash and a reversal or a void is owed.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import Any

from pos_plugin.agent import start_simulated
from pos_plugin.journal.journal import Journal
from pos_plugin.ledger import errors as e
from pos_plugin.ledger.own.client import HttpLedgerClient

POINTS = (
    "after:received",
    "after:settling",
    "sent:settle",
    "after:settled",
    "after:unknown",
    "sent:void",
    "sent:reverse",
    "after:reversed",
    "after:failed",
)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, outcome: str, workdir: Path) -> None:
    """Patch the journal and the ledger client of this process to die at ``point``."""
    kind, _, what = point.partition(":")
    begin, update, owe, send, settle = (Journal.begin_sale, Journal.update, Journal.owe_reversal,
                                        HttpLedgerClient._send, HttpLedgerClient.settle)  # fmt: skip

    def begin_sale(self: Journal, *a: Any, **kw: Any) -> Any:
        row = begin(self, *a, **kw)
        if point == "after:received":
            _die()
        return row

    def journal_update(self: Journal, sale_ref: str, state: str, **kw: Any) -> Any:
        row = update(self, sale_ref, state, **kw)
        if kind == "after" and state == what:
            _die()
        return row

    def owe_reversal(self: Journal, *a: Any, **kw: Any) -> Any:
        row = owe(self, *a, **kw)
        if point == "after:unknown":
            _die()
        return row

    def send_request(self: HttpLedgerClient, method: str, path: str, **kw: Any) -> Any:
        call = ("settle" if path == "/v1/settlements" else "void" if path.endswith("/void")
                else "reverse" if path.endswith("/reversals") else "")  # fmt: skip
        if point == "marker:settle" and call == "settle":
            (workdir / "settle-sending").write_text("now")
        resp = send(self, method, path, **kw)
        if kind == "sent" and call == what and method == "POST":
            _die()
        return resp

    first = threading.Event()

    def settle_request(self: HttpLedgerClient, request: Any) -> Any:
        if outcome == "normal" or first.is_set():
            return settle(self, request)
        first.set()
        if outcome == "unknown-committed":
            settle(self, request)
        raise e.OutcomeUnknown("the ledger vanished (crash matrix)", msgid=request.msgid)

    Journal.begin_sale = begin_sale  # type: ignore[method-assign]
    Journal.update = journal_update  # type: ignore[method-assign]
    Journal.owe_reversal = owe_reversal  # type: ignore[method-assign]
    HttpLedgerClient._send = send_request  # type: ignore[method-assign]
    HttpLedgerClient.settle = settle_request  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulate", action="store_true")  # accepted as serve's
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger-url", required=True)
    parser.add_argument("--kill-at", default="none", choices=("none", "marker:settle", *POINTS))
    parser.add_argument("--outcome", default="normal",
                        choices=("normal", "unknown-committed", "unknown-unsent"))  # fmt: skip
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.kill_at != "none":
        arm(args.kill_at, args.outcome, workdir)
    agent = start_simulated(workdir=workdir, port=args.port, ledger_url=args.ledger_url,
                            recovery_interval=0.3)  # fmt: skip
    print(f"listening on {agent.url}", flush=True)
    print(f"pos token: {agent.tokens['pos']}", flush=True)
    print(f"manager token: {agent.tokens['manager']}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
