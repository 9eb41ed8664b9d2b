"""Fault injection for integrators (``serve --simulate`` only): ``POST /v1/simulator/faults``.

Why: a POS vendor must see its till handle ``ledger_unavailable``, a slow ledger and an
``unknown`` outcome (the answer lost after the ledger committed) before a pharmacy
does, without building a proxy of its own. The faults sit in the agent's own ledger
client, so everything after them (journal, recovery, owed reversals) is the real code.

- ``down``: every ledger call fails as a refused connection (nothing was sent);
- ``slow``: each settlement waits ``delay`` seconds before it is sent;
- ``answer_lost``: the settlement is sent and commits, then its answer is lost, so the
  sale's outcome is unknown while the customer waits (the agent answers take cash and
  reverses it later);
- ``none``: clears the fault.

``times`` bounds how many calls a fault hits (None: until cleared).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from pos_plugin.ledger.errors import LedgerUnavailable, OutcomeUnknown
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.schemas import (
    Credential,
    ReversalResult,
    Settlement,
    SettlementRequest,
)
from pos_plugin.models import PersonLookup

FaultKind = Literal["none", "down", "slow", "answer_lost"]


@dataclass
class Fault:
    kind: FaultKind = "none"
    times: int | None = None
    delay: float = 0.0


class FaultyLedgerClient(HttpLedgerClient):
    """Our ledger client with one switchable fault in front of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fault = Fault()
        self._lock = threading.Lock()

    def set_fault(self, kind: FaultKind, times: int | None = None, delay: float = 0.0) -> Fault:
        with self._lock:
            self._fault = Fault(kind, times, delay)
            return self._fault

    @property
    def fault(self) -> Fault:
        return self._fault

    def _take(self, *kinds: FaultKind) -> Fault | None:
        """The fault for this call, if it applies (and one of its ``times`` used up)."""
        with self._lock:
            f = self._fault
            if f.kind not in kinds or f.times == 0:
                return None
            if f.times is not None:
                f.times -= 1
            return Fault(f.kind, f.times, f.delay)

    def _down(self) -> None:
        if self._take("down") is not None:
            raise LedgerUnavailable(
                "simulated fault: the ledger is down (connection refused)", status=None
            )

    def lookup(self, credential: Credential) -> PersonLookup:
        self._down()
        return super().lookup(credential)

    def settle(self, request: SettlementRequest) -> Settlement:
        fault = self._take("down", "slow", "answer_lost")
        if fault is not None and fault.kind == "down":
            raise LedgerUnavailable("simulated fault: the ledger is down (connection refused)")
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        settled = super().settle(request)
        if fault is not None and fault.kind == "answer_lost":
            raise OutcomeUnknown(
                "simulated fault: the settlement's answer was lost", msgid=request.msgid
            )
        return settled

    def get_settlement(self, msgid: str) -> Settlement | None:
        self._down()
        return super().get_settlement(msgid)

    def void_settlement(self, msgid: str, *, psn_no: str | None = None) -> Settlement | None:
        self._down()
        return super().void_settlement(msgid, psn_no=psn_no)

    def reverse(
        self,
        settlement_id: str,
        msgid: str,
        reason: str = "",
        *,
        terminal_id: str | None = None,
        operator: str | None = None,
        psn_no: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> ReversalResult:
        self._down()
        return super().reverse(
            settlement_id,
            msgid,
            reason,
            terminal_id=terminal_id,
            operator=operator,
            psn_no=psn_no,
            detail=detail,
        )
