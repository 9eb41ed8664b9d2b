"""Two tills draining the same family payer at once.

Never negative, never a lost posting; the loser gets insufficient_funds with
fresh balances, re-plans with the SAME msgid (a rejection does not bind it),
and pays the rest in cash.
"""

from __future__ import annotations

import threading

from pos_plugin.ledger.errors import InsufficientFunds
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.models import Leg

from .conftest import CARDS, P1, P2, P3, PA, aid, make_client, sale

ROUNDS = 20
ASK = 1000


def test_two_tills_drain_one_payer(sandbox: SandboxServer) -> None:
    # Till A sells to 张小明 (P3), till B to 张伟 (P1); both draw on 王芳 (P2, 15000).
    plans = {"A": (P3, "BND-0002"), "B": (P1, "BND-0003")}
    paid: dict[str, int] = {"A": 0, "B": 0}
    rejected: dict[str, int] = {"A": 0, "B": 0}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def till(name: str) -> None:
        patient, binding = plans[name]
        client = make_client(sandbox.url)
        start.wait()
        try:
            for _ in range(ROUNDS):
                req = sale(patient, (aid(P2, binding, ASK),), cash=10)
                try:
                    s = client.settle(req)
                except InsufficientFunds as exc:
                    rejected[name] += 1
                    left = exc.fresh[PA[P2]]
                    assert left < ASK
                    legs: tuple[Leg, ...] = (aid(P2, binding, left),) if left else ()
                    s = client.settle(
                        sale(patient, legs, cash=10 + ASK - left, mid=req.msgid)
                    )
                assert s.total == ASK + 10
                paid[name] += s.mutual_aid
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=till, args=(n,)) for n in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert paid["A"] + paid["B"] == 15000  # every fen of the payer, never more
    assert sum(rejected.values()) >= 1
    lk = make_client(sandbox.url).lookup(CARDS[P2])
    assert lk.personal_account is not None and lk.personal_account.balance == 0
    assert sandbox.store is not None
    with sandbox.store.read() as tx:
        row = tx.one("SELECT COUNT(*), SUM(amount) FROM postings WHERE account_id = ?", PA[P2])
    assert row is not None and int(row[1]) == -15000
