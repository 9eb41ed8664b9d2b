"""The manager page in Debian's chromium, headless: it loads, shows the seeded breaks, and a
screenshot is written (its absolute path is printed; run with -s to see it)."""

from __future__ import annotations

import shutil
import subprocess
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
