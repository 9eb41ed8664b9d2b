"""Faults between client and ledger, through a real TCP proxy on 127.0.0.1.

For each fault: exactly one settlement per msgid in the ledger, and the client
reports the true outcome (settled, or unknown when it really cannot know).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.ledger.errors import LedgerUnavailable, OutcomeUnknown
from pos_plugin.ledger.own.sandbox.server import SandboxServer

from .conftest import P1, P2, PA, aid, count_entries, make_client, own, sale
from .faultproxy import FaultProxy


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Fault handling is the client's: SQLite only (overrides the two-engine fixture)."""
    return str(tmp_path / "ledger.db")


@pytest.fixture
def proxy(sandbox: SandboxServer) -> Iterator[FaultProxy]:
    p = FaultProxy(sandbox.port)
    p.start()
    yield p
    p.stop()


@pytest.mark.parametrize(
    ("mode", "faults", "delay", "read_timeout"),
    [
        ("delay", 1, 0.3, 5.0),  # slow but within the timeout
        ("delay", 1, 1.5, 0.5),  # answer held past the read timeout: resolved by GET
        ("cut", 1, 0.0, 5.0),  # committed, connection closed, client heard nothing
        ("bad_gateway", 1, 0.0, 5.0),  # 502 before the ledger saw it: GET 404, re-sent
        ("bad_gateway_after", 1, 0.0, 5.0),  # 502 after the ledger committed
        ("drip", 3, 0.0, 5.0),  # the answer arrives a few bytes at a time
    ],
)
def test_fault_settles_exactly_once(sandbox: SandboxServer, proxy: FaultProxy, mode: str,
                                    faults: int, delay: float, read_timeout: float) -> None:
    proxy.mode, proxy.faults, proxy.delay = mode, faults, delay
    client = make_client(proxy.url, read_timeout=read_timeout)
    req = sale(P1, (own(P1, 1200), aid(P2, "BND-0003", 800)), cash=5)
    s = client.settle(req)
    assert s.msgid == req.msgid and s.balances_after == {PA[P1]: 18800, PA[P2]: 14200}
    assert count_entries(sandbox, req.msgid) == 1
    direct = make_client(sandbox.url).get_settlement(req.msgid)
    assert direct is not None and direct.settlement_id == s.settlement_id


def test_ledger_committed_but_never_reachable_is_outcome_unknown(
    sandbox: SandboxServer, proxy: FaultProxy
) -> None:
    proxy.mode, proxy.faults = "cut", 1000
    client = make_client(proxy.url, retries=2)
    req = sale(P1, (own(P1, 700),))
    with pytest.raises(OutcomeUnknown) as exc:
        client.settle(req)
    assert exc.value.msgid == req.msgid and "do NOT charge again" in exc.value.message
    assert count_entries(sandbox, req.msgid) == 1  # committed once, despite the retries
    proxy.heal()
    found = client.get_settlement(req.msgid)  # resolution later, by msgid
    assert found is not None and found.total == 700
    assert client.settle(req) == found  # and a later retry replays, never re-charges


def test_refused_connection_is_unavailable_and_nothing_committed(
    sandbox: SandboxServer,
) -> None:
    proxy = FaultProxy(sandbox.port)
    url = proxy.url
    proxy.stop()  # nothing listens there any more
    req = sale(P1, (own(P1, 700),))
    with pytest.raises(LedgerUnavailable):
        make_client(url, retries=1).settle(req)
    assert count_entries(sandbox, req.msgid) == 0


def test_reversal_after_cut_resolves_once(sandbox: SandboxServer, proxy: FaultProxy) -> None:
    client = make_client(proxy.url)
    s = client.settle(sale(P1, (own(P1, 900),)))
    proxy.mode, proxy.faults = "cut", 1
    from .conftest import msgid

    rmid = msgid()
    r = client.reverse(s.settlement_id, rmid)
    assert r.balances_after == {PA[P1]: 20000}
    assert count_entries(sandbox, rmid) == 1
