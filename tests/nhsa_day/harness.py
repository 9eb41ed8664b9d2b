"""A pharmacy's day on the national platform: tills with real journals, the sandbox-nhsa
over real HTTP, and sales made the way the sale service makes them (intent journaled,
one 2102, outcome journaled by ``SaleService._record_settled``)."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pos_plugin.journal import journal as J
from pos_plugin.journal.journal import Journal
from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.envelope import CHINA
from pos_plugin.ledger.nhsa.sandbox.server import NhsaSandboxServer
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.ledger.own.schemas import Credential, LineSummary, SettlementRequest
from pos_plugin.models import InsuranceClass
from pos_plugin.sale.service import SaleService, SaleSettings
from pos_plugin.world import World, load_world

# Today (China): the journal draws a few msgids from the real clock (an owed reversal's).
DAY = dt.datetime.now(CHINA).date()
P1, P2, P3 = "11000000000000000001", "11000000000000000002", "11000000000000000003"


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, second, tzinfo=CHINA)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def line(code: str, amount: int, qty: int = 1, cls: str = "A") -> LineSummary:
    return LineSummary(
        sku=f"SKU-{code}", name="药品", insurance_class=InsuranceClass(cls), quantity=qty,
        amount=amount, catalogue_code=code, unit_price=amount // qty,
    )  # fmt: skip


@dataclass
class Sold:
    till: str
    ref: str
    msgid: str
    psn_no: str
    settlement_id: str | None


class Day:
    """One pharmacy (the world's first), its tills, the platform and the clock."""

    def __init__(self, tmp: Path, tills: tuple[str, ...] = ("T01", "T02"), **kw: Any) -> None:
        self.tmp = tmp
        self.world: World = load_world()
        self.pharmacy = self.world.pharmacies[0]
        self.clock = Clock(at(8))
        self.server = NhsaSandboxServer(str(tmp / "nhsa.db"), self.world, clock=self.clock,
                                        faults=True)  # fmt: skip
        self.server.start()
        self.settings = NhsaSettings(
            fixmedins_code=self.pharmacy.code, fixmedins_name=self.pharmacy.name[:20],
            mdtrtarea_admvs=self.pharmacy.region, read_timeout=2.0, connect_timeout=2.0,
            backoff_base=0.0, **kw,
        )  # fmt: skip
        self.client = self.new_client()
        self.journals: dict[str, Journal] = {}
        self.services: dict[str, SaleService] = {}
        for i, t in enumerate(tills):
            j = Journal(tmp / f"journal-{t}.sqlite3", hmac_key=b"k" * 32,
                        pharmacy_code=self.pharmacy.code, terminal_id=t, till_index=i)  # fmt: skip
            self.journals[t] = j
            self.services[t] = SaleService(SaleSettings(self.pharmacy.code, t), j, self.client,
                                           None)  # type: ignore[arg-type]  # fmt: skip

    def new_client(self, **kw: Any) -> NhsaLedgerClient:
        settings = self.settings.model_copy(update=kw) if kw else self.settings
        return NhsaLedgerClient(self.server.endpoint, settings, clock=self.clock,
                                sleep=lambda s: None)  # fmt: skip

    @property
    def paths(self) -> list[str]:
        return [j.path for j in self.journals.values()]

    def close(self) -> None:
        for j in self.journals.values():
            j.close()
        self.client.close()
        assert self.server.store is not None
        problems = self.server.store.audit()
        self.server.stop()
        assert problems == []

    def credential(self, psn_no: str) -> Credential:
        card = self.world.person(psn_no).cards[0]
        return Credential.card(card.card_no, card.card_sn)

    def intent(self, till: str, ref: str, psn_no: str, lines: tuple[LineSummary, ...],
               when: dt.datetime) -> tuple[str, SettlementRequest, dict[str, Any]]:  # fmt: skip
        """The journal up to ``settling`` (the intent), and the 2102 it will send."""
        j = self.journals[till]
        total = sum(x.amount for x in lines)
        person = self.world.person(psn_no)
        j.begin_sale(ref, "h-" + ref, now=when)
        j.update(ref, J.VALIDATED, patient_psn_no=psn_no, total=total, account_payable=total,
                 patient_id_masked=j.evidence_of("resident_id", person.id_number)
                 ["number_masked"], evidence={"insured_region": person.insured_region}
                 )  # fmt: skip
        msgid = j.next_msgid(when)
        plan: dict[str, Any] = {"total": total, "account_payable": total, "cash": 0,
                                "cash_only": 0, "legs": [], "skipped": [], "notices": [],
                                "lines": [{"sku": x.sku, "name": x.name,
                                           "catalogue_code": x.catalogue_code,
                                           "quantity": x.quantity,
                                           "unit_price": x.unit_price or x.amount // x.quantity,
                                           "prescription": False,
                                           "trace_codes": list(x.trace_codes),
                                           "split_pack": x.split_pack} for x in lines]}
        j.update(ref, J.SETTLING, msgid=msgid, plan=plan)
        req = SettlementRequest(
            msgid=msgid, pharmacy_code=self.pharmacy.code, terminal_id=till, operator="0007",
            patient_psn_no=psn_no, credential=self.credential(psn_no), cash=0, total=total,
            lines=lines,
        )  # fmt: skip
        return msgid, req, plan

    def sale(self, till: str, ref: str, psn_no: str, *lines: LineSummary,
             when: dt.datetime) -> Sold:  # fmt: skip
        """A sale that settles and is journaled as settled."""
        msgid, req, plan = self.intent(till, ref, psn_no, lines, when)
        self.clock.now = when
        self.client.lookup(req.credential)
        s = self.client.settle(req)
        self.services[till]._record_settled(ref, msgid, s, plan)
        return Sold(till, ref, msgid, psn_no, s.settlement_id)

    def lost_answer(self, till: str, ref: str, psn_no: str, *lines: LineSummary,
                    when: dt.datetime) -> Sold:  # fmt: skip
        """The 2102 commits, its answer is lost: the till takes cash and owes a 2601."""
        msgid, req, _plan = self.intent(till, ref, psn_no, lines, when)
        self.clock.now = when
        self.client.lookup(req.credential)
        self.server.faults.lose_answer("2102", "close")
        try:
            self.client.settle(req)
        except e.OutcomeUnknown:
            pass
        else:  # pragma: no cover - the fault is armed
            raise AssertionError("the 2102 answer was not lost")
        self.journals[till].owe_reversal(ref, msgid, result={"status": "unknown"})
        return Sold(till, ref, msgid, psn_no, None)

    def late_2102(self, till: str, ref: str, psn_no: str, *lines: LineSummary,
                  when: dt.datetime) -> Sold:  # fmt: skip
        """The 2102's answer never comes; the till's 2601 finds nothing (the 2102 is still
        on its way) and the sale is journaled "not charged"; then the 2102 lands."""
        msgid, req, _plan = self.intent(till, ref, psn_no, lines, when)
        self.clock.now = when
        self.client.lookup(req.credential)
        assert self.client.void_settlement(msgid, psn_no=psn_no) is None  # 2601 first
        self.journals[till].update(ref, J.FAILED, refusal_code="not_charged",
                                   result={"status": "failed", "code": "not_charged"})
        self.client.settle(req)  # ... and the 2102 lands after it: it commits
        return Sold(till, ref, msgid, psn_no, None)

    def reverse(self, sold: Sold, when: dt.datetime, *, lose_answer: bool = False) -> str:
        """The manager's 2103 as ``SaleService.reverse`` does it (answer lost: journal unsure)."""
        self.clock.now = when
        svc = self.services[sold.till]
        j = self.journals[sold.till]
        j.update(sold.ref, J.SETTLED, reversal_msgid=j.next_msgid(when))  # the intent, at when
        if lose_answer:
            self.server.faults.lose_answer("2103", "close")
            with contextlib.suppress(Exception):  # ledger_unavailable: the msgid stays journaled
                svc.reverse(sold.ref, "customer returned")
        else:
            svc.reverse(sold.ref, "customer returned")
        row = self.journals[sold.till].get(sold.ref)
        assert row is not None and row.reversal_msgid
        return row.reversal_msgid
