"""The envelope as built (every field of the table) and answers parsed tolerantly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pos_plugin.ledger.nhsa import envelope as env
from tests.nhsa.conftest import settings
from tests.nhsa.tables import ENVELOPE, violations

NOW = dt.datetime(2026, 12, 1, 2, 3, 4, tzinfo=dt.UTC)  # 10:03:04 in China


def test_every_envelope_field_in_the_table_order_with_china_time() -> None:
    built = env.build("9001", "H11010500001202612011003049000", {"signIn": {
        "opter_no": "0001", "mac": "00-11-22-33-44-55", "ip": "10.0.0.8"}},
        settings=settings(), opter="0001", now=NOW)  # fmt: skip
    assert list(built) == list(ENVELOPE)
    assert built["inf_time"] == "2026-12-01 10:03:04"
    assert violations(built) == []


@pytest.mark.parametrize("code", [0, "0", " 0 ", Decimal("0")])
def test_infcode_zero_as_number_or_string_is_success(code: object) -> None:
    body = env.encode({"infcode": code, "output": {}})
    assert env.parse(body).ok


@pytest.mark.parametrize("code", [-1, "-1", "1", -2])
def test_any_other_infcode_is_failure(code: object) -> None:
    answer = env.parse(env.encode({"infcode": code, "err_msg": "错", "output": None}))
    assert not answer.ok and answer.err_msg == "错" and answer.output == {}


def test_null_strings_are_empty_and_unknown_keys_ignored_and_camel_case_read() -> None:
    body = env.encode({
        "INFCODE": "0", "warnMsg": "注意", "enctype": "", "brand_new": 1,
        "output": {"baseinfo": {"psn_no": "P1", "expContent": "NULL", "certno": "null"},
                   "insuinfo": [{"balc": "1.00", "psnInsuStas": "1"}]},
        "idetinfo": [{"psn_idet_type": "1"}],
    })  # fmt: skip
    answer = env.parse(body)
    assert answer.ok and answer.warn_msg == "注意"
    assert answer.output["baseinfo"] == {"psn_no": "P1", "exp_content": None, "certno": None}
    assert answer.output["insuinfo"][0]["psn_insu_stas"] == "1"
    assert answer.node("idetinfo") == [{"psn_idet_type": "1"}]  # outside output
    assert env.text(answer.output["baseinfo"], "certno") == ""


def test_amounts_are_parsed_as_decimal_never_float() -> None:
    answer = env.parse(b'{"infcode":0,"output":{"a":0.1,"b":3}}')
    assert answer.output == {"a": Decimal("0.1"), "b": 3}
    assert type(answer.output["a"]) is Decimal


def test_output_as_a_json_string_is_read() -> None:
    answer = env.parse(b'{"infcode":"0","output":"{\\"sign_no\\":\\"S1\\"}"}')
    assert answer.output == {"sign_no": "S1"}


def test_a_gbk_answer_is_read() -> None:
    answer = env.parse('{"infcode":-1,"err_msg":"未签到"}'.encode("gbk"))
    assert answer.err_msg == "未签到"


@pytest.mark.parametrize(
    "body", [b"<html>502</html>", b"[1,2]", b'{"output":{}}', b'{"infcode":"x"}',
             b'{"infcode":0,"output":[1]}', b'{"infcode":0,"output":{"a":NaN}}'],
)  # fmt: skip
def test_what_is_no_envelope_is_refused(body: bytes) -> None:
    with pytest.raises(env.AnswerError):
        env.parse(body)
