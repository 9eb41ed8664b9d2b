"""The rule of scanning 追溯码 at the counter (pos_plugin.sale.trace_scan), for any run of
scans: each pack takes the first scan that is a valid code not yet in the basket; a
misread or a repeat is asked again, at most MAX_BAD_SCANS times per pack, then the sale
is refused naming the line and the pack; nothing scanned is the device's timeout.

The scanner here is a stand-in fed by hypothesis (the device itself is tested on the wire
in tests/drivers/test_trace_scan.py and end to end in tests/agent/test_trace_scan_sales.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import DeviceError, TracePrompt
from pos_plugin.sale.models import SaleError, SaleRequest
from pos_plugin.sale.trace_scan import MAX_BAD_SCANS, NOTE_INVALID, NOTE_REPEATED, scan_trace_codes

PATTERN = r"^8\d{19}$"


class Scanner:
    """Answers each prompt with the next scan; the prompts are kept to check the pad."""

    def __init__(self, scans: list[str]) -> None:
        self.scans = list(scans)
        self.prompts: list[TracePrompt] = []

    def scan_trace_code(self, prompt: TracePrompt, timeout: float, cancel: Any = None, *,
                        presented_after: float | None = None) -> str:  # fmt: skip
        self.prompts.append(prompt)
        if not self.scans:
            raise DeviceError("device_timeout", f"nothing scanned for line {prompt.line}")
        return self.scans.pop(0)


def _req(lines: list[tuple[int, bool]]) -> SaleRequest:
    return SaleRequest.model_validate({"sale_ref": "P1", "items": [
        {"sku": f"K{n}", "name": f"药{n}", "catalogue_code": "XA01AAA0001",
         "insurance_class": "A", "quantity": q, "unit_price": 100, "split_pack": split,
         "scan_trace": True}
        for n, (q, split) in enumerate(lines, 1)]})  # fmt: skip


# A scan: a fresh valid code (by number), a misread, or the same code as an earlier scan.
scan = st.one_of(
    st.integers(0, 30).map(lambda k: ("code", k)),
    st.sampled_from(["123", "9" * 20, "8" * 19, "8abc"]).map(lambda bad: ("bad", bad)),
)


def _code(k: int) -> str:
    return f"8{k:019d}"


def oracle(lines: list[tuple[int, bool]], scans: list[str]) -> tuple[str, Any]:
    """What the rule must do, written out plainly: ("ok", codes per line) or the refusal."""
    seen: set[str] = set()
    out: list[list[str]] = []
    it = iter(scans)
    for n, (q, split) in enumerate(lines, 1):
        codes: list[str] = []
        for pack in range(1, (1 if split else q) + 1):
            bad, last = 0, ""
            while True:
                code = next(it, None)
                if code is None:
                    return "device_timeout", n
                if len(code) == 20 and code.isdigit() and code[0] == "8" and code not in seen:
                    codes.append(code)
                    seen.add(code)
                    break
                bad += 1
                last = "trace_code_invalid" if code not in seen else "trace_code_repeated"
                if bad == MAX_BAD_SCANS:
                    return last, (n, pack)
        out.append(codes)
    return "ok", out


@given(
    st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=3),
    st.lists(scan, max_size=14),
)
def test_any_run_of_scans_gives_what_the_rule_says(
    lines: list[tuple[int, bool]], raw: list[tuple[str, Any]]
) -> None:
    scans = [_code(v) if kind == "code" else v for kind, v in raw]
    expected = oracle(lines, scans)
    scanner = Scanner(scans)
    checked: list[int] = []
    req = _req(lines)
    try:
        got = scan_trace_codes(req, scanner, pattern=PATTERN, timeout=1.0,
                               cancel=threading.Event(),
                               check=lambda r: checked.append(len(r.items)))  # fmt: skip
    except SaleError as e:
        assert e.code == expected[0], (e.code, expected, e.message)
        line = expected[1] if e.code == "device_timeout" else expected[1][0]
        assert f"line {line}" in e.message
        if e.code != "device_timeout":
            assert f"pack {expected[1][1]}" in e.message
        return
    assert expected[0] == "ok", expected
    assert [list(i.trace_codes) for i in got.items] == expected[1]
    assert checked == list(range(1, len(lines) + 1))  # the service's check after each line
    assert req.items[0].trace_codes == ()  # the POS's request itself is left as it came


def test_the_pad_says_why_a_scan_was_not_taken_and_asks_for_the_same_pack() -> None:
    scanner = Scanner(["123", _code(1), _code(1), _code(2)])
    got = scan_trace_codes(_req([(2, False)]), scanner, pattern=PATTERN, timeout=1.0,
                           cancel=threading.Event(), check=lambda r: None)  # fmt: skip
    assert got.items[0].trace_codes == (_code(1), _code(2))
    assert [(p.pack, p.packs, p.note) for p in scanner.prompts] == [
        (1, 2, ""), (1, 2, NOTE_INVALID), (2, 2, ""), (2, 2, NOTE_REPEATED)]  # fmt: skip
    assert {(p.line, p.product, p.name) for p in scanner.prompts} == {(1, "XA01AAA0001", "药1")}


def test_a_cancel_while_scanning_is_the_sales_cancel() -> None:
    class Cancelled(Scanner):
        def scan_trace_code(self, *a: Any, **kw: Any) -> str:
            raise DeviceError("cancelled")

    cancel = threading.Event()
    with pytest.raises(SaleError) as e:
        scan_trace_codes(_req([(1, False)]), Cancelled([]), pattern=PATTERN, timeout=1.0,
                         cancel=cancel, check=lambda r: None)  # fmt: skip
    assert (e.value.code, e.value.http_status) == ("cancelled", 409)


def test_a_device_without_a_scanner_method_is_trace_scan_unsupported() -> None:
    with pytest.raises(SaleError) as e:
        scan_trace_codes(_req([(1, False)]), object(), pattern=PATTERN, timeout=1.0,  # type: ignore[arg-type]
                         cancel=threading.Event(), check=lambda r: None)  # fmt: skip
    assert (e.value.code, e.value.http_status) == ("trace_scan_unsupported", 422)
