"""The local HTTP API the POS calls (a contract: docs/pos-api.md, OpenAPI at /openapi.json).

Served on loopback with bearer tokens for two roles, ``pos`` and ``manager``.
Every error is JSON ``{code, message}``, everywhere: an unknown route, a wrong method,
a body that is not UTF-8, nested too deep or over ``BODY_MAX`` included (the guard
below answers those before any route runs). A refused sale answers 422 with
``status: refused`` and its code, so a POS can print the message as it is.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from itertools import accumulate
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pos_plugin.journal.journal import SaleRefReused
from pos_plugin.sale.models import (
    BalanceRequest,
    BalanceResult,
    ErrorCode,
    SaleError,
    SaleRequest,
    SaleResult,
    Stage,
)
from pos_plugin.sale.service import SaleService

BODY_MAX = 256 * 1024
"""The largest request body, in bytes: a sale of 200 lines with long names is ~60 KiB."""
JSON_DEPTH_MAX = 16
"""The deepest nesting of a JSON body: a sale nests 4 deep; a deeper body is refused
before it is parsed, so no recursion in a JSON parser can be provoked."""
WAIT_MAX = 30.0
"""The longest long-poll (``GET /v1/sales/{ref}?wait=``), in seconds."""

MSGID_EXAMPLE = "H11010500001202611231015300003"  # 12 + yyyyMMddHHmmss + 4: 30 characters


# A JSON string (escapes included), or the unterminated rest of the text after a quote;
# and what is not a bracket. Both scans run in the regex engine: a 200-line sale
# (30 KB) is read in about 0.25 ms, where a Python loop over its characters took 1.3 ms.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The nesting depth of a JSON text, counting only brackets outside strings (a text
    that is not JSON gets a number too: the parser refuses it after this check)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


class BodyGuard:
    """Bounds every request body before a route sees it: at most ``BODY_MAX`` bytes
    (413 ``payload_too_large``), UTF-8, at most ``JSON_DEPTH_MAX`` deep (422
    ``invalid_request``), each answered as ``{code, message}``. Pure ASGI (no
    BaseHTTPMiddleware) so that streaming answers and the event loop stay as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > BODY_MAX:
            await _refuse(send, 413, "payload_too_large", _too_large())
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > BODY_MAX:
                await _refuse(send, 413, "payload_too_large", _too_large())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                await _refuse(
                    send, 422, "invalid_request", "body: the body is not UTF-8 encoded JSON"
                )
                return
            if json_depth(text) > JSON_DEPTH_MAX:
                await _refuse(
                    send,
                    422,
                    "invalid_request",
                    f"body: the JSON is nested more than {JSON_DEPTH_MAX} levels deep",
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large() -> str:
    return f"body: the request body is larger than {BODY_MAX} bytes (256 KiB), the API's limit"


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    payload = {"code": code, "message": message}
    if code == "invalid_request":
        payload["field"] = "body"
    raw = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    """Every error of the API: a code from the contract and a bilingual message."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"code": "unauthorised", "message": "missing or wrong bearer token"},
                {
                    "code": "invalid_request",
                    "message": "items: List should have at least 1 item after validation, not 0",
                    "field": "items",
                },
            ]
        }
    )
    code: ErrorCode
    message: str
    field: str | None = None  # invalid_request: the field that is wrong


class ReversalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=200)] = ""


class FaultBody(BaseModel):
    """``POST /v1/simulator/faults``: what the ledger does next (simulate mode only)."""

    model_config = ConfigDict(extra="forbid")
    ledger: Literal["none", "down", "slow", "answer_lost"]
    times: Annotated[int, Field(ge=1, le=1000)] | None = None  # None: until cleared
    delay: Annotated[float, Field(ge=0, le=60)] = 0.0  # slow: seconds per settlement


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
        description=(
            "The pharmacy till agent's API for POS software and store managers "
            "(docs/pos-api.md). Money in integer fen; names and ID numbers masked. "
            "Every error is {code, message}."
        ),
    )
    app.add_middleware(BodyGuard)
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="bearer",
        description="`Authorization: Bearer <token>`: the pos or the manager token "
        "(`pos-plugin secrets set pos_token` / `manager_token`)",
    )

    def role(*allowed: str) -> Callable[..., str]:
        def check(
            authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
            _scheme: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> str:
            given = (authorization or "").removeprefix("Bearer ").strip()
            for name, token in tokens.items():
                if given and hmac.compare_digest(given, token):
                    if name not in allowed:
                        raise ApiError(403, "forbidden", f"the {name} role may not do this")
                    return name
            raise ApiError(401, "unauthorised", "missing or wrong bearer token")

        return check

    def on_the_loop(check: Callable[..., str]) -> Callable[..., Awaitable[str]]:
        """``check`` as a dependency run on the event loop: it never blocks, and a plain
        def dependency costs every request a thread-pool hop."""

        async def dependency(
            authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
            _scheme: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> str:
            return check(authorization=authorization)

        return dependency

    pos = Depends(on_the_loop(role("pos", "manager")))
    manager = Depends(on_the_loop(role("manager")))

    def err(description: str) -> dict[str, Any]:
        return {"model": ErrorBody, "description": description}

    errors: dict[int | str, dict[str, Any]] = {
        401: err("unauthorised: a missing or wrong bearer token"),
        403: err("forbidden: the pos token on a manager endpoint"),
        422: err("invalid_request: the body or a parameter is malformed; `field` names it"),
    }

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"code": e.code, "message": e.message}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code, message = {
            404: ("not_found", f"no such endpoint: {request.url.path}"),
            405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}"),
        }.get(e.status_code, ("invalid_request", str(e.detail)))
        return JSONResponse(
            {"code": code, "message": message}, status_code=e.status_code, headers=e.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = (
            dict(e.errors()[0]) if e.errors() else {"loc": (), "msg": "invalid request"}
        )
        if first.get("type") == "json_invalid":  # where in the text, not a field
            at = first.get("ctx", {}).get("error", "")
            return JSONResponse(
                {
                    "code": "invalid_request",
                    "message": f"body: not valid JSON ({at or first['msg']})",
                    "field": "body",
                },
                status_code=422,
            )
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

    def sale_answer(description: str) -> dict[str, Any]:
        return {"model": SaleResult, "description": description}

    @app.post(
        "/v1/sales",
        response_model=SaleResult,
        responses={
            **errors,
            202: sale_answer("in_progress: still running, or outcome_pending"),
            409: sale_answer(
                "failed / reversed with a code (cancelled, not_charged, interrupted, "
                "cash_fallback, card_not_presented, device_unavailable, day_closed, "
                "msgid_voided, ledger_refused); sale_ref_reused is an error body"
            ),
            422: sale_answer("refused by a rule (the code says which); invalid_request is an error body"),
            502: sale_answer("protocol_error: the reader answered something unexpected"),
            503: sale_answer("ledger_unavailable (failed or unknown), device_unavailable"),
            504: sale_answer("device_timeout: no card, voucher or PIN in time"),
        },
    )
    def create_sale(req: SaleRequest, _: str = pos) -> Response:
        """Run a sale; a repeated ``sale_ref`` answers the journaled answer, status and all.

        The pad shows the outcome once this answer is sent (``answer_sent``, a
        background task of the response), never before."""

        async def answered() -> None:
            service.answer_sent(req.sale_ref)

        def reply(result: SaleResult, http_status: int) -> Response:
            return Response(
                result.model_dump_json(), http_status, media_type="application/json",
                background=BackgroundTask(answered),
            )  # fmt: skip

        try:
            http_status, result = service.sell(req, answer_first=True)
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
                return reply(body, e.http_status)
            http_status, result = service.answer(row)
        return reply(result, http_status)

    @app.get(
        "/v1/sales/{sale_ref}",
        response_model=SaleResult,
        responses={**errors, 404: err("not_found: no such sale")},
    )
    def get_sale(
        sale_ref: str,
        wait: Annotated[
            float,
            Query(
                ge=0,
                le=WAIT_MAX,
                description="long-poll: while the sale is in_progress, wait up to this many "
                "seconds for its stage or outcome to change (0: answer at once)",
            ),
        ] = 0,
        since: Annotated[
            Stage | None,
            Query(
                description="with wait: the stage of the POS's last answer; the wait ends as "
                "soon as the sale is past it (so no stage is missed between two polls)",
            ),
        ] = None,
        _: str = pos,
    ) -> SaleResult:
        """The same body a replayed POST answers, in every state (always HTTP 200).

        With ``wait``, a sale still ``in_progress`` is answered when it moves on
        (``stage`` waiting_for_card -> waiting_for_pin -> checking -> settling, or its
        outcome) or when ``wait`` seconds have passed, whichever is first."""
        result = service.status_of(sale_ref)
        if result is None:
            raise ApiError(404, "not_found", f"no sale {sale_ref}")
        deadline = time.monotonic() + wait
        seen = (result.status, since or result.stage, result.code)
        if since is not None and (result.status, result.stage, result.code) != seen:
            return result  # already past what the POS last saw
        while result.status == "in_progress" and (left := deadline - time.monotonic()) > 0:
            service.wait_for_change(min(left, 0.25))
            now = service.status_of(sale_ref)
            if now is not None and (now.status, now.stage, now.code) != seen:
                return now
        return result

    @app.post(
        "/v1/sales/{sale_ref}/cancel",
        responses={**errors, 409: err("not_waiting: nothing is waiting for the customer")},
    )
    def cancel_sale(sale_ref: str, _: str = pos) -> dict[str, Any]:
        if not service.cancel(sale_ref):
            raise ApiError(409, "not_waiting", f"sale {sale_ref} is not waiting for the customer")
        return {"sale_ref": sale_ref, "cancelling": True}

    @app.post(
        "/v1/sales/{sale_ref}/reversal",
        response_model=SaleResult,
        responses={
            **errors,
            404: err("not_found: no such sale"),
            409: err("not_reversible (only a settled sale), ledger_refused"),
            503: err("ledger_unavailable: retry the reversal later"),
        },
    )
    def reverse_sale(
        sale_ref: str, body: ReversalBody | None = None, _: str = manager
    ) -> SaleResult:
        try:
            return service.reverse(sale_ref, (body or ReversalBody()).reason)
        except SaleError as e:
            raise ApiError(e.http_status, e.code, e.message) from None

    @app.post(
        "/v1/balance-inquiries",
        response_model=BalanceResult,
        responses={
            **errors,
            409: err("device_unavailable (another sale), card_not_presented, cancelled"),
            422: err("pin_wrong, pin_blocked, card_not_found, credential_mismatch, invalid_request"),
            502: err("protocol_error"),
            503: err("device_unavailable, ledger_unavailable"),
            504: err("device_timeout"),
        },
    )
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
            # national platform: sales (3505) and returns (3506) not acknowledged yet
            "uploads_owed": service.journal.uploads_owed_count(),
            # A card not taken within card_removal_timeout: the next sale refuses it.
            "card_left_in_reader": service.card_left_in_reader,
        }

    @app.get("/v1/devices")
    def devices(_: str = pos) -> dict[str, Any]:
        return device_status()

    if simulator is not None:

        @app.post(
            "/v1/simulator/present",
            responses={**errors, 404: err("not_found: no such card or voucher in the world")},
        )
        def sim_present(body: PresentBody, _: str = pos) -> dict[str, Any]:
            try:
                if body.card_no:
                    simulator.present_card(body.card_no, body.pin, at_once=body.at_once)
                elif body.evoucher_token:
                    simulator.scan_voucher(body.evoucher_token, at_once=body.at_once)
                else:
                    raise ApiError(422, "invalid_request", "give card_no or evoucher_token")
            except (KeyError, ValueError):  # the simulator says "no card ... in the world"
                raise ApiError(
                    404, "not_found", "no such card or voucher in the world file"
                ) from None
            return {"presented": True}

        @app.post("/v1/simulator/remove", responses=errors)
        def sim_remove(_: str = pos) -> dict[str, Any]:
            simulator.remove_card()
            return {"removed": True}

        @app.post("/v1/simulator/faults", responses=errors)
        def sim_faults(body: FaultBody, _: str = pos) -> dict[str, Any]:
            """Make the ledger misbehave for the next ``times`` calls (none: until cleared):
            ``down``, ``slow`` (``delay`` seconds per settlement), ``answer_lost`` (it
            commits, the answer is lost: the sale's outcome is unknown), ``none``. On the
            national backend ``slow`` and ``answer_lost`` are armed in the embedded
            platform's hooks (ledger/nhsa/simulated.py), ``down`` in the agent."""
            ledger = service.ledger
            if not hasattr(ledger, "set_fault"):
                raise ApiError(404, "not_found", "this agent's ledger takes no faults")
            f = ledger.set_fault(body.ledger, body.times, body.delay)
            return {"ledger": f.kind, "times": f.times, "delay": f.delay}

    if extra is not None:
        extra(app, role)
    _document(app)
    return app


# Answered by any route, before or around it: a wrong method, a body the guard refuses,
# an unexpected error (never a traceback).
_EVERYWHERE = {
    "405": "method_not_allowed: the path exists, the method does not",
    "413": "payload_too_large: the body is larger than 256 KiB",
    "500": "internal_error: the agent hit an unexpected error; the sale's state is in GET",
}
_EXAMPLES: dict[str, Any] = {
    "settled": {
        "sale_ref": "R20261123-0001",
        "status": "settled",
        "msgid": MSGID_EXAMPLE,
        "settlement_id": "S000006",
        "total": 3700,
        "account_payable": 3700,
        "personal_account": 3700,
        "mutual_aid": 0,
        "family": [],
        "cash": 0,
        "skipped": [],
        "notices": [],
        "receipt": ["                 朝阳康宁大药房", "..."],
    },
    "refused": {
        "sale_ref": "R20261123-0002",
        "status": "refused",
        "code": "card_not_patients_own",
        "message": "此卡不是用药人本人的卡 / the card is not the patient's own card",
    },
    "outcome_pending": {
        "sale_ref": "R20261123-0003",
        "status": "in_progress",
        "stage": "settling",
        "code": "outcome_pending",
        "msgid": MSGID_EXAMPLE,
        "message": "正在向医保中心确认本笔结果，请勿重复收款，稍后再查 / the outcome is being "
        "confirmed with the insurance ledger: do not take payment again, ask again shortly",
    },
}


def _document(app: FastAPI) -> None:
    """Complete the generated OpenAPI: the bearer scheme on every token route, the
    statuses every route may answer, each with the ``{code, message}`` body, the
    anyOf where one status carries a sale's answer or an error body, and examples."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        error_ref = {"$ref": "#/components/schemas/ErrorBody"}
        sale_ref_ = {"$ref": "#/components/schemas/SaleResult"}
        for path, ops in doc.get("paths", {}).items():
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                for response in responses.values():  # FastAPI's own 422 shape is not ours
                    content = response.get("content", {}).get("application/json", {})
                    if "HTTPValidationError" in json.dumps(content.get("schema", {})):
                        content["schema"] = error_ref
                        response["description"] = (
                            "invalid_request: a parameter or the body is malformed; `field` names it"
                        )
                everywhere = dict(_EVERYWHERE)
                if op.get("security"):
                    everywhere["401"] = "unauthorised: a missing or wrong bearer token"
                    everywhere["403"] = "forbidden: the pos token on a manager endpoint"
                for status, description in everywhere.items():
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": error_ref}},
                        },
                    )
                if (path, method) == ("/v1/sales", "post"):
                    for status in ("409", "422"):  # a sale's answer, or an error body
                        content = responses[status]["content"]["application/json"]
                        content["schema"] = {"anyOf": [sale_ref_, error_ref]}
                    for name, example in _EXAMPLES.items():
                        status = {"settled": "200", "refused": "422"}.get(name, "202")
                        content = responses[status]["content"]["application/json"]
                        content.setdefault("examples", {})[name] = {"value": example}
        for unused in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
