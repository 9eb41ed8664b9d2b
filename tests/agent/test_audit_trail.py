"""The audit trail of refusals (issue 15): every refused or failed attempt is journaled
with what fund supervision needs, in the hash chain, and ``journal search --person``
finds a person's sales, proxy purchases and refused attempts by keyed hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pos_plugin.agent import Agent
from pos_plugin.cli import main as cli_main

from .conftest import LI_NA, WANG_FANG, ZHANG_WEI, Pos, item

COLD = [item("6901", "A", 2, 1850)]


def search(agent: Agent, tmp_path: Path, person: str, capsys: pytest.CaptureFixture[str]) -> str:
    journal = agent.service.journal
    code = cli_main(
        ["journal", "search", journal.path, "--key-file", str(tmp_path / "journal.key"),
         "--person", person]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_an_impersonation_attempt_is_kept_for_the_audit(
    pos: Pos, agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zhang Wei's document with Wang Fang's card: refused, and both are on record."""
    zhang = agent.world.person(ZHANG_WEI).id_number  # type: ignore[union-attr]
    wang = agent.world.person(WANG_FANG).id_number  # type: ignore[union-attr]
    status, body = pos.sale("A1", "B11000002", ZHANG_WEI, COLD)
    assert (status, body["code"]) == (422, "card_not_patients_own")
    row = agent.service.journal.get("A1")
    assert row is not None and row.state == "refused"
    ev = row.evidence or {}
    assert ev["card_no_masked"] == "B******02" and ev["credential"] == "card"
    assert ev["operator"] == "cashier"
    assert ev["patient"]["number_masked"] == "110105********0319"
    assert ev["patient"]["number_hmac"] == agent.service.journal.person_key(zhang)
    assert ev["patient"]["name_masked"] == "张*"
    assert ev["holder"]["number_masked"] == "110108********0422"
    assert ev["holder"]["number_hmac"] == agent.service.journal.person_key(wang)
    assert row.patient_id_hmac == agent.service.journal.person_key(wang)
    assert row.refusal_code == "card_not_patients_own"
    # In the hash chain: the refusal's event carries the evidence.
    events = agent.service.journal.query(
        "SELECT state, detail FROM events WHERE sale_ref = 'A1' ORDER BY seq"
    )
    assert events[-1]["state"] == "refused" and "B******02" in events[-1]["detail"]

    out = search(agent, tmp_path, zhang, capsys)
    assert "110105********0319: 1 record(s)" in out
    assert "A1; sale REFUSED (card_not_patients_own); as patient; card B******02" in out
    assert "operator cashier" in out
    out = search(agent, tmp_path, wang, capsys)
    assert "A1; sale REFUSED (card_not_patients_own); as card holder" in out
    assert zhang not in out and wang not in out


def test_search_lists_sales_proxy_purchases_and_failed_attempts_and_verify_stays_intact(
    pos: Pos, agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zhang = agent.world.person(ZHANG_WEI).id_number  # type: ignore[union-attr]
    li = agent.world.person(LI_NA).id_number  # type: ignore[union-attr]
    assert pos.sale("S1", "B11000001", ZHANG_WEI, COLD)[0] == 200
    proxy = {"role": "proxy", "id_document": pos.doc(LI_NA)}
    assert pos.sale("S2", "B11000001", ZHANG_WEI, COLD, buyer=proxy)[0] == 200
    status, body = pos.sale("S3", "B11000001", ZHANG_WEI, COLD, pin=["wrong", "wrong"])
    assert (status, body["code"]) == (422, "pin_wrong")
    status, body = pos.sale("S4", "B11000001", None, COLD, buyer={"role": "proxy"})
    assert body["code"] == "proxy_evidence_missing"
    # A proxy buyer without the patient's document: refused before the card; Li Na's
    # own document still puts the attempt on her record.
    buyer_only = {"role": "proxy", "id_document": pos.doc(LI_NA)}
    status, body = pos.sale("S5", None, None, COLD, buyer=buyer_only)
    assert status in (422, 504), body

    out = search(agent, tmp_path, zhang, capsys)
    lines = [x for x in out.splitlines() if x.startswith("  ")]
    refs = [x.split("; ")[1] for x in lines]
    assert refs == ["S1", "S2", "S3", "S4"]
    assert "S2; proxy purchase settled; as card holder+patient" in out
    assert "S3; sale REFUSED (pin_wrong); as card holder+patient; card B******01" in out
    out_li = search(agent, tmp_path, li.lower(), capsys)  # the number as typed
    assert "S2; proxy purchase settled; as proxy buyer" in out_li
    assert "S5; proxy purchase" in out_li
    assert "buyer 110101********0262 李*" in out_li

    assert cli_main(["journal", "verify", agent.service.journal.path]) == 0
    assert "chain intact" in capsys.readouterr().out
    # No number in clear anywhere in the journal file.
    raw = Path(agent.service.journal.path).read_bytes()
    for wal in Path(agent.service.journal.path).parent.glob("journal.sqlite3*"):
        raw += wal.read_bytes()
    assert zhang.encode() not in raw and li.encode() not in raw


def test_a_timed_out_attempt_is_journaled_with_the_documents(
    pos: Pos, agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zhang = agent.world.person(ZHANG_WEI).id_number  # type: ignore[union-attr]
    status, body = pos.sale("T1", None, ZHANG_WEI, COLD)
    assert (status, body["code"]) == (504, "device_timeout")
    out = search(agent, tmp_path, zhang, capsys)
    assert "T1; sale FAILED (device_timeout); as patient" in out
