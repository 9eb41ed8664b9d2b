"""Fixtures: a real sandbox ledger on 127.0.0.1 over a real SQLite file (or PostgreSQL).

After every test that used a sandbox: conservation (all balances + receivables
== the world's money) and the double-entry audit must hold.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest

from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.ledger.own.sandbox.store import Store
from pos_plugin.ledger.own.schemas import Credential, SettlementRequest
from pos_plugin.models import Leg, LegKind
from pos_plugin.world import World, load_world

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
CODE_A, TOKEN_A = "H11010500001", "sandbox-token-H11010500001"
CODE_B, TOKEN_B = "H11010800002", "sandbox-token-H11010800002"

P1, P2, P3, P4, P5 = (f"{p}00000000000000000{n}" for p, n in
                      (("11", 1), ("11", 2), ("11", 3), ("11", 4), ("13", 5)))
P9 = "11000000000000000009"
PA = {p: f"PA{p}" for p in (P1, P2, P4, P5, P9)}
CARDS = {
    P1: Credential.card("B11000001", "4D83237335790FB4875C7227C23D7360"),
    P2: Credential.card("B11000002", "B18DB1A10820180E041170BAA1A2FEDA"),
    P3: Credential.card("B11000003", "20E7E33073755DE149F63C3AF58ECB5F"),
    P9: Credential.card("B11000009", "181B4911CE50C45CC29CA9B778E53EBE"),
}
_seq = itertools.count(1)


def msgid(code: str = CODE_A) -> str:
    """A fresh, well-formed msgid: pharmacy code + yyyyMMddHHmmss + 4-digit sequence."""
    n = next(_seq)
    return f"{code}2026011510{n // 10000:04d}{n % 10000:04d}"


def own(psn: str, amount: int) -> Leg:
    return Leg(kind=LegKind.PERSONAL_ACCOUNT, account_id=PA[psn], payer_psn_no=psn, amount=amount)


def aid(payer: str, binding: str, amount: int, account: str | None = None) -> Leg:
    return Leg(kind=LegKind.MUTUAL_AID, account_id=account or PA[payer], payer_psn_no=payer,
               amount=amount, binding_id=binding)


def sale(patient: str, legs: tuple[Leg, ...], cash: int = 0, *, mid: str | None = None,
         code: str = CODE_A, credential: Credential | None = None) -> SettlementRequest:
    return SettlementRequest(
        msgid=mid or msgid(code), pharmacy_code=code, terminal_id="T01", operator="op1",
        patient_psn_no=patient, credential=credential or CARDS[patient], legs=legs, cash=cash,
        total=sum(leg.amount for leg in legs) + cash,
    )


def pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_BASE, connect_timeout=2).close()
        return True
    except Exception:
        return False


def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test: its URL (search_path set), dropped after.
    Skips the test when no server answers."""
    if not pg_available():
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    import psycopg

    schema = f"ledger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")  # type: ignore[operator]
        return
    yield from pg_schema_url()


@pytest.fixture
def store(db_url: str, world: World) -> Iterator[Store]:
    """The sandbox's store itself (no HTTP); on leaving, no money was created or
    destroyed and the double-entry audit is clean."""
    s = Store(db_url)
    s.init(world)
    try:
        yield s
        assert s.total_balance() == world.total_money(), "money created or destroyed"
        assert s.audit() == []
    finally:
        s.close()


@pytest.fixture
def world() -> World:
    return load_world()


def check_books(srv: SandboxServer, world: World) -> None:
    assert srv.store is not None
    assert srv.store.total_balance() == world.total_money(), "money created or destroyed"
    assert srv.store.audit() == []


@pytest.fixture
def sandbox(db_url: str, world: World) -> Iterator[SandboxServer]:
    srv = SandboxServer(db_url, world)
    srv.start()
    try:
        yield srv
        check_books(srv, world)
    finally:
        srv.stop()


def make_client(url: str, token: str = TOKEN_A, **kw: object) -> HttpLedgerClient:
    opts: dict[str, object] = {"retries": 3, "backoff_base": 0.01, "read_timeout": 5.0}
    opts.update(kw)
    return HttpLedgerClient(url, token, **opts)  # type: ignore[arg-type]


@pytest.fixture
def client(sandbox: SandboxServer) -> HttpLedgerClient:
    return make_client(sandbox.url)


@pytest.fixture
def client_b(sandbox: SandboxServer) -> HttpLedgerClient:
    return make_client(sandbox.url, TOKEN_B)


def count_entries(srv: SandboxServer, mid: str) -> int:
    assert srv.store is not None
    with srv.store.read() as tx:
        row = tx.one("SELECT COUNT(*) FROM entries WHERE msgid = ?", mid)
    return int(row[0]) if row else 0
