"""The receipt scenarios of issue 15, as models (the facts a sale's answer carries)."""

from __future__ import annotations

from pos_plugin.sale.receipts import (
    Receipt,
    ReceiptItem,
    ReceiptPayer,
    ReceiptProxy,
    ReceiptReversal,
    not_used_sentence,
    reversed_receipt,
)

HEAD = dict(
    store_name="朝阳康宁大药房",
    pharmacy_code="H11010500001",
    terminal_id="T01",
    operator="cashier",
    at="2026-11-23 10:15:30",
)
COLD = ReceiptItem(name="感冒灵颗粒", quantity=2, amount=3700, insurance_class="A")
INSULIN = ReceiptItem(name="胰岛素笔芯", quantity=1, amount=40000, insurance_class="B")
TISSUES = ReceiptItem(name="面巾纸", quantity=1, amount=990, insurance_class="none")

SELF = Receipt(
    **HEAD,
    sale_ref="R20261123-0001",
    msgid="H11010500001202611231015300000",
    settlement_id="S000001",
    card_no_masked="B******01",
    patient_name="张*",
    patient_id_masked="110105********0319",
    items=[COLD, TISSUES],
    total=4690,
    account_payable=3700,
    personal_account=3700,
    cash=990,
    balance_after=16300,
)
PROXY = SELF.model_copy(
    update=dict(
        sale_ref="R20261123-0002",
        msgid="H11010500001202611231015300001",
        items=[COLD],
        total=3700,
        cash=0,
        balance_after=12600,
        proxy=ReceiptProxy(doc_type="resident_id", number_masked="110101********0262", name="李*"),
    )
)
CASCADE = Receipt(
    **HEAD,
    sale_ref="R20261123-0003",
    msgid="H11010500001202611231015300002",
    card_no_masked="B******02",
    patient_name="王*",
    patient_id_masked="110108********0422",
    items=[COLD, INSULIN],
    total=43700,
    account_payable=43700,
    personal_account=15000,
    mutual_aid=20000,
    family=[ReceiptPayer(relation_zh="父母", name="王**", amount=20000)],
    cash=8700,
    balance_after=0,
    not_used=[
        not_used_sentence("兄弟姐妹", "王*", "no_balance"),
        not_used_sentence("子女", "张**", "payer_not_employee_insurance"),
    ],
)
EVOUCHER = Receipt(
    **HEAD,
    sale_ref="R20261123-0004",
    msgid="H11010500001202611231015300003",
    credential="evoucher",
    patient_name="李*",
    patient_id_masked="110101********0262",
    items=[COLD],
    total=3700,
    account_payable=3700,
    personal_account=3700,
    cash=0,
    balance_after=4300,
)
REVERSAL = reversed_receipt(
    CASCADE,
    ReceiptReversal(
        msgid="H11010500001202611231102000004", at="2026-11-23 11:02:00", reason="顾客退货"
    ),
)
NATIONAL = CASCADE.model_copy(  # the national platform: the family share, payers unnamed
    update=dict(sale_ref="R20261123-0005", family=[], not_used=[])
)
NATIONAL_TRACE = NATIONAL.model_copy(  # one trace code a pack, 20 digits, and a long one
    update=dict(sale_ref="R20261123-0006", items=[
        ReceiptItem(name="感冒灵颗粒", quantity=2, amount=3700, insurance_class="A",
                    trace_codes=["81234567890123456701", "81234567890123456702"]),
        ReceiptItem(name="胰岛素笔芯", quantity=1, amount=40000, insurance_class="B",
                    trace_codes=["(01)06901234567892(17)281231(10)LOT2026A(21)SN0000123"]),
    ])
)
SCENARIOS = {
    "self": SELF,
    "proxy": PROXY,
    "cascade": CASCADE,
    "evoucher": EVOUCHER,
    "reversal": REVERSAL,
    "national": NATIONAL,
    "national_trace": NATIONAL_TRACE,
}
