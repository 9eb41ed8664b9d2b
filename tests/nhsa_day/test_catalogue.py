"""The national catalogue: downloaded by 1312 from the sandbox (the world's catalogue) into
the file beside the journal, shown with its date, and a line whose code the platform does
not know refused at the counter before the card is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pos_plugin.cli import main
from pos_plugin.journal import journal as J
from pos_plugin.ledger.nhsa import catalogue as cat
from pos_plugin.sale.models import SaleError, SaleRequest
from pos_plugin.sale.service import SaleService, SaleSettings

from .harness import Day


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    d = Day(tmp_path, tills=("T01",))
    try:
        yield d
    finally:
        d.close()


class Devices:
    """A counter device that records whether anyone asked for the card."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kw: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"the device was used: {name}")

        return record


def test_update_downloads_every_page_and_show_gives_the_date(
    day: Day, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = day.paths[0]
    assert main(["catalogue", "show", "--journal", journal]) == 0
    assert "never" in capsys.readouterr().out
    assert main(["catalogue", "update", "--journal", journal,
                 "--ledger-url", day.server.endpoint]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"{len(day.world.catalogue)} items" in out
    store = cat.Catalogue(cat.path_beside(journal))
    info = store.info()
    assert info["count"] == len(day.world.catalogue) and info["updated_at"]
    # paged: a page size smaller than the catalogue still brings every item, once
    n = cat.update(_Paged(day.client, 2), store)
    assert n == len(day.world.catalogue)
    known = day.world.catalogue[0].med_list_codg
    assert store.unknown([known, "XZ99ZZZ9999"]) == ["XZ99ZZZ9999"]


class _Paged:
    def __init__(self, client: Any, size: int) -> None:
        self.client, self.size = client, size

    def catalogue_page(self, num: int, _size: int) -> Any:
        return self.client.catalogue_page(num, self.size)


def test_an_unknown_code_is_refused_before_the_card_is_asked(day: Day) -> None:
    store = cat.Catalogue(cat.path_beside(day.paths[0]))
    cat.update(day.client, store)
    devices = Devices()
    svc = SaleService(SaleSettings(day.pharmacy.code, "T01"), day.journals["T01"], day.client,
                      devices, catalogue=store)  # type: ignore[arg-type]  # fmt: skip
    known = day.world.catalogue[0].med_list_codg
    req = SaleRequest.model_validate({
        "sale_ref": "S1",
        "items": [
            {"sku": "K1", "name": "阿莫西林胶囊", "catalogue_code": known,
             "insurance_class": "A", "quantity": 1, "unit_price": 1000},
            {"sku": "U2", "name": "不在目录的药", "catalogue_code": "XZ99ZZZ9999",
             "insurance_class": "A", "quantity": 2, "unit_price": 500},
        ],
    })  # fmt: skip
    with pytest.raises(SaleError) as got:
        svc.sell(req)
    assert got.value.code == "catalogue_code_unknown" and got.value.http_status == 422
    assert "2: 不在目录的药 (U2, XZ99ZZZ9999)" in got.value.message
    assert "不能医保结算" in got.value.message and "does not know" in got.value.message
    assert devices.calls == []  # nobody was asked for a card
    row = day.journals["T01"].get("S1")
    assert row is not None and row.state == J.REFUSED and row.refusal_code == "catalogue_code_unknown"
    assert day.client.platform.posts.get("1101", 0) == 0 and day.client.platform.posts.get("2102", 0) == 0
