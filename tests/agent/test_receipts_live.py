"""Receipts from the real agent (simulator, sandbox ledger): the answer carries the
facts and the lines rendered at the configured width, for every kind of receipt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.agent import Agent, start_simulated
from pos_plugin.sale.receipts import Receipt, render, text_width

from .conftest import LI_NA, WANG_FANG, XIAOMING, ZHANG_WEI, Pos, item

COLD = [item("6901", "A", 2, 1850), item("7701", "none", 1, 990)]
BIG = [item("6901", "A", 20, 1850), item("8802", "B", 1, 40000)]


@pytest.fixture
def narrow(tmp_path: Path) -> Iterator[Agent]:
    """An agent configured for a 58 mm printer (32 columns)."""
    a = start_simulated(
        workdir=tmp_path, card_timeout=5.0, pin_timeout=5.0, recovery_interval=0.5, receipt_width=58
    )
    try:
        yield a
    finally:
        a.stop()


def detail(body: dict) -> Receipt:  # type: ignore[type-arg]
    return Receipt.model_validate(body["receipt_detail"])


def test_self_purchase_receipt_is_the_rendered_facts_at_58mm(narrow: Agent) -> None:
    pos = Pos(narrow)
    status, body = pos.sale("RC1", "B11000001", ZHANG_WEI, COLD)
    assert status == 200, body
    r = detail(body)
    assert body["receipt"] == render(r, 58)
    assert all(text_width(x) <= 32 for x in body["receipt"])
    assert (r.store_name, r.sale_ref, r.msgid) == ("朝阳康宁大药房", "RC1", body["msgid"])
    assert r.at.replace("-", "").replace(" ", "").replace(":", "") == body["msgid"][12:26]
    assert (r.total, r.personal_account, r.cash, r.balance_after) == (4690, 3700, 990, 16300)
    assert [(i.name, i.quantity, i.amount, i.insurance_class) for i in r.items] == [
        ("药品6901", 2, 3700, "A"),
        ("药品7701", 1, 990, "none"),
    ]
    assert (r.card_no_masked, r.patient_name, r.patient_id_masked) == (
        "B******01",
        "张*",
        "110105********0319",
    )
    assert r.proxy is None
    # Zhang Wei's spouse's parent and cross-province parent could not pay, but his own
    # account paid all it could: no payer was needed, so none is printed.
    assert body["skipped"] and r.not_used == []
    status, again = pos.call("GET", "/v1/sales/RC1")
    assert again == body


def test_proxy_receipt_names_the_buyer_masked(pos: Pos) -> None:
    buyer = {"role": "proxy", "id_document": pos.doc(LI_NA)}
    status, body = pos.sale("RC2", "B11000001", ZHANG_WEI, COLD, buyer=buyer)
    assert status == 200, body
    r = detail(body)
    assert r.proxy is not None and r.proxy.number_masked == "110101********0262"
    assert r.proxy.name == "李*"
    assert "代购               李* 身份证 110101********0262" in body["receipt"]
    assert "110101199007070262" not in str(body)


def test_cascade_receipt_says_which_payer_could_not_pay_when_one_was_needed(pos: Pos) -> None:
    status, body = pos.sale("RC3", "B11000002", WANG_FANG, BIG)
    assert status == 200, body
    r = detail(body)
    assert r.cash > 0 and r.family
    assert r.not_used == [
        "兄弟姐妹 王*的个人账户余额为零，未参与支付",
        "子女 张**未参加职工医保，不能共济支付",
    ]
    assert "兄弟姐妹 王*的个人账户余额为零，未参与支付" in body["receipt"]
    assert not any("no_balance" in x or "payer_not" in x for x in body["receipt"])


def test_evoucher_receipt(pos: Pos) -> None:
    pos.call("POST", "/v1/simulator/present", {"evoucher_token": "EV-ZHANGWEI-0001"})
    status, body = pos.call(
        "POST",
        "/v1/sales",
        {"sale_ref": "RC4", "items": COLD, "patient": pos.doc(ZHANG_WEI), "credential": "evoucher"},
    )
    assert status == 200, body
    r = detail(body)
    assert r.credential == "evoucher" and r.card_no_masked is None
    assert any(x.startswith("凭证") and x.endswith("医保电子凭证") for x in body["receipt"])


def test_reversal_answers_its_own_receipt(pos: Pos) -> None:
    status, sale = pos.sale("RC5", "B11000001", ZHANG_WEI, COLD)
    assert status == 200, sale
    status, body = pos.call(
        "POST", "/v1/sales/RC5/reversal", {"reason": "顾客退货"}, role="manager"
    )
    assert status == 200, body
    r = detail(body)
    assert body["status"] == "reversed" and r.kind == "reversal"
    assert body["reversal"]["msgid"] == r.reversal.msgid != sale["msgid"]  # type: ignore[union-attr]
    assert len(r.reversal.msgid) == 30  # type: ignore[union-attr]
    assert (r.total, r.personal_account, r.cash) == (-4690, -3700, -990)
    assert r.msgid == sale["msgid"] and r.sale_ref == "RC5"
    assert body["receipt"] == render(r, 80)
    assert "原因 顾客退货" in body["receipt"]
    assert any(x.startswith("退款合计") and x.endswith("-¥46.90") for x in body["receipt"])
    # The split stays the sale's (positive): what was reversed.
    assert (body["total"], body["personal_account"]) == (4690, 3700)
    status, again = pos.call("GET", "/v1/sales/RC5")
    assert status == 200 and again == body
    status, twice = pos.call("POST", "/v1/sales/RC5/reversal", {"reason": "x"}, role="manager")
    assert status == 200 and twice == body


@pytest.mark.parametrize("ledger_kind", ["nhsa"], indirect=True)
def test_national_platform_receipt_prints_the_family_share_as_one_line(pos: Pos) -> None:
    """The platform says how much the family accounts paid, not who: one 家庭共济 line."""
    status, body = pos.sale("RC6", "B11000003", XIAOMING, BIG)
    assert status == 200, body
    r = detail(body)
    assert r.mutual_aid == body["mutual_aid"] > 0 and body["family"] == [] and r.family == []
    assert any(
        x.startswith("家庭共济 ") and x.endswith(f"{r.mutual_aid // 100}.{r.mutual_aid % 100:02d}")
        for x in body["receipt"]
    ), body["receipt"]
    assert not any(x.startswith("家庭共济 父母") for x in body["receipt"])
    assert body["receipt"] == render(r, 80)
