"""The store manager's reconciliation page and API routes, served by the agent.

- ``GET /v1/reconciliation?date=YYYY-MM-DD[&details=true]`` (manager bearer token): JSON,
  with the day's close ``history`` and national ``uploads_owed``.
- ``GET /v1/reconciliation.csv?date=&sheet=msgids|totals|notes`` (manager bearer token):
  one table of the spreadsheet (UTF-8 + BOM); ``/manager/reconciliation.csv``: the same
  for the page's session cookie (its download links).
- ``POST /v1/reconciliation/reverse|close|reopen`` (manager bearer token, JSON) and
  ``POST /manager/reconciliation/reverse|close|reopen`` (the page's forms: the session
  cookie and its CSRF token, ``Csrf``): the manager's tools, each on the day reconciled
  again just now.
- ``GET /manager/reconciliation?date=[&receipt=msgid]`` : the page (``receipt``: where the
  reverse form sends the browser after a reversal that printed a receipt; the page
  shows the receipt journaled for that msgid, so a reload reprints and acts on nothing).
  A browser cannot send a bearer header from a bookmark, so the manager token is also
  accepted as ``?token=`` (answered with a cookie and a redirect that drops it from the
  address bar and the history) or as the ``pos_manager_token`` cookie (HttpOnly,
  SameSite=Strict, path /manager). Without a token the page shows a small form asking
  for it.

The page itself (plain HTML and forms, no JavaScript but the receipt's print button) is
rendered by ``page_html``.
"""

# No `from __future__ import annotations`: FastAPI resolves the handlers' annotations.

import datetime as dt
import hashlib
import hmac
import html
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pos_plugin.journal.sources import JournalSource
from pos_plugin.ledger.errors import LedgerError
from pos_plugin.reconcile.actions import Paper, journaled_receipt, sale_refs
from pos_plugin.reconcile.close import (
    CloseRefused,
    close_day,
    closed_state,
    day_history,
    reopen_day,
    uploads_owed,
)
from pos_plugin.reconcile.csv_report import SHEETS, render_csv, sheet_path
from pos_plugin.reconcile.errors import (
    DayAlreadyClosed,
    DayNotBalanced,
    DayNotClosed,
    ReconcileError,
)
from pos_plugin.reconcile.matching import Reconciliation
from pos_plugin.reconcile.national import is_national, reconcile_for
from pos_plugin.reconcile.page_html import Tools, login_page, message_page, render_page
from pos_plugin.reconcile.tools import take_reverse

SHANGHAI = ZoneInfo("Asia/Shanghai")
COOKIE = "pos_manager_token"


@dataclass
class ReconcileSource:
    """Where the agent reconciles from: its journal file(s) and its ledger client."""

    journal_paths: Sequence[JournalSource]
    ledger: Any
    pharmacy_code: str
    resolve: bool = True
    paper: Paper = field(default_factory=Paper)  # the till's printer, for a reversal's receipt
    today: Callable[[], dt.date] = field(default=lambda: dt.datetime.now(SHANGHAI).date())
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(SHANGHAI))

    @property
    def national(self) -> bool:
        return is_national(self.ledger)

    def run(self, day: dt.date, *, every_msgid: bool = False
            ) -> tuple[Reconciliation, dict[str, Any] | None]:  # fmt: skip
        """The day reconciled now; ``every_msgid`` keeps the balanced pairs (the CSV's
        msgids sheet, ``details=true``), else only totals and breaks (bounded memory)."""
        rec = reconcile_for(day, self.journal_paths, self.ledger, self.pharmacy_code,
                            resolve=self.resolve, every_msgid=every_msgid)  # fmt: skip
        return rec, closed_state(self.journal_paths, rec)

    def history(self, day: dt.date) -> list[dict[str, Any]]:
        return day_history(self.journal_paths, day, self.pharmacy_code)

    def uploads_owed(self, day: dt.date | None = None) -> int:
        """National uploads (3505/3506) not yet acknowledged, of ``day`` (None: of every
        day); 0 on our own ledger."""
        return uploads_owed(self.journal_paths, self.pharmacy_code, day) if self.national else 0

    def reverse(self, day: dt.date, msgid: str, by: str = "manager", reason: str = ""
                ) -> dict[str, Any]:  # fmt: skip
        """The break's reversal by msgid (``tools.take_reverse``), on the day reconciled
        again first, so the action is taken on what the ledger says now, never on a stale
        page; raises ``LookupError`` when the day offers none."""
        rec, _closed = self.run(day)
        return take_reverse(rec, self.journal_paths, self.ledger, msgid, by=by, reason=reason,
                            paper=self.paper)  # fmt: skip

    def receipt(self, msgid: str) -> list[str] | None:
        """The reversal receipt journaled for ``msgid`` (``actions.journaled_receipt``):
        what the page shows after its reversal, read again on every load, never acted on."""
        return journaled_receipt(self.journal_paths, msgid=msgid,
                                 pharmacy_code=self.pharmacy_code)  # fmt: skip

    def close(self, day: dt.date, reason: str | None, force: bool, by: str = "manager"
              ) -> dict[str, Any]:  # fmt: skip
        """Reconcile the day now and close it (``close.close_day``, every refusal its own)."""
        rec, _closed = self.run(day)
        records = close_day(self.journal_paths, rec, reason=reason, closed_by=by,
                            now=self.now(), force=force, national=self.national)  # fmt: skip
        return {"date": rec.date, "closed": True, "journals": len(records),
                "balanced": rec.balanced, "reason": (records[0] if records else {}).get("reason")}

    def reopen(self, day: dt.date, reason: str | None, by: str = "manager") -> dict[str, Any]:
        rows = reopen_day(self.journal_paths, day, self.pharmacy_code, reason=reason, by=by)
        return {"date": day.isoformat(), "reopened": True, "journals": len(rows)}


def source_for_service(
    service: Any, journal_paths: Sequence[JournalSource] | None = None
) -> ReconcileSource:
    """The source of a running agent: its own journal (or the store's) and its ledger.

    On a shared journal the agent's own source is already the store's: every till
    of its pharmacy (``Journal.source``)."""
    return ReconcileSource(
        journal_paths=list(journal_paths or [service.journal.source]),
        ledger=service.ledger,
        pharmacy_code=service.settings.pharmacy_code,
        paper=Paper(service.settings.store_name, service.settings.receipt_width),
    )


class Csrf:
    """The page's forms carry a token bound to the manager's session cookie: an HMAC of
    the cookie under a key this process drew at start, checked server-side before any
    form acts (a form posted from elsewhere has no cookie-bound token; SameSite=Strict
    keeps the cookie off cross-site posts too)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def token(self, cookie: str) -> str:
        return hmac.new(self._key, b"csrf:" + cookie.encode("utf-8"), hashlib.sha256).hexdigest()

    def ok(self, cookie: str | None, given: str | None) -> bool:
        return bool(cookie and given) and hmac.compare_digest(self.token(cookie or ""),
                                                              given or "")  # fmt: skip


# What the page says after a form acted (the redirect names it, the page shows it).
NOTES = {
    "reversed": "已按流水号冲正，并已重新对账。/ Reversed by msgid; the day was reconciled again.",
    "recorded": "已把中心的冲正记入本店流水。/ The centre's reversal is journaled in the till.",
    "not_charged": "中心确认这笔未扣款，已记入流水。/ The ledger confirmed nothing was charged; "
    "journaled.",
    "already": "这笔之前已经冲正过，本次没有发送任何请求。/ Already reversed before: nothing was "
    "sent this time.",
    "already_reversed": "中心早已冲正这笔，本店流水已补记。/ The ledger had reversed it already; "
    "the till's record now says so.",
    "closed": "本日已关账。/ The day is closed.",
    "reopened": "本日已重新打开，可以再次关账。/ The day is reopened; it can be closed again.",
}


def reconciliation_extra(
    source: ReconcileSource, csrf: Csrf | None = None
) -> Callable[[FastAPI, Callable[..., Any]], None]:
    """The ``extra`` hook for ``pos_plugin.api.create_app``: registers the routes above."""
    guard = csrf or Csrf()

    def register(app: FastAPI, role: Callable[..., Callable[..., str]]) -> None:
        from pos_plugin.api import ApiError, ErrorBody

        manager = role("manager")

        def refusals(**described: str) -> dict[int | str, dict[str, Any]]:
            return {int(k[1:]): {"model": ErrorBody, "description": v} for k, v in described.items()}

        tool_errors = refusals(
            s409="no_action, day_not_balanced, day_already_closed, day_not_closed, "
            "still_selling, uploads_owed: refused, the message says why (nothing was done)",
            s422="invalid_request: a date, msgid or reason that is malformed",
            s503="action_failed: the ledger or a journal could not be reached; try again",
        )

        def parse_day(date: str | None) -> dt.date:
            if not date:
                return source.today()
            try:
                return dt.date.fromisoformat(date)
            except ValueError:
                raise ApiError(422, "invalid_request", "date: use YYYY-MM-DD") from None

        def run(day: dt.date, every_msgid: bool = False
                ) -> tuple[Reconciliation, dict[str, Any] | None]:  # fmt: skip
            try:
                return source.run(day, every_msgid=every_msgid)
            except Exception as e:  # ledger unreachable, journal missing: say so
                raise ApiError(
                    503,
                    "reconciliation_unavailable",
                    f"the reconciliation could not be made: {e}",
                ) from None

        @app.get("/v1/reconciliation", tags=["manager"])
        def reconciliation(
            date: str | None = None, details: bool = False, _: str = Depends(manager)
        ) -> JSONResponse:
            day = parse_day(date)
            rec, closed = run(day, every_msgid=details)
            body = rec.as_dict(details=details)
            body["closed"] = closed
            body["history"] = source.history(day)
            body["uploads_owed"] = source.uploads_owed(day)
            return JSONResponse(body)

        def act(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            """One tool, its refusals as ``{code, message}``: 409 refused (and why), 503 the
            ledger or a journal could not be reached."""
            try:
                return fn()
            except LookupError as e:
                raise ApiError(409, "no_action", str(e)) from None
            except CloseRefused as e:
                raise ApiError(409, e.code, str(e)) from None
            except DayNotBalanced as e:
                raise ApiError(409, "day_not_balanced", str(e)) from None
            except DayAlreadyClosed as e:
                raise ApiError(409, "day_already_closed", str(e)) from None
            except DayNotClosed as e:
                raise ApiError(409, "day_not_closed", str(e)) from None
            except ReconcileError as e:
                raise ApiError(422, "invalid_request", str(e)) from None
            except LedgerError as e:
                raise ApiError(503, "action_failed", f"the {what} could not be done: {e}"
                               ) from None  # fmt: skip
            except Exception as e:  # the ledger or a journal unreachable: say so
                raise ApiError(503, "action_failed", f"the {what} could not be done: {e}"
                               ) from None  # fmt: skip

        async def body_of(request: Request) -> dict[str, Any]:
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise ApiError(422, "invalid_request", "body: not valid JSON") from None
            if not isinstance(body, dict):
                raise ApiError(422, "invalid_request", "body: give a JSON object")
            return body

        def text(body: dict[str, Any], name: str) -> str:
            value = body.get(name) or ""
            if not isinstance(value, str) or len(value) > 500:
                raise ApiError(422, "invalid_request", f"{name}: a text of at most 500 characters")
            return value

        def who(fields: dict[str, Any]) -> str:
            """Who acts, as they typed it (kept with the action); "manager" when not said."""
            name = fields.get("by")
            return (name.strip()[:50] if isinstance(name, str) else "") or "manager"

        @app.post("/v1/reconciliation/reverse", tags=["manager"], responses=tool_errors)
        async def reverse(request: Request, _: str = Depends(manager)) -> JSONResponse:
            """Reverse by msgid the break the day offers it on; ``already`` true: it was done
            before and nothing was sent."""
            body = await body_of(request)
            msgid = body.get("msgid")
            if not isinstance(msgid, str) or not msgid:
                raise ApiError(422, "invalid_request", "msgid: give {date, msgid}")
            day, reason, by = parse_day(body.get("date")), text(body, "reason"), who(body)
            return JSONResponse(await run_in_threadpool(
                act, "reversal", lambda: source.reverse(day, msgid, by, reason)))  # fmt: skip

        @app.post("/v1/reconciliation/close", tags=["manager"], responses=tool_errors)
        async def close(request: Request, _: str = Depends(manager)) -> JSONResponse:
            """Close the day: ``reason`` for breaks or uploads owed, ``force`` and ``reason``
            for today while the shift is still selling."""
            body = await body_of(request)
            day, reason, force = parse_day(body.get("date")), text(body, "reason"), body.get("force")
            if not isinstance(force, bool | None):
                raise ApiError(422, "invalid_request", "force: true or false")
            by = who(body)
            return JSONResponse(await run_in_threadpool(
                act, "close", lambda: source.close(day, reason, bool(force), by)))  # fmt: skip

        @app.post("/v1/reconciliation/reopen", tags=["manager"], responses=tool_errors)
        async def reopen(request: Request, _: str = Depends(manager)) -> JSONResponse:
            """Reopen a closed day with a ``reason`` (kept in the day's history)."""
            body = await body_of(request)
            day, reason, by = parse_day(body.get("date")), text(body, "reason"), who(body)
            return JSONResponse(await run_in_threadpool(
                act, "reopen", lambda: source.reopen(day, reason, by)))  # fmt: skip

        async def form_of(request: Request) -> tuple[str, dict[str, str]] | Response:
            """The session cookie and the form's fields, or the page refusing them: 401
            without the manager's cookie, 403 without the CSRF token bound to it."""
            given = request.cookies.get(COOKIE)
            if not (given and _allowed(manager, f"Bearer {given}")):
                return HTMLResponse(login_page(None, bool(given)), status_code=401)
            raw = parse_qs((await request.body()).decode("utf-8", "replace"))
            form = {k: v[0] for k, v in raw.items() if v}
            if not guard.ok(given, form.get("csrf")):
                return HTMLResponse(message_page(
                    "表单已过期或不是从本页提交（CSRF 令牌缺失或不正确），什么也没有做；请刷新页面后重试。"
                    " / The form is stale or was not sent from this page (the CSRF token is "
                    "missing or wrong): nothing was done; reload the page and try again.",
                    form.get("date")), 403)  # fmt: skip
            return given, form

        def form_day(form: dict[str, str]) -> dt.date | None:
            try:
                return dt.date.fromisoformat(form.get("date", ""))
            except ValueError:
                return None

        async def form_action(request: Request, what: str,
                              fn: Callable[[dt.date, dict[str, str]], dict[str, Any]]
                              ) -> Response:  # fmt: skip
            got = await form_of(request)
            if isinstance(got, Response):
                return got
            _cookie, form = got
            day = form_day(form)
            if day is None:
                return HTMLResponse(message_page("日期格式应为 YYYY-MM-DD / date: use YYYY-MM-DD"),
                                    422)  # fmt: skip
            try:
                done = await run_in_threadpool(act, what, lambda: fn(day, form))
            except ApiError as e:
                return HTMLResponse(message_page(f"未完成 / not done: {e.message}",
                                                  day.isoformat()), e.status)  # fmt: skip
            note = ("already" if done.get("already") else done.get("outcome")
                    or ("reopened" if done.get("reopened") else "closed"))  # fmt: skip
            # a reversal that printed a receipt: the day shows it (the journaled one)
            shown = f"&receipt={quote(str(done['msgid']), safe='')}" if done.get("receipt") else ""
            return RedirectResponse(
                f"/manager/reconciliation?date={day.isoformat()}&note={note}{shown}",
                status_code=303)  # fmt: skip

        @app.post("/manager/reconciliation/reverse", tags=["manager"])
        async def reverse_form(request: Request) -> Response:
            return await form_action(request, "reversal", lambda day, f: source.reverse(
                day, f.get("msgid", ""), who(f), f.get("reason", "")[:500]))  # fmt: skip

        @app.post("/manager/reconciliation/close", tags=["manager"])
        async def close_form(request: Request) -> Response:
            return await form_action(request, "close", lambda day, f: source.close(
                day, f.get("reason", "")[:500], f.get("force") == "1", who(f)))  # fmt: skip

        @app.post("/manager/reconciliation/reopen", tags=["manager"])
        async def reopen_form(request: Request) -> Response:
            return await form_action(request, "reopen", lambda day, f: source.reopen(
                day, f.get("reason", "")[:500], who(f)))  # fmt: skip

        def csv_response(rec: Reconciliation, sheet: str) -> Response:
            name = sheet_path(f"reconciliation-{rec.date}.csv", sheet).name
            refs = sale_refs(rec, source.journal_paths) if sheet == "msgids" else {}
            return Response(
                content="\ufeff" + render_csv(rec, sheet=sheet, sale_refs=refs),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )

        def parse_sheet(sheet: str | None) -> str:
            if (sheet or "msgids") not in SHEETS:
                raise ApiError(422, "invalid_request", f"sheet: one of {', '.join(SHEETS)}")
            return sheet or "msgids"

        @app.get("/v1/reconciliation.csv", tags=["manager"])
        def reconciliation_csv(
            date: str | None = None, sheet: str | None = None, _: str = Depends(manager)
        ) -> Response:
            """One table per file: ``sheet`` msgids (default), totals or notes."""
            which = parse_sheet(sheet)
            rec, _closed = run(parse_day(date), every_msgid=which == "msgids")
            return csv_response(rec, which)

        @app.get("/manager/reconciliation.csv", tags=["manager"])
        def page_csv(request: Request, date: str | None = None, sheet: str | None = None
                     ) -> Response:  # fmt: skip
            """The page's download links: the same files, for the session cookie."""
            given = request.cookies.get(COOKIE)
            if not (given and _allowed(manager, f"Bearer {given}")):
                return HTMLResponse(login_page(date, bool(given)), status_code=401)
            which = parse_sheet(sheet)
            rec, _closed = run(parse_day(date), every_msgid=which == "msgids")
            return csv_response(rec, which)

        @app.get("/manager/reconciliation", response_class=HTMLResponse, tags=["manager"])
        def page(
            request: Request,
            date: str | None = None,
            note: str | None = None,
            receipt: str | None = None,
            token: str | None = Query(default=None),
            authorization: str | None = Header(default=None),
        ) -> Response:
            given = token or request.cookies.get(COOKIE)
            header_ok = False
            if authorization:
                header_ok = _allowed(manager, authorization)
            if not header_ok and not (given and _allowed(manager, f"Bearer {given}")):
                return HTMLResponse(login_page(date, bool(given)), status_code=401)
            if token:  # keep the token out of the address bar, history and printouts
                target = "/manager/reconciliation" + (f"?date={html.escape(date)}" if date else "")
                resp = RedirectResponse(target, status_code=303)
                resp.set_cookie(
                    COOKIE,
                    token,
                    httponly=True,
                    samesite="strict",
                    path="/manager",
                    max_age=12 * 3600,
                )
                return resp
            try:
                day = dt.date.fromisoformat(date) if date else source.today()
            except ValueError:
                return HTMLResponse(
                    message_page("日期格式应为 YYYY-MM-DD / date: use YYYY-MM-DD"), 422
                )
            try:
                rec, closed = source.run(day)
                history, owed = source.history(day), source.uploads_owed(day)
                lines = source.receipt(receipt) if receipt and len(receipt) <= 64 else None
            except Exception as e:
                return HTMLResponse(
                    message_page(f"无法对账 / the reconciliation could not be made: {e}"), 503
                )
            cookie = request.cookies.get(COOKIE)
            tools = Tools(csrf=guard.token(cookie)) if cookie else None
            return HTMLResponse(render_page(rec, closed, history=history, tools=tools,
                                            uploads_owed=owed, note=NOTES.get(note or ""),
                                            receipt=lines))  # fmt: skip

    return register


def _allowed(check: Callable[..., str], authorization: str) -> bool:
    try:
        return check(authorization=authorization) == "manager"
    except Exception:
        return False
