"""The command line, the JSON API and the page (without a browser)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import requests

from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.reconcile.cli import close_day_main, reconcile_main

from .conftest import Seeded, Served, seed_clean_day
from .seed import DAY, Store


def _args(s: Store, *more: str) -> list[str]:
    out = ["--date", DAY.isoformat(), "--ledger-url", s.url, "--token", s.pharmacy.api_token]
    for p in s.paths:
        out += ["--journal", p]
    return out + list(more)


def test_reconcile_cli_writes_a_spreadsheet_csv_with_chinese_intact(
    seeded: Seeded, tmp_path: Path, capsys: object
) -> None:
    s = seeded.store
    out_csv, out_html, out_json = tmp_path / "r.csv", tmp_path / "r.html", tmp_path / "r.json"
    code = reconcile_main(
        _args(s, "--csv", str(out_csv), "--html", str(out_html), "--json", str(out_json))
    )
    assert code == 1  # breaks found
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "有差异 BREAKS" in printed and "本店有、中心无 / journal only" in printed
    raw = out_csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel/WPS need for UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][0] == "类别" and "流水号 msgid" in rows[0]
    kinds = {r[1] for r in rows[1:] if len(r) > 1}
    assert {"journal_only", "ledger_only", "split_mismatch", "balanced"} <= kinds
    assert any("医保中心" in cell for r in rows for cell in r)
    body = json.loads(out_json.read_text("utf-8"))
    assert body["break_count"] == len(seeded.breaks)
    assert "<svg" in out_html.read_text("utf-8")


def test_close_day_cli_refuses_breaks_without_a_reason_then_keeps_the_reason(
    seeded: Seeded, capsys: object
) -> None:
    s = seeded.store
    assert close_day_main(_args(s)) == 1
    assert "--reason" in capsys.readouterr().err  # type: ignore[attr-defined]
    assert not is_day_closed(s.paths[0], DAY)
    assert close_day_main(_args(s, "--reason", "中心对账单有误，已报修", "--by", "店长王")) == 0
    assert all(is_day_closed(p, DAY) for p in s.paths)
    assert close_day_main(_args(s, "--reason", "again")) == 1  # already closed


def test_close_day_cli_closes_a_balanced_day(store: Store) -> None:
    seed_clean_day(store)
    assert reconcile_main(_args(store)) == 0
    assert close_day_main(_args(store)) == 0
    assert is_day_closed(store.paths[1], DAY.isoformat())


def test_cli_says_what_is_missing(tmp_path: Path, capsys: object) -> None:
    assert reconcile_main(["--date", "2024-05-20"]) == 2
    assert "--journal" in capsys.readouterr().err  # type: ignore[attr-defined]
    missing = str(tmp_path / "nope.sqlite3")
    code = reconcile_main(
        ["--journal", missing, "--ledger-url", "http://127.0.0.1:9", "--token", "x"]
    )
    assert code == 3
    assert not Path(missing).exists()  # reading never creates a journal


def test_json_api_needs_the_manager_token(served: Served, seeded: Seeded) -> None:
    url = served.url + "/v1/reconciliation?date=" + DAY.isoformat()
    assert requests.get(url, timeout=30).status_code == 401
    pos = {"Authorization": f"Bearer {served.tokens['pos']}"}
    assert requests.get(url, headers=pos, timeout=30).status_code == 403
    mgr = {"Authorization": f"Bearer {served.tokens['manager']}"}
    r = requests.get(url, headers=mgr, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["date"] == DAY.isoformat() and not body["balanced"]
    assert {b["msgid"]: b["kind"] for b in body["breaks"]} == seeded.breaks
    assert body["closed"] is None
    assert set(body["journal"]["net"]) == {"total", "personal_account", "mutual_aid", "cash"}
    bad = requests.get(served.url + "/v1/reconciliation?date=20-5", headers=mgr, timeout=30)
    assert bad.status_code == 422
    c = requests.get(served.url + "/v1/reconciliation.csv?date=2024-05-20", headers=mgr, timeout=30)
    assert c.status_code == 200 and c.content.startswith(b"\xef\xbb\xbf")


def test_page_accepts_header_query_token_and_cookie(served: Served) -> None:
    page = served.url + "/manager/reconciliation?date=" + DAY.isoformat()
    r = requests.get(page, timeout=30)
    assert r.status_code == 401 and "<form" in r.text and "<script" not in r.text
    r = requests.get(page + "&token=wrong", timeout=30)
    assert r.status_code == 401
    r = requests.get(
        page, headers={"Authorization": "Bearer " + served.tokens["manager"]}, timeout=30
    )
    assert r.status_code == 200 and "差异 Breaks" in r.text
    session = requests.Session()
    r = session.get(page + "&token=" + served.tokens["manager"], timeout=30)
    assert r.status_code == 200 and r.url == page  # the token left the address bar
    assert session.cookies.get("pos_manager_token") == served.tokens["manager"]
    assert "<script" not in r.text and "@media print" in r.text and "<svg" in r.text
    assert r.text.index("差异 Breaks") < r.text.index("每小时结算")  # breaks first
