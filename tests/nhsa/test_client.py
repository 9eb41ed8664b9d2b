"""The client end to end over real HTTP on 127.0.0.1 against the scripted platform."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.own.schemas import Credential
from pos_plugin.models import InsuranceType
from tests.nhsa.conftest import CARD, VOUCHER, line, sale
from tests.nhsa.fakeplatform import ID_1, FakePlatform
from tests.nhsa.replay import DROP, Hang, ReplayServer


# ---------------------------------------------------------------------- 1101
def test_card_lookup_sends_03_with_card_sn(client: NhsaLedgerClient, server: ReplayServer) -> None:
    found = client.lookup(CARD)
    assert found.person.psn_no == "PSN001" and found.person.id_number == ID_1
    assert found.person.insurance_type is InsuranceType.EMPLOYEE
    assert found.person.insured_region == "110105"
    assert found.personal_account is not None
    assert (found.personal_account.account_id, found.personal_account.balance) == ("PA" "PSN001", 10_000)
    assert found.bindings == ()
    sent = server.posts("1101")[0].envelope["input"]["data"]
    assert (sent["mdtrt_cert_type"], sent["mdtrt_cert_no"], sent["card_sn"]) == ("03", "C001", "SN001")
    assert [s.envelope["infno"] for s in server.seen] == ["9001", "1101"]
    assert server.posts("1101")[0].envelope["sign_no"] == "SIGN0001"


def test_voucher_lookup_sends_01_with_the_token(client: NhsaLedgerClient, server: ReplayServer) -> None:
    found = client.lookup(VOUCHER)
    assert found.person.insurance_type is InsuranceType.RESIDENTS
    assert found.personal_account is None  # residents have no personal account
    sent = server.posts("1101")[0].envelope["input"]["data"]
    assert (sent["mdtrt_cert_type"], sent["mdtrt_cert_no"], sent["card_sn"]) == ("01", "EC-TOKEN-0002", "")


@pytest.mark.parametrize(("card", "code"), [("C404", "card_lost"), ("C405", "card_expired")])
def test_lost_or_expired_card_is_refused_with_its_code(
    client: NhsaLedgerClient, card: str, code: str
) -> None:
    with pytest.raises(e.CardRefused) as got:
        client.lookup(Credential.card(card, "SN"))
    assert got.value.code == code
    assert "/" in got.value.message  # bilingual


def test_unknown_person_is_not_found_and_the_id_in_err_msg_is_masked(
    client: NhsaLedgerClient,
) -> None:
    with pytest.raises(e.NotFound) as got:
        client.lookup(Credential.card("C999", "SN"))
    text = str(got.value)
    assert ID_1 not in text and "110105********002X" in text
    assert "HygeiaException" not in text  # the Java prefix is dropped for the cashier
    assert "医保平台拒绝了人员信息获取" in text and "the insurance platform refused 1101" in text


def test_tolerant_answers_strings_and_nulls(make_client: Callable[..., NhsaLedgerClient],
                                            platform: FakePlatform) -> None:  # fmt: skip
    platform.strings = True
    client = make_client()
    found = client.lookup(CARD)
    assert found.personal_account is not None and found.personal_account.balance == 10_000
    done = client.settle(sale("PSN001", CARD, line("XA01AAA0001", 1234)))
    assert (done.personal_account, done.cash) == (1234, 0)


# ---------------------------------------------------------------------- 2102
def test_own_account_pays_flag_1(client: NhsaLedgerClient, server: ReplayServer) -> None:
    client.lookup(CARD)
    req = sale("PSN001", CARD, line("XA01AAA0001", 3000, qty=2, rx="RX1"), line("XB01BBB0001", 1000))
    done = client.settle(req)
    assert (done.settlement_id, done.msgid) == ("S" + req.msgid[-12:], req.msgid)
    assert (done.personal_account, done.mutual_aid, done.cash, done.total) == (4000, 0, 0, 4000)
    assert done.legs == () and done.detail is not None
    assert done.detail["setlinfo"]["balc"] == 6000 and done.detail["mdtrt_id"]
    assert done.detail["setlinfo"]["certno"] == "110105********002X"  # journaled masked
    assert [c["chrgitm_lv"] for c in done.detail["detlcutinfo"]] == ["01", "02"]
    posted = server.posts("2102")
    assert len(posted) == 1 and posted[0].envelope["msgid"] == req.msgid
    info, rows = posted[0].envelope["input"]["druginfo"], posted[0].envelope["input"]["drugdetail"]
    assert (info["acct_used_flag"], info["med_type"], info["insutype"]) == ("1", "41", "310")
    assert posted[0].envelope["insuplc_admdvs"] == "110105"
    assert posted[0].envelope["opter"] == "0007"
    assert [r["feedetl_sn"] for r in rows] == ["1", "2"]
    assert rows[0]["rxno"] == "RX1" and rows[0]["medins_list_codg"] == "SKU-XA01AAA0001"
    assert b'"det_item_fee_sumamt":30.00,"cnt":2,"pric":15.00' in posted[0].body
    assert b'"medfee_sumamt":40.00' in posted[0].body


def test_family_pays_when_own_balance_is_short_flag_2(client: NhsaLedgerClient,
                                                      server: ReplayServer) -> None:  # fmt: skip
    client.lookup(Credential.card("C003", "SN3"))
    done = client.settle(sale("PSN003", Credential.card("C003", "SN3"), line("XA01AAA0001", 2000)))
    assert (done.personal_account, done.mutual_aid, done.cash) == (500, 1500, 0)
    assert server.posts("2102")[0].envelope["input"]["druginfo"]["acct_used_flag"] == "2"


def test_cash_only_basket_flag_0(client: NhsaLedgerClient, server: ReplayServer) -> None:
    client.lookup(CARD)
    done = client.settle(sale("PSN001", CARD, line("ZC01CCC0001", 800, cls="C")))
    assert (done.personal_account, done.mutual_aid, done.cash) == (0, 0, 800)
    assert server.posts("2102")[0].envelope["input"]["druginfo"]["acct_used_flag"] == "0"


def test_non_catalogue_lines_are_never_sent_and_are_cash(client: NhsaLedgerClient,
                                                         server: ReplayServer) -> None:  # fmt: skip
    client.lookup(CARD)
    req = sale("PSN001", CARD, line("XA01AAA0001", 1000), line(None, 550, cls="none"))
    done = client.settle(req)
    assert (done.personal_account, done.cash, done.total) == (1000, 550, 1550)
    assert done.detail is not None and done.detail["noncatalogue_cash"] == 550
    rows = server.posts("2102")[0].envelope["input"]["drugdetail"]
    assert [r["med_list_codg"] for r in rows] == ["XA01AAA0001"]


def test_settle_after_a_restart_asks_1101_again(make_client: Callable[..., NhsaLedgerClient],
                                                server: ReplayServer) -> None:  # fmt: skip
    make_client().lookup(CARD)
    fresh = make_client()  # a new process: nothing remembered
    done = fresh.settle(sale("PSN001", CARD, line("XA01AAA0001", 100)))
    assert done.personal_account == 100
    assert [s.envelope["infno"] for s in server.seen[-2:]] == ["1101", "2102"]


def test_presettle_sends_2101_then_2102(make_client: Callable[..., NhsaLedgerClient],
                                        server: ReplayServer) -> None:  # fmt: skip
    client = make_client(presettle=True)
    client.lookup(CARD)
    client.settle(sale("PSN001", CARD, line("XA01AAA0001", 100)))
    assert [s.envelope["infno"] for s in server.seen] == ["9001", "1101", "2101", "2102"]
    assert server.posts("2101")[0].envelope["msgid"][26] == "9"  # a control msgid


@pytest.mark.parametrize("lost", [DROP, Hang(1.5), (502, b"bad gateway")])
def test_a_lost_2102_answer_is_outcome_unknown_and_never_resent(
    client: NhsaLedgerClient, server: ReplayServer, platform: FakePlatform, lost: object
) -> None:
    client.lookup(CARD)
    platform.after["2102"] = [lost]
    req = sale("PSN001", CARD, line("XA01AAA0001", 1000))
    with pytest.raises(e.OutcomeUnknown) as got:
        client.settle(req)
    assert got.value.msgid == req.msgid
    assert len(server.posts("2102")) == 1
    assert req.msgid in platform.settled  # it did commit: 2601 must follow
    client.void_settlement(req.msgid, psn_no="PSN001")
    assert platform.person("PSN001").balance == 10_000  # net zero


def test_connect_refused_is_unavailable(make_client: Callable[..., NhsaLedgerClient]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client()
    client.transport.url = f"http://127.0.0.1:{port}/"
    with pytest.raises(e.LedgerUnavailable):
        client.settle(sale("PSN001", CARD, line("XA01AAA0001", 100)))


def test_infcode_minus_1_on_2102_is_a_bilingual_masked_refusal(
    client: NhsaLedgerClient, platform: FakePlatform
) -> None:
    client.lookup(CARD)
    platform.before["2102"] = [platform.fail(f"参保人{ID_1}本年度账户已冻结")]
    with pytest.raises(e.LedgerError) as got:
        client.settle(sale("PSN001", CARD, line("XA01AAA0001", 100)))
    assert got.value.code == "platform_refused"
    assert ID_1 not in got.value.message and "110105********002X" in got.value.message
    assert "医保平台拒绝了药店结算" in got.value.message and "refused 2102" in got.value.message


def test_unknown_catalogue_code_is_refused(client: NhsaLedgerClient) -> None:
    client.lookup(CARD)
    with pytest.raises(e.LedgerError, match="XZ99"):
        client.settle(sale("PSN001", CARD, line("XZ99", 100)))


@pytest.mark.parametrize(
    "breakage",
    [{"acct_pay": "99.00"}, {"acct_mulaid_pay": "50.00"}, {"medfee_sumamt": "1.00"},
     {"psn_cash_pay": "0.001"}, {"medins_setl_id": "X"}, {"setl_id": None}],
)  # fmt: skip
def test_an_answer_breaking_the_invariants_is_bad_response(
    client: NhsaLedgerClient, platform: FakePlatform, breakage: dict[str, object]
) -> None:
    client.lookup(CARD)
    req = sale("PSN001", CARD, line("XA01AAA0001", 1000))
    answer = platform.t2102(
        {"druginfo": {"psn_no": "PSN001", "acct_used_flag": "1"},
         "drugdetail": [{"med_list_codg": "XA01AAA0001", "det_item_fee_sumamt": "10.00",
                         "feedetl_sn": "1", "cnt": 1, "pric": "10.00"}]},
        {"msgid": req.msgid},
    )  # fmt: skip
    answer["output"]["setlinfo"].update(breakage)
    platform.before["2102"] = [answer]
    with pytest.raises(e.LedgerError) as got:
        client.settle(req)
    assert got.value.code == "bad_response"


# ---------------------------------------------------------------------- 2601 / 2103
def test_2601_voids_and_is_idempotent(client: NhsaLedgerClient, platform: FakePlatform,
                                      server: ReplayServer) -> None:  # fmt: skip
    client.lookup(CARD)
    req = sale("PSN001", CARD, line("XA01AAA0001", 1000))
    client.settle(req)
    assert client.void_settlement(req.msgid, psn_no="PSN001") is None
    assert client.void_settlement(req.msgid, psn_no="PSN001") is None
    assert platform.person("PSN001").balance == 10_000
    sent = [s.envelope for s in server.posts("2601")]
    assert [s["input"]["data"] for s in sent] == [
        {"psn_no": "PSN001", "omsgid": req.msgid, "oinfno": "2102"}] * 2
    assert sent[0]["msgid"] != req.msgid and sent[0]["msgid"] != sent[1]["msgid"]


def test_2601_is_retried_after_a_transport_failure(client: NhsaLedgerClient,
                                                   platform: FakePlatform,
                                                   server: ReplayServer) -> None:  # fmt: skip
    client.lookup(CARD)
    platform.before["2601"] = [DROP, (503, b"busy")]
    assert client.void_settlement("H11010500001202612011000000999", psn_no="PSN001") is None
    assert len(server.posts("2601")) == 3


def test_2601_failing_every_time_is_unavailable(client: NhsaLedgerClient,
                                                platform: FakePlatform) -> None:  # fmt: skip
    platform.before["2601"] = [DROP] * 3
    with pytest.raises(e.LedgerUnavailable):
        client.void_settlement("H11010500001202612011000000999", psn_no="PSN001")


def test_get_settlement_is_unsupported(client: NhsaLedgerClient) -> None:
    with pytest.raises(e.LookupUnsupported):
        client.get_settlement("H11010500001202612011000000999")
    with pytest.raises(e.LedgerError) as got:
        client.statement("H11010500001", __import__("datetime").date(2026, 12, 1))
    assert got.value.code == "statement_unsupported"


def test_2103_reverses_with_negative_amounts_then_already_reversed(
    make_client: Callable[..., NhsaLedgerClient], platform: FakePlatform, server: ReplayServer
) -> None:
    client = make_client()
    client.lookup(Credential.card("C003", "SN3"))
    done = client.settle(sale("PSN003", Credential.card("C003", "SN3"), line("XA01AAA0001", 2000),
                              line(None, 300, cls="none")))  # fmt: skip
    rev_msgid = "H11010500001202612011005000001"
    fresh = make_client()  # the reversal may come from another process: detail carries all
    rev = fresh.reverse(done.settlement_id, rev_msgid, "manager", psn_no="PSN003",
                        detail=done.detail)  # fmt: skip
    assert (rev.personal_account, rev.mutual_aid, rev.cash, rev.total) == (-500, -1500, -300, -2300)
    assert (rev.settlement_id, rev.original_msgid, rev.msgid) == (done.settlement_id, done.msgid,
                                                                 rev_msgid)  # fmt: skip
    assert rev.reversal_id != done.settlement_id
    assert platform.person("PSN003").balance == 500
    sent = server.posts("2103")[0].envelope
    assert sent["msgid"] == rev_msgid and sent["input"]["data"]["mdtrt_id"] == done.detail["mdtrt_id"]
    with pytest.raises(e.AlreadyReversed):
        fresh.reverse(done.settlement_id, rev_msgid, psn_no="PSN003", detail=done.detail)


def test_a_lost_2103_answer_is_outcome_unknown(client: NhsaLedgerClient,
                                               platform: FakePlatform) -> None:  # fmt: skip
    client.lookup(CARD)
    done = client.settle(sale("PSN001", CARD, line("XA01AAA0001", 100)))
    platform.after["2103"] = [DROP]
    with pytest.raises(e.OutcomeUnknown):
        client.reverse(done.settlement_id, "H11010500001202612011005000002", psn_no="PSN001",
                       detail=done.detail)  # fmt: skip
