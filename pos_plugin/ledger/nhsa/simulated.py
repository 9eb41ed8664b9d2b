"""Fault injection for integrators on the national backend (``serve --simulate
--ledger-kind nhsa``): ``POST /v1/simulator/faults`` as on our own ledger.

Why: a POS vendor integrating against the national interface must see its till reach
``failed``, a slow settlement and ``unknown`` without a proxy of its own, and the
national flow after an unknown 2102 is not our own ledger's (one 2601, never a
re-sent 2102: docs/nhsa.md). So the faults are made where they happen:

- ``slow`` and ``answer_lost`` are armed in the embedded reference platform's own
  hooks (``ledger/nhsa/sandbox/faults.py``): the platform waits ``delay`` seconds
  before processing each 2102 (past the client's ``read_timeout`` the outcome is
  unknown, as with a real platform), or commits the 2102 and closes the connection
  without a byte of the answer. Everything after (the client's classification, the
  journal, the owed 2601, recovery) is the real code.
- ``down`` is a refused connection, which no listening server can produce: it is
  raised here, before anything is sent (``LedgerUnavailable``, nothing charged), for
  every ledger call while it lasts, as ``ledger/own/faults.py`` does.
- ``none`` clears both (and whatever else was armed in the platform).

``times``: how many 2102s (``slow``, ``answer_lost``) or ledger calls (``down``) the
fault hits; None: until cleared.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from pos_plugin.ledger.errors import LedgerUnavailable
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.own.faults import Fault, FaultKind
from pos_plugin.ledger.own.schemas import (
    Credential,
    ReversalResult,
    Settlement,
    SettlementRequest,
)
from pos_plugin.models import PersonLookup

UNTIL_CLEARED = 1_000_000  # the platform's hooks count down; "until none" is this many


class PlatformHooks(Protocol):
    """What is used of the reference platform's ``Faults`` (no import: a reference must
    not share code with the client it checks, nor the client with it)."""

    def lose_answer(
        self, infno: str, mode: Any = ..., seconds: float = ..., times: int = ...
    ) -> None: ...
    def delay(self, infno: str, seconds: float, times: int = ...) -> None: ...
    def clear(self) -> None: ...


class SimulatedNhsaLedgerClient(NhsaLedgerClient):
    """The national client with the simulator's faults: ``down`` here, the rest in the
    embedded platform (module docstring)."""

    def __init__(self, *args: Any, platform_faults: PlatformHooks, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._platform_faults = platform_faults
        self._fault = Fault()
        self._down_left: int | None = 0
        self._lock = threading.Lock()

    def set_fault(self, kind: FaultKind, times: int | None = None, delay: float = 0.0) -> Fault:
        with self._lock:
            self._platform_faults.clear()
            self._down_left = 0
            count = UNTIL_CLEARED if times is None else times
            if kind == "down":
                self._down_left = times
            elif kind == "slow":
                self._platform_faults.delay("2102", delay, times=count)
            elif kind == "answer_lost":
                self._platform_faults.lose_answer("2102", "close", times=count)
            self._fault = Fault(kind, times, delay)
            return self._fault

    @property
    def fault(self) -> Fault:
        return self._fault

    def _down(self) -> None:
        with self._lock:
            if self._fault.kind != "down" or self._down_left == 0:
                return
            if self._down_left is not None:
                self._down_left -= 1
        raise LedgerUnavailable(
            "simulated fault: the national platform cannot be reached (connection refused); "
            "nothing was sent",
            status=None,
        )

    def lookup(self, credential: Credential) -> PersonLookup:
        self._down()
        return super().lookup(credential)

    def settle(self, request: SettlementRequest) -> Settlement:
        self._down()
        return super().settle(request)

    def get_settlement(self, msgid: str) -> Settlement | None:
        self._down()
        return super().get_settlement(msgid)

    def void_settlement(
        self, msgid: str, *, psn_no: str | None = None, insuplc_admdvs: str | None = None
    ) -> Settlement | None:
        self._down()
        return super().void_settlement(msgid, psn_no=psn_no, insuplc_admdvs=insuplc_admdvs)

    def reverse(
        self,
        settlement_id: str,
        msgid: str,
        reason: str = "",
        *,
        psn_no: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> ReversalResult:
        self._down()
        return super().reverse(settlement_id, msgid, reason, psn_no=psn_no, detail=detail)
