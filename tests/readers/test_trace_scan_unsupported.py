"""A library reader has no scanner for 追溯码: a typed ScanUnsupported, and through the POS
API a sale whose lines ask for scan_trace is refused with ``trace_scan_unsupported``
before the card is asked, so the POS knows to scan the packs and send ``trace_codes``."""

from __future__ import annotations

import pytest

from drivers import DeviceError, ScanUnsupported, TracePrompt
from drivers.readers.device import LibraryReader
from pos_plugin.agent import Agent
from tests.agent import conftest as agent_conftest

from .conftest import Stub, sscard_backend

agent = agent_conftest.agent
ledger_kind = agent_conftest.ledger_kind


@pytest.fixture
def sim_transport() -> str:
    return "socket"


@pytest.fixture
def agent_device(stub: Stub) -> LibraryReader:
    return LibraryReader(sscard_backend(stub.path), call_timeout=2.0, poll_interval=0.05)


def test_the_library_reader_answers_scan_unsupported(reader: LibraryReader) -> None:
    prompt = TracePrompt(line=1, pack=1, packs=1, product="XA01AAA0001", name="药")
    with pytest.raises(ScanUnsupported) as e:
        reader.scan_trace_code(prompt, timeout=1.0)
    assert isinstance(e.value, DeviceError) and e.value.code == "scan_unsupported"
    assert "sscard" in e.value.message_en and "trace_codes" in e.value.message_en


def test_a_scan_trace_sale_on_a_library_reader_is_refused_clearly(
    agent: Agent, stub: Stub
) -> None:
    pos = agent_conftest.Pos(agent)
    reads, pins = stub.get("reads"), stub.get("pins")
    line = agent_conftest.item("6901", "A", 1, 1850, scan_trace=True)
    status, body = pos.call("POST", "/v1/sales", {"sale_ref": "LIB-SCAN", "items": [line]})
    assert (status, body["code"]) == (422, "trace_scan_unsupported"), body
    assert "trace_codes" in body["message"] and "POS" in body["message"]
    row = agent.service.journal.get("LIB-SCAN")
    assert row is not None and row.state == "refused" and row.msgid is None  # nothing charged
    assert (stub.get("reads"), stub.get("pins")) == (reads, pins)  # the card was never asked
