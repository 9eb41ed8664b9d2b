"""The sandbox ledger's HTTP API (FastAPI): the contract of docs/ledger-api.md.

Why FastAPI: it is already the project's HTTP stack, validates bodies with the
same pydantic models the client uses, and serves the OpenAPI document for free.
Handlers are plain ``def`` so they run in the thread pool: each thread has its
own database connection, and two tills really do race in the database (which
is what the locking is for), not in the event loop.

Answers are pre-serialised JSON text from the service (the idempotent replay
must be byte-identical), so handlers return ``Response`` objects directly.
"""

# No `from __future__ import annotations`: FastAPI resolves the closures' Annotated
# dependencies (Pharmacy, Key) at runtime from real objects.

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pos_plugin.ledger.sandbox.service import Ledger, Rejection
from pos_plugin.ledger.schemas import (
    ErrorBody,
    LookupRequest,
    ReversalRequest,
    ReversalResult,
    Settlement,
    SettlementRequest,
    Statement,
)
from pos_plugin.models import PersonLookup

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422)
}


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
        field = _field(tuple(err.get("loc", ())))
        body = {"code": "invalid_request", "message": f"{field}: {err.get('msg')}", "field": field}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)

    def pharmacy(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        code = ledger.pharmacy_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if code is None:
            raise Rejection(401, "unauthorised",
                            "missing or unknown bearer token; check the pharmacy's ledger token")
        return code

    Pharmacy = Annotated[str, Depends(pharmacy)]
    Key = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=64)]

    @app.post("/v1/persons/lookup", response_model=PersonLookup, responses=_ERRORS)
    def lookup(body: LookupRequest, _: Pharmacy) -> Response:
        return _json(200, json.dumps(ledger.lookup(body.credential), ensure_ascii=False))

    @app.post("/v1/settlements", status_code=201, response_model=Settlement, responses=_ERRORS)
    def settle(body: SettlementRequest, code: Pharmacy, key: Key) -> Response:
        return _json(*ledger.settle(code, key, body))

    @app.get("/v1/settlements/{msgid}", response_model=Settlement, responses=_ERRORS)
    def get_settlement(msgid: str, code: Pharmacy) -> Response:
        return _json(200, json.dumps(ledger.get_settlement(code, msgid), ensure_ascii=False))

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
        terminal_id: str | None = None,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        if pharmacy_code != code:
            raise Rejection(403, "forbidden", "a pharmacy may read only its own statement")
        body = ledger.statement(code, date, terminal_id, page, page_size)
        return _json(200, json.dumps(body, ensure_ascii=False))

    return app
