"""Fixtures: a scripted platform behind a real HTTP server, and clients pointed at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.envelope import CHINA
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.ledger.own.schemas import Credential, LineSummary, SettlementRequest
from pos_plugin.models import InsuranceClass
from tests.nhsa.fakeplatform import FakePlatform
from tests.nhsa.replay import ReplayServer
from tests.nhsa.tables import violations

CODE = "H11010500001"


class Clock:
    """A settable China-time clock (sign-in days, msgid stamps)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=CHINA)

    def __call__(self) -> dt.datetime:
        return self.now


def settings(**kw: Any) -> NhsaSettings:
    base: dict[str, Any] = dict(
        fixmedins_code=CODE, fixmedins_name="朝阳康宁大药房", mdtrtarea_admvs="110105",
        read_timeout=1.0, connect_timeout=1.0, backoff_base=0.0, sign_in_mac="00-11-22-33-44-55",
        sign_in_ip="10.0.0.8",
    )  # fmt: skip
    return NhsaSettings(**(base | kw))


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def server(platform: FakePlatform) -> Iterator[ReplayServer]:
    srv = ReplayServer(platform)
    srv.url = srv.start()  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    # Every request any test made is checked against the field tables.
    bad = {s.envelope.get("infno"): violations(s.envelope) for s in srv.seen}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(
    server: ReplayServer, clock: Clock
) -> Iterator[Callable[..., NhsaLedgerClient]]:
    made: list[NhsaLedgerClient] = []

    def make(**kw: Any) -> NhsaLedgerClient:
        secrets = kw.pop("secrets", {})
        client = NhsaLedgerClient(server.url, settings(**kw), secrets=secrets,  # type: ignore[attr-defined]
                                  clock=clock, sleep=lambda s: None)  # fmt: skip
        made.append(client)
        return client

    yield make
    for c in made:
        c.transport.close()


@pytest.fixture
def client(make_client: Callable[..., NhsaLedgerClient]) -> NhsaLedgerClient:
    return make_client()


CARD = Credential.card("C001", "SN001")
VOUCHER = Credential.evoucher("EC-TOKEN-0002")
_SEQ = iter(range(1, 10_000))


def line(code: str | None, amount: int, qty: int = 1, cls: str = "A", rx: str | None = None,
         sku: str = "SKU") -> LineSummary:  # fmt: skip
    return LineSummary(
        sku=f"{sku}-{code or 'none'}", name="药品", insurance_class=InsuranceClass(cls),
        quantity=qty, amount=amount, catalogue_code=code, unit_price=amount // qty,
        prescription_ref=rx,
    )


def sale(psn_no: str, credential: Credential, *lines: LineSummary, msgid: str | None = None,
         operator: str = "0007") -> SettlementRequest:  # fmt: skip
    total = sum(x.amount for x in lines)
    return SettlementRequest(
        msgid=msgid or f"{CODE}20261201100000{next(_SEQ):04d}", pharmacy_code=CODE,
        terminal_id="T1", operator=operator, patient_psn_no=psn_no, credential=credential,
        cash=0, total=total, lines=lines,
    )  # fmt: skip
