"""Logging, configured once: time stamps, levels, a rotating file in the data folder, stderr.

Why a file: a support engineer called to a till reads what happened yesterday; a
service has no console. Why rotation: a till runs for years on a small disk
(``[log] max_bytes`` x ``[log] backup_count``, 5 MB x 10 by default).

Every handler carries :class:`MaskingFilter`, a safety net under the rule that no
ID number, card number or phone number is ever logged: whatever a message (or a
traceback) holds, an 18-character ID number is masked like ``110105********002X``,
a social-security card number like ``B1******1`` and any other run of 11 or more
digits keeps only its first and last 4 digits. A 30-digit run is a message id
(pharmacy code + time + sequence) and is kept, support needs it.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import TextIO

from pos_plugin.rules.identity import mask_id_number

LOG_FILE = "pos-plugin.log"
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s [%(threadName)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"
_ID_NUMBER = re.compile(_NOT_ALNUM_BEFORE + r"[0-9]{17}[0-9Xx]" + _NOT_ALNUM_AFTER)
_CARD_NO = re.compile(_NOT_ALNUM_BEFORE + r"[A-Z][0-9]{8}" + _NOT_ALNUM_AFTER)
_DIGIT_RUN = re.compile(_NOT_ALNUM_BEFORE + r"[0-9]{11,}" + _NOT_ALNUM_AFTER)
MSGID_DIGITS = 30


def _mask_run(m: re.Match[str]) -> str:
    run = m.group(0)
    if len(run) == MSGID_DIGITS:
        return run
    return run[:4] + "*" * (len(run) - 8) + run[-4:]


def _mask_card(m: re.Match[str]) -> str:
    card = m.group(0)
    return card[:2] + "*" * (len(card) - 3) + card[-1:]


def mask_text(text: str) -> str:
    """``text`` with ID numbers, card numbers and long digit runs masked."""
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(0)), text)
    text = _CARD_NO.sub(_mask_card, text)
    return _DIGIT_RUN.sub(_mask_run, text)


class MaskingFilter(logging.Filter):
    """Masks a record's message, and its traceback, before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what there is, masked
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = mask_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


# Marked so that a second setup replaces what the first installed, and nothing else.
class _FileHandler(logging.handlers.RotatingFileHandler):
    pos_plugin_handler = True


class _StreamHandler(logging.StreamHandler[TextIO]):
    pos_plugin_handler = True


def setup_logging(
    level: str = "INFO",
    log_dir: Path | None = None,
    *,
    max_bytes: int = 5_000_000,
    backup_count: int = 10,
    stderr: bool = True,
) -> Path | None:
    """Configure the root logger once (again: replaces what the last call installed).

    Returns the log file, or None when ``log_dir`` is None (stderr only). Raises
    OSError when the folder cannot be created or written (the CLI says which).
    """
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "pos_plugin_handler", False):
            root.removeHandler(h)
            h.close()
    formatter = logging.Formatter(FORMAT, DATEFMT)
    masking = MaskingFilter()
    handlers: list[logging.Handler] = []
    path: Path | None = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / LOG_FILE
        handlers.append(
            _FileHandler(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        )
    if stderr:
        handlers.append(_StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(masking)
        root.addHandler(h)
    root.setLevel(level)
    # uvicorn logs through these loggers; its access log would list every request.
    logging.getLogger("uvicorn").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return path
