"""The sales of a benchmark's store day: one generator for ``bench_reconcile.py`` and
``nhsa_day_seed.py`` (``bench_nhsa_day.py``), so both benches reconcile the same day.

Why one: the two wrote the same random sequence each with its own copy of ~20 lines;
a change to one (another leg, another share of reversals) silently made the two days
differ. Each bench turns a sale into its own rows (ledger entries, the national
platform's settlements, the tills' journal rows).

A day of ``n`` sales over ``tills`` tills, 08:00-22:00 China time, evenly spaced; 2,000
insured persons; each sale a personal-account leg (when that part is not zero) and in
one of five a family (mutual aid) leg; 1% reversed five minutes later.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pos_plugin.journal.journal import SHANGHAI

DAY = dt.date(2024, 5, 20)
PERSONS = [f"110000000000{i:08d}" for i in range(1, 2001)]


@dataclass(frozen=True, slots=True)
class Reversal:
    at: dt.datetime
    stamp: str  # yyyyMMddHHmmss of ``at``
    msgid: str


@dataclass(frozen=True, slots=True)
class DaySale:
    i: int
    till: str
    at: dt.datetime
    stamp: str  # yyyyMMddHHmmss of ``at``
    msgid: str
    total: int  # fen
    who: int  # the person's index in PERSONS
    psn: str
    pa: int  # personal account, fen
    ma: int  # mutual aid (a family member's account), fen
    cash: int  # fen
    legs: list[dict[str, Any]]  # as the plan and the ledger hold them
    reversal: Reversal | None


def day_sales(code: str, n: int, tills: int, seed: int = 7) -> Iterator[DaySale]:
    """The day's sales in time order (module docstring); the same for the same arguments."""
    rnd = random.Random(seed)
    start = dt.datetime(DAY.year, DAY.month, DAY.day, 8, 0, tzinfo=SHANGHAI)
    span = 14 * 3600
    per_second: dict[str, int] = {}
    for i in range(n):
        t = start + dt.timedelta(seconds=span * i / n)
        stamp = t.strftime("%Y%m%d%H%M%S")
        seq = per_second.get(stamp, 0)
        per_second[stamp] = seq + 1
        total = rnd.randint(100, 50_000)
        who = rnd.randrange(len(PERSONS))
        psn = PERSONS[who]
        pa = rnd.randint(0, total)
        ma = rnd.randint(0, total - pa) if rnd.random() < 0.2 else 0
        legs = []
        if pa:
            legs.append({"kind": "personal_account", "account_id": f"PA{psn}",
                         "payer_psn_no": psn, "amount": pa, "binding_id": None})  # fmt: skip
        if ma:
            payer = rnd.choice(PERSONS)
            legs.append({"kind": "mutual_aid", "account_id": f"PA{payer}",
                         "payer_psn_no": payer, "amount": ma, "binding_id": "BND-0001"})  # fmt: skip
        reversal = None
        if rnd.random() < 0.01:
            rt = t + dt.timedelta(minutes=5)
            rstamp = rt.strftime("%Y%m%d%H%M%S")
            rseq = per_second.get(rstamp, 0) + 5000
            per_second[rstamp] = per_second.get(rstamp, 0) + 1
            reversal = Reversal(rt, rstamp, f"{code}{rstamp}{rseq:04d}")
        yield DaySale(i, f"T{i % tills + 1:02d}", t, stamp, f"{code}{stamp}{seq:04d}", total,
                      who, psn, pa, ma, total - pa - ma, legs, reversal)  # fmt: skip
