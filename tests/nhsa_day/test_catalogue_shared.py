"""The national catalogue on the shared PostgreSQL journal (real PostgreSQL): one download
serves every till of the store, the counter's unknown-code check runs there too (before
the card is asked), a new download replaces the old one (generations, no DELETE), and
each pharmacy of the database has its own. Also: the uploads-owed count runs on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.agent import _catalogue_for
from pos_plugin.cli import main
from pos_plugin.journal import journal as J
from pos_plugin.journal.journal import Journal
from pos_plugin.ledger.nhsa import catalogue as cat
from pos_plugin.sale.models import SaleError, SaleRequest
from pos_plugin.sale.service import SaleService, SaleSettings
from tests.pgschema import fresh_schema, sql

from .harness import Day
from .test_catalogue import Devices


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    d = Day(tmp_path, tills=())
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema("catalogue") as u:
        yield u


def _journal(url: str, code: str, till: str, index: int) -> Journal:
    return Journal(url, hmac_key=b"k" * 32, pharmacy_code=code, terminal_id=till,
                   till_index=index)  # fmt: skip


def test_one_download_serves_every_till_and_the_counter_checks_there(
    day: Day, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = day.pharmacy.code
    assert main(["catalogue", "show", "--journal", url]) == 0
    assert "never" in capsys.readouterr().out
    assert main(["catalogue", "update", "--journal", url, "--ledger-url",
                 day.server.endpoint]) == 0  # fmt: skip
    assert f"{len(day.world.catalogue)} items" in capsys.readouterr().out
    t1, t2 = _journal(url, code, "T01", 0), _journal(url, code, "T02", 1)
    try:
        store = _catalogue_for(t2, day.client)  # T02 never downloaded anything itself
        assert isinstance(store, cat.SharedCatalogue)
        assert store.info()["count"] == len(day.world.catalogue)
        known = day.world.catalogue[0].med_list_codg
        devices = Devices()
        svc = SaleService(SaleSettings(code, "T02"), t2, day.client, devices,  # type: ignore[arg-type]
                          catalogue=store)  # fmt: skip
        req = SaleRequest.model_validate({"sale_ref": "S1", "items": [
            {"sku": "K1", "name": "阿莫西林胶囊", "catalogue_code": known,
             "insurance_class": "A", "quantity": 1, "unit_price": 1000},
            {"sku": "U2", "name": "不在目录的药", "catalogue_code": "XZ99ZZZ9999",
             "insurance_class": "A", "quantity": 1, "unit_price": 500}]})  # fmt: skip
        with pytest.raises(SaleError) as got:
            svc.sell(req)
        assert got.value.code == "catalogue_code_unknown"
        assert "2: 不在目录的药 (U2, XZ99ZZZ9999)" in got.value.message and devices.calls == []
        row = t2.get("S1")
        assert row is not None and row.state == J.REFUSED
        # a new download replaces the old whole: a code the platform dropped is unknown now
        kept = [cat.Item(c.med_list_codg, c.name, "01", None) for c in day.world.catalogue[1:]]
        assert store.replace(kept) == len(kept)
        assert store.unknown([known, kept[0].hilist_code]) == [known]
        assert sql(url, "SELECT count(*) FROM nhsa_catalogue") == [(len(day.world.catalogue),)]
        assert sql(url, "SELECT generation, item_count FROM nhsa_catalogue_meta") == [(2, len(kept))]
        # every till of the store sees it; another pharmacy in the database has none yet
        assert _catalogue_for(t1, day.client).unknown([known]) == [known]
        other = _journal(url, "H99999900001", "T01", 0)
        try:
            assert _catalogue_for(other, day.client).info() == {"updated_at": None, "count": 0}
            assert _catalogue_for(other, day.client).unknown(["XZ99ZZZ9999"]) == []  # unchecked
        finally:
            other.close()
        assert t1.uploads_owed_count() == 0 and t2.uploads_owed_count() == 0  # runs on PG
    finally:
        t1.close()
        t2.close()
