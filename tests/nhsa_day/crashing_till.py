"""A till process that settles one sale against the sandbox at URL and dies without any
cleanup (``os._exit``, as a power cut or a SIGKILL leaves it; portable): either right
after the settlement is journaled (``after-settle``), or after its 3505 left but before
the acknowledgement was journaled (``after-upload``); or, for a return, after the sale's
3505 was acknowledged and the sale reversed by 2103 (``after-reverse``), or after the
return's 3506 left but before its acknowledgement (``after-return-upload``).

``python -m tests.nhsa_day.crashing_till URL JOURNAL REF MODE``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pos_plugin.journal.journal import Journal
from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.sale.service import SaleService, SaleSettings, now_shanghai
from pos_plugin.world import load_world

from .harness import P1, Day, line

CODE = "81234567890123456799"  # the pack sold, and returned


def main(url: str, journal_path: str, ref: str, mode: str) -> None:
    world = load_world()
    ph = world.pharmacies[0]
    client = NhsaLedgerClient(url, NhsaSettings(fixmedins_code=ph.code,
                                                fixmedins_name=ph.name[:20],
                                                mdtrtarea_admvs=ph.region))  # fmt: skip
    journal = Journal(Path(journal_path), hmac_key=b"k" * 32, pharmacy_code=ph.code,
                      terminal_id="T01")  # fmt: skip
    svc = SaleService(SaleSettings(ph.code, "T01"), journal, client, None)  # type: ignore[arg-type]
    day = Day.__new__(Day)  # only its sale-making steps, over this process's journal
    day.world, day.pharmacy, day.client = world, ph, client
    day.journals, day.services = {"T01": journal}, {"T01": svc}
    day.clock = lambda: now_shanghai()  # type: ignore[assignment]
    now = now_shanghai()
    msgid, req, plan = day.intent("T01", ref, P1, (line("XA01AAA0001", 700).model_copy(update={"trace_codes": (CODE,)}),), now)
    client.lookup(req.credential)
    svc._record_settled(ref, msgid, client.settle(req), plan)
    if mode == "after-upload":
        row = journal.get(ref)
        assert row is not None
        up, _n = journal.upload_begin(ref, "3505", journal.next_msgid(), now.isoformat())
        client.sales_upload(up, ref, (row.result or {})["ledger_detail"],
                            (row.plan or {})["lines"])  # fmt: skip
    if mode in ("after-reverse", "after-return-upload"):
        assert svc.send_owed_uploads() == 1  # the sale's 3505, acknowledged
        svc.reverse(ref, "顾客退货")
    if mode == "after-return-upload":
        row = journal.get(ref)
        assert row is not None and row.reversal_msgid
        up, _n = journal.upload_begin(ref, "3506", journal.next_msgid(), now.isoformat())
        client.sales_return_upload(up, ref, (row.result or {})["ledger_detail"],
                                   (row.plan or {})["lines"], reversal_msgid=row.reversal_msgid,
                                   returned_at=now)  # fmt: skip
    os._exit(137)


if __name__ == "__main__":
    main(*sys.argv[1:5])
