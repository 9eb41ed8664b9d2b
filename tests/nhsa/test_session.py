"""The session: 9001 once a China day, sign_no in every envelope, one re-sign on a
sign-in error, 9002 at close; the transport's URL, headers and control msgids."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.envelope import CHINA
from pos_plugin.ledger.nhsa.session import ControlMsgids
from tests.nhsa.conftest import CARD, CODE, Clock, line, sale
from tests.nhsa.fakeplatform import FakePlatform
from tests.nhsa.replay import ReplayServer


def infnos(server: ReplayServer) -> list[str]:
    return [s.envelope["infno"] for s in server.seen]


def test_sign_in_once_a_day_and_sign_no_in_every_envelope(
    client: NhsaLedgerClient, server: ReplayServer, clock: Clock
) -> None:
    client.lookup(CARD)
    client.settle(sale("PSN001", CARD, line("XA01AAA0001", 100)))
    client.lookup(CARD)
    assert infnos(server) == ["9001", "1101", "2102", "1101"]
    assert {s.envelope["sign_no"] for s in server.seen[1:]} == {"SIGN0001"}
    clock.now = dt.datetime(2026, 12, 1, 23, 59, 59, tzinfo=CHINA)
    client.lookup(CARD)
    assert infnos(server)[-1] == "1101"  # same China day
    clock.now = dt.datetime(2026, 12, 2, 0, 0, 1, tzinfo=CHINA)
    client.lookup(CARD)
    assert infnos(server)[-2:] == ["9001", "1101"]
    assert server.seen[-1].envelope["sign_no"] == "SIGN0002"


def test_sign_in_input(client: NhsaLedgerClient, server: ReplayServer) -> None:
    client.lookup(CARD)
    assert server.posts("9001")[0].envelope["input"] == {
        "signIn": {"opter_no": "0001", "mac": "00-11-22-33-44-55", "ip": "10.0.0.8"}}


def test_expired_sign_in_is_renewed_once_and_the_call_resent(
    client: NhsaLedgerClient, server: ReplayServer, platform: FakePlatform
) -> None:
    client.lookup(CARD)
    platform.sign_nos.clear()  # the platform forgot the sign-in (restart, midnight)
    req = sale("PSN001", CARD, line("XA01AAA0001", 100))
    done = client.settle(req)
    assert done.personal_account == 100
    assert infnos(server) == ["9001", "1101", "2102", "9001", "2102"]
    assert [s.envelope["msgid"] for s in server.posts("2102")] == [req.msgid] * 2
    assert len(platform.settled) == 1


def test_a_second_sign_in_error_is_raised_not_looped(
    client: NhsaLedgerClient, server: ReplayServer, platform: FakePlatform
) -> None:
    client.lookup(CARD)
    refused = platform.fail("未签到")
    platform.before["1101"] = [refused, refused, refused]
    with pytest.raises(e.LedgerError, match="未签到"):
        client.lookup(CARD)
    assert infnos(server) == ["9001", "1101", "1101", "9001", "1101"]


def test_a_refused_sign_in_is_a_platform_error(client: NhsaLedgerClient,
                                               platform: FakePlatform) -> None:  # fmt: skip
    platform.before["9001"] = [platform.fail("操作员0001不存在")]
    with pytest.raises(e.LedgerError, match="签到") as got:
        client.lookup(CARD)
    assert got.value.code == "platform_refused"


def test_close_signs_out_once(client: NhsaLedgerClient, server: ReplayServer) -> None:
    client.lookup(CARD)
    client.close()
    assert infnos(server) == ["9001", "1101", "9002"]
    assert server.posts("9002")[0].envelope["input"] == {
        "signOut": {"sign_no": "SIGN0001", "opter_no": "0001"}}
    client.close()  # nothing signed in: no second 9002
    assert infnos(server).count("9002") == 1


def test_close_without_sign_in_sends_nothing(client: NhsaLedgerClient,
                                             server: ReplayServer) -> None:  # fmt: skip
    client.close()
    assert server.seen == []


def test_plain_posts_json_to_exactly_the_url(client: NhsaLedgerClient, server: ReplayServer) -> None:
    client.lookup(CARD)
    assert {s.path for s in server.seen} == {"/fsi/api/rsfComIfsService/callService"}
    assert server.seen[0].headers["Content-Type"] == "application/json"
    assert not any(h.lower().startswith(("_api_", "x-tif")) for h in server.seen[0].headers)


def test_hmac_headers_reach_the_platform(make_client: Callable[..., NhsaLedgerClient],
                                         server: ReplayServer) -> None:  # fmt: skip
    client = make_client(signer="hmac-sha1",
                         secrets={"nhsa_access_key": "AK", "nhsa_secret_key": "SK"})  # fmt: skip
    client.lookup(CARD)
    headers = server.posts("1101")[0].headers
    assert headers["_api_name"] == "1101" and headers["_api_access_key"] == "AK"
    assert len(headers["_api_timestamp"]) == 13 and headers["_api_signature"]


def test_control_msgids_are_30_characters_unique_and_apart_from_the_journals() -> None:
    clock = Clock()
    make = ControlMsgids(CODE, 9, clock)
    ids = [make() for _ in range(2500)]  # more than 1,000 in one second: borrows ahead
    assert len(set(ids)) == 2500
    assert all(len(i) == 30 and i.startswith(CODE) and i[26] == "9" for i in ids)
    clock.now -= dt.timedelta(hours=1)  # the clock set back: still no repeat
    assert make() not in ids
