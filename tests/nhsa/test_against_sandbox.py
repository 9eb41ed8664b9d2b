"""The client end to end against N2's reference platform (nhsa/sandbox) over real HTTP.

After every test the sandbox's double-entry audit is clean and the world's money is
conserved: whatever the faults, nothing was charged twice or lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.models import InsuranceType
from pos_plugin.world import World, load_world
from tests.nhsa.conftest import line, sale, settings

P1, P3 = "11000000000000000001", "11000000000000000003"
ID_P1 = "110105198005120319"
CARD_P1 = Credential.card("B11000001", "4D83237335790FB4875C7227C23D7360")
VOUCHER_P3 = Credential.evoucher("EV-XIAOMING-0003")


@pytest.fixture
def world() -> World:
    return load_world()


@pytest.fixture
def sandbox(tmp_path: Path, world: World) -> Iterator[NhsaSandboxServer]:
    server = NhsaSandboxServer(str(tmp_path / "nhsa.db"), world)
    server.start()
    try:
        yield server
    finally:
        assert server.store is not None
        problems, total = server.store.audit(), server.store.total_balance()
        server.stop()
    assert problems == []
    assert total == world.total_money()


@pytest.fixture
def client(sandbox: NhsaSandboxServer) -> Iterator[NhsaLedgerClient]:
    c = NhsaLedgerClient(sandbox.endpoint, settings(), sleep=lambda s: None)
    yield c
    c.close()


def balance(sandbox: NhsaSandboxServer, psn_no: str) -> int:
    assert sandbox.store is not None
    found = sandbox.store.balance(f"PA{psn_no}")
    assert found is not None
    return found


# ---------------------------------------------------------------------- 1101
def test_card_and_voucher_lookups(client: NhsaLedgerClient) -> None:
    p1 = client.lookup(CARD_P1)
    assert (p1.person.psn_no, p1.person.id_number) == (P1, ID_P1)
    assert p1.person.insurance_type is InsuranceType.EMPLOYEE
    assert p1.personal_account is not None and p1.personal_account.balance == 20_000
    p3 = client.lookup(VOUCHER_P3)
    assert p3.person.insurance_type is InsuranceType.RESIDENTS and p3.personal_account is None


@pytest.mark.parametrize(("card", "code"), [("B11000007", "card_lost"), ("B11000008", "card_expired")])
def test_lost_and_expired_cards(client: NhsaLedgerClient, world: World, card: str, code: str) -> None:
    sn = next(c.card_sn for p in world.persons for c in p.cards if c.card_no == card)
    with pytest.raises(e.CardRefused) as got:
        client.lookup(Credential.card(card, sn))
    assert got.value.code == code


def test_unknown_card_is_not_found(client: NhsaLedgerClient) -> None:
    with pytest.raises(e.NotFound):
        client.lookup(Credential.card("B99999999", "0" * 32))


# ---------------------------------------------------------------------- 2102
def test_own_account(client: NhsaLedgerClient, sandbox: NhsaSandboxServer) -> None:
    client.lookup(CARD_P1)
    done = client.settle(sale(P1, CARD_P1, line("XA01AAA0001", 1500, qty=3), line("XB01BBB0001", 500)))
    assert (done.personal_account, done.mutual_aid, done.cash) == (2000, 0, 0)
    assert balance(sandbox, P1) == 18_000
    assert done.detail is not None and done.detail["setlinfo"]["balc"] == 18_000
    assert done.detail["acct_used_flag"] == "1"


def test_family_pays_for_a_resident(client: NhsaLedgerClient, sandbox: NhsaSandboxServer) -> None:
    client.lookup(VOUCHER_P3)
    done = client.settle(sale(P3, VOUCHER_P3, line("XA01AAA0001", 3000)))
    assert done.detail is not None and done.detail["acct_used_flag"] == "2"
    assert done.mutual_aid > 0 and done.personal_account == 0
    assert done.mutual_aid + done.cash == 3000


def test_cash_only_and_non_catalogue_lines(client: NhsaLedgerClient) -> None:
    client.lookup(CARD_P1)
    done = client.settle(sale(P1, CARD_P1, line("ZC01CCC0001", 800, cls="C"), line(None, 300, cls="none")))
    assert (done.personal_account, done.mutual_aid, done.cash, done.total) == (0, 0, 1100, 1100)
    assert done.detail is not None and done.detail["acct_used_flag"] == "0"


def test_presettle(sandbox: NhsaSandboxServer) -> None:
    client = NhsaLedgerClient(sandbox.endpoint, settings(presettle=True), sleep=lambda s: None)
    client.lookup(CARD_P1)
    done = client.settle(sale(P1, CARD_P1, line("XA01AAA0001", 100)))
    assert done.personal_account == 100
    assert client.platform.posts == {"9001": 1, "1101": 1, "2101": 1, "2102": 1}
    client.close()


@pytest.mark.parametrize("mode", ["close", "hang"])
def test_a_lost_2102_answer_then_2601_nets_zero(client: NhsaLedgerClient,
                                                sandbox: NhsaSandboxServer, mode: str) -> None:  # fmt: skip
    client.lookup(CARD_P1)
    sandbox.faults.lose_answer("2102", mode, seconds=2.0)  # type: ignore[arg-type]
    req = sale(P1, CARD_P1, line("XA01AAA0001", 1000))
    with pytest.raises(e.OutcomeUnknown) as got:
        client.settle(req)
    assert got.value.msgid == req.msgid
    assert client.platform.posts["2102"] == 1  # never sent twice
    assert balance(sandbox, P1) == 19_000  # it had committed
    assert client.void_settlement(req.msgid, psn_no=P1) is None
    assert balance(sandbox, P1) == 20_000
    assert client.void_settlement(req.msgid, psn_no=P1) is None  # repeat: harmless
    assert balance(sandbox, P1) == 20_000


def test_2601_of_a_msgid_never_seen_is_success(client: NhsaLedgerClient) -> None:
    assert client.void_settlement("H11010500001202601151200009000", psn_no=P1) is None


def test_2103_then_a_second_2103_is_already_reversed(client: NhsaLedgerClient,
                                                     sandbox: NhsaSandboxServer) -> None:  # fmt: skip
    client.lookup(CARD_P1)
    done = client.settle(sale(P1, CARD_P1, line("XA01AAA0001", 1000), line(None, 200, cls="none")))
    rev = client.reverse(done.settlement_id, "H11010500001202612011100000001", "manager",
                         psn_no=P1, detail=done.detail)  # fmt: skip
    assert (rev.personal_account, rev.mutual_aid, rev.cash, rev.total) == (-1000, 0, -200, -1200)
    assert balance(sandbox, P1) == 20_000
    with pytest.raises(e.AlreadyReversed):
        client.reverse(done.settlement_id, "H11010500001202612011100000002", psn_no=P1,
                       detail=done.detail)  # fmt: skip


def test_infcode_minus_1_is_bilingual_and_masked(client: NhsaLedgerClient,
                                                 sandbox: NhsaSandboxServer) -> None:  # fmt: skip
    client.lookup(CARD_P1)
    sandbox.faults.fail_next("2102", f"参保人{ID_P1}的个人账户已冻结")
    with pytest.raises(e.LedgerError) as got:
        client.settle(sale(P1, CARD_P1, line("XA01AAA0001", 100)))
    assert ID_P1 not in got.value.message and "110105********0319" in got.value.message
    assert "医保平台拒绝了药店结算" in got.value.message and "refused 2102" in got.value.message


@pytest.mark.parametrize("which", ["psn_part_amt", "medfee_sumamt", "acct_mulaid_pay"])
def test_an_answer_breaking_the_invariants_is_bad_response(
    client: NhsaLedgerClient, sandbox: NhsaSandboxServer, which: str
) -> None:
    client.lookup(CARD_P1)
    sandbox.faults.break_invariants(which)  # type: ignore[arg-type]
    req = sale(P1, CARD_P1, line("XA01AAA0001", 1000), line("XB01BBB0001", 500))
    with pytest.raises(e.LedgerError) as got:
        client.settle(req)
    assert got.value.code == "bad_response"
    client.void_settlement(req.msgid, psn_no=P1)  # what the sale flow does next
    assert balance(sandbox, P1) == 20_000


def test_an_expired_sign_in_is_renewed(client: NhsaLedgerClient, sandbox: NhsaSandboxServer) -> None:
    client.lookup(CARD_P1)
    sandbox.faults.expire_sign_in()
    done = client.settle(sale(P1, CARD_P1, line("XA01AAA0001", 100)))
    assert done.personal_account == 100
    assert client.platform.posts["9001"] == 2 and client.platform.posts["2102"] == 2


def test_a_2102_resent_after_its_2601_is_refused_as_voided(client: NhsaLedgerClient,
                                                          sandbox: NhsaSandboxServer) -> None:  # fmt: skip
    client.lookup(CARD_P1)
    req = sale(P1, CARD_P1, line("XA01AAA0001", 1000))
    client.settle(req)
    client.void_settlement(req.msgid, psn_no=P1)
    with pytest.raises(e.MsgidVoided):
        client.settle(req)  # what a bug re-sending it would meet: nothing charged twice
    assert balance(sandbox, P1) == 20_000
