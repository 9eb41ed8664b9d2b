"""追溯码 at the counter: validated per pack before the card is asked, a code sold twice
in the store refused (across tills on the shared journal), released by a reversal, and
carried in 2102's traceability node under the configured spelling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.journal.journal import Journal
from pos_plugin.ledger.nhsa.envelope import CHINA
from pos_plugin.ledger.nhsa.inputs import Insured, drug_input
from pos_plugin.ledger.own.schemas import Credential, LineSummary, SettlementRequest
from pos_plugin.models import InsuranceClass
from pos_plugin.sale.models import SaleError, SaleRequest
from pos_plugin.sale.service import SaleService, SaleSettings

from .harness import P1, Day, at
from .test_catalogue import Devices

CODE = "H11010500001"
C1, C2, C3 = "81234567890123456701", "81234567890123456702", "81234567890123456703"


def _req(ref: str, *lines: dict[str, Any]) -> SaleRequest:
    items = [{"sku": f"K{n}", "name": f"药{n}", "catalogue_code": "XA01AAA0001",
              "insurance_class": "A", "quantity": 1, "unit_price": 1000} | line
             for n, line in enumerate(lines, 1)]  # fmt: skip
    return SaleRequest.model_validate({"sale_ref": ref, "items": items})


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3", hmac_key=b"k" * 32, pharmacy_code=CODE, terminal_id="T01")
    yield j
    j.close()


def _service(journal: Journal, **kw: Any) -> tuple[SaleService, Devices]:
    devices = Devices()
    return SaleService(SaleSettings(CODE, journal.terminal_id, **kw), journal, None,  # type: ignore[arg-type]
                       devices), devices  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize(("line", "code", "says"), [
    ({"trace_codes": ["1234"]}, "trace_code_invalid", "line 1 药1 (K1)"),
    ({"trace_codes": ["91234567890123456701"]}, "trace_code_invalid", "20 digits"),
    ({"quantity": 2, "trace_codes": [C1]}, "trace_code_count", "2 traceability code(s)"),
    ({"split_pack": True, "quantity": 3, "trace_codes": [C1, C2]}, "trace_code_count", "1 "),
])  # fmt: skip
def test_bad_codes_are_refused_before_the_card(journal: Journal, line: dict[str, Any],
                                               code: str, says: str) -> None:  # fmt: skip
    svc, devices = _service(journal)
    with pytest.raises(SaleError) as got:
        svc.sell(_req("S1", line))
    assert got.value.code == code and says in got.value.message, got.value.message
    assert devices.calls == []


def test_a_code_twice_in_one_basket_names_both_lines(journal: Journal) -> None:
    svc, devices = _service(journal)
    with pytest.raises(SaleError) as got:
        svc.sell(_req("S1", {"trace_codes": [C1]}, {"quantity": 2, "trace_codes": [C2, C1]}))
    assert got.value.code == "trace_code_repeated"
    assert "line 2" in got.value.message and "line 1" in got.value.message
    assert devices.calls == []


def test_sold_before_is_refused_or_a_notice_and_a_reversal_releases_it(journal: Journal) -> None:
    journal.claim_trace_codes("OLD", "M1", [C1, C2])
    svc, devices = _service(journal)
    with pytest.raises(SaleError) as got:
        svc.sell(_req("S1", {"trace_codes": [C1]}))
    assert got.value.code == "trace_code_sold_before" and C1 in got.value.message
    assert "回流" in got.value.message and devices.calls == []
    notice, _ = _service(journal, trace_reuse="notice")
    (n,) = notice._check_trace_codes(_req("S2", {"trace_codes": [C2]}))
    assert n.code == "trace_code_sold_before"
    journal.release_trace_codes("OLD")  # the customer brought the packs back
    assert svc._check_trace_codes(_req("S3", {"trace_codes": [C1]})) == []
    journal.claim_trace_codes("NEW", "M2", [C1])
    assert journal.trace_codes_sold([C1, C3]) == {C1}


def test_a_code_sold_on_one_till_is_refused_on_another_through_the_shared_journal() -> None:
    from tests.pgschema import fresh_schema

    with fresh_schema("trace") as url:
        t1 = Journal(url, hmac_key=b"k" * 32, pharmacy_code=CODE, terminal_id="T01", till_index=1)
        t2 = Journal(url, hmac_key=b"k" * 32, pharmacy_code=CODE, terminal_id="T02", till_index=2)
        try:
            t1.claim_trace_codes("A1", "M1", [C1])
            svc, devices = _service(t2)
            with pytest.raises(SaleError) as got:
                svc.sell(_req("B1", {"trace_codes": [C1]}))
            assert got.value.code == "trace_code_sold_before" and devices.calls == []
        finally:
            t1.close()
            t2.close()


@pytest.mark.parametrize("key", ["durg_trac_info", "drug_trac_info"])
def test_2102_carries_the_codes_per_pack(key: str) -> None:
    insured = Insured(psn_no=P1, insuplc_admdvs="110105", insutype="310", psn_type="11",
                      psn_cert_type="01", certno="", psn_name="张", mdtrt_cert_type="03",
                      mdtrt_cert_no="B1", card_sn="S", balance=10_000)  # fmt: skip
    lines = (
        LineSummary(sku="K1", name="药", insurance_class=InsuranceClass.A, quantity=2,
                    amount=2000, catalogue_code="XA01AAA0001", trace_codes=(C1, C2)),
        LineSummary(sku="K2", name="药", insurance_class=InsuranceClass.A, quantity=1,
                    amount=300, catalogue_code="XA01AAA0001", trace_codes=(C3,),
                    split_pack=True),
        LineSummary(sku="K3", name="药", insurance_class=InsuranceClass.A, quantity=1,
                    amount=300, catalogue_code="XA01AAA0001"),
    )  # fmt: skip
    req = SettlementRequest(msgid=f"{CODE}202612011000000001", pharmacy_code=CODE,
                            terminal_id="T01", operator="op", patient_psn_no=P1,
                            credential=Credential.card("B1", "S"), cash=0, total=2600,
                            lines=lines)  # fmt: skip
    built = drug_input(req, insured, now=dt.datetime(2026, 12, 1, 10, tzinfo=CHINA),
                       trace_key=key)  # fmt: skip
    rows = built.data["drugdetail"]
    assert rows[0][key] == [{"feedetl_sn": "1", "drug_trac_codg": C1, "trdn_flag": "0"},
                            {"feedetl_sn": "1", "drug_trac_codg": C2, "trdn_flag": "0"}]
    assert rows[1][key] == [{"feedetl_sn": "2", "drug_trac_codg": C3, "trdn_flag": "1"}]
    assert key not in rows[2]


def test_a_sale_with_codes_settles_on_the_sandbox_and_claims_them(tmp_path: Path) -> None:
    d = Day(tmp_path, tills=("T01",), trace_info_key="drug_trac_info")
    try:
        sent: list[dict[str, Any]] = []
        post = d.client.transport.post

        def spy(infno: str, envelope: dict[str, Any], **kw: Any) -> Any:
            sent.append(envelope)
            return post(infno, envelope, **kw)

        d.client.transport.post = spy  # type: ignore[method-assign]
        line = LineSummary(sku="K1", name="药", insurance_class=InsuranceClass.A, quantity=2,
                           amount=1000, catalogue_code="XA01AAA0001", unit_price=500,
                           trace_codes=(C1, C2))  # fmt: skip
        sold = d.sale("T01", "A1", P1, line, when=at(9, 5))
        (env,) = [e for e in sent if e["infno"] == "2102"]
        assert [t["drug_trac_codg"] for t in env["input"]["drugdetail"][0]["drug_trac_info"]] \
            == [C1, C2]  # fmt: skip
        assert sold.settlement_id
    finally:
        d.close()
