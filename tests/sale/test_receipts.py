"""Receipts byte for byte at both widths, and their rules (what is printed, and when).

The golden files are the receipts as the printer gets them (UTF-8, one ``\\n`` per
line; ``.gitattributes`` keeps git from rewriting their line ends on Windows). After a
deliberate layout change, regenerate them with ``RECEIPTS_REGEN=1 pytest tests/sale``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_plugin.sale.receipts import (
    COLUMNS,
    NOT_USED_ZH,
    Receipt,
    ReceiptItem,
    not_used_sentence,
    payer_was_needed,
    render,
    text_width,
    trace_lines,
)
from tests.sale.receipt_scenarios import CASCADE, REVERSAL, SCENARIOS, SELF

GOLDEN = Path(__file__).parent / "golden"


def printed(receipt: Receipt, width: int) -> bytes:
    return ("\n".join(render(receipt, width)) + "\n").encode("utf-8")


@pytest.mark.parametrize("width", [58, 80])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_receipt_bytes(name: str, width: int) -> None:
    path = GOLDEN / f"{name}_{width}.txt"
    got = printed(SCENARIOS[name], width)
    if os.environ.get("RECEIPTS_REGEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(got)
    assert got == path.read_bytes()


@pytest.mark.parametrize("width", [58, 80])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_line_fits_the_paper_and_the_printer_encoding(name: str, width: int) -> None:
    for line in render(SCENARIOS[name], width):
        assert text_width(line) <= COLUMNS[width], line
        line.encode("gb18030")  # what a Chinese receipt printer takes


def test_cjk_counts_double() -> None:
    assert text_width("合计") == 4 and text_width("¥1.00") == 5 and text_width("王*") == 3
    line = render(SELF, 58)[-3]  # 个人账户余额 ... ¥163.00
    assert line == "个人账户余额" + " " * 13 + "¥163.00" and text_width(line) == 32


def test_long_names_and_the_largest_amount_wrap_within_the_width() -> None:
    big = SELF.model_copy(
        update={
            "items": [
                ReceiptItem(
                    name="复方甘草酸苷片（薄膜衣）二十四片装特大号家庭装" * 2,
                    quantity=10000,
                    amount=4294967295,
                    insurance_class="B",
                )
            ],
            "total": 4294967295,
        }
    )
    for width in (58, 80):
        lines = render(big, width)
        assert all(text_width(x) <= COLUMNS[width] for x in lines)
        assert any(x.endswith("¥42,949,672.95") for x in lines)


def test_proxy_purchase_says_daigou_with_the_buyers_masked_document() -> None:
    lines = render(SCENARIOS["proxy"], 80)
    assert any(x.startswith("代购") and x.endswith("李* 身份证 110101********0262") for x in lines)
    assert not any("代购" in x for x in render(SELF, 80))


def test_payers_not_used_are_plain_sentences_with_the_relation_never_a_code() -> None:
    text = "\n".join(render(CASCADE, 58) + render(CASCADE, 80))
    assert "兄弟姐妹 王*的个人账户余额为零" in text and "子女 张**未参加职工医保" in text
    for code in NOT_USED_ZH:
        assert code not in text
    assert not_used_sentence("配偶", "赵*", "some_future_code") == "配偶 赵*未参与本次共济支付"
    # Son and spouse both mask to 赵*: the relation tells them apart.
    assert not_used_sentence("子女", "赵*", "no_balance") != not_used_sentence(
        "配偶", "赵*", "no_balance"
    )


def test_a_payer_was_needed_only_when_cash_paid_part_the_accounts_could_have() -> None:
    assert payer_was_needed(43700, 15000, 20000)  # 87 yuan of A/B lines went to cash
    assert not payer_was_needed(3700, 3700, 0)  # the own account paid it all
    assert not payer_was_needed(None, 0, 0)


def test_a_reversal_has_its_own_receipt_with_negative_amounts() -> None:
    lines = render(REVERSAL, 58)
    assert lines[1].strip() == "医保冲正/退款单"
    assert "原单号            R20261123-0003" in lines
    assert "  H11010500001202611231102000004" in lines  # the reversal's msgid
    assert "原因 顾客退货" in lines
    assert any(x.startswith("退款合计") and x.endswith("-¥437.00") for x in lines)
    assert any(x.startswith("家庭共济 父母 王**") and x.endswith("-¥200.00") for x in lines)
    assert REVERSAL.total == -43700 and REVERSAL.reversal is not None


def test_an_unknown_width_is_refused() -> None:
    with pytest.raises(ValueError, match="58 or 80"):
        render(SELF, 76)


@settings(max_examples=200, deadline=None)
@given(code=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                    max_size=100),
       width=st.sampled_from([58, 80]))  # fmt: skip
def test_a_trace_code_of_any_length_fits_and_reads_back_whole(code: str, width: int) -> None:
    lines = trace_lines(code, COLUMNS[width])
    assert all(text_width(line) <= COLUMNS[width] for line in lines)
    assert lines[0].startswith("  追溯码 ")
    indent = text_width("  追溯码 ")
    assert lines[0][len("  追溯码 "):] + "".join(x[indent:] for x in lines[1:]) == code
    if len(code) == 20:  # the national drug code: one line even at 58 mm
        assert len(lines) == 1
