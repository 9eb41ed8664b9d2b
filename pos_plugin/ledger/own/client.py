"""Our own ledger API's HTTP client (``pos_plugin.ledger.backend.LedgerClient``), settling exactly once.

Exactly once = at-least-once delivery + the ledger's idempotency on msgid.
Retries are only made where they are safe:
- lookups and GETs change nothing;
- settle / reverse carry ``Idempotency-Key: <msgid>``: the ledger replays the
  first answer for the same request, so re-sending can never move money twice.
When a request may have reached the ledger but no answer came back (read
timeout, reset, a 502/503/504 from a proxy), the outcome is *unknown*: we ask
``GET /v1/settlements/{msgid}`` (never a new msgid) and, if it is not there,
re-send the same request. If the ledger stays unreachable we raise
``OutcomeUnknown`` (the journal keeps the row in ``settling`` and resolves it
later); ``LedgerUnavailable`` is reserved for "we know nothing was committed".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import certifi
import msgspec
import urllib3
from pydantic import BaseModel, ValidationError
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError, NewConnectionError

from pos_plugin.gcpause import gc_paused
from pos_plugin.ledger import errors as e
from pos_plugin.ledger.own.schemas import (
    COMPACT_COLUMNS,
    CompactRow,
    CompactStatement,
    CompactStatementPage,
    Credential,
    ReversalResult,
    Settlement,
    SettlementRequest,
    Statement,
    StatementTotals,
    VoidResult,
    compact_row,
    decode_compact_page,
)
from pos_plugin.models import PersonLookup

log = logging.getLogger("pos_plugin.ledger")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", Statement, Statement | CompactStatementPage)
STATEMENT_PAGE_SIZE = 10_000  # the sandbox's maximum (docs/ledger-api.md)
STATEMENT_PAGE_FALLBACK = (1_000, 200)  # for a ledger that caps page_size lower
_HAND_OVER = 0.002  # s: lets the look-ahead request leave before a page is parsed
_UNKNOWN_STATUS = frozenset({502, 503, 504})
# As requests configures urllib3: no retry of its own (we decide what is safe to
# re-send), a dropped keep-alive connection is replaced before the request is sent.
_NO_RETRIES = urllib3.Retry(0, read=False)


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY etc.), honouring NO_PROXY."""
    from urllib.request import getproxies, proxy_bypass

    host = urlsplit(url).hostname or ""
    if proxy_bypass(host):
        return None
    return getproxies().get(urlsplit(url).scheme)


class _Unknown(Exception):
    """Internal: this attempt may or may not have reached the ledger."""


class _NotSent(Exception):
    """Internal: this attempt certainly did not reach the ledger."""


@dataclass(frozen=True)
class Answer:
    """One answer from the ledger, read whole."""

    path_url: str  # what was asked: path and query
    status_code: int
    reason: str
    content: bytes
    headers: urllib3.HTTPHeaderDict

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def next_link(self) -> str:
        """The target of ``Link: <...>; rel="next"`` (RFC 8288), or ""."""
        for target, params in _LINK.findall(self.headers.get("Link", "")):
            if re.search(r'rel="?next"?(;|$)', params.strip()):
                return str(target)
        return ""


_LINK = re.compile(r"<([^>]*)>([^,]*)")


def _nothing_sent(exc: HTTPError) -> bool:
    """True when the request cannot have reached the server (connect failed)."""
    reason = exc.reason if isinstance(exc, MaxRetryError) else exc
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


_ERRORS: dict[str, type[e.LedgerError]] = {
    "idempotency_key_reused": e.IdempotencyConflict,
    "unauthorised": e.Unauthorised,
    "forbidden": e.Unauthorised,
    "pharmacy_mismatch": e.Unauthorised,
    "binding_not_allowed": e.BindingNotAllowed,
    "credential_not_patients_own": e.CardRefused,
    "card_lost": e.CardRefused,
    "card_expired": e.CardRefused,
    "credential_not_found": e.NotFound,
    "settlement_not_found": e.NotFound,
    "reversal_not_found": e.NotFound,
    "not_found": e.NotFound,
    "already_reversed": e.AlreadyReversed,
    "msgid_voided": e.MsgidVoided,
    "invalid_request": e.InvalidRequest,
}


def _code(resp: Answer) -> str:
    """The error code of an answer, or "" when it is not our JSON (a proxy's HTML page)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("code") or "") if isinstance(body, dict) else ""


def _step(query: dict[str, Any], next_page: int, next_after: int | None) -> None:
    """Move ``query`` to the next page; a page or cursor that does not move forward is a
    ledger fault (following it would read rows twice, or forever)."""
    if next_page <= query["page"] or (
        next_after is not None and "after" in query and next_after <= query["after"]
    ):
        raise e.LedgerError(
            f"the ledger's statement does not move forward (page {query['page']} -> "
            f"{next_page}, after {query.get('after')} -> {next_after}); ask the centre",
            code="bad_response",
        )
    query["page"] = next_page
    if next_after is not None:
        query["after"] = next_after
    else:  # a ledger without the cursor: page numbers only
        query.pop("after", None)


def _same_query(link: str, query: dict[str, Any]) -> bool:
    """A ``Link`` target is used only when it asks for exactly the page we would ask for
    (same page, cursor, size, till and format): else it is ignored, never trusted."""
    got = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items() if len(v) == 1}
    return got == {k: str(v) for k, v in query.items()}


class HttpLedgerClient:
    """``LedgerClient`` over HTTPS (plain HTTP on loopback for the sandbox)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        retries: int = 3,
        ca_bundle: str | None = None,
        backoff_base: float = 0.2,
        backoff_cap: float = 3.0,
        sleep: Callable[[float], None] = time.sleep,
        trust_env: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.statement_page_size = STATEMENT_PAGE_SIZE  # lowered once if the ledger caps it
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.retries = max(0, retries)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._sleep = sleep
        # urllib3 (what requests is built on) without requests' per-request layers
        # (cookies, hooks, settings merges): 0.2 ms of CPU per round trip, not 0.5.
        # TLS verification always on; the CA bundle and any proxy come from our config,
        # or with trust_env from the environment.
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_bundle or certifi.where()}
        proxy = _env_proxy(self.base_url) if trust_env else None
        self.pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, maxsize=4, **tls)
            if proxy
            else urllib3.PoolManager(maxsize=4, **tls)
        )
        # Requests go to the ledger host's own pool: the PoolManager would parse the URL
        # and look that pool up on every request (0.07 ms of CPU per round trip). Not
        # through a forwarding proxy (plain http), which needs the manager's absolute URLs.
        where = urlsplit(self.base_url)
        self._host: urllib3.HTTPConnectionPool | None = (
            None if proxy and where.scheme == "http" else self.pool.connection_from_url(self.base_url)
        )
        self._prefix = where.path  # a ledger API below a path: https://host/ledger
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                        "User-Agent": "pos-plugin-ledger-client/1"}  # fmt: skip
        # Called with every answer (tests and benchmarks watch the traffic here).
        self.on_answer: list[Callable[[Answer], None]] = []

    def close(self) -> None:
        self.pool.clear()

    # ------------------------------------------------------------------ transport
    def _backoff(self, attempt: int) -> None:
        """Exponential backoff with full jitter (no thundering herd of tills)."""
        if attempt > 0:
            self._sleep(random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt)))

    def _send(
        self,
        method: str,
        path: str,
        *,
        payload: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One attempt; classifies transport failures as not-sent or unknown."""
        path_url = path + (f"?{urlencode(params)}" if params else "")
        head = {**self.headers, **(headers or {})}
        body = None
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            head["Content-Type"] = "application/json"
        try:
            if self._host is not None:
                raw = self._host.urlopen(
                    method, self._prefix + path_url, body=body, headers=head,
                    timeout=self.timeout, retries=_NO_RETRIES, redirect=False,
                )  # fmt: skip
            else:
                raw = self.pool.request(
                    method, self.base_url + path_url, body=body, headers=head,
                    timeout=self.timeout, retries=_NO_RETRIES, redirect=False,
                )  # fmt: skip
        except HTTPError as exc:
            if _nothing_sent(exc):
                raise _NotSent(str(exc)) from exc
            raise _Unknown(str(exc)) from exc
        resp = Answer(path_url, raw.status, raw.reason or "", raw.data, raw.headers)
        for watch in self.on_answer:
            watch(resp)
        if resp.status_code in _UNKNOWN_STATUS:
            raise _Unknown(f"HTTP {resp.status_code} from {path}")
        return resp

    def _safe(self, method: str, path: str, **kw: Any) -> Answer:
        """A request that changes nothing, retried with backoff on any transport failure."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            self._backoff(attempt)
            try:
                return self._send(method, path, **kw)
            except (_NotSent, _Unknown) as exc:
                last = exc
                log.warning("ledger %s %s failed (attempt %d): %s", method, path, attempt + 1, exc)
        raise e.LedgerUnavailable(
            f"the central ledger did not answer ({last}); check the network and retry"
        )

    @staticmethod
    def _error(resp: Answer) -> e.LedgerError:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("code") or f"http_{resp.status_code}")
        msg = str(body.get("message") or resp.reason or "ledger error")
        kw: dict[str, Any] = {"code": code, "status": resp.status_code, "body": body}
        if code == "insufficient_funds":
            lookup = None
            if isinstance(body.get("lookup"), dict):
                try:
                    lookup = PersonLookup.model_validate(body["lookup"])
                except ValidationError:
                    lookup = None
            fresh = {str(k): int(v) for k, v in (body.get("balances") or {}).items()}
            return e.InsufficientFunds(msg, fresh=fresh, lookup=lookup, **kw)
        if code == "invalid_request" or resp.status_code == 422:
            return e.InvalidRequest(msg, field=body.get("field"), **kw)
        cls = _ERRORS.get(code)
        if cls is None:
            cls = {401: e.Unauthorised, 403: e.Unauthorised, 404: e.NotFound}.get(
                resp.status_code, e.LedgerError
            )
        return cls(msg, **kw)

    @classmethod
    def _parse(cls, resp: Answer, model: type[T], ok: tuple[int, ...]) -> T:
        if resp.status_code not in ok:
            raise cls._error(resp)
        try:
            return model.model_validate_json(resp.content)  # type: ignore[attr-defined,no-any-return]
        except ValidationError as exc:
            raise e.LedgerError(f"the ledger sent an answer we cannot read: {exc}",
                                code="bad_response", status=resp.status_code) from exc

    # ------------------------------------------------------------------ reads
    def lookup(self, credential: Credential) -> PersonLookup:
        resp = self._safe("POST", "/v1/persons/lookup", payload={"credential": credential.wire()})
        return self._parse(resp, PersonLookup, (200,))

    def get_settlement(self, msgid: str) -> Settlement | None:
        resp = self._safe("GET", f"/v1/settlements/{msgid}")
        if resp.status_code == 404 and _code(resp) == "settlement_not_found":
            return None
        return self._parse(resp, Settlement, (200,))

    def void_settlement(self, msgid: str, *, psn_no: str | None = None) -> Settlement | None:
        """Make the msgid's outcome final: None = voided (never charged, never will be),
        else the settlement that had committed first. Idempotent, so retried like a read.

        A ledger without the endpoint (404 ``not_found`` / 405) raises ``VoidUnsupported``:
        the caller then keeps the outcome unknown rather than guess.
        """
        resp = self._safe("POST", f"/v1/settlements/{msgid}/void")
        if resp.status_code in (404, 405) and _code(resp) in ("", "not_found", "method_not_allowed"):
            raise e.VoidUnsupported(
                "the ledger cannot void a msgid (an older ledger API): the outcome stays "
                "unknown until reconciliation settles it", status=resp.status_code
            )
        found = self._parse(resp, VoidResult, (200,))
        if found.status == "settled" and found.settlement is None:
            raise e.LedgerError(f"the ledger says msgid {msgid} settled but sent no settlement",
                                code="bad_response", status=resp.status_code)
        return found.settlement

    def get_reversal(self, msgid: str) -> ReversalResult | None:
        resp = self._safe("GET", f"/v1/reversals/{msgid}")
        if resp.status_code == 404 and _code(resp) == "reversal_not_found":
            return None
        return self._parse(resp, ReversalResult, (200,))

    def statement(
        self, pharmacy_code: str, date: dt.date, terminal_id: str | None = None
    ) -> Statement:
        """The whole day as ``Statement`` models: follows every page; totals from the last page.

        Pages of up to ``STATEMENT_PAGE_SIZE`` rows followed by the keyset cursor
        (``after`` / ``next_after``); a ledger that does not send the cursor is followed
        by ``next_page``. Each page is parsed from the raw bytes in one pass.
        """
        rows: list[Any] = []

        def parse(body: bytes, status: int) -> Statement:
            page = self._validate(Statement, body, status)
            rows.extend(page.rows)
            return page

        last = self._statement_pages(pharmacy_code, date, terminal_id, {}, parse)
        return last.model_copy(
            update={"rows": tuple(rows), "page": 1, "next_page": None, "next_after": None}
        )

    def statement_compact(
        self, pharmacy_code: str, date: dt.date, terminal_id: str | None = None
    ) -> CompactStatement:
        """The whole day with rows as tuples (``format=compact``): what reconciliation reads.

        Half the bytes of the full format, validated by pydantic-core straight into
        tuples (no model object per row). A ledger that does not know ``format=compact``
        ignores it and answers the full format: those pages are read as ``Statement``
        and turned into the same tuples, so the caller never sees the difference.
        """
        rows: list[CompactRow] = []
        last = self._compact_pages(pharmacy_code, date, terminal_id, rows.extend)
        return CompactStatement(last.pharmacy_code, last.date, last.terminal_id, last.totals, rows)

    def statement_compact_pages(
        self,
        pharmacy_code: str,
        date: dt.date,
        on_rows: Callable[[Sequence[CompactRow]], None],
        terminal_id: str | None = None,
    ) -> StatementTotals:
        """``statement_compact`` a page at a time: each page's rows go to ``on_rows`` as
        they are read and are not kept here, so a day of any size is read in the memory
        of a page or two. Returns the day's totals (from the last page)."""
        return self._compact_pages(pharmacy_code, date, terminal_id, on_rows).totals

    def _compact_pages(
        self,
        pharmacy_code: str,
        date: dt.date,
        terminal_id: str | None,
        on_rows: Callable[[Sequence[CompactRow]], None],
    ) -> Statement | CompactStatementPage:
        def parse(body: bytes, status: int) -> Statement | CompactStatementPage:
            if b'"columns"' in body[:2048]:  # compact pages carry columns before the rows
                try:
                    page = decode_compact_page(body)
                except msgspec.DecodeError as exc:
                    raise self._unreadable(exc, status) from exc
                if page.columns != COMPACT_COLUMNS:
                    raise e.LedgerError(
                        f"the ledger's compact statement has columns {list(page.columns)}, "
                        f"not {list(COMPACT_COLUMNS)}",
                        code="bad_response", status=status,
                    )  # fmt: skip
                on_rows(page.rows)
                return page
            full = self._validate(Statement, body, status)  # a ledger that predates compact
            on_rows([compact_row(r) for r in full.rows])
            return full

        return self._statement_pages(pharmacy_code, date, terminal_id, {"format": "compact"}, parse)

    def _statement_pages(
        self,
        pharmacy_code: str,
        date: dt.date,
        terminal_id: str | None,
        params: dict[str, Any],
        parse: Callable[[bytes, int], P],
    ) -> P:
        """Follow a day's pages; ``parse`` keeps each page's rows; returns the last page.

        A ledger that sends ``Link: <...>; rel="next"`` (RFC 8288) is read one page
        ahead: the next page is asked for before this one is parsed, so the ledger
        builds it while we parse; the page's own ``next_page``/``next_after`` still
        decide, and a Link that names another page is ignored. Otherwise pages are
        followed one after the other by the cursor (``next_after``), else by
        ``next_page``. A ledger that caps
        ``page_size`` lower answers the first page with 422 on ``page_size``: the size
        steps down (``STATEMENT_PAGE_FALLBACK``) and is remembered.
        """
        path = f"/v1/statements/{pharmacy_code}/{date.isoformat()}"
        query: dict[str, Any] = {**params, "page": 1, "after": 0}
        if terminal_id is not None:
            query["terminal_id"] = terminal_id
        while True:
            query["page_size"] = self.statement_page_size
            resp = self._safe("GET", path, params=query)
            if resp.status_code == 422 and self._smaller_page(resp):
                continue
            break
        # A day is ~10^5 rows of small objects, all kept, none in cycles: pos_plugin.gcpause.
        ahead = ThreadPoolExecutor(1, thread_name_prefix="statement-page")
        try:
            with gc_paused():
                while True:
                    if resp.status_code != 200:
                        raise self._error(resp)
                    link = self._next_link(resp, path)
                    pending = None
                    if link:
                        pending = ahead.submit(self._safe, "GET", link)
                        # The decoder holds the GIL for a whole page (msgspec, ~10 ms):
                        # yield it first, long enough for the request to go out (~0.3 ms
                        # of Python in urllib3), or it would only leave after the parse.
                        time.sleep(_HAND_OVER)
                    last = parse(resp.content, resp.status_code)
                    if last.next_page is None:  # the page says it is the last: done,
                        return last  # whatever a Link says (a look-ahead is dropped)
                    _step(query, last.next_page, last.next_after)
                    if pending is not None and link is not None and _same_query(link, query):
                        resp = pending.result()
                    else:  # no Link, or one not naming the page this one names: ask for it
                        resp = self._safe("GET", path, params=query)
        finally:
            # On an error, do not wait for a look-ahead still on the wire.
            ahead.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _next_link(resp: Answer, path: str) -> str | None:
        """The ``rel="next"`` target when it is another page of the same statement."""
        target = resp.next_link
        if target.startswith(path + "?"):
            return str(target)
        return None

    def _smaller_page(self, resp: Answer) -> bool:
        """After a 422 on the first page: step ``page_size`` down if that is what was refused."""
        err = self._error(resp)
        field = getattr(err, "field", None) or ""
        if "page_size" not in f"{field} {err}":
            return False
        smaller = [s for s in STATEMENT_PAGE_FALLBACK if s < self.statement_page_size]
        if not smaller:
            return False
        log.info("ledger refused page_size=%d; reading statement pages of %d",
                 self.statement_page_size, smaller[0])  # fmt: skip
        self.statement_page_size = smaller[0]
        return True

    @classmethod
    def _validate(cls, model: type[M], body: bytes, status: int) -> M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise cls._unreadable(exc, status) from exc

    @staticmethod
    def _unreadable(exc: ValidationError | msgspec.DecodeError, status: int) -> e.LedgerError:
        return e.LedgerError(f"the ledger sent an answer we cannot read: {exc}",
                             code="bad_response", status=status)  # fmt: skip

    # ------------------------------------------------------------------ writes
    def _exactly_once(
        self,
        msgid: str,
        post: Callable[[], Answer],
        find: Callable[[], T | None],
        parse: Callable[[Answer], T],
    ) -> T:
        """Send until answered; after an unknown outcome, look the msgid up before re-sending."""
        unknown: Exception | None = None
        not_sent: Exception | None = None
        for attempt in range(self.retries + 1):
            self._backoff(attempt)
            if unknown is not None:
                try:
                    found = find()
                except e.LedgerUnavailable as exc:
                    log.warning("ledger: cannot resolve msgid %s yet: %s", msgid, exc)
                    continue
                if found is not None:
                    log.info("ledger: msgid %s was committed (resolved by GET)", msgid)
                    return found
            try:
                return parse(post())
            except _NotSent as exc:
                not_sent = exc
            except _Unknown as exc:
                unknown = exc
                log.warning("ledger: outcome of msgid %s unknown (attempt %d): %s",
                            msgid, attempt + 1, exc)
        if unknown is None:
            raise e.LedgerUnavailable(
                f"the central ledger is unreachable ({not_sent}); nothing was charged, "
                "the sale can be retried or paid in cash", status=None
            )
        try:  # one last look before giving up
            found = find()
        except e.LedgerUnavailable:
            found = None
        if found is not None:
            return found
        raise e.OutcomeUnknown(
            f"the ledger did not confirm msgid {msgid} ({unknown}); do NOT charge again: "
            "it will be resolved by msgid when the ledger answers",
            msgid=msgid,
        )

    def settle(self, request: SettlementRequest) -> Settlement:
        """Commit all legs or none; exactly once per msgid (see the module docstring)."""
        body = request.model_dump(mode="json", exclude_none=False)
        body["credential"] = request.credential.wire()
        headers = {"Idempotency-Key": request.msgid}

        def parse(resp: Answer) -> Settlement:
            return self._parse(resp, Settlement, (200, 201))

        def find() -> Settlement | None:
            found = self.get_settlement(request.msgid)
            if found is not None and (found.total, found.legs) != (request.total, request.legs):
                raise e.IdempotencyConflict(
                    f"msgid {request.msgid} is committed with different legs or total"
                )
            return found

        return self._exactly_once(
            request.msgid,
            lambda: self._send("POST", "/v1/settlements", payload=body, headers=headers),
            find,
            parse,
        )

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
        """Full reversal of a settlement, exactly once per msgid."""
        body: dict[str, Any] = {"msgid": msgid, "reason": reason}
        if terminal_id is not None:
            body["terminal_id"] = terminal_id
        if operator is not None:
            body["operator"] = operator

        def parse(resp: Answer) -> ReversalResult:
            return self._parse(resp, ReversalResult, (200, 201))

        def find() -> ReversalResult | None:
            found = self.get_reversal(msgid)
            if found is not None and found.settlement_id != settlement_id:
                raise e.IdempotencyConflict(f"msgid {msgid} reversed another settlement")
            return found

        return self._exactly_once(
            msgid,
            lambda: self._send(
                "POST", f"/v1/settlements/{settlement_id}/reversals", payload=body,
                headers={"Idempotency-Key": msgid},
            ),
            find,
            parse,
        )
