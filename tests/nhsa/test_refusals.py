"""``infcode -1`` -> the typed error the sale flow branches on; ID numbers always masked."""

from __future__ import annotations

import pytest

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.refusals import PlatformRefused, clean, is_sign_in_error, refusal


@pytest.mark.parametrize(
    ("infno", "err_msg", "cls", "code"),
    [
        ("1101", "该社会保障卡已挂失，不能使用", e.CardRefused, "card_lost"),
        ("1101", "该社会保障卡已超过有效期", e.CardRefused, "card_expired"),
        ("2102", "卡已过期", e.CardRefused, "card_expired"),
        ("1101", "本地查询错误:该参保人的基本信息为空null", e.NotFound, "not_found"),
        ("2103", "该结算已撤销，不能重复撤销", e.AlreadyReversed, "already_reversed"),
        ("2102", "该交易已被冲正【2601】，不能重复提交", e.MsgidVoided, "msgid_voided"),
        ("2102", "msgid 已被交易【2102】使用，输入不同", e.IdempotencyConflict,
         "idempotency_key_reused"),
        ("2102", "余额不足", PlatformRefused, "platform_refused"),
        ("2103", "基本信息为空", PlatformRefused, "platform_refused"),  # NotFound is 1101's
    ],
)  # fmt: skip
def test_mapping(infno: str, err_msg: str, cls: type[e.LedgerError], code: str) -> None:
    got = refusal(infno, err_msg)
    assert type(got) is cls and got.code == code
    assert err_msg[:4] in got.message and " / the insurance platform refused " in got.message


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("证件号110105198005120319不存在", "证件号110105********0319不存在"),
        ("certno=11010519800512031X;", "certno=110105********031X;"),
        ("旧证130102800512031", "旧证130*********031"),
        ("msgid H11010500001202612011000050001 重复", "msgid H11010500001202612011000050001 重复"),
        ("MBS-cn.hsa.ais.common.exception.HygeiaException: 请求失败", "请求失败"),
    ],
)
def test_clean_masks_id_numbers_and_drops_java_prefixes(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_sign_in_errors() -> None:
    assert is_sign_in_error("未签到或签到已失效")
    assert not is_sign_in_error("余额不足")
