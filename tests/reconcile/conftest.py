from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pos_plugin.journal import journal as J

from .seed import (
    DAY,
    LI_NA,
    SUN_LI,
    WANG_FANG,
    WANG_JIANGUO,
    XIAOMING,
    ZHANG_WEI,
    Sold,
    Store,
    at,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path)
    try:
        yield s
    finally:
        s.close()


@dataclass
class Seeded:
    store: Store
    balanced: list[str] = field(default_factory=list)
    breaks: dict[str, str] = field(default_factory=dict)  # msgid -> expected kind
    resolved: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    dup_statement_msgid: str = ""


def seed_clean_day(s: Store) -> tuple[list[Sold], str]:
    """A day with nothing wrong: own account, mutual aid, cash part, a reversal, two tills."""
    out = [
        s.sale("T01", "A1", ZHANG_WEI, 3700, 3700, at(9, 5)),
        s.sale("T02", "B1", WANG_JIANGUO, 5200, 4000, at(9, 40)),
        s.sale("T01", "A2", XIAOMING, 4500, 4500, at(10, 15)),  # mutual aid from 张伟
        s.sale("T02", "B2", LI_NA, 1200, 0, at(11, 0)),  # all cash (class C goods)
        s.sale("T01", "A3", SUN_LI, 2600, 2600, at(14, 30)),
    ]
    rev = s.reverse(out[4], at(15, 0))  # returned the same day, both sides know
    return out, rev


def seed_faults(s: Store, breaks: dict[str, str], resolved: list[str], extra: dict[str, str]) -> None:
    """Every fault a till journal can hold, made the way real faults make them: lost
    outcomes, a ghost, amount and split differences, one-sided reversals, an unknown
    outcome and a booking after midnight. Each break's expected kind goes to ``breaks``
    (msgid -> kind), lost outcomes that resolution will settle to ``resolved``, and the
    msgids tests look at again to ``extra``."""
    # Lost outcome, resolved: the agent died after the ledger committed (row left settling).
    lost = s.sale("T02", "B3", WANG_FANG, 1800, 1800, at(12, 0), record_outcome=False)
    resolved.append(lost.msgid)

    # Lost outcome, not resolved: the till marked it failed, but the centre committed it.
    gone = s.sale("T02", "B4", WANG_JIANGUO, 2300, 2300, at(12, 30), record_outcome=False)
    s.journals["T02"].update("B4", J.FAILED, refusal_code="ledger_unavailable")
    breaks[gone.msgid] = "ledger_only"

    # The till believes it settled; the request never reached the centre.
    ghost = s.sale("T01", "A4", WANG_JIANGUO, 1500, 1500, at(13, 0), send=False)
    s.journals["T01"].update(
        "A4", J.SETTLED, settlement_id="STL-NEVER", personal_account=1500, mutual_aid=0, cash=0
    )
    breaks[ghost.msgid] = "journal_only"

    # Amount: the POS changed the basket after settling and the till journaled the new total.
    amt = s.sale("T02", "B5", WANG_JIANGUO, 3000, 2000, at(13, 20))
    s.journals["T02"].update("B5", J.SETTLED, total=3500, cash=1500)
    breaks[amt.msgid] = "amount_mismatch"

    # Split: same total, the till recorded more cash and less personal account.
    split = s.sale("T01", "A5", WANG_JIANGUO, 2000, 2000, at(13, 40))
    s.journals["T01"].update("A5", J.SETTLED, personal_account=1500, cash=500)
    breaks[split.msgid] = "split_mismatch"

    # Reversal seen by the ledger only: the answer to the reversal was lost.
    rl = s.sale("T01", "A6", ZHANG_WEI, 1000, 1000, at(16, 0))
    rl_rev = s.reverse(rl, at(16, 10), record_outcome=False)
    breaks[rl.msgid] = "status_mismatch"
    extra["ledger_reversal"] = rl_rev

    # Reversal seen by the journal only: recorded as reversed, never reached the centre.
    rj = s.sale("T02", "B6", WANG_JIANGUO, 900, 900, at(16, 30))
    rj_rev = s.reverse(rj, at(16, 40), send=False)
    breaks[rj.msgid] = "status_mismatch"
    extra["journal_reversal"] = rj_rev

    # The till gave up waiting, took cash and owes a reversal; the centre had committed.
    unk = s.sale("T02", "B7", LI_NA, 800, 800, at(17, 0), record_outcome=False)
    rmsg = s.journals["T02"].next_msgid(at(17, 1))
    s.journals["T02"].update("B7", J.UNKNOWN, reversal_msgid=rmsg)
    s.journals["T02"].queue_reversal("B7", unk.msgid, rmsg)
    breaks[unk.msgid] = "status_mismatch"
    extra["unknown"] = unk.msgid

    # Around midnight: the till's clock says 23:59:58, the centre books it after midnight.
    late = s.sale(
        "T01",
        "A7",
        SUN_LI,
        1100,
        1100,
        at(23, 59, 58),
        ledger_at=at(0, 0, 3, DAY + dt.timedelta(days=1)),
    )
    breaks[late.msgid] = "business_day_mismatch"


@pytest.fixture
def seeded(store: Store) -> Seeded:
    """Every break kind on one day of a two-till store (plus one resolved lost outcome)."""
    s = store
    sd = Seeded(s)
    clean, rev = seed_clean_day(s)
    sd.balanced += [x.msgid for x in clean[:4]]

    # A till set up from T01's disk image: T01's sales so far are in two journals.
    s.copy_journal("T01", "T03")
    for m in [x.msgid for x in clean if x.till == "T01"] + [rev]:
        sd.breaks[m] = "duplicate"
        if m in sd.balanced:
            sd.balanced.remove(m)

    seed_faults(s, sd.breaks, sd.resolved, sd.extra)

    # A balanced sale on the cloned till itself.
    own = s.sale("T03", "C1", ZHANG_WEI, 600, 600, at(18, 0, 30))
    sd.balanced.append(own.msgid)
    return sd


@dataclass
class Served:
    url: str
    tokens: dict[str, str]


@pytest.fixture
def served(seeded: Seeded) -> Iterator[Served]:
    """The agent's local API with the manager routes, over real HTTP on loopback."""
    from types import SimpleNamespace

    from pos_plugin.agent import ApiServer
    from pos_plugin.api import create_app
    from pos_plugin.reconcile.manager_page import ReconcileSource, reconciliation_extra

    s = seeded.store
    source = ReconcileSource(s.paths, s.client, s.pharmacy.code, today=lambda: DAY)
    tokens = {"pos": "pos-token-1", "manager": "mgr-token-1"}
    service = SimpleNamespace(journal=s.journals["T01"])  # the manager routes need no devices
    app = create_app(
        service,  # type: ignore[arg-type]
        tokens=tokens,
        device_status=lambda: {},
        extra=reconciliation_extra(source),
    )
    api = ApiServer(app)
    api.start()
    try:
        yield Served(api.url, tokens)
    finally:
        api.stop()
