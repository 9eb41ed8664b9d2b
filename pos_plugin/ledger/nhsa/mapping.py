"""The pharmacy's SKU -> national catalogue mapping (3301 目录对照上传), from a CSV file.

Why a file checked whole before anything is sent: a mapping tells the platform which
national code each of the store's own items (``fixmedins_hilist_id`` = the SKU) is; a
half-sent file leaves the store mapped partly old, partly new, and a manager cannot tell
which. So every row is checked first (every bad row named by its row number in the
file) and nothing is sent while one is bad. Then the rows go in batches of at most
``BATCH`` (the sandbox's limit; the 40000-character ``input`` of the envelope holds
about that many), and a batch the platform refuses is sent again row by row, so each
row ends with its own result and the platform's reason.

The file: UTF-8 (a BOM is fine; GB18030, as Excel saves a CSV on a Chinese Windows, is
read too), comma-separated, a header row naming the columns by the spec's field names
(or the short names in ``ALIASES``). Required: ``fixmedins_hilist_id``,
``fixmedins_hilist_name``, ``med_list_codg``. Optional: ``list_type`` (default 101
西药中成药), ``begndate`` (default today, China time), ``enddate`` (default
2099-12-31), and ``aprvno``, ``dosform``, ``exct_cont``, ``item_cont``, ``prcunt``,
``spec``, ``pacspec``, ``memo``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa.envelope import CHINA

BATCH = 100
INPUT_MAX = 40000  # characters of an envelope's ``input`` (Hunan 表2)
REQUIRED = ("fixmedins_hilist_id", "fixmedins_hilist_name", "med_list_codg")
OPTIONAL = ("list_type", "begndate", "enddate", "aprvno", "dosform", "exct_cont", "item_cont",
            "prcunt", "spec", "pacspec", "memo")  # fmt: skip
LENGTHS = {"fixmedins_hilist_id": 30, "fixmedins_hilist_name": 200, "med_list_codg": 50,
           "list_type": 30, "aprvno": 100, "dosform": 100, "exct_cont": 2000,
           "item_cont": 2000, "prcunt": 100, "spec": 200, "pacspec": 200, "memo": 500}  # fmt: skip
ALIASES = {"sku": "fixmedins_hilist_id", "name": "fixmedins_hilist_name",
           "catalogue_code": "med_list_codg"}  # fmt: skip
DEFAULT_LIST_TYPE = "101"  # 西药中成药
DEFAULT_END = "2099-12-31"
SHOWN_ERRORS = 20


class MappingFileError(Exception):
    """The file cannot be sent as it is; the message names every bad row (or the first
    ``SHOWN_ERRORS``) and says that nothing was sent."""


@dataclass(frozen=True)
class MappingRow:
    row: int  # the row number in the file (the header is row 1)
    data: dict[str, str]  # the 3301 fields, every optional one present ("" when empty)

    @property
    def sku(self) -> str:
        return self.data["fixmedins_hilist_id"]


@dataclass(frozen=True)
class RowResult:
    row: int
    sku: str
    ok: bool
    message: str = ""


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise MappingFileError("the file is neither UTF-8 nor GB18030 text") from None


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def parse_mapping(raw: bytes, *, today: dt.date | None = None) -> list[MappingRow]:
    """Every row checked; raises MappingFileError naming each bad row (nothing to send)."""
    reader = csv.reader(io.StringIO(_text(raw), newline=""))
    try:
        return _parse(reader, today)
    except csv.Error as ex:  # a NUL byte, a field past the csv module's limit
        raise MappingFileError(f"row {reader.line_num}: not readable as CSV ({ex})") from None


def _parse(reader: Any, today: dt.date | None) -> list[MappingRow]:
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise MappingFileError("the file is empty: its first row must name the columns "
                               f"({', '.join(REQUIRED)}, ...)")  # fmt: skip
    names = [ALIASES.get(h.strip(), h.strip()) for h in header]
    unknown = [h for h in names if h not in REQUIRED + OPTIONAL]
    missing = [r for r in REQUIRED if r not in names]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if unknown or missing or repeated:
        said = [f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                f"missing column(s) {', '.join(missing)}" if missing else "",
                f"column(s) named twice {', '.join(repeated)}" if repeated else ""]  # fmt: skip
        raise MappingFileError("the header row: " + "; ".join(s for s in said if s)
                               + f" (the columns are {', '.join(REQUIRED + OPTIONAL)})")  # fmt: skip
    start = (today or dt.datetime.now(CHINA).date()).isoformat()
    rows: list[MappingRow] = []
    errors: list[str] = []
    first_of: dict[str, int] = {}
    for n, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line (Excel leaves them at the end)
        if len(cells) != len(names):
            errors.append(f"row {n}: {len(cells)} values for {len(names)} columns")
            continue
        data = {k: "" for k in OPTIONAL} | {k: c.strip() for k, c in zip(names, cells, strict=True)}
        data["list_type"] = data["list_type"] or DEFAULT_LIST_TYPE
        data["begndate"] = data["begndate"] or start
        data["enddate"] = data["enddate"] or DEFAULT_END
        why = _row_problems(data)
        sku = data["fixmedins_hilist_id"]
        if sku and sku in first_of:
            why.append(f"SKU {sku} is already mapped in row {first_of[sku]}")
        elif sku:
            first_of[sku] = n
        if why:
            errors.append(f"row {n} ({sku or 'no SKU'}): " + "; ".join(why))
        else:
            rows.append(MappingRow(n, data))
    if errors:
        shown = errors[:SHOWN_ERRORS]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise MappingFileError(f"{len(errors)} bad row(s), nothing was sent:\n  "
                               + "\n  ".join(shown) + more)  # fmt: skip
    if not rows:
        raise MappingFileError("the file has a header but no rows: nothing to send")
    return rows


def _row_problems(data: dict[str, str]) -> list[str]:
    why = [f"{k} is empty" for k in REQUIRED if not data[k]]
    why += [f"{k} is longer than {n} characters" for k, n in LENGTHS.items() if len(data[k]) > n]
    why += [f"{k} holds a control character" for k, v in data.items()
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v)]  # fmt: skip
    if not (data["list_type"].isdigit() and data["list_type"].isascii()):
        why.append(f"list_type {data['list_type']!r} is not a code (101 西药中成药, 102 中药饮片, ...)")
    begin, end = _date(data["begndate"]), _date(data["enddate"])
    if begin is None:
        why.append(f"begndate {data['begndate']!r} is not a date (yyyy-MM-dd)")
    if end is None:
        why.append(f"enddate {data['enddate']!r} is not a date (yyyy-MM-dd)")
    if begin is not None and end is not None and end < begin:
        why.append("enddate is before begndate")
    return why


def read_mapping(path: str | Path, *, today: dt.date | None = None) -> list[MappingRow]:
    try:
        raw = Path(path).read_bytes()
    except OSError as ex:
        raise MappingFileError(f"cannot read {path}: {ex.strerror or ex}") from None
    return parse_mapping(raw, today=today)


def batches(rows: Sequence[MappingRow], size: int = BATCH) -> list[list[MappingRow]]:
    """At most ``size`` rows a call, and each call's ``input`` within INPUT_MAX characters."""
    out: list[list[MappingRow]] = []
    batch: list[MappingRow] = []
    used = 0
    for r in rows:
        width = len(json.dumps(r.data, ensure_ascii=False)) + 1
        if batch and (len(batch) >= size or used + width > INPUT_MAX - 100):
            out.append(batch)
            batch, used = [], 0
        batch.append(r)
        used += width
    if batch:
        out.append(batch)
    return out


def upload(send: Callable[[list[dict[str, Any]]], None], rows: Sequence[MappingRow],
           *, size: int = BATCH) -> list[RowResult]:  # fmt: skip
    """Send ``rows`` by 3301 (``send``: the client's ``catalogue_mapping_upload``); one
    result per row. A refused batch is resent row by row; a platform that cannot be
    reached (``LedgerUnavailable``) stops the upload, the rows not sent said so."""
    results: list[RowResult] = []
    todo = batches(rows, size)
    for k, batch in enumerate(todo):
        try:
            send([r.data for r in batch])
            results += [RowResult(r.row, r.sku, True) for r in batch]
            continue
        except e.LedgerUnavailable as ex:
            return results + _not_sent([r for b in todo[k:] for r in b], ex)
        except e.LedgerError as ex:
            if len(batch) == 1:
                results.append(RowResult(batch[0].row, batch[0].sku, False, ex.message))
                continue
        for n, r in enumerate(batch):  # which rows did the platform refuse, and why
            try:
                send([r.data])
                results.append(RowResult(r.row, r.sku, True))
            except e.LedgerUnavailable as ex:
                rest = batch[n:] + [x for b in todo[k + 1:] for x in b]
                return results + _not_sent(rest, ex)
            except e.LedgerError as ex:
                results.append(RowResult(r.row, r.sku, False, ex.message))
    return results


def _not_sent(rows: Sequence[MappingRow], ex: e.LedgerError) -> list[RowResult]:
    return [RowResult(r.row, r.sku, False, f"not sent: {ex.message}") for r in rows]
