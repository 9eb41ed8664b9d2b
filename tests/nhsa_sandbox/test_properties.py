"""Property tests: the cascade's invariants, on the pure function and over real HTTP."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_plugin.ledger.nhsa.sandbox.platform import Payer, cascade
from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer

from .conftest import (
    CODE_A_A,
    CODE_B_B,
    CODE_C,
    CODE_LIMITED,
    P1,
    P2,
    P3,
    P5,
    PA,
    Wire,
    assert_invariants,
    fen,
)

payers = st.lists(st.integers(0, 50_000), max_size=5).map(
    lambda bs: [Payer(f"PA{i}", f"P{i}", b, f"B{i}") for i, b in enumerate(bs)])
own = st.one_of(st.none(), st.integers(0, 50_000).map(lambda b: Payer("PAOWN", "OWN", b)))


@given(st.integers(0, 200_000), own, payers, st.sampled_from(["0", "1", "2"]))
def test_cascade_invariants(payable: int, mine: Payer | None, family: list[Payer],
                            flag: str) -> None:
    legs = cascade(payable, mine, family, flag)
    paid = sum(a for _, a in legs)
    chain = ([mine] if mine is not None and flag != "0" else []) + (family if flag == "2"
                                                                   else [])
    assert 0 <= paid <= payable
    assert all(0 < a <= p.balance for p, a in legs)
    assert [p for p, _ in legs] == [p for p in chain if p in {q for q, _ in legs}]  # in order
    if flag == "0":
        assert legs == []
    if flag == "1":
        assert all(p.binding_id is None for p, _ in legs)
    # a payer pays only once every payer before it in the chain gave all it had
    for i, (p, _) in enumerate(legs):
        before = chain[: chain.index(p)]
        assert all(q.balance == dict((x.account_id, a) for x, a in legs).get(q.account_id, 0)
                   for q in before), i
    if paid < payable:  # cash only when every account in the chain is empty
        assert sum(p.balance for p in chain) == paid


line = st.tuples(st.sampled_from([CODE_A_A, CODE_B_B, CODE_C, CODE_LIMITED]),
                 st.integers(1, 5), st.integers(1, 6000))
op = st.tuples(st.sampled_from([P1, P2, P3, P5]), st.lists(line, min_size=1, max_size=4),
               st.sampled_from(["0", "1", "2"]), st.sampled_from(["keep", "2601", "2103"]))


def _personal(sandbox: NhsaSandboxServer) -> dict[str, int]:
    assert sandbox.store is not None
    return {k: v for k, v in sandbox.store.balances().items() if k.startswith("PA")}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=6))
def test_every_answer_keeps_the_invariants_and_the_books(
    wire: Wire, sandbox: NhsaSandboxServer, ops: list[tuple[str, Any, str, str]]
) -> None:
    assert sandbox.store is not None
    for psn, lines, flag, then in ops:
        before = _personal(sandbox)
        ans = wire.settle(psn, lines, flag)
        assert ans["infcode"] == 0, ans["err_msg"]
        info = ans["output"]["setlinfo"]
        assert_invariants(info)
        after = _personal(sandbox)
        drops = {k: before[k] - after[k] for k in before if before[k] != after[k]}
        assert all(d > 0 for d in drops.values())
        acct, mulaid = fen(info["acct_pay"]), fen(info["acct_mulaid_pay"])
        assert sum(drops.values()) == acct
        assert drops.get(PA.get(psn, ""), 0) == acct - mulaid
        assert fen(info["balc"]) == after.get(PA.get(psn, ""), 0)
        assert acct <= fen(info["inscp_scp_amt"])  # accounts never pay class C or excess
        if flag != "2":
            assert mulaid == 0
        if psn == P5:  # Hebei: never paid for by a Beijing family (not opened)
            assert mulaid == 0
        if then == "2601":
            assert wire.reverse(psn, info["medins_setl_id"])["infcode"] == 0
            assert _personal(sandbox) == before
        elif then == "2103":
            undo = wire.undo(psn, info["setl_id"], info["mdtrt_id"])
            assert undo["infcode"] == 0
            assert_invariants(undo["output"]["setlinfo"])
            assert fen(undo["output"]["setlinfo"]["acct_pay"]) == -acct
            assert _personal(sandbox) == before
        assert sandbox.store.audit() == []
