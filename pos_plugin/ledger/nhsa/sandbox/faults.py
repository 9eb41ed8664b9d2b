"""Fault hooks: what a real platform does to a till on a bad day, on demand, for tests.

Each hook arms a one-shot (or N-shot) fault for one transaction code (``infno``);
the HTTP layer consumes it when a call of that infno arrives. Why in the server
and not only in a TCP proxy: some faults need the platform's cooperation, such as
losing the answer *after* the 2102 committed, or breaking the §2 invariants of an
answer that is otherwise real.

- ``lose_answer(infno, mode="close"|"hang", seconds=...)``: process the call (commit),
  then close the connection without a byte of the answer, or hold the answer for
  ``seconds`` (past the client's read timeout).
- ``fail_next(infno, err_msg)``: answer ``infcode -1`` with ``err_msg``; nothing done.
- ``delay(infno, seconds)``: wait ``seconds`` before processing (the call commits late).
- ``expire_sign_in()``: every sign-in so far stops being valid (the next business call
  is answered 未签到, as after the platform's session timeout).
- ``break_invariants(which)``: the next 2102 commits, but its answer breaks one §2
  invariant (``psn_part_amt``, ``medfee_sumamt`` or ``acct_mulaid_pay``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

LoseMode = Literal["close", "hang"]
Broken = Literal["psn_part_amt", "medfee_sumamt", "acct_mulaid_pay"]


@dataclass
class Armed:
    """One armed fault: what to do, how many more times."""

    kind: str
    infno: str
    times: int = 1
    err_msg: str = ""
    seconds: float = 0.0
    mode: LoseMode = "close"
    which: Broken = "psn_part_amt"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "infno": self.infno, "times": self.times,
                "err_msg": self.err_msg, "seconds": self.seconds, "mode": self.mode,
                "which": self.which}


@dataclass
class Faults:
    """The armed faults of one server; thread-safe (tests arm them from another thread)."""

    _armed: list[Armed] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    expire_requests: int = 0  # bumped by expire_sign_in; the platform applies it
    # Every envelope's infno as it arrived, in order: which calls a sale costs.
    calls: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ arming
    def lose_answer(self, infno: str, mode: LoseMode = "close", seconds: float = 30.0,
                    times: int = 1) -> None:
        self._arm(Armed("lose_answer", infno, times, mode=mode, seconds=seconds))

    def fail_next(self, infno: str, err_msg: str, times: int = 1) -> None:
        self._arm(Armed("fail", infno, times, err_msg=err_msg))

    def delay(self, infno: str, seconds: float, times: int = 1) -> None:
        self._arm(Armed("delay", infno, times, seconds=seconds))

    def break_invariants(self, which: Broken = "psn_part_amt", times: int = 1) -> None:
        self._arm(Armed("break_invariants", "2102", times, which=which))

    def expire_sign_in(self) -> None:
        with self._lock:
            self.expire_requests += 1

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.describe() for a in self._armed]

    def _arm(self, fault: Armed) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._armed.append(fault)

    # ------------------------------------------------------------------ consuming
    def take(self, kind: str, infno: str) -> Armed | None:
        """The first armed fault of this kind for this infno, counted down (None if none)."""
        with self._lock:
            for a in self._armed:
                if a.kind == kind and a.infno == infno:
                    a.times -= 1
                    if a.times == 0:
                        self._armed.remove(a)
                    return a
        return None

    def take_expiry(self) -> int:
        """How many expiry requests arrived since the last call (and forget them)."""
        with self._lock:
            n, self.expire_requests = self.expire_requests, 0
        return n

    def arm_from_json(self, body: dict[str, Any]) -> None:
        """``POST /_sandbox/faults``: ``{"kind": ..., ...}`` with the hook's arguments."""
        kind = body.get("kind")
        times = int(body.get("times", 1))
        infno = str(body.get("infno", ""))
        if kind in ("lose_answer", "fail", "delay") and not (len(infno) == 4 and infno.isdigit()):
            raise ValueError("infno must be a 4-digit transaction code")
        if kind == "lose_answer":
            mode = body.get("mode", "close")
            if mode not in ("close", "hang"):
                raise ValueError("mode must be close or hang")
            self.lose_answer(infno, mode, float(body.get("seconds", 30.0)), times)
        elif kind == "fail":
            self.fail_next(infno, str(body.get("err_msg", "")), times)
        elif kind == "delay":
            self.delay(infno, float(body.get("seconds", 0)), times)
        elif kind == "break_invariants":
            which = body.get("which", "psn_part_amt")
            if which not in ("psn_part_amt", "medfee_sumamt", "acct_mulaid_pay"):
                raise ValueError("which must be psn_part_amt, medfee_sumamt or acct_mulaid_pay")
            self.break_invariants(which, times)
        elif kind == "expire_sign_in":
            self.expire_sign_in()
        elif kind == "clear":
            self.clear()
        else:
            raise ValueError(
                "kind must be lose_answer, fail, delay, break_invariants, expire_sign_in or clear"
            )
