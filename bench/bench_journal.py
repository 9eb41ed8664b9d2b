"""Benchmark: the journal's share of a sale, alone (issue 17, target 1's biggest part).

What one sale asks of its journal, in the order the sale service asks it: the
closed-day check, ``begin_sale`` (received, not fsynced), one ``update`` for card
read + validated + settling with a new msgid (the intent, durable before the ledger
call) and one for settled (the outcome, durable before the answer), with the
evidence, plan and result documents a real sale of 0, 2 and 5 family legs journals.
No ledger, no devices, no API: what ``bench_sale.py`` prints as "journal" without the
rest of the agent around it (there, cache misses and the other threads add ~0.3 ms).

Prints per family-leg count the median (min-max over RUNS runs, each the median of N
sales) of the wall time and of this thread's CPU time per sale, the load average, and
the floor measured in the same run: the two durable commits a sale needs, as bare
one-row WAL + synchronous=FULL commits on the same disk.
Run: ``.venv/bin/python bench/bench_journal.py [N] [RUNS]``.
For a count that does not move with the load: ``valgrind --tool=callgrind`` on two
values of N, the difference divided by the difference in sales.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from floors import bare_commits_ms

from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.journal.journal import CARD_READ, SETTLED, SETTLING, VALIDATED, Journal

PATIENT = "110105201201030024"


def sale_documents(j: Journal, legs: int, ref: str) -> tuple[dict[str, Any], dict[str, Any],
                                                             dict[str, Any]]:  # fmt: skip
    """(validated columns, plan, settled columns) shaped and sized as the sale service's."""
    holder = j.evidence_of("resident_id", PATIENT, "张三")
    evidence = {"buyer_role": "self", "operator": "cashier", "credential_asked": "card",
                "patient": {k: v for k, v in holder.items() if k != "name_masked"},
                "credential": "card", "card_no_masked": "C******02", "holder": holder,
                "insured_region": "110105"}  # fmt: skip
    family = [{"kind": "mutual_aid", "account_id": f"PA1200000020000000000{i}",
               "payer_psn_no": f"1200000020000000000{i}", "amount": 100,
               "binding_id": f"BB-2-{i}", "name": "张*", "relation": "parent"}
              for i in range(legs)]  # fmt: skip
    total = 1850 if legs == 0 else (legs + 1) * 100
    item = {"name": "药", "quantity": 1, "amount": total, "insurance_class": "A"}
    receipt = {"operator": "cashier", "credential": "card", "card_no_masked": "C******02",
               "patient_name": "张**", "patient_id_masked": holder["number_masked"],
               "proxy": None, "items": [item], "patient_account_id": None}  # fmt: skip
    plan = {"total": total, "account_payable": total, "cash": 100 if legs else 0,
            "cash_only": 0, "legs": family, "skipped": [], "notices": [], "receipt": receipt,
            "lines": [{"sku": "1", "name": "药", "catalogue_code": None, "quantity": 1,
                       "unit_price": total, "prescription": False, "trace_codes": [],
                       "split_pack": False}]}  # fmt: skip
    validated = {"patient_psn_no": "12000000200000000000",
                 "patient_id_masked": holder["number_masked"],
                 "patient_id_hmac": j.person_key(PATIENT), "proxy": 0, "evidence": evidence,
                 "total": total, "account_payable": total}  # fmt: skip
    lines = [f"{'药店':<40}H11010500001", *(f"家庭共济 父母 张*{'¥1.00':>30}" for _ in family)]
    lines += [f"{'行':<44}{i}" for i in range(20)]
    body = {"sale_ref": ref, "status": "settled", "msgid": "H110105000012026120120315600",
            "total": total, "family": [{"name": "张*", "relation": "parent", "amount": 100}
                                       for _ in family],
            "receipt": lines, "receipt_detail": {**receipt, "family": family, "total": total},
            "http_status": 200}  # fmt: skip
    settled = {"settlement_id": "SH11010500001202612012031560003", "personal_account":
               total - 100 * legs - plan["cash"], "mutual_aid": 100 * legs,
               "cash": plan["cash"], "result": body}  # fmt: skip
    return validated, plan, settled


def one_sale(j: Journal, legs: int, ref: str) -> None:
    validated, plan, settled = sale_documents(j, legs, ref)
    is_day_closed(j, dt.date.today())
    j.begin_sale(ref, "request-hash")
    j.update(ref, SETTLING, via=[(CARD_READ, {}), (VALIDATED, validated)], new_msgid=True,
             plan=plan)  # fmt: skip
    j.update(ref, SETTLED, **settled)


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):5.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main(n: int = 200, runs: int = 5) -> None:
    wall: dict[int, list[float]] = {0: [], 2: [], 5: []}
    cpu: dict[int, list[float]] = {0: [], 2: [], 5: []}
    floors = []
    with tempfile.TemporaryDirectory() as work:
        j = Journal(Path(work) / "journal.sqlite3", hmac_key=b"k" * 32,
                    pharmacy_code="H11010500001", terminal_id="T01")  # fmt: skip
        for i in range(20):  # warm: the tables past their first pages
            one_sale(j, 2, f"W{i}")
        for run in range(runs):
            floors.append(bare_commits_ms(work, commits=2))
            for legs in wall:
                w, c = [], []
                for i in range(n):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    one_sale(j, legs, f"S{legs}-{run}-{i}")
                    w.append(time.perf_counter() - t0)
                    c.append(time.thread_time() - c0)
                wall[legs].append(statistics.median(w) * 1000)
                cpu[legs].append(statistics.median(c) * 1000)
        assert j.verify().ok
        j.close()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bench_journal: {runs} runs x {n} sales per case; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")  # fmt: skip
    print("ms per sale: median of the runs' medians (min-max over runs)")
    for legs in wall:
        print(f"  {legs} family legs: wall {spread(wall[legs])}, CPU {spread(cpu[legs])}")
    print(f"floor, same run: two bare durable commits {spread(floors)}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
