"""The POS API contract (issue 15): {code, message} everywhere, the OpenAPI document
complete and equal to docs/pos-api.md, the long-poll through every stage, fault
injection in simulate mode, and the example POS client run as a POS would run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from pos_plugin.agent import Agent
from pos_plugin.sale.models import SaleRequest

from .conftest import ZHANG_WEI, Pos, balances, item

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "pos-api.md").read_text("utf-8")
COLD = [item("6901", "A", 2, 1850)]


def raw(agent: Agent, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {agent.tokens['pos']}", **kw.pop("headers", {})}
    return requests.request(method, agent.url + path, headers=headers, timeout=30, **kw)


def is_error_body(r: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    return body


# --------------------------------------------------------------------------- errors


def test_every_error_everywhere_is_code_and_message(agent: Agent) -> None:
    is_error_body(raw(agent, "GET", "/v1/no-such-thing"), 404, "not_found")
    is_error_body(raw(agent, "DELETE", "/v1/sales"), 405, "method_not_allowed")
    is_error_body(raw(agent, "PUT", "/v1/health"), 405, "method_not_allowed")
    json_h = {"content-type": "application/json"}
    body = is_error_body(
        raw(agent, "POST", "/v1/sales", data=b'{"sale_ref": "\xff\xfe"}', headers=json_h),
        422,
        "invalid_request",
    )
    assert body["field"] == "body" and "UTF-8" in body["message"]
    deep = '{"sale_ref": ' + "[" * 40 + "]" * 40 + "}"
    body = is_error_body(
        raw(agent, "POST", "/v1/sales", data=deep, headers=json_h), 422, "invalid_request"
    )
    assert "16 levels" in body["message"]
    # Brackets inside strings are text, not depth.
    texty = json.dumps({"sale_ref": "[[[[" * 10, "items": []})
    assert raw(agent, "POST", "/v1/sales", data=texty, headers=json_h).json()["field"] != "body"
    big = json.dumps({"sale_ref": "R", "items": [], "pad": "x" * (256 * 1024)})
    is_error_body(
        raw(agent, "POST", "/v1/sales", data=big, headers=json_h), 413, "payload_too_large"
    )
    body = is_error_body(
        raw(agent, "POST", "/v1/sales", data="{oops", headers=json_h), 422, "invalid_request"
    )
    assert body["field"] == "body"
    is_error_body(raw(agent, "GET", "/v1/sales/X", headers={"Authorization": "Bearer no"}), 401,
                  "unauthorised")  # fmt: skip
    is_error_body(raw(agent, "POST", "/v1/sales/X/reversal", json={}), 403, "forbidden")
    is_error_body(raw(agent, "GET", "/v1/sales/X?wait=31"), 422, "invalid_request")
    # Nothing of those was journaled.
    assert agent.service.journal.query("SELECT count(*) AS n FROM sales")[0]["n"] == 0


# --------------------------------------------------------------------------- OpenAPI


def openapi(agent: Agent) -> dict[str, Any]:
    r = requests.get(agent.url + "/openapi.json", timeout=10)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def test_openapi_has_the_bearer_scheme_enums_and_every_error_status(agent: Agent) -> None:
    doc = openapi(agent)
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    schemas = doc["components"]["schemas"]
    result = schemas["SaleResult"]["properties"]
    assert set(_enum(result["status"])) == {
        "settled", "refused", "failed", "unknown", "reversed", "in_progress"
    }  # fmt: skip
    assert {"outcome_pending", "not_charged", "interrupted", "cash_fallback"} <= set(
        _enum(result["code"])
    )
    assert set(_enum(result["stage"])) == {
        "scanning_trace_codes", "waiting_for_card", "waiting_for_pin", "checking", "settling"
    }  # fmt: skip
    assert set(_enum(schemas["SaleRequest"]["properties"]["credential"])) == {"card", "evoucher"}
    assert set(_enum(schemas["Buyer"]["properties"]["role"])) == {"self", "proxy"}
    assert "unauthorised" in _enum(schemas["ErrorBody"]["properties"]["code"])
    for path, ops in doc["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/reconciliation"):
            continue
        for method, op in ops.items():
            statuses = set(op["responses"])
            assert {"405", "413", "500"} <= statuses, (method, path)
            if path != "/v1/health":
                assert op["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= statuses, (method, path)
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    refs = json.dumps(schema)
                    assert "ErrorBody" in refs or "SaleResult" in refs, (method, path, status)
    sale = doc["paths"]["/v1/sales"]["post"]["responses"]
    example = sale["200"]["content"]["application/json"]["examples"]["settled"]["value"]
    assert len(example["msgid"]) == 30


def _enum(prop: dict[str, Any]) -> list[str]:
    """An enum, also where pydantic wraps an optional one in anyOf."""
    if "enum" in prop:
        return list(prop["enum"])
    for alt in prop.get("anyOf", ()):
        if "enum" in alt:
            return list(alt["enum"])
    raise AssertionError(f"no enum in {prop}")


def doc_codes() -> dict[str, set[int]]:
    """The error table of docs/pos-api.md: code -> its HTTP statuses."""
    table: dict[str, set[int]] = {}
    for code, statuses in re.findall(r"^\| `([a-z_]+)` \| ([0-9/]+) \|", DOC, re.M):
        table[code] = {int(s) for s in statuses.split("/")}
    return table


def test_docs_and_the_live_openapi_say_the_same_codes_statuses_and_shapes(agent: Agent) -> None:
    doc = openapi(agent)
    schemas = doc["components"]["schemas"]
    documented = doc_codes()
    live = set(_enum(schemas["ErrorBody"]["properties"]["code"]))
    assert set(documented) == live, set(documented) ^ live
    sale_codes = set(_enum(schemas["SaleResult"]["properties"]["code"]))
    assert sale_codes <= live
    answered = {int(s) for ops in doc["paths"].values() for op in ops.values()
                for s in op["responses"]}  # fmt: skip
    for code, statuses in documented.items():
        assert statuses <= answered, (code, statuses - answered)
    post = {int(s) for s in doc["paths"]["/v1/sales"]["post"]["responses"]}
    for code in sale_codes:
        assert documented[code] <= post, (code, documented[code] - post)
    for status in _enum(schemas["SaleResult"]["properties"]["status"]):
        assert f"`{status}`" in DOC, status
    for stage in _enum(schemas["SaleResult"]["properties"]["stage"]):
        assert f"`{stage}`" in DOC, stage
    # The example shapes: the sale request validates, the answers' keys are the schema's.
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", DOC, re.S)]
    requests_ = [b for b in blocks if "items" in b]
    answers = [b for b in blocks if "status" in b and "sale_ref" in b]
    assert requests_ and answers
    for b in requests_:
        SaleRequest.model_validate(b)
    for b in answers:
        assert set(b) <= set(schemas["SaleResult"]["properties"]), set(b) - set(
            schemas["SaleResult"]["properties"]
        )
        assert b["status"] in _enum(schemas["SaleResult"]["properties"]["status"])
    detail_fields = set(schemas["Receipt"]["properties"])
    section = re.split(r"\n##+ ", DOC.split("### Receipts")[1], maxsplit=1)[0]
    documented_fields = {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }
    assert documented_fields == detail_fields, documented_fields ^ detail_fields
    # Every msgid in the docs has the generator's 30 characters.
    for name in ("pos-api.md", "ledger-api.md"):
        text = (ROOT / "docs" / name).read_text("utf-8")
        for msgid in re.findall(r"(?<![A-Z0-9])H\d{11}\d{12,}", text):
            assert len(msgid) == 30, (name, msgid)


# --------------------------------------------------------------------------- long-poll


def test_long_poll_follows_the_sale_through_every_stage(pos: Pos, agent: Agent) -> None:
    release = threading.Event()
    verify = agent.service.devices.verify_pin

    def slow_pin(timeout: float, cancel: Any = None) -> Any:
        release.wait(10)  # the customer takes a moment over the PIN
        return verify(timeout, cancel)

    agent.service.devices.verify_pin = slow_pin  # type: ignore[method-assign]
    answer: dict[str, Any] = {}

    def sell() -> None:
        answer["status"], answer["body"] = pos.call(
            "POST", "/v1/sales",
            {"sale_ref": "LP1", "items": COLD, "patient": pos.doc(ZHANG_WEI)},
        )  # fmt: skip

    thread = threading.Thread(target=sell)
    thread.start()
    deadline = time.monotonic() + 5
    while pos.call("GET", "/v1/sales/LP1")[0] == 404 and time.monotonic() < deadline:
        time.sleep(0.02)
    status, body = pos.call("GET", "/v1/sales/LP1?wait=0")
    assert (status, body["status"], body["stage"]) == (200, "in_progress", "waiting_for_card")

    t0 = time.monotonic()
    threading.Timer(0.3, pos.present, args=("B11000001",)).start()
    status, body = pos.call("GET", "/v1/sales/LP1?wait=10")
    assert body["stage"] == "waiting_for_pin" and time.monotonic() - t0 < 5

    assert (
        pos.call("POST", "/v1/simulator/faults", {"ledger": "slow", "delay": 1.0, "times": 1})[0]
        == 200
    )
    release.set()
    seen = []
    while body["status"] == "in_progress" and len(seen) < 10:
        # since=: the stage last seen, so a stage reached between two polls is not missed
        status, body = pos.call("GET", f"/v1/sales/LP1?wait=10&since={body['stage']}")
        seen.append(body["stage"] or body["status"])
    assert "settling" in seen and seen[-1] == "settled", seen
    assert [s for s in seen if s in ("checking", "settling")] in (
        ["checking", "settling"], ["settling"]
    )  # fmt: skip
    thread.join(10)
    assert answer["status"] == 200 and answer["body"] == body
    pos.remove()
    # Once done, wait answers at once.
    t0 = time.monotonic()
    assert pos.call("GET", "/v1/sales/LP1?wait=20")[1] == body and time.monotonic() - t0 < 2


# --------------------------------------------------------------------------- faults


def test_faults_let_an_integrator_reach_failed_and_unknown(pos: Pos, agent: Agent) -> None:
    before = balances(agent, "B11000001")
    assert pos.call("POST", "/v1/simulator/faults", {"ledger": "down", "times": 1})[0] == 200
    status, body = pos.sale("F1", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"], body["code"]) == (503, "failed", "ledger_unavailable")
    status, body = pos.sale("F2", "B11000001", ZHANG_WEI, COLD)  # the fault was used up
    assert status == 200 and body["status"] == "settled"

    assert pos.call("POST", "/v1/simulator/faults", {"ledger": "answer_lost", "times": 1})[0] == 200
    status, body = pos.sale("F3", "B11000001", ZHANG_WEI, COLD)
    assert (status, body["status"], body["code"]) == (503, "unknown", "ledger_unavailable")
    deadline = time.monotonic() + 20
    while body["status"] == "unknown" and time.monotonic() < deadline:
        time.sleep(0.2)
        body = pos.call("GET", "/v1/sales/F3")[1]
    assert (body["status"], body["code"]) == ("reversed", "cash_fallback")
    # F2 charged, F3 charged and reversed (the customer paid cash): one charge in all.
    assert balances(agent, "B11000001")[ZHANG_WEI] == before[ZHANG_WEI] - 3700
    status, body = pos.call("POST", "/v1/simulator/faults", {"ledger": "none"})
    assert (status, body["ledger"]) == (200, "none")
    status, body = pos.call("POST", "/v1/simulator/faults", {"ledger": "melt"})
    assert (status, body["code"]) == (422, "invalid_request")


# --------------------------------------------------------------------------- example client


def test_the_example_pos_client_sells_and_prints_the_receipt(agent: Agent) -> None:
    env = {
        **os.environ,
        "POS_PLUGIN_URL": agent.url,
        "POS_PLUGIN_TOKEN": agent.tokens["pos"],
        "POS_PLUGIN_SIMULATE_CARD": "B11000001",
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "pos_client_example.py")],
        env=env, capture_output=True, text=True, encoding="utf-8", timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "医保结算单" in run.stdout and "¥37.00" in run.stdout
    rows = agent.service.journal.in_state("settled")
    assert len(rows) == 1 and rows[0].sale_ref.startswith("EXAMPLE-")
