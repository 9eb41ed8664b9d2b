"""``pos-plugin demo``: a scripted day at the counter, through the real local API.

The demo plays the POS: it drives the device simulator (a customer presenting a
card and typing a PIN) and calls the agent's HTTP API, which talks to the
simulator over a pty with pyserial and settles against the sandbox ledger on
loopback. Every receipt is printed masked, in yuan; the exit code is non-zero if
any scenario did not come out as expected.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from pos_plugin.agent import Agent, start_simulated
from pos_plugin.money import yuan
from pos_plugin.world import World


@dataclass
class Pos:
    """A minimal POS client: what an integrator writes against docs/pos-api.md."""

    url: str
    token: str
    http: requests.Session

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        r = self.http.request(
            method,
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=60,
        )
        return r.status_code, r.json()


def _doc(world: World, psn_no: str) -> dict[str, str]:
    p = world.person(psn_no)
    return {"doc_type": "resident_id", "number": p.id_number, "name": p.name}


# A catalogue code of each class in the example world's catalogue: on the national
# platform only a line with a catalogue code is settled (the platform classes it).
CATALOGUE = {"A": "XA01AAA0001", "B": "XB01BBB0001", "C": "ZC01CCC0001"}


def _item(sku: str, name: str, cls: str, qty: int, price: int, **kw: Any) -> dict[str, Any]:
    line = {"sku": sku, "name": name, "insurance_class": cls, "quantity": qty, "unit_price": price}
    if cls in CATALOGUE:
        line["catalogue_code"] = CATALOGUE[cls]
    return line | kw


ZHANG_WEI, WANG_FANG, XIAOMING, LI_NA = (
    "11000000000000000001",
    "11000000000000000002",
    "11000000000000000003",
    "11000000000000000006",
)
COLD = [_item("6901", "感冒灵颗粒", "A", 2, 1850)]


def with_trace_codes(ref: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The basket as a national-platform POS sends it: every catalogue line with one 追溯码
    per pack (20 digits starting with 8), distinct per sale, line and pack, so no code is
    ever sold twice in the demo's day."""
    n = int("".join(c for c in ref if c.isdigit()) or 0) % 10**7
    return [
        item | {"trace_codes": [f"8{n:07d}{k:03d}{pack:09d}" for pack in range(item["quantity"])]}
        if item.get("catalogue_code") else item
        for k, item in enumerate(items, 1)
    ]  # fmt: skip


def scenarios(world: World, *, national: bool = False
              ) -> list[tuple[str, Callable[[Pos, Agent], tuple[bool, list[str]]]]]:  # fmt: skip
    """The day's scenarios; ``national``: the POS sends each pack's 追溯码, as a pharmacy on
    the national platform must."""
    Step = Callable[[Pos, Agent], tuple[bool, list[str]]]

    def sale(ref: str, card: str, patient: str, items: list[dict[str, Any]], *, buyer: dict[str, Any] | None = None,
             pin: Any = "correct", expect: str = "settled", code: str | None = None) -> Step:  # fmt: skip
        basket = with_trace_codes(ref, items) if national else items

        def run(pos: Pos, agent: Agent) -> tuple[bool, list[str]]:
            pos.call("POST", "/v1/simulator/present", {"card_no": card, "pin": pin})
            try:
                _, body = pos.call(
                    "POST",
                    "/v1/sales",
                    {"sale_ref": ref, "items": basket, "patient": _doc(world, patient),
                     "buyer": buyer or {"role": "self"}, "credential": "card"},
                )  # fmt: skip
            finally:
                pos.call("POST", "/v1/simulator/remove")
            return _judge(body, expect, code)

        return run

    def balance(pos: Pos, agent: Agent) -> tuple[bool, list[str]]:
        pos.call("POST", "/v1/simulator/present", {"card_no": "B11000006", "pin": "correct"})
        try:
            status, body = pos.call("POST", "/v1/balance-inquiries", {"credential": "card"})
        finally:
            pos.call("POST", "/v1/simulator/remove")
        ok = status == 200 and body.get("holder") == "李*" and body.get("balance") == 8000
        return ok, [
            f"持卡人 holder {body.get('holder')}  个人账户余额 balance {body.get('balance_yuan')}"
        ]

    def reversal(pos: Pos, agent: Agent) -> tuple[bool, list[str]]:
        status, body = pos.call("POST", "/v1/sales/DEMO-001/reversal", {"reason": "顾客退货 returned"},
                                token=agent.tokens["manager"])  # fmt: skip
        ok = status == 200 and body.get("status") == "reversed"
        return ok, [
            f"冲正 reversal of DEMO-001: {body.get('status')} ({yuan(body.get('total') or 0)} 退回 credited back)"
        ]

    proxy = {"role": "proxy", "id_document": _doc(world, LI_NA)}
    insulin = [
        _item(
            "8802", "胰岛素笔芯", "B", 2, 4000, prescription=True, prescription_ref="RX-20261123-01"
        )
    ]
    big = [_item("8801", "阿莫西林胶囊", "A", 10, 4500), _item("7702", "护手霜", "none", 1, 2500)]
    return [
        ("本人持卡购药 own card", sale("DEMO-001", "B11000001", ZHANG_WEI, COLD)),
        ("冒用他人卡被拒 impersonation refused",
         sale("DEMO-002", "B11000002", ZHANG_WEI, COLD, expect="refused", code="card_not_patients_own")),
        ("代购两证齐全 proxy with both documents", sale("DEMO-003", "B11000001", ZHANG_WEI, COLD, buyer=proxy)),
        ("代购缺证件被拒 proxy missing a document refused",
         sale("DEMO-004", "B11000001", ZHANG_WEI, COLD, buyer={"role": "proxy"}, expect="refused",
              code="proxy_evidence_missing")),
        ("配偶父母被跳过 spouse's parent skipped", sale("DEMO-005", "B11000001", ZHANG_WEI, insulin)),
        ("两位家人共济+现金 cascade over two family payers, cash rest",
         sale("DEMO-006", "B11000003", XIAOMING, big)),
        ("密码错一次再输对 wrong PIN then right", sale("DEMO-007", "B11000002", WANG_FANG, COLD, pin=["wrong", "correct"])),
        ("余额查询 balance inquiry", balance),
        ("冲正 reversal", reversal),
    ]  # fmt: skip


def _judge(body: dict[str, Any], expect: str, code: str | None) -> tuple[bool, list[str]]:
    ok = body.get("status") == expect and (code is None or body.get("code") == code)
    if body.get("status") == "settled":
        lines = list(body.get("receipt", []))
    else:
        lines = [f"拒绝 {body.get('status')} [{body.get('code')}]: {body.get('message')}"]
    return ok, lines


def _print_summary(agent: Agent) -> None:
    """The day so far, from the journal: what a manager would see at closing."""
    rows = agent.service.journal.sales_on(agent.service.settings.today())
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[r.state] = by_state.get(r.state, 0) + 1
    settled = [r for r in rows if r.state == "settled"]
    print("今日小结 summary of the day")
    print("    " + ", ".join(f"{state} {n}" for state, n in sorted(by_state.items())))
    for label, values in (
        ("合计 total", [r.total or 0 for r in settled]),
        ("个人账户 personal account", [r.personal_account or 0 for r in settled]),
        ("家庭共济 mutual aid", [r.mutual_aid or 0 for r in settled]),
        ("现金 cash", [r.cash or 0 for r in settled]),
    ):
        print(f"    {label}: {yuan(sum(values))}")
    if getattr(agent.service.ledger, "sales_upload", None) is not None:
        sent = agent.service.send_owed_uploads()  # what the recovery loop does every round
        owed = agent.service.journal.uploads_owed_count()
        print(f"    销售/退货上传 sales and returns uploaded (3505/3506): {sent} now, {owed} owed")
    print()


def _reconcile(pos: Pos, agent: Agent) -> bool:
    """End of day: the store manager reconciles the journal with the ledger's statement."""
    from pos_plugin.reconcile.cli import summary
    from pos_plugin.reconcile.national import reconcile_for

    day = agent.service.settings.today().isoformat()
    status, body = pos.call("GET", f"/v1/reconciliation?date={day}", token=agent.tokens["manager"])
    rec = reconcile_for(
        agent.service.settings.today(),
        [agent.service.journal.path],
        agent.service.ledger,
        agent.service.settings.pharmacy_code,
    )
    print("日终对账 end-of-day reconciliation (GET /v1/reconciliation)")
    for line in summary(rec).splitlines():
        print(f"    {line}")
    print(f"    经理页面 manager page: {agent.url}/manager/reconciliation?date={day}\n")
    return status == 200 and body.get("balanced") is True and rec.balanced


def run_demo(ledger_kind: str = "own") -> int:
    """Run the scripted day; 0 if every scenario came out as expected.

    ``ledger_kind`` "nhsa": the same day through the national platform's interface
    (an embedded sandbox-nhsa), where the family cascade runs centrally.
    """
    with tempfile.TemporaryDirectory(prefix="pos-plugin-demo-") as work:
        ledger = "sandbox-nhsa (national platform)" if ledger_kind == "nhsa" else "sandbox ledger"
        print(f"启动 starting: device simulator, {ledger}, local API ...")
        agent = start_simulated(
            workdir=work, card_timeout=10.0, pin_timeout=10.0, ledger_kind=ledger_kind
        )
        try:
            print(f"本地接口 local API {agent.url}\n")
            pos = Pos(agent.url, agent.tokens["pos"], requests.Session())
            assert agent.world is not None
            results = []
            national = ledger_kind == "nhsa"
            for i, (title, run) in enumerate(scenarios(agent.world, national=national), 1):
                ok, lines = run(pos, agent)
                results.append(ok)
                print(f"[{i}] {title} {'✓' if ok else '✗ UNEXPECTED'}")
                for line in lines:
                    print(f"    {line}")
                print()
            _print_summary(agent)
            # own: the statement; nhsa: 3201 and the 3202 file through 9101/9102
            results.append(_reconcile(pos, agent))
            verify = agent.service.journal.verify()
            print(
                f"日志校验 journal verify: {'ok' if verify.ok else 'BROKEN'} ({verify.events} events)"
            )
            bad = results.count(False) + (not verify.ok)
            print(f"{results.count(True)} scenarios as expected, {results.count(False)} unexpected")
            return 1 if bad else 0
        finally:
            agent.stop()
