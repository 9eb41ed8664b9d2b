"""The foundation demo: every scenario as expected, and nothing unmasked printed."""

from __future__ import annotations

import datetime as dt

import pytest

from pos_plugin.rules_demo import run_rules_demo
from pos_plugin.world import load_world


def test_rules_demo_scenarios_come_out_as_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_rules_demo(today=dt.date(2026, 11, 23)) == 0
    out = capsys.readouterr().out
    assert "8 scenarios as expected, 0 unexpected" in out
    for code in ("card_not_patients_own", "proxy_evidence_missing", "card_reported_lost"):
        assert code in out
    assert "spouse's parent is not a close relative" in out
    assert "cross-province mutual aid is not open" in out
    world = load_world()
    for person in world.persons:
        assert person.id_number not in out, "a full ID number was printed"
        assert person.name not in out.replace(person.name[0] + "*", ""), "a full name was printed"
