"""Issue 11, finding 8: a world file may not give a residents'-insurance (390) person a
personal account (DOMAIN.md: "People on residents' insurance have no personal account")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_plugin.config import ConfigError
from pos_plugin.rules.identity import mask_name
from pos_plugin.world import WorldError, load_world

EXAMPLE = load_world().model_dump(mode="json")


def _write(tmp_path: Path, world: dict[str, Any]) -> Path:
    p = tmp_path / "world.json"
    p.write_text(json.dumps(world, ensure_ascii=False), "utf-8")
    return p


def _with(insurance_type: str, balance: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    world = json.loads(json.dumps(EXAMPLE))
    person = next(p for p in world["persons"] if p["insurance_type"] == "390")
    person["insurance_type"], person["personal_account_balance"] = insurance_type, balance
    return world, person


def test_the_example_world_keeps_the_rule() -> None:
    for p in load_world().persons:
        if p.insurance_type.value == "390":
            assert p.personal_account_balance is None and p.account_id is None


@given(st.integers(0, 10**12))
def test_a_residents_insurance_person_with_any_balance_is_rejected(balance: int) -> None:
    """Even a balance of 0: the sandbox would open an account that cannot exist."""
    import tempfile

    world, person = _with("390", balance)
    with tempfile.TemporaryDirectory() as d, pytest.raises(WorldError) as e:
        load_world(_write(Path(d), world))
    text = str(e.value)
    assert person["psn_no"] in text and mask_name(person["name"]) in text
    assert "390" in text and "no personal account" in text and "personal_account_balance" in text
    assert person["id_number"] not in text and person["name"] not in text
    assert isinstance(e.value, ConfigError)  # the CLI prints it as one line, exit 2


@given(st.integers(0, 10**12))
def test_an_employee_insurance_person_may_have_any_balance(balance: int) -> None:
    import tempfile

    world, person = _with("310", balance)
    with tempfile.TemporaryDirectory() as d:
        loaded = load_world(_write(Path(d), world)).person(person["psn_no"])
    assert loaded.personal_account_balance == balance
    assert loaded.account_id == f"PA{person['psn_no']}"


def test_a_residents_insurance_person_without_an_account_loads(tmp_path: Path) -> None:
    world, person = _with("390", None)
    assert load_world(_write(tmp_path, world)).person(person["psn_no"]).account_id is None


def test_other_world_errors_never_echo_the_record(tmp_path: Path) -> None:
    """pydantic's own message would print the person's record, ID number included."""
    world, person = _with("390", None)
    person["insured_region"] = "not-a-region"
    with pytest.raises(WorldError) as e:
        load_world(_write(tmp_path, world))
    where = f"persons.{world['persons'].index(person)}.insured_region"
    assert where in str(e.value)
    assert person["id_number"] not in str(e.value)


def test_the_example_world_shelves_valid_packs_for_the_simulated_scanner() -> None:
    """The shelf the device simulator's cashier scans (SCAN_TRACE): national drug codes
    (20 digits starting with 8, the sale's default check), each pack once."""
    import re

    packs = [t for c in load_world().catalogue for t in c.trace_codes]
    assert len(packs) >= 12 and len(packs) == len(set(packs))
    assert all(re.fullmatch(r"8\d{19}", t) for t in packs)


def test_a_pack_code_twice_in_the_world_is_rejected_naming_it(tmp_path: Path) -> None:
    world = json.loads(json.dumps(EXAMPLE))
    twice = world["catalogue"][0]["trace_codes"][0]
    world["catalogue"][1]["trace_codes"].append(twice)
    with pytest.raises(WorldError) as e:
        load_world(_write(tmp_path, world))
    assert "trace_codes must be unique" in str(e.value) and twice in str(e.value)


@given(st.lists(st.text("0123456789", min_size=1, max_size=100), max_size=20))
def test_any_distinct_codes_load_in_their_order(codes: list[str]) -> None:
    import tempfile

    world = json.loads(json.dumps(EXAMPLE))
    for c in world["catalogue"]:
        c["trace_codes"] = []
    world["catalogue"][0]["trace_codes"] = codes
    with tempfile.TemporaryDirectory() as d:
        if len(set(codes)) != len(codes):
            with pytest.raises(WorldError):
                load_world(_write(Path(d), world))
        else:
            assert list(load_world(_write(Path(d), world)).catalogue[0].trace_codes) == codes


def test_a_world_without_trace_codes_still_loads(tmp_path: Path) -> None:
    world = json.loads(json.dumps(EXAMPLE))
    for c in world["catalogue"]:
        c.pop("trace_codes", None)
    assert all(c.trace_codes == () for c in load_world(_write(tmp_path, world)).catalogue)
