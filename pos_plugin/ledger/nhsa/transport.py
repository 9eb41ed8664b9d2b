"""One POST of one envelope to exactly the configured URL, and what its failure means.

Why the classification matters: the platform offers no query by msgid, so after a
2102 the client must know whether the request can have reached it.
- ``NotSent``: it certainly did not (connection refused, connect timeout, name
  resolution): nothing was committed.
- ``Unknown``: it may have (read timeout, reset after sending, a 5xx from the platform
  or a proxy): the outcome is unknown; a 2102 is then never sent again (2601 settles it).
- a gateway's 4xx (401 bad signature, 404 wrong path): refused before the platform,
  so nothing was committed: a ``LedgerError``.
- ``Unreadable``: an HTTP 200 whose body is no envelope: it came from the platform,
  but what it says cannot be known.
Nothing here logs a body: inputs and answers carry ID numbers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.signers import Signer

log = logging.getLogger("pos_plugin.ledger.nhsa")


class NotSent(Exception):
    """The request cannot have reached the platform."""


class Unknown(Exception):
    """The request may have reached the platform; no answer came back."""


class Unreadable(Exception):
    """An answer came back that is not an envelope we can read."""


_NOT_SENT_MARKS = ("NewConnectionError", "ConnectTimeoutError", "NameResolutionError",
                   "Connection refused", "Failed to resolve")  # fmt: skip


def _nothing_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        text = repr(exc.args[0] if exc.args else exc)
        return any(mark in text for mark in _NOT_SENT_MARKS)
    return False


class Transport:
    """POSTs envelopes to ``url`` with the signer's headers and explicit timeouts."""

    def __init__(
        self,
        url: str,
        signer: Signer,
        *,
        timeouts: tuple[float, float],
        content_type: str = "application/json",
        session: requests.Session | None = None,
    ) -> None:
        self.url = url  # exactly as configured: no path is added
        self.signer = signer
        self.timeouts = timeouts
        self.content_type = content_type
        self.session = session or requests.Session()
        # Proxies come from our config, not the environment (as the own-API client).
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def post(
        self, infno: str, envelope: dict[str, object], *, upload: tuple[str, bytes] | None = None
    ) -> env.Answer:
        """Send once; return the parsed answer or raise (module docstring).

        ``upload`` (filename, bytes): a multipart 9101 (``jsonStr`` = the envelope,
        ``file`` = the ZIP; the signature is over the envelope). An
        ``application/octet-stream`` answer (9102's file) is returned as ``content``."""
        body = env.encode(envelope)
        headers = {
            "Content-Type": self.content_type,
            "Accept": "application/json",
            "User-Agent": "pos-plugin-nhsa-client/1",
            **self.signer.headers(infno, body),
        }
        msgid = envelope.get("msgid")
        started = time.perf_counter()
        kw: dict[str, Any] = {"data": body}
        if upload is not None:
            del headers["Content-Type"]  # requests writes the multipart boundary
            kw = {"data": {"jsonStr": body.decode("utf-8")},
                  "files": {"file": (upload[0], upload[1], "application/zip")}}
        try:
            resp = self.session.post(
                self.url, headers=headers, timeout=self.timeouts, allow_redirects=False, **kw
            )  # fmt: skip
        except requests.RequestException as exc:
            kind = "not sent" if _nothing_sent(exc) else "outcome unknown"
            log.warning("nhsa %s msgid=%s: %s (%s)", infno, msgid, kind, type(exc).__name__)
            if _nothing_sent(exc):
                raise NotSent(f"{type(exc).__name__}: {exc}") from exc
            raise Unknown(f"{type(exc).__name__}: {exc}") from exc
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status_code >= 500:
            log.warning("nhsa %s msgid=%s: HTTP %d after %.0f ms", infno, msgid,
                        resp.status_code, elapsed)  # fmt: skip
            raise Unknown(f"HTTP {resp.status_code} from the platform")
        if resp.status_code in (401, 403):
            raise e.Unauthorised(
                f"平台网关拒绝了签名或密钥 / the platform's gateway refused our signature or "
                f"key (HTTP {resp.status_code}): check the nhsa signer and its keyring secrets",
                status=resp.status_code,
            )
        if resp.status_code != 200:
            raise e.LedgerError(
                f"平台网关拒绝了请求 / the platform's gateway refused the request (HTTP "
                f"{resp.status_code}): check the nhsa URL",
                code=f"http_{resp.status_code}", status=resp.status_code,
            )  # fmt: skip
        media = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media in ("application/octet-stream", "application/zip"):
            log.info("nhsa %s msgid=%s: a file of %d bytes in %.0f ms", infno, msgid,
                     len(resp.content), elapsed)  # fmt: skip
            return env.Answer(infcode=0, content=resp.content)
        try:
            answer = env.parse(resp.content)
        except env.AnswerError as exc:
            log.warning("nhsa %s msgid=%s: unreadable answer (%s)", infno, msgid, exc)
            raise Unreadable(str(exc)) from exc
        log.info("nhsa %s msgid=%s: infcode %d in %.0f ms", infno, msgid, answer.infcode, elapsed)
        return answer
