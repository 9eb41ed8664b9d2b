"""The manager's page and API on the national backend, over real HTTP: the day by 3202,
the 2601 button on a centre-only sale, the JSON action, and the CSV."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from .harness import DAY, P1, P2, Day, at, line

TOKENS = {"pos": "pos-token-1", "manager": "mgr-token-1"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Day, str]]:
    from pos_plugin.agent import ApiServer
    from pos_plugin.api import create_app
    from pos_plugin.reconcile.manager_page import ReconcileSource, reconciliation_extra

    d = Day(tmp_path)
    source = ReconcileSource(d.paths, d.client, d.pharmacy.code, today=lambda: DAY)
    service = SimpleNamespace(journal=d.journals["T01"])
    app = create_app(service, tokens=TOKENS, device_status=lambda: {},  # type: ignore[arg-type]
                     extra=reconciliation_extra(source))  # fmt: skip
    api = ApiServer(app)
    api.start()
    try:
        yield d, api.url
    finally:
        api.stop()
        d.close()


def test_the_page_offers_2601_and_the_action_repairs_the_day(served: tuple[Day, str]) -> None:
    d, url = served
    d.sale("T01", "A1", P1, line("XA01AAA0001", 1500), when=at(9, 5))
    late = d.late_2102("T02", "B1", P2, line("XB01BBB0001", 700), when=at(13, 0))
    auth = {"Authorization": f"Bearer {TOKENS['manager']}"}
    got = requests.get(f"{url}/v1/reconciliation?date={DAY}", headers=auth, timeout=10).json()
    assert got["balanced"] is False
    (brk,) = got["breaks"]
    assert (brk["msgid"], brk["kind"], brk["national_code"], brk["action"]) == (
        late.msgid, "ledger_only", 1, "reverse_2601")
    csv = requests.get(f"{url}/v1/reconciliation.csv?date={DAY}", headers=auth, timeout=10)
    assert late.msgid in csv.text

    s = requests.Session()
    page = s.get(f"{url}/manager/reconciliation?date={DAY}&token={TOKENS['manager']}", timeout=10)
    assert "action='/manager/reconciliation/reverse'" in page.text
    assert f"value='{late.msgid}'" in page.text
    (csrf,) = set(re.findall(r"name='csrf' value='([0-9a-f]+)'", page.text))
    done = s.post(f"{url}/manager/reconciliation/reverse",
                  data={"date": DAY.isoformat(), "msgid": late.msgid, "csrf": csrf},
                  timeout=10)  # fmt: skip
    assert done.status_code == 200 and "平账" in done.text  # redirected to the balanced day
    # a 2601 at the centre prints no receipt: the day says what was done, and shows none
    assert "Reversed by msgid" in done.text and done.url.endswith("note=reversed")
    assert "id='receipt'" not in done.text
    again = requests.post(f"{url}/v1/reconciliation/reverse", headers=auth, timeout=10,
                          json={"date": DAY.isoformat(), "msgid": late.msgid})  # fmt: skip
    assert again.status_code == 200 and again.json()["already"] is True  # nothing sent again
    other = requests.post(f"{url}/v1/reconciliation/reverse", headers=auth, timeout=10,
                          json={"date": DAY.isoformat(), "msgid": late.msgid[:-4] + "9999"})
    assert other.status_code == 409  # no break offers it
    got = requests.get(f"{url}/v1/reconciliation?date={DAY}", headers=auth, timeout=10).json()
    assert got["balanced"] is True
    no_token = requests.post(f"{url}/v1/reconciliation/reverse", timeout=10,
                             json={"date": DAY.isoformat(), "msgid": late.msgid})  # fmt: skip
    assert no_token.status_code == 401
