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


def _manager_reversal() -> Receipt:
    """A settlement the till concluded failed (the ledger had committed it: the patient's
    account and a parent's by family mutual aid), reversed by the manager by msgid: the
    receipt comes from what was journaled with the intent and the ledger's split
    (``reconcile.actions.manager_reversed``), as the manager's tool builds it."""
    import datetime as dt

    from pos_plugin.ledger.own.schemas import Settlement
    from pos_plugin.models import Leg, LegKind
    from pos_plugin.reconcile.actions import manager_reversed
    from pos_plugin.sale.service import SaleSettings

    msgid = "H11010500001202611231230001005"
    settings = SaleSettings(pharmacy_code=HEAD["pharmacy_code"], terminal_id="T02",
                            store_name=HEAD["store_name"], receipt_width=58)  # fmt: skip
    settlement = Settlement(
        settlement_id="S000007", msgid=msgid, pharmacy_code=HEAD["pharmacy_code"],
        terminal_id="T02", operator="cashier", patient_psn_no="P3", status="settled",
        legs=(Leg(kind=LegKind.PERSONAL_ACCOUNT, account_id="A-P3", payer_psn_no="P3",
                  amount=2500),
              Leg(kind=LegKind.MUTUAL_AID, account_id="A-P1", payer_psn_no="P1", amount=2000,
                  binding_id="BIND1")),
        personal_account=2500, mutual_aid=2000, cash=990, total=5490, proxy=False,
        created_at=dt.datetime(2026, 11, 23, 4, 30, 1, tzinfo=dt.UTC),
        business_date=dt.date(2026, 11, 23),
    )  # fmt: skip
    plan = {
        "total": 5490, "account_payable": 4500,
        "legs": [{"kind": "personal_account", "account_id": "A-P3", "amount": 2500},
                 {"kind": "mutual_aid", "account_id": "A-P1", "amount": 2000,
                  "name": "张*", "relation": "parent"}],
        "receipt": {"operator": "cashier", "credential": "card", "card_no_masked": "B******03",
                    "patient_name": "张**", "patient_id_masked": "110105********0134",
                    "proxy": None, "patient_account_id": "A-P3",
                    "items": [{"name": "小儿感冒颗粒", "quantity": 3, "amount": 4500,
                               "insurance_class": "A"},
                              {"name": "面巾纸", "quantity": 1, "amount": 990,
                               "insurance_class": "none"}]},
        "lines": [{"sku": "6901", "trace_codes": ["81234567890123456703"]}, {"sku": "6909"}],
    }  # fmt: skip
    reversal = ReceiptReversal(msgid="H11010500001202611261605001010", at="2026-11-26 16:05:00",
                               reason="顾客未取药", by="店长王")  # fmt: skip
    answer = manager_reversed(settings, "R20261123-0007", msgid, settlement, plan,
                              "110105********0134", reversal)  # fmt: skip
    assert answer.receipt_detail is not None
    return answer.receipt_detail


MANAGER_REVERSAL = _manager_reversal()
SCENARIOS = {
    "self": SELF,
    "proxy": PROXY,
    "cascade": CASCADE,
    "evoucher": EVOUCHER,
    "reversal": REVERSAL,
    "manager_reversal": MANAGER_REVERSAL,
    "national": NATIONAL,
    "national_trace": NATIONAL_TRACE,
}
