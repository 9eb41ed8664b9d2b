"""The ledger contract end to end: real client, real server, real database."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from pos_plugin.ledger.errors import (
    AlreadyReversed,
    BindingNotAllowed,
    CardRefused,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    Unauthorised,
)
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.models import CardStatus, PersonLookup

from .conftest import (
    CARDS,
    CODE_A,
    CODE_B,
    P1,
    P2,
    P3,
    P4,
    P5,
    PA,
    TOKEN_A,
    aid,
    count_entries,
    make_client,
    msgid,
    own,
    sale,
)


def test_lookup_one_round_trip_parses_into_person_lookup(client: HttpLedgerClient) -> None:
    lk = client.lookup(CARDS[P3])
    assert isinstance(lk, PersonLookup)
    assert lk.person.psn_no == P3 and lk.personal_account is None  # residents' insurance
    assert [b.binding_id for b in lk.bindings] == ["BND-0001", "BND-0002"]
    assert [b.available_balance for b in lk.bindings] == [20000, 15000]
    assert lk.card_status is CardStatus.ACTIVE and lk.card_expiry == dt.date(2030, 1, 1)
    p1 = client.lookup(Credential.evoucher("EV-ZHANGWEI-0001"))
    assert p1.personal_account is not None and p1.personal_account.balance == 20000
    assert [b.relation.value for b in p1.bindings] == ["spouse", "spouse_parent", "parent"]


def test_lookup_card_states_and_unknown_credentials(client: HttpLedgerClient) -> None:
    assert client.lookup(Credential.card("B11000007", "E09D594C56D237B5A148D13F1FE43685")) \
        .card_status is CardStatus.LOST
    assert client.lookup(Credential.card("B11000008", "D604E8CC4CB9FB7968A4AF4C161A045A")) \
        .card_status is CardStatus.EXPIRED
    for cred in (Credential.card("NOPE", "X" * 32), Credential.card("B11000001", "0" * 32),
                 Credential.evoucher("EV-NOBODY")):
        with pytest.raises(NotFound) as exc:
            client.lookup(cred)
        assert exc.value.code == "credential_not_found"


def test_settle_three_legs_commits_and_replays(sandbox: SandboxServer,
                                               client: HttpLedgerClient) -> None:
    req = sale(P1, (own(P1, 20000), aid(P2, "BND-0003", 5000)), cash=300)
    s = client.settle(req)
    assert s.status == "settled" and s.total == 25300 and s.cash == 300
    assert s.balances_after == {PA[P1]: 0, PA[P2]: 10000}
    assert (s.personal_account, s.mutual_aid) == (20000, 5000)
    assert client.settle(req) == s  # same key, same body: the first answer
    raw = requests.post(sandbox.url + "/v1/settlements", json=req.model_dump(mode="json"),
                        headers={"Authorization": f"Bearer {TOKEN_A}",
                                 "Idempotency-Key": req.msgid}, timeout=5)
    assert raw.status_code == 201 and raw.json()["settlement_id"] == s.settlement_id
    assert client.get_settlement(req.msgid) == s
    assert count_entries(sandbox, req.msgid) == 1
    changed = req.model_copy(update={"cash": 301, "total": 25301})
    with pytest.raises(IdempotencyConflict):
        client.settle(changed)


def test_rejection_does_not_bind_the_key(client: HttpLedgerClient) -> None:
    req = sale(P3, (aid(P1, "BND-0001", 20001),))
    with pytest.raises(InsufficientFunds) as exc:
        client.settle(req)
    assert exc.value.fresh == {PA[P1]: 20000, PA[P2]: 15000}
    assert exc.value.lookup is not None and exc.value.lookup.person.psn_no == P3
    replanned = sale(P3, (aid(P1, "BND-0001", 20000), aid(P2, "BND-0002", 1)), mid=req.msgid)
    assert client.settle(replanned).total == 20001


@pytest.mark.parametrize(
    ("patient", "legs", "why"),
    [
        (P1, (own(P1, 100), aid(P4, "BND-0004", 100)), "not a close relative"),
        (P1, (aid(P5, "BND-0005", 100),), "different provinces"),
        (P3, (aid(P2, "BND-0003", 100),), "does not bind"),
        (P2, (aid(P3, "BND-0007", 100, account="PA11000000000000000003"),), "do not match"),
        (P3, (own(P1, 100),), "patient's own personal account"),
    ],
)
def test_binding_rules_enforced_by_the_ledger(client: HttpLedgerClient, patient: str,
                                              legs: tuple, why: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BindingNotAllowed) as exc:
        client.settle(sale(patient, legs))
    assert why in exc.value.message


def test_suspended_binding_refused(client: HttpLedgerClient) -> None:
    req = sale("11000000000000000009",
               (aid("11000000000000000006", "BND-0009", 100, account="PA11000000000000000006"),))
    with pytest.raises(BindingNotAllowed, match="suspended"):
        client.settle(req)


def test_card_refusals(client: HttpLedgerClient) -> None:
    lost = Credential.card("B11000007", "E09D594C56D237B5A148D13F1FE43685")
    with pytest.raises(CardRefused) as exc:
        client.settle(sale("11000000000000000007", (), cash=100, credential=lost))
    assert exc.value.code == "card_lost"
    with pytest.raises(CardRefused) as exc:
        client.settle(sale(P3, (aid(P1, "BND-0001", 100),), credential=CARDS[P1]))
    assert exc.value.code == "credential_not_patients_own"


def test_validation_errors_name_the_field(sandbox: SandboxServer,
                                          client: HttpLedgerClient) -> None:
    bad = sale(P1, (own(P1, 100),), cash=5).model_copy(update={"total": 999})
    with pytest.raises(InvalidRequest) as exc:
        client.settle(bad)
    assert exc.value.field == "total" and exc.value.status == 422
    hdr = {"Authorization": f"Bearer {TOKEN_A}"}
    body = sale(P1, (own(P1, 100),)).model_dump(mode="json")
    r = requests.post(sandbox.url + "/v1/settlements", json=body, headers=hdr, timeout=5)
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"
    body["legs"][0]["amount"] = -5
    r = requests.post(sandbox.url + "/v1/settlements", json=body,
                      headers={**hdr, "Idempotency-Key": body["msgid"]}, timeout=5)
    assert r.status_code == 422
    assert r.json() | {"message": ""} == {"code": "invalid_request", "message": "",
                                          "field": "legs[0].amount"}
    body["legs"][0]["amount"] = 100
    body["msgid"] = CODE_A + "20261399000000001"[:18]
    r = requests.post(sandbox.url + "/v1/settlements", json=body,
                      headers={**hdr, "Idempotency-Key": body["msgid"]}, timeout=5)
    assert r.status_code == 422 and r.json()["field"] == "msgid"
    assert requests.get(sandbox.url + "/openapi.json", timeout=5).json()["paths"]


def test_isolation_between_pharmacies(sandbox: SandboxServer, client: HttpLedgerClient,
                                      client_b: HttpLedgerClient) -> None:
    s = client.settle(sale(P1, (own(P1, 100),)))
    assert client_b.get_settlement(s.msgid) is None
    with pytest.raises(NotFound):
        client_b.reverse(s.settlement_id, msgid(CODE_B))
    with pytest.raises(Unauthorised):
        client_b.statement(CODE_A, s.business_date)
    with pytest.raises(Unauthorised) as exc:
        client_b.settle(sale(P1, (own(P1, 100),)))  # A's code and msgid with B's token
    assert exc.value.code == "pharmacy_mismatch"
    with pytest.raises(Unauthorised) as exc:
        make_client(sandbox.url, "wrong-token").lookup(CARDS[P1])
    assert exc.value.status == 401
    assert client.get_settlement(s.msgid) is not None


def test_reversal_credits_back_once(sandbox: SandboxServer, client: HttpLedgerClient) -> None:
    s = client.settle(sale(P3, (aid(P1, "BND-0001", 1500), aid(P2, "BND-0002", 500)), cash=20))
    rmid = msgid()
    r = client.reverse(s.settlement_id, rmid, "wrong drug")
    assert r.balances_after == {PA[P1]: 20000, PA[P2]: 15000}
    assert (r.total, r.mutual_aid, r.original_msgid) == (2020, 2000, s.msgid)
    assert client.reverse(s.settlement_id, rmid, "wrong drug") == r  # replay
    with pytest.raises(AlreadyReversed):
        client.reverse(s.settlement_id, msgid())
    with pytest.raises(IdempotencyConflict):
        client.reverse(s.settlement_id, s.msgid)  # a sale's key cannot name a reversal
    got = client.get_settlement(s.msgid)
    assert got is not None and got.status == "reversed" and got.reversal is not None
    assert client.get_reversal(rmid) == r
    assert count_entries(sandbox, rmid) == 1


def test_statement_totals_and_paging(sandbox: SandboxServer, client: HttpLedgerClient) -> None:
    sales = [client.settle(sale(P1, (own(P1, 100 + i),), cash=10)) for i in range(5)]
    client.settle(sale(P2, (own(P2, 50),)).model_copy(update={"terminal_id": "T02"}))
    client.reverse(sales[0].settlement_id, msgid())
    day = sales[0].business_date
    st = client.statement(CODE_A, day)
    assert len(st.rows) == 7 and st.next_page is None
    t = st.totals
    assert (t.sales.count, t.sales.total) == (6, sum(s.total for s in sales) + 50)
    assert (t.reversals.count, t.reversals.total) == (1, -sales[0].total)
    assert t.net.total == t.sales.total + t.reversals.total and t.net.count == 5
    assert [r.kind for r in st.rows].count("reversal") == 1
    page = requests.get(f"{sandbox.url}/v1/statements/{CODE_A}/{day}",
                        params={"page": 2, "page_size": 3, "terminal_id": "T01"},
                        headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=5).json()
    assert len(page["rows"]) == 3 and page["next_page"] is None
    assert client.statement(CODE_A, day, terminal_id="T02").totals.sales.count == 1
    assert client.statement(CODE_A, day - dt.timedelta(days=1)).rows == ()


def test_restart_does_not_reseed(db_url: str, world: object) -> None:
    from pos_plugin.world import World

    assert isinstance(world, World)
    with SandboxServer(db_url, world) as srv:
        make_client(srv.url).settle(sale(P1, (own(P1, 1000),)))
    with SandboxServer(db_url, world) as srv:
        lk = make_client(srv.url).lookup(CARDS[P1])
        assert lk.personal_account is not None and lk.personal_account.balance == 19000
        assert srv.store is not None and srv.store.total_balance() == world.total_money()
