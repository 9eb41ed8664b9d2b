"""Seed a store's business day the way the agent does: journal intent, sandbox settlement, outcome.

Real sandbox ledger over HTTP (``SandboxServer``), real journals (``Journal``), and a
clock the test moves, so the ledger books each settlement at the time the test says.
Faults are then made the way they happen: an outcome lost, a reversal seen by one
side, a journal copied from another till, a statement page repeated.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pos_plugin.journal import journal as J
from pos_plugin.journal.journal import SHANGHAI, Journal
from pos_plugin.ledger.own.client import HttpLedgerClient
from pos_plugin.ledger.own.sandbox.server import SandboxServer
from pos_plugin.ledger.own.schemas import Credential, SettlementRequest
from pos_plugin.models import Leg, LegKind
from pos_plugin.rules.identity import mask_name
from pos_plugin.world import World, load_world

DAY = dt.date(2024, 5, 20)
ZHANG_WEI = "11000000000000000001"
WANG_FANG = "11000000000000000002"
XIAOMING = "11000000000000000003"
WANG_JIANGUO = "11000000000000000004"
LI_NA = "11000000000000000006"
SUN_LI = "11000000000000000008"


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def at(hour: int, minute: int = 0, second: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SHANGHAI)


@dataclass
class Sold:
    ref: str
    till: str
    msgid: str
    settlement_id: str | None
    total: int
    legs: tuple[Leg, ...]
    cash: int


class Store:
    """One pharmacy with several tills, a sandbox ledger and a journal per till."""

    def __init__(self, tmp: Path, tills: tuple[str, ...] = ("T01", "T02")) -> None:
        self.tmp = tmp
        self.world: World = load_world()
        self.pharmacy = self.world.pharmacies[0]
        self.clock = Clock(at(8))
        self.server = SandboxServer(str(tmp / "ledger.sqlite3"), self.world, clock=self.clock)
        self.url = self.server.start()
        self.client = HttpLedgerClient(self.url, self.pharmacy.api_token, retries=0)
        self.journals: dict[str, Journal] = {}
        for t in tills:
            self.open_till(t)

    def open_till(self, till: str, path: Path | None = None) -> Journal:
        j = Journal(
            path or self.journal_of(till),
            hmac_key=b"k" * 32,
            pharmacy_code=self.pharmacy.code,
            terminal_id=till,
            till_index=self.index_of(till),
        )
        self.journals[till] = j
        return j

    def journal_of(self, till: str) -> str | Path:
        """Where a till's journal is: its own file here."""
        return self.tmp / f"journal-{till}.sqlite3"

    def index_of(self, till: str) -> int:
        """The till's msgid digit: 0 for every till here (each has its own file)."""
        return 0

    def copy_journal(self, src_till: str, new_till: str) -> Journal:
        """A new till set up from another till's disk image: its journal starts as a copy."""
        src = self.journals[src_till]
        dst = self.tmp / f"journal-{new_till}.sqlite3"
        src._db.execute("PRAGMA wal_checkpoint(FULL)")
        shutil.copy(src.path, dst)
        return self.open_till(new_till, dst)

    @property
    def paths(self) -> list[str]:
        return [j.path for j in self.journals.values()]

    def close(self) -> None:
        for j in self.journals.values():
            j.close()
        self.client.close()
        self.server.stop()

    # ------------------------------------------------------------------ a sale
    def legs_for(self, patient: str, account_part: int) -> tuple[Leg, ...]:
        """The cascade, as the agent plans it: own account first, then bindings in order."""
        person = self.world.person(patient)
        lookup = self.client.lookup(
            Credential.card(person.cards[0].card_no, person.cards[0].card_sn)
        )
        legs: list[Leg] = []
        left = account_part
        if lookup.personal_account is not None and left:
            amt = min(left, lookup.personal_account.balance)
            if amt:
                legs.append(
                    Leg(
                        kind=LegKind.PERSONAL_ACCOUNT,
                        account_id=lookup.personal_account.account_id,
                        payer_psn_no=patient,
                        amount=amt,
                    )
                )
                left -= amt
        for b in sorted(lookup.bindings, key=lambda b: b.order):
            if not left or b.status != "active" or b.payer_account_id is None:
                continue
            if (
                b.relation.value == "spouse_parent"
                or b.payer_region[:2] != person.insured_region[:2]
            ):
                continue
            amt = min(left, b.available_balance)
            if amt:
                legs.append(
                    Leg(
                        kind=LegKind.MUTUAL_AID,
                        account_id=b.payer_account_id,
                        payer_psn_no=b.payer_psn_no,
                        amount=amt,
                        binding_id=b.binding_id,
                    )
                )
                left -= amt
        return tuple(legs)

    def _plan_leg(self, leg: Leg) -> dict[str, Any]:
        """A leg as the agent's plan document keeps it (mutual aid: masked name, relation)."""
        doc = leg.model_dump(mode="json")
        if leg.kind is LegKind.MUTUAL_AID:
            b = next(b for b in self.world.bindings if b.binding_id == leg.binding_id)
            doc |= {
                "name": mask_name(self.world.person(b.payer).name),
                "relation": b.relation.value,
            }
        return doc

    def sale(
        self,
        till: str,
        ref: str,
        patient: str,
        total: int,
        account_part: int,
        when: dt.datetime,
        *,
        ledger_at: dt.datetime | None = None,
        send: bool = True,
        record_outcome: bool = True,
        receipt: dict[str, Any] | None = None,
        lines: list[dict[str, Any]] | None = None,
    ) -> Sold:
        """journal received -> validated -> settling (intent) -> ledger -> settled (outcome).

        ``receipt`` / ``lines``: the receipt facts and basket lines the agent journals
        with the intent (``SaleService._receipt_facts``, ``plan["lines"]``)."""
        j = self.journals[till]
        person = self.world.person(patient)
        card = person.cards[0]
        legs = self.legs_for(patient, account_part)
        paid = sum(leg.amount for leg in legs)
        cash = total - paid
        j.begin_sale(ref, "h-" + ref, now=when)
        j.update(
            ref,
            J.VALIDATED,
            patient_psn_no=patient,
            total=total,
            account_payable=account_part,
            patient_id_masked=j.evidence_of("resident_id", person.id_number)["number_masked"],
        )
        msgid = j.next_msgid(when)
        plan: dict[str, Any] = {
            "total": total,
            "account_payable": account_part,
            "cash": cash,
            "cash_only": total - account_part,
            "legs": [self._plan_leg(leg) for leg in legs],
            "skipped": [],
            "notices": [],
        }
        if receipt is not None:
            plan["receipt"] = receipt
        if lines is not None:
            plan["lines"] = lines
        j.update(ref, J.SETTLING, msgid=msgid, plan=plan)
        sid = None
        if send:
            self.clock.now = ledger_at or when + dt.timedelta(seconds=1)
            s = self.client.settle(
                SettlementRequest(
                    msgid=msgid,
                    pharmacy_code=self.pharmacy.code,
                    terminal_id=till,
                    operator="op",
                    patient_psn_no=patient,
                    credential=Credential.card(card.card_no, card.card_sn),
                    legs=legs,
                    cash=cash,
                    total=total,
                )
            )
            sid = s.settlement_id
            if record_outcome:
                pa = sum(leg.amount for leg in legs if leg.kind is LegKind.PERSONAL_ACCOUNT)
                j.update(
                    ref,
                    J.SETTLED,
                    settlement_id=sid,
                    personal_account=pa,
                    mutual_aid=paid - pa,
                    cash=cash,
                )
        return Sold(ref, till, msgid, sid, total, legs, cash)

    def reverse(
        self,
        sold: Sold,
        when: dt.datetime,
        *,
        send: bool = True,
        record_outcome: bool = True,
    ) -> str:
        """As SaleService.reverse: reversal msgid journaled first, then the ledger, then the outcome."""
        j = self.journals[sold.till]
        rmsgid = j.next_msgid(when)
        j.update(sold.ref, J.SETTLED, reversal_msgid=rmsgid)
        rid = None
        if send:
            self.clock.now = when + dt.timedelta(seconds=1)
            rid = self.client.reverse(
                sold.settlement_id or "", rmsgid, "customer returned"
            ).reversal_id
        if record_outcome:
            j.update(sold.ref, J.REVERSED, reversal_id=rid)
        return rmsgid
