"""``pos-plugin demo --ledger-kind nhsa``: the national day's receipts show each pack's
追溯码 (the demo's POS sends them), and every sale and return is uploaded (3505/3506)."""

from __future__ import annotations

import re

import pytest

from pos_plugin.demo import run_demo, with_trace_codes


def test_the_national_demo_prints_traceability_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo("nhsa") == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    codes = re.findall(r"追溯码 (\d+)", out)
    assert codes and all(len(c) == 20 and c.startswith("8") for c in codes)
    assert len(codes) == len(set(codes))  # one receipt line per pack, no pack twice
    assert re.search(r"\(3505/3506\): \d+ now, 0 owed", out)


def test_each_pack_gets_its_own_code() -> None:
    got = with_trace_codes("DEMO-006", [
        {"sku": "1", "catalogue_code": "X", "quantity": 3}, {"sku": "2", "quantity": 1}])  # fmt: skip
    assert got[0]["trace_codes"] == ["80000006001000000000", "80000006001000000001",
                                     "80000006001000000002"]  # fmt: skip
    assert "trace_codes" not in got[1]  # a non-catalogue line is never sent to the platform
