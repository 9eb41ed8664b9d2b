"""The 2102 answer's per-line class (chrgitm_lv) is journaled with the sale and printed on
its receipt instead of the POS's guess, and each line's 追溯码 is printed under it, on the
sale's receipt and on its reversal's."""

from __future__ import annotations

from pathlib import Path

from pos_plugin.ledger.nhsa.client import line_levels
from pos_plugin.ledger.own.schemas import LineSummary
from pos_plugin.models import InsuranceClass

from .harness import P1, Day, Sold, at, line

C1, C2 = "81234567890123456711", "81234567890123456712"


def test_the_platforms_class_and_the_codes_reach_the_journal_and_the_receipt(
    tmp_path: Path,
) -> None:
    d = Day(tmp_path, tills=("T01",))
    try:
        # The POS calls both lines class A; the platform's catalogue says B for the second.
        lines = (line("XA01AAA0001", 1000, qty=2).model_copy(update={"trace_codes": (C1, C2)}),
                 line("XB01BBB0001", 800))  # fmt: skip
        msgid, req, plan = d.intent("T01", "G1", P1, lines, at(10))
        plan["receipt"] = {"items": [
            {"name": "阿莫西林胶囊", "quantity": 2, "amount": 1000, "insurance_class": "A"},
            {"name": "头孢克肟分散片", "quantity": 1, "amount": 800, "insurance_class": "A"},
            {"name": "面巾纸", "quantity": 1, "amount": 500, "insurance_class": "none"},
        ]}  # a third, non-catalogue line the platform never saw  # fmt: skip
        plan["lines"].append({"sku": "T1", "name": "面巾纸", "catalogue_code": None,
                              "quantity": 1, "unit_price": 500, "trace_codes": []})  # fmt: skip
        d.clock.now = at(10)
        d.client.lookup(req.credential)
        s = d.client.settle(req)
        result = d.services["T01"]._record_settled("G1", msgid, s, plan)
        row = d.journals["T01"].get("G1")
        assert row is not None
        assert (row.result or {})["ledger_detail"]["chrgitm_lv"] == ["01", "02"]
        assert result.receipt_detail is not None
        classes = [i.insurance_class for i in result.receipt_detail.items]
        assert classes == ["A", "B", "none"]
        text = "\n".join(result.receipt or [])
        assert "头孢克肟分散片 x1 乙类" in text and "阿莫西林胶囊 x2 甲类" in text
        assert f"  追溯码 {C1}" in text and f"  追溯码 {C2}" in text
        # the reversal's receipt names the packs that came back
        rev_msgid = d.reverse(Sold("T01", "G1", msgid, P1, s.settlement_id), at(11))
        row = d.journals["T01"].get("G1")
        assert row is not None and row.reversal_msgid == rev_msgid
        printed = "\n".join((row.result or {})["receipt"])
        assert "医保冲正/退款单" in printed and f"  追溯码 {C1}" in printed
    finally:
        d.close()


def test_line_levels_follow_feedetl_sn_over_the_catalogue_lines_only() -> None:
    def li(code: str | None) -> LineSummary:
        return LineSummary(sku="S", name="n", insurance_class=InsuranceClass.A, quantity=1,
                           amount=100, catalogue_code=code)  # fmt: skip

    cut = [{"feedetl_sn": "2", "chrgitm_lv": "03"}, {"feedetl_sn": "1", "chrgitm_lv": "02"}]
    assert line_levels([li("X1"), li(None), li("X2"), li("X3")], cut) == ["02", None, "03", None]
