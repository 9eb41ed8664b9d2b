"""docs/nhsa.md must agree with the code: its worked envelopes are what the client sends
(byte for byte, once compacted) and reads, and its tables name what the code uses."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.ledger.own.schemas import Credential, LineSummary, SettlementRequest
from pos_plugin.models import InsuranceClass
from tests.nhsa.conftest import Clock, settings
from tests.nhsa.replay import ReplayServer
from tests.nhsa.tables import violations

DOC = Path(__file__).resolve().parents[2] / "docs" / "nhsa.md"
TEXT = DOC.read_text("utf-8")
BLOCKS = dict(re.findall(r"```(?:json|text) nhsa-([a-z]+-\d{4})\n(.*?)```", TEXT, re.S))


def block(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(BLOCKS[name], parse_float=Decimal)
    return doc


def read_as(name: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in BLOCKS[name].split())


@pytest.fixture(scope="module")
def day() -> Iterator[tuple[ReplayServer, Any, Any]]:
    answers = {n: block(f"answer-{n}") for n in ("9001", "1101", "2102")}
    server = ReplayServer(lambda e: answers[e["infno"]])
    url = server.start()
    clock = Clock()
    client = NhsaLedgerClient(url, settings(read_timeout=15.0, connect_timeout=3.0,
                                            backoff_base=0.2), clock=clock)  # fmt: skip
    card = Credential.card("B11000001", "4D83237335790FB4875C7227C23D7360")
    found = client.lookup(card)
    clock.now = dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=env.CHINA)
    lines = (
        LineSummary(sku="6901234567892", name="阿莫西林胶囊", insurance_class=InsuranceClass.A,
                    quantity=2, amount=2500, catalogue_code="XA01AAA0001", unit_price=1250,
                    prescription_ref="RX20261201001"),
        LineSummary(sku="6909876543210", name="头孢克肟分散片", insurance_class=InsuranceClass.B,
                    quantity=1, amount=3800, catalogue_code="XB01BBB0001", unit_price=3800),
        LineSummary(sku="6900000000017", name="牙膏", insurance_class=InsuranceClass.NONE,
                    quantity=1, amount=1500, unit_price=1500),
    )  # fmt: skip
    done = client.settle(SettlementRequest(
        msgid="H11010500001202612011000050001", pharmacy_code="H11010500001", terminal_id="T1",
        operator="0007", patient_psn_no="11000000000000000001", credential=card, cash=0,
        total=7800, lines=lines))  # fmt: skip
    yield server, found, done
    server.stop()


def test_doc_has_the_worked_examples() -> None:
    assert set(BLOCKS) == {f"{k}-{n}" for k in ("request", "answer") for n in ("9001", "1101", "2102")} | {
        "read-1101", "read-2102"}


@pytest.mark.parametrize("infno", ["9001", "1101", "2102"])
def test_the_client_sends_exactly_the_documented_request(
    day: tuple[ReplayServer, Any, Any], infno: str
) -> None:
    server = day[0]
    sent = server.posts(infno)
    assert len(sent) == 1
    assert sent[0].body == env.encode(block(f"request-{infno}"))
    assert violations(block(f"request-{infno}")) == []


def test_the_documented_1101_answer_reads_as_stated(day: tuple[ReplayServer, Any, Any]) -> None:
    found, want = day[1], read_as("read-1101")
    assert found.person.psn_no == want["psn_no"]
    assert found.person.insurance_type.value == want["insurance_type"]
    assert found.person.insured_region == want["insured_region"]
    assert found.personal_account.account_id == want["account_id"]
    assert found.personal_account.balance == int(want["balance"])


def test_the_documented_2102_answer_reads_as_stated(day: tuple[ReplayServer, Any, Any]) -> None:
    done, want = day[2], read_as("read-2102")
    assert done.settlement_id == want["settlement_id"]
    assert (done.personal_account, done.mutual_aid, done.cash, done.total) == tuple(
        int(want[k]) for k in ("personal_account", "mutual_aid", "cash", "total"))
    assert done.detail["noncatalogue_cash"] == int(want["noncatalogue_cash"])
    assert done.detail["setlinfo"]["balc"] == int(want["balc"])


def test_the_settings_table_names_every_setting() -> None:
    table = TEXT.split("## Settings (`[nhsa]`)", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"[a-z_]+", " ".join(r.split("|")[1] for r in table.splitlines()
                                                 if r.startswith("| ") and "---" not in r)))
    assert set(NhsaSettings.model_fields) <= named


def test_the_envelope_table_names_every_field_we_send(day: tuple[ReplayServer, Any, Any]) -> None:
    table = TEXT.split("## The envelope: every field and where it comes from", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| ([a-z_, /]+) \|", table, re.M))
    fields = {f.strip() for row in named for f in re.split(r"[,/]", row)}
    assert set(day[0].seen[0].envelope) <= fields
