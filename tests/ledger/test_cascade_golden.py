"""Golden cascade specs: starting balances and bindings in, expected legs and cash out.

The agent's planner (pos_plugin.rules: family.eligible_payers + cascade.allocate)
plans from the ledger's one-round-trip lookup; the sandbox commits the plan
and re-checks every leg. Each row runs against a fresh SQLite sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.models import Leg
from pos_plugin.rules.cascade import allocate
from pos_plugin.rules.family import eligible_payers, parse_province_pair
from pos_plugin.world import World, load_world

from .conftest import CARDS, P1, P2, P3, P4, P5, P9, PA, check_books, make_client, sale

# (name, patient, balances override, cross-province pairs, payable, cash-only,
#  expected legs [(account, amount)], expected cash)
SPECS = [
    ("child without account: both parents", P3, {}, (), 25000, 0,
     [(PA[P1], 20000), (PA[P2], 5000)], 0),
    ("child: parents run dry, rest cash", P3, {}, (), 40000, 0,
     [(PA[P1], 20000), (PA[P2], 15000)], 5000),
    ("own first, spouse; spouse's parent and other province skipped", P1, {}, (), 30000, 1000,
     [(PA[P1], 20000), (PA[P2], 10000)], 1000),
    ("cross-province pair opened: Hebei parent pays", P1, {}, ("11-13",), 60000, 0,
     [(PA[P1], 20000), (PA[P2], 15000), (PA[P5], 25000)], 0),
    ("empty sibling and residents' child skipped, parent pays", P2, {}, (), 70000, 0,
     [(PA[P2], 15000), (PA[P4], 50000)], 5000),
    ("own account empty, binding suspended: all cash", P9, {}, (), 1000, 0, [], 1000),
    ("own account covers all", P1, {P1: 99999}, (), 1234, 66, [(PA[P1], 1234)], 66),
    ("own account zero: spouse pays from the first fen", P1, {P1: 0}, (), 500, 0,
     [(PA[P2], 500)], 0),
]


def _world(balances: dict[str, int], pairs: tuple[str, ...]) -> World:
    base = load_world()
    persons = tuple(
        p.model_copy(update={"personal_account_balance": balances[p.psn_no]})
        if p.psn_no in balances else p
        for p in base.persons
    )
    return base.model_copy(update={"persons": persons, "cross_province_pairs": pairs})


@pytest.mark.parametrize(
    ("patient", "balances", "pairs", "payable", "cash_only", "legs", "cash"),
    [pytest.param(*row[1:], id=row[0]) for row in SPECS],
)
def test_golden_cascade(tmp_path: Path, patient: str, balances: dict[str, int],
                        pairs: tuple[str, ...], payable: int, cash_only: int,
                        legs: list[tuple[str, int]], cash: int) -> None:
    world = _world(balances, pairs)
    with SandboxServer(str(tmp_path / "ledger.db"), world) as srv:
        client = make_client(srv.url)
        lk = client.lookup(CARDS[patient])
        decision = eligible_payers(lk.person, lk.bindings,
                                   [parse_province_pair(p) for p in pairs])
        plan = allocate(account_payable=payable, cash_only=cash_only, patient_psn_no=patient,
                        personal_account=lk.personal_account, family_payers=decision.eligible)
        assert [(leg.account_id, leg.amount) for leg in plan.legs] == legs
        assert plan.cash == cash
        planned: tuple[Leg, ...] = plan.legs
        s = client.settle(sale(patient, planned, cash=plan.cash))
        assert s.total == payable + cash_only and s.cash == cash
        before = {b.payer_account_id: b.available_balance for b in lk.bindings}
        if lk.personal_account is not None:
            before[lk.personal_account.account_id] = lk.personal_account.balance
        assert s.balances_after == {a: before[a] - amt for a, amt in legs}
        check_books(srv, world)
