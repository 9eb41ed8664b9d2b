"""追溯码 scanned at the counter: the packs of the lines the POS flagged ``scan_trace``.

Why here, before the card: a pack whose code is wrong, scanned twice, or sold before
must stop the sale before the customer is asked for anything, exactly as when the
POS sends the codes itself. So the agent asks the counter device's scanner for one
code per pack (``quantity`` packs; a split-pack line, 拆零, its one opened pack),
line by line, and then the sale goes on with the codes filled in, through the same
checks, journal and 2102 as codes the POS sent.

What the cashier sees: the pad shows the line's name and "pack k/n". A code that is
not a traceability code (a misread) or was already scanned in this basket (the same
pack twice) is not taken: the pad says why and asks for the same pack again, at most
``MAX_BAD_SCANS`` times, then the sale is refused naming the line. Once a line is
complete, the service's own check (``check``: format, count, repeats, sold before in
this store) runs on the lines done so far, so a pack the store sold before stops the
sale at that line, not after the whole basket was scanned.

The device's failures become the sale's answers: Cancel on the pad or the POS's
cancel is ``cancelled``; nothing scanned within the wait (the card's, ``card_timeout``)
is ``device_timeout``; a reader without a scanner is ``trace_scan_unsupported``, so
the POS knows to scan the packs itself and send ``trace_codes``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pos_plugin.models import BasketLine
from pos_plugin.sale.models import SaleError, SaleRequest

log = logging.getLogger("pos_plugin.sale.trace_scan")

MAX_BAD_SCANS = 3
"""Scans of one pack that are not taken before the sale is refused: enough for a
misread or two, few enough that a pack with a bad label does not hold the queue."""

NOTE_INVALID = "码无效 请重扫"  # not a traceability code: scan the same pack again
NOTE_REPEATED = "已扫过 换一盒"  # this pack was scanned already: scan another pack


class TraceScanner(Protocol):
    def scan_trace_code(
        self,
        prompt: Any,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> str: ...


def needs_scan(req: SaleRequest) -> bool:
    return any(line.scan_trace for line in req.items)


def scan_trace_codes(
    req: SaleRequest,
    scanner: TraceScanner,
    *,
    pattern: str,
    timeout: float,
    cancel: threading.Event,
    check: Callable[[SaleRequest], object],
) -> SaleRequest:
    """``req`` with every ``scan_trace`` line's codes scanned on the device.

    ``check`` is the service's validation of codes (it raises SaleError); it runs on
    the lines that have codes, before the first scan and after each scanned line."""
    from drivers import DeviceError, ScanUnsupported

    if not callable(getattr(scanner, "scan_trace_code", None)):  # a device without the method
        raise _device_refusal(ScanUnsupported(), cancel)
    since = time.monotonic()  # a code scanned before this sale asked is someone else's
    items = list(req.items)
    done = [i for i in items if i.trace_codes]
    if done:
        check(_with_items(req, done))  # the POS's own codes first: no scan for a lost sale
    seen = {c: n for n, i in enumerate(items, 1) for c in i.trace_codes}
    compiled = re.compile(pattern)
    try:
        for n, line in enumerate(items, 1):
            if not line.scan_trace:
                continue
            packs = 1 if line.split_pack else line.quantity
            codes: list[str] = []
            for pack in range(1, packs + 1):
                code = _one_pack(scanner, n, line, pack, packs, compiled, seen,
                                 timeout=timeout, cancel=cancel, since=since)  # fmt: skip
                codes.append(code)
                seen[code] = n
            items[n - 1] = line.model_copy(update={"trace_codes": tuple(codes)})
            done.append(items[n - 1])
            log.info("line %d: %d traceability code(s) scanned at the counter", n, packs)
            check(_with_items(req, done))
    except DeviceError as e:
        raise _device_refusal(e, cancel) from None
    return _with_items(req, items)


def _one_pack(
    scanner: TraceScanner,
    n: int,
    line: BasketLine,
    pack: int,
    packs: int,
    pattern: re.Pattern[str],
    seen: dict[str, int],
    *,
    timeout: float,
    cancel: threading.Event,
    since: float,
) -> str:
    """One pack's code, asked again (with the reason on the pad) while it is not taken."""
    from drivers import TracePrompt

    note, last = "", ("invalid", "")
    for _ in range(MAX_BAD_SCANS):
        prompt = TracePrompt(line=n, pack=pack, packs=packs,
                             product=line.catalogue_code or line.sku, name=line.name, note=note)  # fmt: skip
        code = scanner.scan_trace_code(prompt, timeout, cancel, presented_after=since)
        if not pattern.match(code):
            log.info("line %d pack %d: scanned %r is not a traceability code", n, pack, code)
            note, last = NOTE_INVALID, ("invalid", code)
        elif code in seen:
            log.info("line %d pack %d: %s scanned twice", n, pack, code)
            note, last = NOTE_REPEATED, ("repeated", code)
        else:
            return code
    where_zh, where_en = f"第{n}行 {line.name}（{line.sku}）", f"line {n} {line.name} ({line.sku})"
    kind, code = last
    if kind == "invalid":
        raise SaleError(
            "trace_code_invalid",
            f"{where_zh}：第{pack}盒连续{MAX_BAD_SCANS}次扫到的都不是有效追溯码（最后一次：{code}），"
            "请核对药盒上的追溯码，或在收银系统中录入",
            f"{where_en}: pack {pack} was scanned {MAX_BAD_SCANS} times and never gave a valid "
            f"traceability code (last: {code}): check the pack's code, or key it in at the POS",
            http_status=422,
        )
    raise SaleError(
        "trace_code_repeated",
        f"{where_zh}：第{pack}盒扫到的追溯码 {code} 在本单中已扫描过（第{seen[code]}行），"
        "一盒只能扫一次",
        f"{where_en}: pack {pack} gave traceability code {code}, already scanned in this "
        f"basket (line {seen[code]}): one pack, one scan",
        http_status=422,
    )


def _with_items(req: SaleRequest, items: list[BasketLine]) -> SaleRequest:
    return req.model_copy(update={"items": list(items)})


def _device_refusal(e: Any, cancel: threading.Event) -> SaleError:
    """The scanner's failure as the sale's answer; nothing was charged, no card asked."""
    if e.code == "scan_unsupported":
        return SaleError(
            "trace_scan_unsupported",
            "本收银台的读卡器不能扫描药品追溯码：请在收银系统扫码，随交易上送 trace_codes",
            "this till's reader cannot scan traceability codes: scan the packs at the POS and "
            "send them in the lines' trace_codes",
            http_status=422,
        )
    code = "cancelled" if cancel.is_set() else e.code
    if code not in ("cancelled", "device_timeout"):
        code = "device_unavailable"
    status = {"cancelled": 409, "device_timeout": 504}.get(code, 503)
    return SaleError(code, e.message_zh, e.message_en, http_status=status)
