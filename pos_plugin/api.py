"""The local HTTP API the POS calls (a contract: docs/pos-api.md, OpenAPI at /openapi.json).

Served on loopback with bearer tokens for two roles, ``pos`` and ``manager``.
Every error is JSON ``{code, message}``; a refused sale answers 422 with
``status: refused`` and its code, so a POS can print the message as it is.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pos_plugin.journal.journal import SaleRefReused
from pos_plugin.sale.models import (
    BalanceRequest,
    BalanceResult,
    SaleError,
    SaleRequest,
    SaleResult,
)
from pos_plugin.sale.service import SaleService


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ReversalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=200)] = ""


PinScript = Literal["correct", "wrong", "blocked", "none"]


class PresentBody(BaseModel):
    """The simulator's card or voucher. Bounded like the real ones (a card number of 32,
    a voucher token of 256 characters), and a PIN script of at most 10 prompts: a sale
    asks twice, so more is never needed."""

    model_config = ConfigDict(extra="forbid")
    card_no: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    evoucher_token: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    pin: PinScript | Annotated[list[PinScript], Field(min_length=1, max_length=10)] = "correct"
    # False: the customer presents it when the PIN pad asks (the next wait); True: it is
    # in the reader / scanner now, e.g. a card left behind or a code scanned too early.
    at_once: bool = False


def create_app(
    service: SaleService,
    *,
    tokens: dict[str, str],
    device_status: Callable[[], dict[str, Any]],
    simulator: Any | None = None,
    extra: Callable[[FastAPI, Callable[..., Any]], None] | None = None,
) -> FastAPI:
    """Build the app. ``tokens`` maps role ("pos", "manager") to its bearer token."""
    app = FastAPI(
        title="pos-plugin local API",
        version="1",
        description="The pharmacy till agent's API for POS software and store managers.",
    )

    def role(*allowed: str) -> Callable[..., str]:
        def check(authorization: Annotated[str | None, Header()] = None) -> str:
            given = (authorization or "").removeprefix("Bearer ").strip()
            for name, token in tokens.items():
                if given and hmac.compare_digest(given, token):
                    if name not in allowed:
                        raise ApiError(403, "forbidden", f"the {name} role may not do this")
                    return name
            raise ApiError(401, "unauthorised", "missing or wrong bearer token")

        return check

    pos = Depends(role("pos", "manager"))
    manager = Depends(role("manager"))
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        422: {"model": ErrorBody},
    }

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"code": e.code, "message": e.message}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(x) for x in first["loc"] if x != "body")
        return JSONResponse(
            {
                "code": "invalid_request",
                "message": f"{field or 'body'}: {first['msg']}",
                "field": field,
            },
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:  # never a traceback to the POS
        return JSONResponse(
            {
                "code": "internal_error",
                "message": "the agent hit an unexpected error; the sale's state is in GET /v1/sales/{ref}",
            },
            status_code=500,
        )

    @app.post(
        "/v1/sales",
        response_model=SaleResult,
        responses={**errors, 202: {"model": SaleResult}, 409: {"model": SaleResult},
                   503: {"model": SaleResult}, 504: {"model": SaleResult}},
    )
    def create_sale(req: SaleRequest, _: str = pos) -> JSONResponse:
        """Run a sale; a repeated ``sale_ref`` answers the journaled answer, status and all."""
        try:
            http_status, result = service.sell(req)
        except SaleRefReused:
            raise ApiError(
                409,
                "sale_ref_reused",
                f"sale_ref {req.sale_ref} was already used for a different sale",
            ) from None
        except SaleError as e:
            row = service.journal.get(req.sale_ref)
            if row is None or row.result is None:  # nothing journaled (a closed day)
                status = "refused" if e.http_status == 422 else "failed"
                body = SaleResult(
                    sale_ref=req.sale_ref, status=status, code=e.code, message=e.message
                )
                return JSONResponse(body.model_dump(mode="json"), status_code=e.http_status)
            http_status, result = service.answer(row)
        return JSONResponse(result.model_dump(mode="json"), status_code=http_status)

    @app.get("/v1/sales/{sale_ref}", response_model=SaleResult, responses=errors)
    def get_sale(sale_ref: str, _: str = pos) -> SaleResult:
        """The same body a replayed POST answers, in every state (always HTTP 200)."""
        result = service.status_of(sale_ref)
        if result is None:
            raise ApiError(404, "not_found", f"no sale {sale_ref}")
        return result

    @app.post("/v1/sales/{sale_ref}/cancel", responses=errors)
    def cancel_sale(sale_ref: str, _: str = pos) -> dict[str, Any]:
        if not service.cancel(sale_ref):
            raise ApiError(409, "not_waiting", f"sale {sale_ref} is not waiting for the customer")
        return {"sale_ref": sale_ref, "cancelling": True}

    @app.post("/v1/sales/{sale_ref}/reversal", response_model=SaleResult, responses=errors)
    def reverse_sale(
        sale_ref: str, body: ReversalBody | None = None, _: str = manager
    ) -> SaleResult:
        try:
            return service.reverse(sale_ref, (body or ReversalBody()).reason)
        except SaleError as e:
            raise ApiError(e.http_status, e.code, e.message) from None

    @app.post("/v1/balance-inquiries", response_model=BalanceResult, responses=errors)
    def balance(req: BalanceRequest | None = None, _: str = pos) -> BalanceResult:
        try:
            return service.balance(req or BalanceRequest())
        except SaleError as e:
            raise ApiError(e.http_status, e.code, e.message) from None

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        owed = service.journal.pending_reversals()
        return {
            "status": "ok",
            "devices": device_status(),
            "unresolved_settlements": len(service.journal.in_state("settling")),
            "reversals_owed": len(owed),
            "reversals_escalated": sum(p.escalated for p in owed),
            # A card not taken within card_removal_timeout: the next sale refuses it.
            "card_left_in_reader": service.card_left_in_reader,
        }

    @app.get("/v1/devices")
    def devices(_: str = pos) -> dict[str, Any]:
        return device_status()

    if simulator is not None:

        @app.post("/v1/simulator/present")
        def sim_present(body: PresentBody, _: str = pos) -> dict[str, Any]:
            try:
                if body.card_no:
                    simulator.present_card(body.card_no, body.pin, at_once=body.at_once)
                elif body.evoucher_token:
                    simulator.scan_voucher(body.evoucher_token, at_once=body.at_once)
                else:
                    raise ApiError(422, "invalid_request", "give card_no or evoucher_token")
            except KeyError:
                raise ApiError(
                    404, "not_found", "no such card or voucher in the world file"
                ) from None
            return {"presented": True}

        @app.post("/v1/simulator/remove")
        def sim_remove(_: str = pos) -> dict[str, Any]:
            simulator.remove_card()
            return {"removed": True}

    if extra is not None:
        extra(app, role)
    return app
