"""The sandbox ledger's HTTP API (FastAPI): the contract of docs/ledger-api.md.

Why FastAPI: it is already the project's HTTP stack, validates bodies with the
same pydantic models the client uses, and serves the OpenAPI document for free.

The hot endpoints (lookup, settle, read back a settlement) are ``async def``
handlers on the event loop that do by hand what FastAPI's declarative
signature would do: check the token and the Idempotency-Key header, validate
the raw body with ``model_validate_json`` (one pass, no intermediate dict),
and await the store's group-commit writer. Why: on a 2-core machine the
per-request CPU of the declarative path (dependency solving, body parsing
twice, a thread-pool hop to block on the writer, response-model checks) was
most of the cost of a settlement. The error answers are the same (401 before
422, header errors before body errors, the same ``field`` names), and the
OpenAPI document still describes these endpoints through documentation-only
twins with the declarative signatures (``_documented``).

The other endpoints are plain ``def`` handlers in the thread pool, as before.
SQLite reads on the hot path run on the event loop's own connection: a WAL
reader never waits for the writer, so a lookup is ~0.1 ms of CPU with no hop.
PostgreSQL reads go to the thread pool (a network round trip each).

Answers are pre-serialised JSON text from the service (the idempotent replay
must be byte-identical), so handlers return ``Response`` objects directly.
"""

# No `from __future__ import annotations`: FastAPI resolves the closures' Annotated
# dependencies (Pharmacy, Key) at runtime from real objects.

import datetime as dt
import email.message
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from pos_plugin.ledger.own.sandbox.group_commit import WriterUnavailable
from pos_plugin.ledger.own.sandbox.service import Ledger, Rejection
from pos_plugin.ledger.own.schemas import (
    ErrorBody,
    LookupRequest,
    ReversalRequest,
    ReversalResult,
    Settlement,
    SettlementRequest,
    Statement,
    VoidResult,
)
from pos_plugin.models import PersonLookup

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422)
}
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
KEY_MAX = 64  # Idempotency-Key length bound, as the declarative header had it
STATEMENT_PAGE_MAX = 10_000  # statement rows per page (docs/ledger-api.md)
# The highest page number: a pharmacy cannot make more rows in a day than
# 86,400 s x 10,000 msgid sequence numbers = 864,000,000, and with it the row offset
# (page - 1) x page_size stays far inside the database's 64-bit integers.
STATEMENT_PAGE_NUMBER_MAX = 1_000_000_000
CURSOR_MAX = 2**63 - 1  # ``after`` is compared with ``seq``, a 64-bit integer column


def _json(status: int, text: str) -> Response:
    return Response(content=text, status_code=status, media_type="application/json")


def _field(loc: tuple[Any, ...]) -> str:
    """('body', 'legs', 0, 'amount') -> 'legs[0].amount'; headers keep their name."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in ("function-after[_fields_for_kind()]",):
            continue
        else:
            out += ("." if out else "") + str(p)
    if loc and loc[0] == "header" and out.lower() == "idempotency-key":
        return "Idempotency-Key"
    return out or "body"


def _invalid_body(loc: tuple[Any, ...], msg: str) -> Response:
    field = _field(loc)
    body = {"code": "invalid_request", "message": f"{field}: {msg}", "field": field}
    return JSONResponse(body, status_code=422)


class _Invalid(Exception):
    """A malformed header or body on a hot endpoint: becomes the same 422 as FastAPI's."""

    def __init__(self, loc: tuple[Any, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    loc = ("header", "Idempotency-Key")
    if key is None:
        raise _Invalid(loc, "Field required")
    if len(key) < 1:
        raise _Invalid(loc, "String should have at least 1 character")
    if len(key) > KEY_MAX:
        raise _Invalid(loc, f"String should have at most {KEY_MAX} characters")
    return key


def _is_json(content_type: str | None) -> bool:
    """FastAPI's strict rule: a body counts as JSON only as application/json or */*+json."""
    if content_type is None:
        return False
    if content_type == "application/json":  # what every till sends: skip the parsing
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def _parse(request: Request, model: type[M]) -> M:
    """Validate the raw body in one pass (bytes -> model), errors located like FastAPI's."""
    raw = await request.body()
    if not raw:
        raise _Invalid(("body",), "Field required")
    if not _is_json(request.headers.get("content-type")):
        raise _Invalid(("body",), "Input should be a valid dictionary or object to extract "
                                  "fields from")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise _Invalid(("body", *err.get("loc", ())), err.get("msg", "invalid body")) from None


def create_app(ledger: Ledger) -> FastAPI:
    """Build the ASGI app around one ``Ledger`` (one store, one world)."""
    app = FastAPI(
        title="pos-plugin sandbox ledger",
        version="1",
        description="Reference central ledger for pharmacy tills. See docs/ledger-api.md.",
    )

    @app.exception_handler(Rejection)
    async def _rejection(_: Request, exc: Rejection) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return _invalid_body(tuple(err.get("loc", ())), str(err.get("msg")))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(_Invalid)
    async def _invalid_fast(_: Request, exc: _Invalid) -> Response:
        return _invalid_body(exc.loc, exc.msg)

    @app.exception_handler(WriterUnavailable)
    async def _writer_unavailable(_: Request, exc: WriterUnavailable) -> Response:
        # The database connection broke mid-batch: the outcome is unknown, as after a
        # timeout. 503 tells the till to resolve by msgid and retry (docs/ledger-api.md).
        return JSONResponse({"code": "ledger_unavailable", "message": str(exc)},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        # Bounds on every field keep requests from getting here; if one still does,
        # the client gets the contract's JSON error shape (it parses every answer),
        # never Starlette's plain-text 500. The traceback stays in the server's log.
        return JSONResponse(
            {"code": "internal_error",
             "message": f"the ledger hit an unexpected error ({type(exc).__name__})"},
            status_code=500,
        )

    def pharmacy(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        code = ledger.pharmacy_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if code is None:
            raise Rejection(401, "unauthorised",
                            "missing or unknown bearer token; check the pharmacy's ledger token")
        return code

    Pharmacy = Annotated[str, Depends(pharmacy)]
    Key = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=KEY_MAX)]

    pg = ledger.store.pg

    async def read(fn: Callable[..., R], *args: Any) -> R:
        """A read transaction: inline on SQLite (WAL readers never wait), pooled on PostgreSQL."""
        return await run_in_threadpool(fn, *args) if pg else fn(*args)

    # -------------------------------------------------------------- hot endpoints
    # Plain Starlette routes: the handler gets the request and nothing else, without
    # FastAPI's per-request dependency solving (about a tenth of a settlement's CPU).
    async def lookup(request: Request) -> Response:
        pharmacy(request.headers.get("authorization"))
        body = await _parse(request, LookupRequest)
        return _json(200, json.dumps(await read(ledger.lookup, body.credential),
                                     ensure_ascii=False))

    async def settle(request: Request) -> Response:
        code = pharmacy(request.headers.get("authorization"))
        key = _idempotency_key(request)
        body = await _parse(request, SettlementRequest)
        return _json(*await ledger.settle_async(code, key, body))

    async def get_settlement(request: Request) -> Response:
        code = pharmacy(request.headers.get("authorization"))
        msgid = request.path_params["msgid"]
        return _json(200, json.dumps(await read(ledger.get_settlement, code, msgid),
                                     ensure_ascii=False))

    app.add_route("/v1/persons/lookup", lookup, ["POST"], include_in_schema=False)
    app.add_route("/v1/settlements", settle, ["POST"], include_in_schema=False)
    app.add_route("/v1/settlements/{msgid}", get_settlement, ["GET"], include_in_schema=False)
    hot = list(app.routes[-3:])

    # Documentation-only twins: never served (the handlers above answer these
    # paths); they exist so /openapi.json describes the hot endpoints' bodies,
    # headers and answers exactly as declarative FastAPI handlers would (same
    # names, so the same operation ids and summaries as before).
    doc = APIRouter()

    @doc.post("/v1/persons/lookup", response_model=PersonLookup, responses=_ERRORS,
              name="lookup")
    def lookup_doc(body: LookupRequest, _: Pharmacy) -> Response:  # pragma: no cover
        raise AssertionError("documentation-only route")

    @doc.post("/v1/settlements", status_code=201, response_model=Settlement, responses=_ERRORS,
              name="settle")
    def settle_doc(body: SettlementRequest, code: Pharmacy, key: Key) -> Response:  # pragma: no cover
        raise AssertionError("documentation-only route")

    @doc.get("/v1/settlements/{msgid}", response_model=Settlement, responses=_ERRORS,
             name="get_settlement")
    def get_settlement_doc(msgid: str, code: Pharmacy) -> Response:  # pragma: no cover
        raise AssertionError("documentation-only route")

    documented = list(doc.routes)

    @app.post("/v1/settlements/{msgid}/void", response_model=VoidResult, responses=_ERRORS)
    def void(msgid: str, code: Pharmacy) -> Response:
        """Make an unknown outcome final: void the msgid unless it settled first."""
        return _json(*ledger.void(code, msgid))

    @app.post(
        "/v1/settlements/{settlement_id}/reversals",
        status_code=201,
        response_model=ReversalResult,
        responses=_ERRORS,
    )
    def reverse(settlement_id: str, body: ReversalRequest, code: Pharmacy, key: Key) -> Response:
        return _json(*ledger.reverse(code, settlement_id, key, body))

    @app.get("/v1/reversals/{msgid}", response_model=ReversalResult, responses=_ERRORS)
    def get_reversal(msgid: str, code: Pharmacy) -> Response:
        return _json(200, json.dumps(ledger.get_reversal(code, msgid), ensure_ascii=False))

    @app.get("/v1/statements/{pharmacy_code}/{date}", response_model=Statement, responses=_ERRORS)
    def statement(
        pharmacy_code: str,
        date: dt.date,
        code: Pharmacy,
        terminal_id: Annotated[str | None, Query(max_length=64)] = None,
        page: Annotated[int, Query(ge=1, le=STATEMENT_PAGE_NUMBER_MAX)] = 1,
        page_size: Annotated[int, Query(ge=1, le=STATEMENT_PAGE_MAX)] = 200,
        after: Annotated[int | None, Query(ge=0, le=CURSOR_MAX)] = None,
        format: Literal["full", "compact"] = "full",  # shadows the builtin, as the API names it
    ) -> Response:
        if pharmacy_code != code:
            raise Rejection(403, "forbidden", "a pharmacy may read only its own statement")
        text, next_page, next_after = ledger.statement_page(
            code, date, terminal_id, page, page_size, after, compact=format == "compact"
        )
        resp = _json(200, text)
        if next_page is not None:  # RFC 8288: a reader can ask for it before parsing this one
            query: dict[str, Any] = {"page": next_page, "page_size": page_size}
            if after is not None:
                query["after"] = next_after
            if terminal_id is not None:
                query["terminal_id"] = terminal_id
            if format != "full":
                query["format"] = format
            target = f"/v1/statements/{pharmacy_code}/{date.isoformat()}?{urlencode(query)}"
            resp.headers["Link"] = f'<{target}>; rel="next"'
        return resp

    def openapi() -> dict[str, Any]:
        """The document, with each hot route replaced by its declarative twin."""
        if app.openapi_schema is None:
            routes: list[BaseRoute] = [
                documented[hot.index(r)] if r in hot else r for r in app.routes
            ]
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=routes,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(ServerTiming)
    return app



class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` to every answer: the ledger's own time for
    a request, so a till's benchmark can subtract it and count only the till's time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                headers = [*message.get("headers", ()), (b"server-timing", b"app;dur=%.3f" % ms)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)
