"""An example POS client for the pos-plugin local API (docs/pos-api.md), with `requests`.

Run it against `pos-plugin serve --simulate` (the banner prints the URL and tokens):

    POS_PLUGIN_URL=http://127.0.0.1:8765 POS_PLUGIN_TOKEN=pos-... python pos_client_example.py

What it shows, in the order a POS does it:
1. the sale is started with a `sale_ref` of the POS's own (the receipt number);
2. the POST is sent with a short read timeout, so the till's screen stays alive; when
   it times out, the sale goes on in the agent, and the POS long-polls
   `GET /v1/sales/{ref}?wait=` for its stage and outcome instead;
3. a lost connection is never answered by a new sale: the same `sale_ref` (and the
   same body) always answers the first sale's result;
4. `outcome_pending` and `unknown` mean "do not take payment again";
5. the receipt lines are printed as they come (they fit the till's printer).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import requests

URL = os.environ.get("POS_PLUGIN_URL", "http://127.0.0.1:8765")
TOKEN = os.environ.get("POS_PLUGIN_TOKEN", "")
SIMULATE_CARD = os.environ.get("POS_PLUGIN_SIMULATE_CARD", "B11000001")  # simulate mode only


def sell(http: requests.Session, sale: dict[str, Any], overall: float = 180.0) -> dict[str, Any]:
    """Run one sale to its outcome; returns the agent's answer (a SaleResult)."""
    ref = sale["sale_ref"]
    try:
        r = http.post(f"{URL}/v1/sales", json=sale, timeout=(3, 2))
        answer: dict[str, Any] = r.json()
        if "status" not in answer:  # an error body {code, message}: nothing was sold
            raise SystemExit(f"refused before the sale: {answer['code']}: {answer['message']}")
    except requests.Timeout:
        answer = {"sale_ref": ref, "status": "in_progress"}  # it goes on in the agent
    deadline = time.monotonic() + overall
    while answer["status"] == "in_progress" and time.monotonic() < deadline:
        if answer.get("stage"):
            print(f"  ... {answer['stage']}", file=sys.stderr)
        params: dict[str, Any] = {"wait": 10}
        if answer.get("stage"):
            params["since"] = answer["stage"]  # wake as soon as it is past this stage
        r = http.get(f"{URL}/v1/sales/{ref}", params=params, timeout=(3, 15))
        if r.status_code == 404:  # the POST had not reached the agent yet: send it again
            r = http.post(f"{URL}/v1/sales", json=sale, timeout=(3, 2))
        answer = r.json()
    return answer


def main() -> int:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    ref = f"EXAMPLE-{int(time.time() * 1000)}"
    sale = {
        "sale_ref": ref,
        "items": [
            {"sku": "6901", "name": "感冒灵颗粒", "insurance_class": "A", "quantity": 2,
             "unit_price": 1850},
        ],
        "buyer": {"role": "self"},
        "credential": "card",
    }  # fmt: skip
    if SIMULATE_CARD:  # the simulated customer inserts the card when the pad asks
        http.post(
            f"{URL}/v1/simulator/present", json={"card_no": SIMULATE_CARD}, timeout=5
        ).raise_for_status()
    answer = sell(http, sale)
    status, code = answer["status"], answer.get("code")
    if status == "settled":
        print("\n".join(answer["receipt"]))
        return 0
    if status in ("unknown", "in_progress"):
        print(f"{ref}: outcome not known yet ({code}): do not take payment again", file=sys.stderr)
        return 2
    print(f"{ref}: {status} {code}: {answer.get('message')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
