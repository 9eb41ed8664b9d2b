"""The manager page in Debian's chromium, headless: it loads, shows the seeded breaks, each
manager tool works by a click, and screenshots are written (their absolute paths are
printed; run with -s to see them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Seeded, Served
from .seed import DAY

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.browser
def test_manager_page_in_headless_chromium(served: Served, seeded: Seeded, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not found (CI installs it with .ci/system-deps)")
    url = (
        f"{served.url}/manager/reconciliation?date={DAY.isoformat()}"
        f"&token={served.tokens['manager']}"
    )
    dom = _run(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "门店对账 Store reconciliation" in html
    assert f"差异 Breaks ({len(seeded.breaks)})" in html
    for msgid in seeded.breaks:
        assert msgid in html
    for label in (
        "本店有、中心无",
        "中心有、本店无",
        "金额不一致",
        "支付构成不一致",
        "冲正状态不一致",
        "记账日期不同",
        "重复记录",
    ):
        assert label in html
    assert "<svg" in html and "What to do" in html
    for p in seeded.store.world.persons:  # masked personal data only
        assert p.id_number not in html and p.name not in html

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "reconciliation.png"
    shot.unlink(missing_ok=True)
    result = _run(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nscreenshot of the manager page: {shot.resolve()}")


@pytest.mark.browser
def test_each_manager_tool_through_the_page_in_headless_chromium(
    served: Served, seeded: Seeded, tmp_path: Path
) -> None:
    """Reverse by msgid (and a second click from a stale page), download the CSV, close the
    day with a reason, reopen it with a reason: each by a click in the browser, each
    checked in the journals and the ledger; a screenshot of the page with the tools."""
    import datetime as dt

    from pos_plugin.journal import journal as J
    from pos_plugin.journal.closed_days import is_day_closed
    from pos_plugin.journal.journal import SHANGHAI

    from .cdp import Browser

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not found (CI installs it with .ci/system-deps)")
    s = seeded.store
    b4 = s.journals["T02"].get("B4")
    assert b4 is not None and b4.msgid is not None and b4.state == J.FAILED
    s.clock.now = dt.datetime.now(SHANGHAI)  # the reversal is made today, on both sides
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = Browser(chromium, tmp_path / "profile-tools", downloads)
    try:
        browser.open(f"{served.url}/manager/reconciliation?date={DAY}"
                     f"&token={served.tokens['manager']}")  # fmt: skip
        assert "门店对账 Store reconciliation" in browser.text()
        form = f"form[action='/manager/reconciliation/reverse']:has(input[value='{b4.msgid}'])"
        stale = browser.js(f"document.querySelector(\"{form}\").outerHTML")
        browser.fill(f"{form} input[name='reason']", "顾客未取药 customer took nothing")
        browser.click(f"{form} button")
        assert "Reversed by msgid" in browser.text()
        row = s.journals["T02"].get("B4")
        assert row is not None and row.state == J.REVERSED and row.reversal_id
        breaks = str(browser.js("document.getElementById('breaks').outerHTML"))
        assert b4.msgid not in breaks  # no longer a break: the day agrees on it
        # the reversal's receipt, as journaled in the till's row, shown to print and hand over
        receipt = "\n".join(row.result["receipt"])  # type: ignore[index]
        assert browser.js("document.querySelector('#receipt pre').innerText") == receipt
        browser.call("Emulation.setEmulatedMedia", media="print")
        try:  # printed while it is shown, the page prints the receipt alone
            shown = browser.js("[...document.body.children].filter(e => "
                               "getComputedStyle(e).display != 'none').map(e => e.id)")
            assert shown == ["receipt"]
        finally:
            browser.call("Emulation.setEmulatedMedia", media="")
        # The same form again, from a page left open before: nothing is sent, and it says so.
        browser.js("document.body.insertAdjacentHTML('beforeend', "
                   f"{json.dumps(stale)}.replace('<form', '<form id=\"stale\"'))")  # fmt: skip
        browser.click("#stale button")
        assert "Already reversed before: nothing was sent" in browser.text()
        assert browser.js("document.querySelector('#receipt pre').innerText") == receipt
        assert (s.journals["T02"].query("SELECT attempts FROM ledger_reversals WHERE msgid = ?",
                                        (b4.msgid,))[0][0]) == 1  # fmt: skip

        browser.click("#csv-msgids", navigates=False)
        csv_file = downloads / f"reconciliation-{DAY}.csv"
        deadline = time.monotonic() + 30
        while not csv_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = csv_file.read_bytes().decode("utf-8-sig")
        assert "销售单号 sale_ref" in text and "本店状态 till status" in text
        assert seeded.extra["unknown"] in text and "汇总 totals" not in text  # one table

        browser.fill("form[action='/manager/reconciliation/close'] input[name='reason']",
                     "差异已报医保中心 ticket 4711")  # fmt: skip
        browser.fill("form[action='/manager/reconciliation/close'] input[name='by']", "店长王")
        browser.click("form[action='/manager/reconciliation/close'] button")
        assert "The day is closed" in browser.text() and "已关账 Closed" in browser.text()
        assert all(is_day_closed(p, DAY) for p in s.paths)

        browser.click("form[action='/manager/reconciliation/reopen'] button", navigates=False)
        assert all(is_day_closed(p, DAY) for p in s.paths)  # the reason is required
        browser.fill("form[action='/manager/reconciliation/reopen'] input[name='reason']",
                     "补录一笔退货 a return to book")  # fmt: skip
        browser.click("form[action='/manager/reconciliation/reopen'] button")
        page = browser.text()
        assert "The day is reopened" in page and "关账记录 Close history" in page
        assert "差异已报医保中心 ticket 4711" in page and "补录一笔退货 a return to book" in page
        assert "店长王" in page  # who closed it, as typed in the form
        assert not any(is_day_closed(p, DAY) for p in s.paths)
        for j in s.journals.values():
            assert j.verify().ok

        ARTIFACTS.mkdir(exist_ok=True)
        shot = browser.screenshot(ARTIFACTS / "manager-tools.png")
        top = browser.screenshot(ARTIFACTS / "manager-tools-top.png", whole=False)
    finally:
        browser.close()
    for png in (shot, top):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    print(f"\nscreenshots of the manager page with its tools: {shot.resolve()} (whole page), "
          f"{top.resolve()} (its top)")
