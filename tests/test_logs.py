"""Logs: time stamps, a rotating file, and no personal number in any line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_plugin.logs import LOG_FILE, MaskingFilter, mask_text, setup_logging
from pos_plugin.world import load_world

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR)")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def test_mask_text_masks_ids_cards_and_long_digit_runs() -> None:
    line = (
        "patient 11010519491231002X card B11000001 phone 13912345678 bank 6222021234567890123 "
        "psn 11000000000000000001"
    )
    assert mask_text(line) == (
        "patient 110105********002X card B1******1 phone 1391***5678 bank 6222***********0123 "
        "psn 1100************0001"
    )


def test_mask_text_keeps_what_support_needs() -> None:
    keep = (
        "msgid H11010500001202612010830000001 all-digit msgid 110105000001202612010830000001 "
        "total 3700 fen on 2026-12-01 08:30:00, till T01, sale S-20261201-0007, port COM3"
    )
    assert mask_text(keep) == keep


def test_the_filter_masks_arguments_and_tracebacks() -> None:
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "read %s", ("110105194912310021",), None
    )
    try:
        raise ValueError("bad id 110105194912310021")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert MaskingFilter().filter(record)
    assert record.getMessage() == "read 110105********0021"
    assert record.exc_text is not None and "110105194912310021" not in record.exc_text
    assert "110105********0021" in record.exc_text


def test_file_log_has_time_stamps_and_rotates(tmp_path: Path, restore_logging: None) -> None:
    path = setup_logging("INFO", tmp_path / "logs", max_bytes=20_000, backup_count=3, stderr=False)
    assert path == tmp_path / "logs" / LOG_FILE
    log = logging.getLogger("pos_plugin.test")
    log.debug("not at INFO")
    for i in range(600):
        log.info("line %d of a long day, card B11000001", i)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2", f"{LOG_FILE}.3"]
    text = path.read_text("utf-8")
    lines = text.splitlines()
    assert lines and all(STAMP.match(line) for line in lines)
    assert "line 599 of a long day, card B1******1" in lines[-1]
    assert "not at INFO" not in text and "B11000001" not in text
    assert all(p.stat().st_size <= 20_000 + 200 for p in (tmp_path / "logs").iterdir())


def test_a_whole_day_logged_at_debug_holds_no_id_or_card_number(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scripted day (every scenario, the serial trace on) into a real log file."""
    from pos_plugin.demo import run_demo

    path = setup_logging("DEBUG", tmp_path, stderr=False)
    assert path is not None
    assert run_demo() == 0, capsys.readouterr().out
    text = path.read_text("utf-8")
    lines = text.splitlines()
    assert len(lines) > 50
    assert all(STAMP.match(line) or not line.strip() or line.startswith((" ", "Traceback"))
               for line in lines)  # fmt: skip
    assert "-- link up" in text  # the serial trace is in it
    assert re.search(r"sale \S+: settled, msgid H11010500001\d{18}", text)
    assert re.search(r"sale \S+: card_not_patients_own", text)
    world = load_world()
    leaked = [
        secret
        for person in world.persons
        for secret in (person.id_number, person.psn_no, *(c.card_no for c in person.cards))
        if secret in text
    ]
    assert leaked == []
