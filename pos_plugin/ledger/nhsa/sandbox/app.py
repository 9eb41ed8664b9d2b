"""The sandbox platform's HTTP layer (FastAPI): one envelope endpoint, and test hooks.

The national interface is one POST endpoint carrying a JSON envelope whose
``infno`` names the transaction (NHSA.md §1); it is served on the path real
deployments use (``/fsi/api/rsfComIfsService/callService``) and on ``/``, so a
client configured with either URL works. Every answer is HTTP 200 with the JSON
answer envelope, success or ``infcode -1``, as the platform answers: a client
must read ``infcode``, never the status.

Fault hooks (``faults.Faults``) are applied here, around the platform's call,
because some need the connection: losing an answer after the commit closes the
socket without writing a byte (through the server's transport, see ``_Dropper``).
``/_sandbox/*`` (arm faults, read the audit and balances) exists only when the
server was started with ``faults=True``.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from decimal import Decimal
from email.parser import BytesParser
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pos_plugin.ledger.nhsa.sandbox import wire
from pos_plugin.ledger.nhsa.sandbox.faults import Faults
from pos_plugin.ledger.nhsa.sandbox.platform import Platform

log = logging.getLogger("pos_plugin.ledger.nhsa.sandbox")

ENDPOINT = "/fsi/api/rsfComIfsService/callService"
_DROP = b"x-nhsa-sandbox-drop"
MEDIA = "application/json;charset=UTF-8"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Dropper:
    """Outermost ASGI wrapper: an answer marked "drop" is never sent; the socket is closed.

    Why here: only the server's own ``send`` reaches the connection. uvicorn's
    ``send`` is a bound method of the request cycle that holds the transport;
    closing it makes the client see the connection end with no answer at all, the
    way a gateway reset or a dead link looks. Elsewhere (another ASGI server) the
    answer is cut after the headers instead, which a client hears the same way.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropped = False

        async def guarded(message: Message) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start" and any(
                k == _DROP for k, _ in message.get("headers", [])
            ):
                dropped = True
                transport = getattr(getattr(send, "__self__", None), "transport", None)
                if transport is not None:
                    transport.close()
                    return
                headers = [(k, v) for k, v in message.get("headers", []) if k != _DROP]
                await send({**message, "headers": headers})
                raise ConnectionAbortedError("answer dropped by a sandbox fault")
            if not dropped:
                await send(message)

        await self.app(scope, receive, guarded)
        if dropped:  # let the server see the connection lost before it looks at the cycle
            for _ in range(3):
                await asyncio.sleep(0)


def _is_accepted(content_type: str | None) -> bool:
    """JSON as the plain transport sends it; text/plain as Guangdong's gateway does."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media in ("application/json", "text/plain") or media.endswith("+json")


def _multipart_9101(content_type: str, raw: bytes) -> Any:
    """The multipart 9101 (Guangdong demo, Hunan appendix A): ``jsonStr`` is the envelope,
    ``file`` the ZIP; returned as the JSON form's envelope (``in`` = Base64) so the
    platform has one code path. Parsed with the standard library's MIME parser."""
    msg = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    parts: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = payload
    if "jsonStr" not in parts:
        raise ValueError("multipart without jsonStr")
    body = wire.loads(parts["jsonStr"].decode("utf-8"))
    if isinstance(body, dict) and isinstance(body.get("input"), dict) and "file" in parts:
        node = body["input"].setdefault("fsUploadIn", {})
        if isinstance(node, dict):
            node["in"] = base64.b64encode(parts["file"]).decode("ascii")
    return body


def _broken(text: str, which: str) -> str:
    """The answer with one §2 invariant broken by one fen (the fault ``break_invariants``)."""
    body = wire.loads(text)
    info = body["output"]["setlinfo"]
    cent = Decimal("0.01")
    if which == "psn_part_amt":  # psn_part_amt != acct_pay + psn_cash_pay
        info["psn_part_amt"] = info["psn_part_amt"] + cent
    elif which == "medfee_sumamt":  # medfee != fund + psn_part + hosp
        info["medfee_sumamt"] = info["medfee_sumamt"] + cent
    else:  # acct_mulaid_pay beyond acct_pay
        info["acct_mulaid_pay"] = info["acct_pay"] + cent
    return wire.dumps(body)


def create_app(platform: Platform, faults: Faults, *, test_endpoints: bool = False) -> ASGIApp:
    """The ASGI app around one ``Platform``; ``test_endpoints`` adds ``/_sandbox/*``."""
    app = FastAPI(
        title="pos-plugin national-platform sandbox",
        version="1",
        description="Reference 国家医保 定点医药机构接口 for pharmacy tills. See docs/nhsa.md.",
    )

    async def envelope(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        multipart = (content_type or "").lower().startswith("multipart/form-data")
        if not multipart and not _is_accepted(content_type):
            return Response(platform.refusal(
                "Content-Type 应为 application/json (the envelope is JSON)"), media_type=MEDIA)
        raw = await request.body()
        try:
            body = _multipart_9101(content_type or "", raw) if multipart else \
                wire.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Response(platform.refusal("报文不是有效的UTF-8 JSON (not valid JSON)"),
                            media_type=MEDIA)
        infno = body.get("infno") if isinstance(body, dict) else None
        infno = infno if isinstance(infno, str) else ""
        faults.calls.append(infno)  # what the till sent, in order (for the tests and benches)
        if infno == "9102":  # the file itself on success (application/octet-stream)
            got = await run_in_threadpool(platform.download, body)
            if isinstance(got, bytes):
                return Response(got, media_type="application/octet-stream")
            return Response(got, media_type=MEDIA)
        if faults.take_expiry():
            await run_in_threadpool(platform.expire_sign_ins)
        fail = faults.take("fail", infno)
        if fail is not None:
            return Response(platform.refusal(fail.err_msg), media_type=MEDIA)
        slow = faults.take("delay", infno)
        if slow is not None:
            await asyncio.sleep(slow.seconds)
        try:
            text = await run_in_threadpool(platform.call, body)
        except Exception as exc:  # a bug or a locked database: still the envelope's shape
            # The client parses every answer as an envelope; the traceback (never the
            # request, which may carry an ID number) stays in the server's log.
            log.exception("sandbox-nhsa: unexpected error in %s", infno or "?")
            return Response(platform.refusal(
                f"平台内部错误 (the sandbox hit an unexpected error: {type(exc).__name__})"),
                media_type=MEDIA)
        if infno == "2102" and text.startswith('{"infcode":0'):
            brk = faults.take("break_invariants", "2102")
            if brk is not None:
                text = _broken(text, brk.which)
        lose = faults.take("lose_answer", infno)
        if lose is not None:
            if lose.mode == "close":
                return Response(text, media_type=MEDIA, headers={_DROP.decode(): "1"})
            await asyncio.sleep(lose.seconds)
        return Response(text, media_type=MEDIA)

    app.add_api_route(ENDPOINT, envelope, methods=["POST"], include_in_schema=False)
    app.add_api_route("/", envelope, methods=["POST"], include_in_schema=False)

    if test_endpoints:
        async def arm(request: Request) -> Response:
            try:
                body = json.loads(await request.body() or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                faults.arm_from_json(body)
            except ValueError as e:
                return JSONResponse({"code": "invalid_request", "message": str(e)}, 422)
            return JSONResponse({"armed": faults.armed()})

        async def armed(_: Request) -> Response:
            return JSONResponse({"armed": faults.armed()})

        def audit(_: Request) -> Response:
            store = platform.store
            return JSONResponse({"total_balance": store.total_balance(),
                                 "world_total": int(store.meta("world_total") or 0),
                                 "problems": store.audit()})

        def balances(_: Request) -> Response:
            return JSONResponse(platform.store.balances())

        app.add_api_route("/_sandbox/faults", arm, methods=["POST"])
        app.add_api_route("/_sandbox/faults", armed, methods=["GET"])
        app.add_api_route("/_sandbox/audit", audit, methods=["GET"])
        app.add_api_route("/_sandbox/balances", balances, methods=["GET"])

    return _Dropper(app)
