"""The platform session: 9001 before the first business call of a China day, the same
``sign_no`` in every envelope, one re-sign on a sign-in error, 9002 at close.

Why one place: every call needs the sign_no, and a sign-in that expired (the platform
restarted, the day turned) shows up as an ``infcode -1`` on whatever call comes next.
Re-signing and re-sending once is safe even for a 2102: the platform *answered*, so it
refused that request and committed nothing. One sign-in per client and day, as the
settings' operator (``signIn.opter_no``); its sign_no goes in every envelope, whichever
operator the envelope names (the plan's "sign_no reused in every envelope").

Also here: the retry policy. A call marked ``safe`` (1101, 2101, 2601, 9001, 9002
change nothing, or nothing twice) is re-sent with backoff after a transport failure;
any other (2102, 2103) is sent exactly once, and an answer that never came becomes
``OutcomeUnknown`` for the caller to settle by 2601 or a later retry.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.refusals import is_sign_in_error, refusal
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.ledger.nhsa.transport import NotSent, Transport, Unknown, Unreadable

log = logging.getLogger("pos_plugin.ledger.nhsa")


class ControlMsgids:
    """Msgids for the calls the journal does not number (9001, 1101, 2101, 2601, 9002).

    fixmedins_code (12) + yyyyMMddHHmmss + ``digit`` + a 3-digit counter within the
    second. The journal's msgids put the till's index (0-9) in that first sequence
    digit, so with ``digit`` a till index no till uses (default 9) the two can never
    meet. The counter never repeats within the process: past 999 in one second, or if
    the clock goes back, it continues from the last stamp issued.
    """

    def __init__(
        self, fixmedins_code: str, digit: int = 9, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.prefix, self.digit = fixmedins_code, digit
        self._clock = clock or (lambda: dt.datetime.now(env.CHINA))
        self._lock = threading.Lock()
        self._stamp, self._seq = "", -1

    def __call__(self) -> str:
        with self._lock:
            stamp = self._clock().astimezone(env.CHINA).strftime("%Y%m%d%H%M%S")
            if stamp > self._stamp:
                self._stamp, self._seq = stamp, 0
            else:
                self._seq += 1
                if self._seq > 999:
                    nxt = dt.datetime.strptime(self._stamp, "%Y%m%d%H%M%S") + dt.timedelta(seconds=1)
                    self._stamp, self._seq = nxt.strftime("%Y%m%d%H%M%S"), 0
            return f"{self.prefix}{self._stamp}{self.digit}{self._seq:03d}"


def _local_mac() -> str:
    node = uuid.getnode()
    return "-".join(f"{(node >> s) & 0xFF:02X}" for s in range(40, -1, -8))


def _local_ip(url: str) -> str:
    """The address this machine uses towards the platform (UDP connect sends nothing)."""
    host = urlsplit(url).hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


@dataclass
class _SignIn:
    day: dt.date
    sign_no: str


class PlatformSession:
    """Sends business calls inside a valid sign-in (module docstring)."""

    def __init__(
        self,
        transport: Transport,
        settings: NhsaSettings,
        *,
        msgids: Callable[[], str],
        clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.transport, self.settings, self.msgids = transport, settings, msgids
        self.clock = clock or (lambda: dt.datetime.now(env.CHINA))
        self._sleep = sleep
        self._lock = threading.Lock()
        self._signed: _SignIn | None = None
        self.posts: dict[str, int] = {}  # infno -> POSTs sent (tests, the benchmark)

    # ------------------------------------------------------------------ sending
    def _post(
        self, infno: str, envelope: dict[str, Any], *, safe: bool,
        upload: tuple[str, bytes] | None = None,
    ) -> env.Answer:
        """POST, retried with backoff only when ``safe``; transport faults as ledger errors."""
        attempts = self.settings.retries + 1 if safe else 1
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                cap = self.settings.backoff_base * 2**attempt
                self._sleep(random.uniform(0, cap))
            self.posts[infno] = self.posts.get(infno, 0) + 1
            try:
                if upload is not None:
                    return self.transport.post(infno, envelope, upload=upload)
                return self.transport.post(infno, envelope)
            except (NotSent, Unknown) as exc:
                last = exc
                if not safe and isinstance(exc, Unknown):
                    raise e.OutcomeUnknown(
                        f"医保平台未应答，结果未知 / the platform did not answer {infno} "
                        f"msgid {envelope['msgid']} ({exc}); do NOT send it again: it is "
                        "settled by 2601 or reconciliation",
                        msgid=str(envelope["msgid"]),
                    ) from None
            except Unreadable as exc:
                raise e.LedgerError(
                    f"医保平台的应答无法识别 / the platform's answer to {infno} cannot be "
                    f"read ({exc})",
                    code="bad_response",
                ) from None
        raise e.LedgerUnavailable(
            f"医保平台暂时无法连接 / the insurance platform cannot be reached ({last}); "
            f"nothing was done by {infno}"
        )

    def _sign_in(self, opter: str) -> str:
        data = {
            "signIn": {
                "opter_no": opter[:20],
                "mac": self.settings.sign_in_mac or _local_mac(),
                "ip": self.settings.sign_in_ip or _local_ip(self.transport.url),
            }
        }
        envelope = env.build("9001", self.msgids(), data, settings=self.settings,
                             opter=opter, now=self.clock())  # fmt: skip
        answer = self._post("9001", envelope, safe=True)
        if not answer.ok:
            raise refusal("9001", answer.err_msg)
        node = answer.node("signinoutb")
        sign_no = env.text(node, "sign_no") or env.text(answer.output, "sign_no")
        if not sign_no:
            raise e.LedgerError("the platform's 9001 answer has no sign_no", code="bad_response")
        log.info("nhsa: signed in as operator %s", opter)
        return sign_no

    def sign_no(self, *, renew: bool = False) -> str:
        """Today's sign_no, signing in first when there is none (or ``renew``)."""
        today = self.clock().astimezone(env.CHINA).date()
        with self._lock:
            if self._signed is None or self._signed.day != today or renew:
                self._signed = _SignIn(today, self._sign_in(self.settings.opter))
            return self._signed.sign_no

    def call(
        self,
        infno: str,
        data: Mapping[str, Any],
        *,
        opter: str,
        safe: bool,
        msgid: str | None = None,
        insuplc_admdvs: str = "",
        upload: tuple[str, bytes] | None = None,
    ) -> env.Answer:
        """One business call: signed in, re-signed once on a sign-in error; ``infcode``
        non-zero raised as the typed refusal. ``upload``: a multipart 9101's file."""
        msgid = msgid or self.msgids()
        answer: env.Answer | None = None
        for renew in (False, True):
            envelope = env.build(
                infno, msgid, data, settings=self.settings, opter=opter,
                sign_no=self.sign_no(renew=renew), insuplc_admdvs=insuplc_admdvs,
                now=self.clock(),
            )  # fmt: skip
            answer = self._post(infno, envelope, safe=safe, upload=upload)
            if answer.ok or not is_sign_in_error(answer.err_msg):
                break
            log.warning("nhsa %s msgid=%s: sign-in refused, signing in again", infno, msgid)
        assert answer is not None
        if not answer.ok:
            raise refusal(infno, answer.err_msg)
        return answer

    def close(self) -> None:
        """9002 if signed in today; failures logged, never raised (this runs at shutdown)."""
        with self._lock:
            signed, self._signed = self._signed, None
        if signed is None or signed.day != self.clock().astimezone(env.CHINA).date():
            return  # 当天有签到信息才可以签退
        opter = self.settings.opter
        data = {"signOut": {"sign_no": signed.sign_no, "opter_no": opter[:20]}}
        envelope = env.build("9002", self.msgids(), data, settings=self.settings,
                             opter=opter, sign_no=signed.sign_no, now=self.clock())  # fmt: skip
        try:
            answer = self._post("9002", envelope, safe=True)
            if not answer.ok:
                log.warning("nhsa 9002 refused: %s", refusal("9002", answer.err_msg).message)
        except e.LedgerError as exc:
            log.warning("nhsa 9002 failed: %s", exc.message)
