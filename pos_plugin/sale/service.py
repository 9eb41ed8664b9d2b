"""One sale at the counter, a balance inquiry, a reversal: the orchestration.

The order of a sale, and why:
1. journal ``received`` (so a repeated ``sale_ref`` answers the first result);
2. basket rules that need no card (a missing prescription stops the sale before
   the customer is asked for anything);
3. the PIN pad shows the amount; the customer presents the card (the chip
   verifies the PIN itself) or scans the electronic voucher;
4. one ledger lookup gives the person, the card status, the personal account and
   the family bindings; the pure rules decide whose card, proxy evidence, the
   eligible payers and the legs;
5. journal ``settling`` with the msgid and the plan, *then* the settlement
   request; a 409 with fresh balances is re-planned (bounded) under the same
   msgid, which a business rejection leaves unbound;
6. journal the outcome and answer the POS.
An outcome that stays unknown while the customer waits is answered with
``ledger_unavailable`` (take cash) and a reversal is owed for that msgid, so a
customer who paid cash is never also charged from an account.

A card or voucher pays only the sale (or inquiry) it was presented to: the wait
accepts only a card inserted / a code scanned after the sale began (the reader
reports ages, docs/serial-protocol.md 6.4), and the credential must be the one
the POS asked for. Once a card was read, the pad asks the customer to take it
and the agent watches the slot for ``card_removal_timeout`` in the background
(the POS has its answer already); a card still in after that is reported in
``/v1/health`` and refused by the next sale until it is inserted again. Through
the API, nothing cosmetic goes to the pad before the POS has its answer: the
outcome frame waits for ``answer_sent``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pos_plugin.journal import journal as J
from pos_plugin.journal.closed_days import is_day_closed
from pos_plugin.journal.journal import Journal, SaleRow, now_shanghai
from pos_plugin.ledger.backend import LedgerClient
from pos_plugin.ledger.errors import (
    CardRefused,
    InsufficientFunds,
    LedgerError,
    LedgerUnavailable,
    LookupUnsupported,
    NotFound,
    OutcomeUnknown,
)
from pos_plugin.ledger.own.schemas import (
    Credential,
    LineSummary,
    Settlement,
    SettlementRequest,
    msgid_stamp,
)
from pos_plugin.models import (
    RELATION_ZH,
    Allocation,
    BasketLine,
    CardStatus,
    FamilyBinding,
    LegKind,
    PersonLookup,
    Relation,
)
from pos_plugin.money import yuan
from pos_plugin.rules.basket import check_basket
from pos_plugin.rules.cascade import allocate
from pos_plugin.rules.evidence import check_card_status, check_whose_card
from pos_plugin.rules.family import ProvincePair, eligible_payers
from pos_plugin.rules.identity import check_document, mask_card_no, mask_id_number, mask_name
from pos_plugin.sale import trace_scan
from pos_plugin.sale.models import (
    BalanceRequest,
    BalanceResult,
    NoticeLine,
    PayerLine,
    SaleError,
    SaleRequest,
    SaleResult,
    SkippedLine,
    sale_code,
)
from pos_plugin.sale.receipts import (
    Receipt,
    ReceiptItem,
    ReceiptPayer,
    ReceiptReversal,
    not_used_sentence,
    payer_was_needed,
    receipt_items,
    render,
    reversed_receipt,
)

log = logging.getLogger("pos_plugin.sale.service")

MAX_REPLANS = 3
ANSWER_FIRST_WAIT = 2.0
"""Seconds a sale's outcome frame waits for ``answer_sent`` (the POS has its answer);
past that it is shown anyway, e.g. for a POS that dropped the connection."""
PIN_ATTEMPTS_PER_SALE = 2  # never lets one sale use up the chip's 3 tries
REVERSAL_ESCALATE_AFTER = 5


# --------------------------------------------------------------------------- ports


class DevicePort(Protocol):
    def show(self, line1: str, line2: str = "") -> None: ...
    def show_amount(self, amount_fen: int, label: str = "") -> None: ...
    def wait_for_credential(
        self,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> Any: ...
    def verify_pin(self, timeout: float, cancel: threading.Event | None = None) -> Any: ...
    def wait_card_removed(self, timeout: float, cancel: threading.Event | None = None) -> None: ...
    def scan_trace_code(  # one pack's 追溯码 (sale.trace_scan); a device without a
        self,  # scanner raises ScanUnsupported
        prompt: Any,
        timeout: float,
        cancel: threading.Event | None = None,
        *,
        presented_after: float | None = None,
    ) -> str: ...
    def cancel(self) -> None: ...


@dataclass
class SaleSettings:
    pharmacy_code: str
    terminal_id: str
    operator: str = "cashier"
    card_timeout: float = 60.0
    pin_timeout: float = 60.0
    card_removal_timeout: float = 30.0
    opened_pairs: frozenset[ProvincePair] = frozenset()
    today: Callable[[], dt.date] = lambda: now_shanghai().date()
    store_name: str = ""  # printed at the top of every receipt
    receipt_width: int = 80  # the till's printer, 58 or 80 mm ([receipt] width)
    # 追溯码 checks: the format (the national drug code: 20 digits starting with 8;
    # a province with other formats sets its own), and what a code sold before in this
    # store means: "refuse" the line, or "notice" (recorded, the sale goes on: where the
    # province only logs reuse, 3505A "重复使用不影响结算，但会记录监管").
    trace_code_pattern: str = r"^8\d{19}$"
    trace_reuse: str = "refuse"


TAKE_CARD_AFTER_FAILURE = ("交易未完成 请取卡", "Please take your card")
# A sale refused or cancelled once its packs' 追溯码 were scanned on the pad: the pad
# would still ask for a pack; it says the packs go back instead (and the device
# simulator's cashier does so: drivers.simulator.firmware.PUT_BACK).
NOT_SOLD_AFTER_SCAN = ("交易未完成 请放回药品", "Not paid: put the packs back")
TAKE_CARD_NOT_SOLD = ("交易未完成 请取卡 放回药品", "Take your card, put the packs back")


@dataclass
class _CardSession:
    """What one sale or inquiry did with the reader, for what follows it."""

    card_in: bool = False  # a card went in for it (read, or refused): it must come out
    pad_says_take: bool = False  # the pad's last display already asks for that
    done_lines: tuple[str, str] | None = None  # the outcome, shown once the POS has it
    scanned: bool = False  # packs were scanned on the pad for it (sale.trace_scan)
    refused: bool = False  # it ended in a SaleError: nothing was charged
    # Set once the POS has the answer (at once unless the caller sends it: answer_sent).
    answered: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Tail:
    """What follows a sale or inquiry on the pad, in the background: the outcome frame
    once the POS has its answer, then the watch for the card to be taken."""

    of: str  # the sale_ref (or "a balance inquiry")
    done: threading.Event
    stop: threading.Event  # the next sale needs the reader
    answered: threading.Event


def request_hash(req: SaleRequest) -> str:
    doc = req.model_dump(mode="json")
    for item in doc.get("items", ()):  # fields added later hash as before when unused
        if not item.get("trace_codes"):
            item.pop("trace_codes", None)
        if not item.get("split_pack"):
            item.pop("split_pack", None)
        if not item.get("scan_trace"):
            item.pop("scan_trace", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- the service


class SaleService:
    """Runs sales one at a time on this till's devices, against the ledger, into the journal."""

    def __init__(
        self,
        settings: SaleSettings,
        journal: Journal,
        ledger: LedgerClient,
        devices: DevicePort,
        *,
        catalogue: Any | None = None,
    ) -> None:
        self.settings = settings
        # The platform's catalogue on this till (``ledger.nhsa.catalogue.Catalogue``: its
        # ``unknown(codes)``), on the national backend: a line it does not know is refused
        # before the card is asked (the platform would refuse it after).
        self.catalogue = catalogue
        self.journal = journal
        self.ledger = ledger
        self.devices = devices
        self._busy = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}
        # States a sale passed through that are not yet journaled (see _sell).
        self._passed: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        # What the sale saw of the credential (masked card number, the holder's keyed
        # hash), for the audit record of a refused or failed attempt (see _evidence).
        self._seen: dict[str, dict[str, Any]] = {}
        # What a running sale waits for, and a condition a long-poll (GET ?wait=) waits on.
        self._stage: dict[str, str] = {}
        self._changed = threading.Condition()
        self.ledger_round_trips = 0  # for the benchmark: lookups + settlement requests
        self._session: _CardSession | None = None
        self._tail: _Tail | None = None
        self._tail_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._tail_worker: threading.Thread | None = None
        # True once a card was not taken within card_removal_timeout (shown in /v1/health);
        # False again when it is removed or a newly inserted card is read.
        self.card_left_in_reader = False

    # ------------------------------------------------------------------ sale

    def sell(self, req: SaleRequest, *, answer_first: bool = False) -> tuple[int, SaleResult]:
        """Run one sale to (HTTP status, result); raises SaleError for a refusal or a failure.

        A repeated ``sale_ref`` answers what ``answer`` says of its journaled row.
        ``answer_first``: the caller sends the POS the answer, then calls ``answer_sent``;
        the pad shows the outcome only then (the API: the cashier is never kept waiting
        by a display frame on the serial line)."""
        if (
            is_day_closed(self.journal, self.settings.today())
            and self.journal.get(req.sale_ref) is None
        ):
            # A closed day cannot change silently: the manager reopens it or the sale
            # waits for tomorrow; nothing is journaled under the closed date.
            raise SaleError(
                "day_closed",
                "今日账已日结关闭，不能再做医保交易，请联系店长",
                "today's business day has been closed by the store manager; no more insurance "
                "sales can be booked on it: call the manager",
                http_status=409,
            )
        existing = self.journal.begin_sale(req.sale_ref, request_hash(req))  # may raise
        if existing is not None:
            return self.answer(existing)
        if not self._busy.acquire(blocking=False):
            busy = SaleError(
                "device_unavailable",
                "另一笔交易正在进行，请稍候",
                "another sale is in progress on this till; wait for it to finish",
                http_status=409,
            )
            self.journal.update(
                req.sale_ref,
                J.FAILED,
                refusal_code="device_unavailable",
                evidence=self._evidence(req),
                result=self._error_result(req, busy),
            )
            raise busy
        cancel = self._cancels.setdefault(req.sale_ref, threading.Event())
        try:
            with self._card_session(req.sale_ref, answer_first=answer_first):
                result = self._sell(req, cancel)
            log.info("sale %s: %s, msgid %s", req.sale_ref, result.status, result.msgid)
            return 200, result
        except SaleError as e:
            log.info("sale %s: %s (%s)", req.sale_ref, e.code, e.message)
            row = self.journal.get(req.sale_ref)
            if row is not None and row.state not in (J.SETTLED, J.UNKNOWN, J.SETTLING):
                # The attempt as an audit needs it (issue 15): the documents shown and the
                # credential's holder, masked and keyed-hashed, the card masked, the
                # operator; the refusal code; the time is the event's. In the hash chain.
                state = J.REFUSED if e.http_status == 422 else J.FAILED
                holder = self._seen.get(req.sale_ref, {}).get("holder")
                audit: dict[str, Any] = {"evidence": self._evidence(req)}
                if holder is not None and row.patient_id_hmac is None:
                    audit["patient_id_masked"] = holder["number_masked"]
                    audit["patient_id_hmac"] = holder["number_hmac"]
                self.journal.update(
                    req.sale_ref,
                    state,
                    via=self._passed.get(req.sale_ref, ()),
                    refusal_code=e.code,
                    result=self._error_result(req, e),
                    **audit,
                )
            elif row is not None and row.state == J.SETTLING:
                # The ledger answered "no" (a refusal, or a msgid voided by recovery):
                # nothing was charged under this msgid, and it can no longer commit.
                self.journal.update(
                    req.sale_ref, J.FAILED, refusal_code=e.code, result=self._error_result(req, e)
                )
            raise
        finally:
            self._passed.pop(req.sale_ref, None)
            self._seen.pop(req.sale_ref, None)
            self._cancels.pop(req.sale_ref, None)
            self._stage.pop(req.sale_ref, None)
            self._busy.release()
            self._notify()

    def _set_stage(self, sale_ref: str, stage: str) -> None:
        self._stage[sale_ref] = stage
        self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for_change(self, timeout: float) -> None:
        """Block until some sale moved on (a stage, an outcome) or ``timeout`` passed;
        the long-poll re-reads its sale after each wake-up."""
        with self._changed:
            self._changed.wait(timeout)

    def _check_trace_codes(self, req: SaleRequest) -> list[NoticeLine]:
        """The packs' 追溯码, before the card is asked: the format, one per pack (a split
        pack: its one opened pack), none twice in the basket, none sold before in this
        store (the journal's ``trace_codes``: every till on a shared journal). A refusal
        names the line; where reuse is only logged (``trace_reuse = "notice"``) it is a
        notice on the sale."""
        pattern = re.compile(self.settings.trace_code_pattern)
        seen: dict[str, int] = {}
        for n, i in enumerate(req.items, 1):
            where_zh, where_en = f"第{n}行 {i.name}（{i.sku}）", f"line {n} {i.name} ({i.sku})"
            expected = 1 if i.split_pack else i.quantity
            if i.trace_codes and len(i.trace_codes) != expected:
                raise SaleError(
                    "trace_code_count",
                    f"{where_zh}：应扫描 {expected} 个追溯码（每盒一个），收到 {len(i.trace_codes)} 个",
                    f"{where_en}: {expected} traceability code(s) expected (one per pack), "
                    f"{len(i.trace_codes)} given",
                    http_status=422,
                )
            for code in i.trace_codes:
                if not pattern.match(code):
                    raise SaleError(
                        "trace_code_invalid",
                        f"{where_zh}：追溯码 {code} 格式不对（应为8开头的20位数字），请重新扫描",
                        f"{where_en}: traceability code {code} is not valid (20 digits "
                        "starting with 8): scan it again",
                        http_status=422,
                    )
                if code in seen:
                    raise SaleError(
                        "trace_code_repeated",
                        f"{where_zh}：追溯码 {code} 在本单中已扫描过（第{seen[code]}行），"
                        "一盒只能扫一次",
                        f"{where_en}: traceability code {code} was already scanned in this "
                        f"basket (line {seen[code]}): one pack, one scan",
                        http_status=422,
                    )
                seen[code] = n
        if not seen:
            return []
        sold = self.journal.trace_codes_sold(list(seen))
        if not sold:
            return []
        shown = "; ".join(f"{c} (第{seen[c]}行 line {seen[c]})" for c in sorted(sold))
        zh = f"这些追溯码本店已售出过：{shown}。可能是回流药，请核实药品来源"
        en = (f"these traceability codes were sold by this store before: {shown}. The "
              "medicine may have been resold (回流): check where it came from")
        if self.settings.trace_reuse == "notice":
            return [NoticeLine(code="trace_code_sold_before", message=f"{zh} / {en}")]
        raise SaleError("trace_code_sold_before", zh, en, http_status=422)

    def _scan_trace_codes(self, req: SaleRequest, cancel: threading.Event) -> SaleRequest:
        """The codes of the ``scan_trace`` lines, scanned on the counter device (trace_scan)."""
        self._stop_removal_watch()  # the reader is this sale's now
        if self._session is not None:  # a refusal from here on puts the packs back
            self._session.scanned = True
        self._set_stage(req.sale_ref, "scanning_trace_codes")
        return trace_scan.scan_trace_codes(
            req, self.devices, pattern=self.settings.trace_code_pattern,
            timeout=self.settings.card_timeout, cancel=cancel, check=self._check_trace_codes,
        )  # fmt: skip

    def _check_catalogue(self, req: SaleRequest) -> None:
        """Every line's catalogue code known to the platform, or the sale is refused now,
        naming the lines (the customer has not been asked for anything yet)."""
        if self.catalogue is None:
            return
        codes = [i.catalogue_code for i in req.items if i.catalogue_code]
        unknown = set(self.catalogue.unknown(codes)) if codes else set()
        if not unknown:
            return
        named = "; ".join(
            f"{n}: {i.name} ({i.sku}, {i.catalogue_code})"
            for n, i in enumerate(req.items, 1)
            if i.catalogue_code in unknown
        )
        raise SaleError(
            "catalogue_code_unknown",
            f"医保目录中没有这些商品的医保编码，不能医保结算：{named}。请核对商品的医保编码，"
            "或把这些商品改为自费后重新结算",
            f"the national catalogue does not know these lines' codes: {named}. Check the "
            "items' catalogue codes, or sell these lines as self-paid, then start again",
            http_status=422,
        )

    def cancel(self, sale_ref: str) -> bool:
        """Stop a sale still waiting for the customer; False if none is waiting."""
        event = self._cancels.get(sale_ref)
        if event is None:
            return False
        event.set()
        self.devices.cancel()
        return True

    def _sell(self, req: SaleRequest, cancel: threading.Event) -> SaleResult:
        s = self.settings
        today = s.today()
        buyer_doc = req.buyer.id_document if req.buyer.role == "proxy" else req.patient
        basket = check_basket(req.items, buyer_id_registered=buyer_doc is not None)
        if basket.refusal is not None:
            raise SaleError.refused(basket.refusal)
        self._check_catalogue(req)
        trace_notices = self._check_trace_codes(req)
        for doc, whose in ((req.patient, "用药人证件："), (req.buyer.id_document, "代购人证件：")):
            if doc is not None and not check_document(doc, today).valid:
                en = "patient's document: " if whose.startswith("用药人") else "buyer's document: "
                raise SaleError.refused(check_document(doc, today).refusal(whose, en))
        if trace_scan.needs_scan(req):  # the packs scanned now, once nothing else refuses
            req = self._scan_trace_codes(req, cancel)
            trace_notices = self._check_trace_codes(req)

        credential, holder_id, holder_name, card_expiry = self._present(req, basket.total, cancel)
        self._set_stage(req.sale_ref, "checking")
        # Card read and validated need no fsync of their own: they are journaled in
        # the same transaction as the intent (settling), or with the refusal.
        passed: list[tuple[str, dict[str, Any]]] = [(J.CARD_READ, {})]
        self._passed[req.sale_ref] = passed
        lookup = self._lookup(credential)
        refusal = check_card_status(lookup.card_status, card_expiry or lookup.card_expiry, today)
        if refusal is not None:
            raise SaleError.refused(refusal)
        if holder_id is None:  # electronic voucher: the ledger names the holder
            holder_id, holder_name = lookup.person.id_number, lookup.person.name
        self._saw_holder(req.sale_ref, holder_id, holder_name)
        evidence = check_whose_card(
            holder_id_number=holder_id,
            holder_name=holder_name,
            patient=req.patient,
            buyer=req.buyer,
            today=today,
        )
        if evidence.refusal is not None:
            raise SaleError.refused(evidence.refusal)
        passed.append(
            (
                J.VALIDATED,
                dict(
                    patient_psn_no=lookup.person.psn_no,
                    patient_id_masked=mask_id_number(holder_id),
                    patient_id_hmac=self.journal.person_key(holder_id),
                    proxy=int(req.buyer.role == "proxy"),
                    # the insured region too: a 2601 the manager sends days later (a
                    # centre-only settlement, reconcile.national) must name it
                    evidence=self._evidence(req)
                    | (
                        {"insured_region": lookup.person.insured_region}
                        if lookup.person.insured_region
                        else {}
                    ),
                    total=basket.total,
                    account_payable=basket.account_payable,
                ),
            )
        )
        notices = [
            NoticeLine(code=n.code, message=f"{n.message_zh} / {n.message_en}")
            for n in evidence.notices
        ] + trace_notices
        receipt_facts = self._receipt_facts(req, credential, holder_id, holder_name, lookup)

        msgid: str | None = None
        for _attempt in range(MAX_REPLANS + 1):
            family = eligible_payers(lookup.person, lookup.bindings, s.opened_pairs)
            plan = allocate(
                account_payable=basket.account_payable,
                cash_only=basket.cash_only,
                patient_psn_no=lookup.person.psn_no,
                personal_account=lookup.personal_account,
                family_payers=family.eligible,
            )
            payers = {b.payer_psn_no: b for b in family.eligible}
            self._set_stage(req.sale_ref, "settling")
            plan_doc = self._plan_doc(plan, payers, family.skipped, notices)
            plan_doc["receipt"] = receipt_facts
            codes = [c for i in req.items for c in i.trace_codes]
            if codes:  # journaled with the intent: claimed once settled, released if reversed
                plan_doc["trace_codes"] = codes
            # the lines, for the sales upload (3505) that follows a national settlement:
            # journaled with the intent, so a restart still has what to upload
            plan_doc["lines"] = [
                {"sku": i.sku, "name": i.name, "catalogue_code": i.catalogue_code,
                 "quantity": i.quantity, "unit_price": i.unit_price,
                 "prescription": i.prescription, "trace_codes": list(i.trace_codes),
                 "split_pack": i.split_pack}
                for i in req.items
            ]  # fmt: skip
            # The intent, durable before the request leaves (the msgid is allocated
            # in the same transaction; a re-plan keeps it).
            row = self.journal.update(
                req.sale_ref, J.SETTLING, via=passed, new_msgid=msgid is None, plan=plan_doc
            )
            passed = []
            self._passed.pop(req.sale_ref, None)
            msgid = row.msgid
            assert msgid is not None
            request = SettlementRequest(
                msgid=msgid,
                pharmacy_code=s.pharmacy_code,
                terminal_id=s.terminal_id,
                operator=req.operator or s.operator,
                patient_psn_no=lookup.person.psn_no,
                credential=credential,
                legs=plan.legs,
                cash=plan.cash,
                total=plan.total,
                lines=tuple(
                    LineSummary(
                        sku=i.sku,
                        name=i.name,
                        insurance_class=i.insurance_class,
                        quantity=i.quantity,
                        amount=i.amount,
                        catalogue_code=i.catalogue_code,
                        trace_codes=i.trace_codes,
                        split_pack=i.split_pack,
                        unit_price=i.unit_price,
                        prescription_ref=i.prescription_ref,
                    )
                    for i in req.items
                ),
                proxy=req.buyer.role == "proxy",
            )
            try:
                self.ledger_round_trips += 1
                settlement = self.ledger.settle(request)
            except InsufficientFunds as e:
                log.info("sale %s: balances moved, re-planning", req.sale_ref)
                lookup = e.lookup if e.lookup is not None else self._lookup(credential)
                continue
            except OutcomeUnknown:
                return self._outcome_unknown(req.sale_ref, msgid)
            except LedgerUnavailable as e:
                raise SaleError(
                    "ledger_unavailable",
                    "医保中心暂时无法连接，本笔未扣款，请稍后重试或收取现金",
                    f"the insurance ledger cannot be reached ({e.message}); nothing was charged: "
                    "try again shortly or take the sale in cash",
                    http_status=503,
                ) from None
            except LedgerError as e:
                if e.code == "bad_response":  # it answered "committed" in words we cannot read
                    return self._outcome_unknown(req.sale_ref, msgid)
                raise SaleError(
                    e.code,
                    "医保中心拒绝了本笔结算，未扣款",
                    f"the ledger refused the settlement: {e.message}; nothing was charged",
                    http_status=409,
                ) from None
            result = self._record_settled(req.sale_ref, msgid, settlement, plan_doc)
            self._show_done(result)
            return result
        raise SaleError(
            "ledger_unavailable",
            "账户余额在结算时反复变动，本笔未扣款，请重试",
            "account balances kept changing during settlement; nothing was charged: try again",
            http_status=503,
        )

    def _present(
        self, req: SaleRequest, total: int, cancel: threading.Event
    ) -> tuple[Credential, str | None, str, dt.date | None]:
        """Show the amount, wait for the card or voucher, verify the PIN on the chip.

        Only a card inserted / a code scanned from now on counts (the Terminal
        compares the reader's ages against ``asked_at``), and only the credential
        the POS asked for: a voucher cannot pay a card sale, nor a card a voucher
        sale, since the POS chose the credential with the customer.
        """
        from drivers import CardPresented, DeviceError, PinOutcome

        s = self.settings
        asked_at = time.monotonic()
        session = self._session or _CardSession()
        self._stop_removal_watch()  # the reader is this sale's now
        try:
            self._set_stage(req.sale_ref, "waiting_for_card")
            self.devices.show_amount(total, "应付 Total")
            presented = self.devices.wait_for_credential(
                s.card_timeout, cancel, presented_after=asked_at
            )
            if isinstance(presented, CardPresented):
                session.card_in = True
                self.card_left_in_reader = False  # a card inserted now: the old one is out
                self._seen.setdefault(req.sale_ref, {}).update(
                    credential="card", card_no_masked=mask_card_no(presented.card.card_no)
                )
                self._saw_holder(
                    req.sale_ref, presented.card.id_number, presented.card.holder_name
                )
                if req.credential != "card":
                    raise SaleError(
                        "credential_mismatch",
                        "本笔交易要求出示医保电子凭证，不能插社保卡：请取卡后出示电子凭证，"
                        "或改为插卡方式重新发起",
                        "this sale asks for the e-voucher, but a card was inserted: take the card "
                        'back and show the voucher QR code, or start the sale again with credential "card"',
                        http_status=422,
                    )
                card = presented.card
                self._set_stage(req.sale_ref, "waiting_for_pin")
                for attempt in range(PIN_ATTEMPTS_PER_SALE):
                    pin = self.devices.verify_pin(s.pin_timeout, cancel)  # the pad prompts
                    if pin.outcome is PinOutcome.VERIFIED:
                        break
                    if (
                        pin.outcome is PinOutcome.WRONG
                        and attempt + 1 < PIN_ATTEMPTS_PER_SALE
                        and (pin.tries_left or 0) > 0
                    ):
                        self.devices.show("密码错误，请重输", f"Wrong PIN, {pin.tries_left} left")
                        continue
                    raise self._pin_error(pin.outcome, pin.tries_left)
                return (
                    Credential.card(card.card_no, card.card_sn),
                    card.id_number,
                    card.holder_name,
                    card.expiry_date,
                )
            if not hasattr(presented, "token"):
                raise SaleError(
                    "protocol_error",
                    "读卡异常",
                    "unexpected answer from the reader",
                    http_status=502,
                )
            self._seen.setdefault(req.sale_ref, {})["credential"] = "evoucher"
            if req.credential != "evoucher":
                raise SaleError(
                    "credential_mismatch",
                    "本笔交易要求插社保卡，不能使用医保电子凭证：请插卡，或改为电子凭证方式重新发起",
                    "this sale asks for the social-security card, but a voucher code was "
                    'scanned: insert the card, or start the sale again with credential "evoucher"',
                    http_status=422,
                )
            return Credential.evoucher(presented.token), None, "", None
        except DeviceError as e:
            if e.code in ("card_not_presented", "card_unreadable", "not_social_security_card"):
                session.card_in = True  # a card is (or was) in the slot: ask for it back
            if e.code == "card_not_presented":
                session.pad_says_take = True  # the pad already says "remove the card"
            code = (
                e.code
                if e.code in ("device_timeout", "cancelled", "card_not_presented")
                else "device_unavailable"
            )
            if cancel.is_set():
                code = "cancelled"
            raise SaleError(
                code,
                e.message_zh,
                e.message_en,
                http_status={"cancelled": 409, "card_not_presented": 409, "device_timeout": 504}.get(
                    code, 503
                ),
            ) from None

    @staticmethod
    def _pin_error(outcome: Any, tries_left: int | None) -> SaleError:
        name = getattr(outcome, "value", str(outcome))
        if name == "wrong":
            return SaleError(
                "pin_wrong",
                f"密码错误，还可尝试{tries_left}次",
                f"wrong PIN; {tries_left} tries left on the card",
                http_status=422,
            )
        if name == "blocked":
            return SaleError(
                "pin_blocked",
                "密码已锁定，请持卡人到医保经办机构解锁",
                "the card's PIN is blocked; the holder must have it unblocked at the insurance office",
                http_status=422,
            )
        if name == "cancelled":
            return SaleError(
                "cancelled",
                "顾客取消了输入",
                "the customer cancelled on the PIN pad",
                http_status=409,
            )
        return SaleError(
            "device_timeout",
            "等待输入密码超时",
            "the customer did not enter the PIN in time",
            http_status=504,
        )

    def _lookup(self, credential: Credential) -> PersonLookup:
        try:
            self.ledger_round_trips += 1
            return self.ledger.lookup(credential)
        except CardRefused as e:
            # A backend that refuses a lost or expired card at the lookup (the national
            # platform's 1101) is refused with the same codes as the rule's own check.
            status = {"card_lost": CardStatus.LOST, "card_expired": CardStatus.EXPIRED}.get(e.code)
            refusal = check_card_status(status, None, self.settings.today()) if status else None
            if refusal is not None:
                raise SaleError.refused(refusal) from None
            raise SaleError(
                e.code, "医保中心拒绝了此卡", f"the ledger refused this card: {e.message}",
                http_status=422,
            ) from None
        except NotFound:
            raise SaleError(
                "card_not_found",
                "医保中心查无此卡，请确认为社保卡或医保电子凭证",
                "the ledger does not know this card or voucher: check it is a social-security card",
                http_status=422,
            ) from None
        except LedgerError as e:
            raise SaleError(
                "ledger_unavailable",
                "医保中心暂时无法连接，本笔未扣款，请稍后重试或收取现金",
                f"the insurance ledger cannot be reached ({e.message}); nothing was charged",
                http_status=503,
            ) from None

    def _outcome_unknown(self, sale_ref: str, msgid: str) -> SaleResult:
        """The customer cannot wait: they pay cash, and we owe a reversal for this msgid."""
        answer = SaleResult(
            sale_ref=sale_ref,
            status="unknown",
            code="ledger_unavailable",
            msgid=msgid,
            message=OUTCOME_UNKNOWN_MESSAGE,
        )
        self.journal.owe_reversal(sale_ref, msgid, result=stored(answer, 503))
        zh, en = OUTCOME_UNKNOWN_MESSAGE.split(" / ", 1)
        raise SaleError("ledger_unavailable", zh, en, http_status=503)

    # ------------------------------------------------------------------ results

    def _plan_doc(
        self,
        plan: Allocation,
        payers: dict[str, FamilyBinding],
        skipped: tuple[Any, ...],
        notices: list[NoticeLine],
    ) -> dict[str, Any]:
        return {
            "total": plan.total,
            "account_payable": plan.account_payable,
            "cash": plan.cash,
            "cash_only": plan.cash_only,
            "legs": [
                leg.model_dump(mode="json")
                | (
                    {
                        "name": mask_name(payers[leg.payer_psn_no].payer_name),
                        "relation": payers[leg.payer_psn_no].relation.value,
                    }
                    if leg.kind is LegKind.MUTUAL_AID
                    else {}
                )
                for leg in plan.legs
            ],
            "skipped": [
                {
                    "name": mask_name(sp.payer_name),
                    "relation": sp.relation.value,
                    "reason_code": sp.reason_code,
                    "message": f"{sp.message_zh} / {sp.message_en}",
                }
                for sp in skipped
            ],
            "notices": [n.model_dump() for n in notices],
        }

    def _settled_result(
        self, sale_ref: str, msgid: str, settlement: Settlement, plan: dict[str, Any]
    ) -> SaleResult:
        return settled_result(self.settings, sale_ref, msgid, settlement, plan)

    def _receipt_facts(
        self,
        req: SaleRequest,
        credential: Credential,
        holder_id: str,
        holder_name: str,
        lookup: PersonLookup,
    ) -> dict[str, Any]:
        """What the receipt needs of the sale beyond the ledger's split, masked, kept in
        the journaled plan so a sale concluded later (recovery) prints the same receipt."""
        buyer = req.buyer.id_document if req.buyer.role == "proxy" else None
        return {
            "operator": req.operator or self.settings.operator,
            "credential": credential.kind,
            "card_no_masked": mask_card_no(credential.card_no) if credential.card_no else None,
            "patient_name": mask_name(holder_name) if holder_name else None,
            "patient_id_masked": mask_id_number(holder_id),
            "proxy": None
            if buyer is None
            else {
                "doc_type": buyer.doc_type.value,
                "number_masked": mask_id_number(buyer.number),
                "name": mask_name(buyer.name) if buyer.name else None,
            },
            "items": [
                {
                    "name": i.name,
                    "quantity": i.quantity,
                    "amount": i.amount,
                    "insurance_class": i.insurance_class.value,
                }
                for i in req.items
            ],
            "patient_account_id": (
                lookup.personal_account.account_id if lookup.personal_account else None
            ),
        }

    def _receipt(
        self, result: SaleResult, facts: dict[str, Any], balance_after: int | None
    ) -> Receipt:
        return receipt_of(self.settings, result, facts, balance_after)

    def _record_settled(
        self, sale_ref: str, msgid: str, settlement: Settlement, plan: dict[str, Any]
    ) -> SaleResult:
        """Journal a committed settlement; the ledger's split is the truth that is kept
        (and a backend's own record of it, ``Settlement.detail``, beside the answer)."""
        result = self._settled_result(sale_ref, msgid, settlement, plan)
        doc = stored(result, 200)
        if settlement.detail is not None:
            doc["ledger_detail"] = settlement.detail
        self.journal.update(
            sale_ref,
            J.SETTLED,
            settlement_id=settlement.settlement_id,
            personal_account=settlement.personal_account,
            mutual_aid=settlement.mutual_aid,
            cash=settlement.cash,
            result=doc,
        )
        codes = _plan_trace_codes(plan)
        if codes:  # sold: no till of the store may sell these packs again
            self.journal.claim_trace_codes(sale_ref, msgid, codes)
        return result

    def _error_result(self, req: SaleRequest, e: SaleError) -> dict[str, Any]:
        status = "refused" if e.http_status == 422 else "failed"
        row = self.journal.get(req.sale_ref)
        result = SaleResult(
            sale_ref=req.sale_ref,
            status=status,
            code=e.code,
            message=e.message,
            msgid=row.msgid if row is not None else None,
        )
        return stored(result, e.http_status)

    def _replay(self, row: SaleRow) -> SaleResult:
        return self.answer(row)[1]

    def answer(self, row: SaleRow) -> tuple[int, SaleResult]:
        """The one true answer for a sale in any state: (HTTP status, body).

        A replayed POST and GET give the same body, and the POST the same status as
        the first answer, for as long as the sale stays in that state. A row that
        moved on (an owed reversal concluded, an open outcome resolved) answers what
        is true now.
        """
        running = row.sale_ref in self._cancels
        if row.result is not None:
            status, result = loaded(row.result)
            if row.state == J.REVERSED and result.status != "reversed":
                result.status = "reversed"
            return status, result
        if row.state == J.UNKNOWN:
            return 503, SaleResult(
                sale_ref=row.sale_ref,
                status="unknown",
                code="ledger_unavailable",
                msgid=row.msgid,
                message=OUTCOME_UNKNOWN_MESSAGE,
            )
        if row.state == J.REVERSED:  # an older journal's cash fallback: no result kept
            return 409, SaleResult(
                sale_ref=row.sale_ref,
                status="reversed",
                code=row.refusal_code or "reversed",
                msgid=row.msgid,
                message=CASH_FALLBACK_REVERSED,
            )
        if row.state in (J.FAILED, J.REFUSED):  # an older journal's recovery: no result kept
            code = row.refusal_code or "not_charged"
            return (422 if row.state == J.REFUSED else 409), SaleResult(
                sale_ref=row.sale_ref,
                status="refused" if row.state == J.REFUSED else "failed",
                code=code,
                msgid=row.msgid,
                message=NOT_CHARGED.get(code, NOT_CHARGED["not_charged"]),
            )
        if row.state == J.SETTLING and not running:
            return 202, SaleResult(
                sale_ref=row.sale_ref,
                status="in_progress",
                stage="settling",
                code="outcome_pending",
                msgid=row.msgid,
                message=OUTCOME_PENDING_MESSAGE,
            )
        stage = self._stage.get(row.sale_ref) or ("settling" if row.state == J.SETTLING else None)
        return 202, SaleResult(
            sale_ref=row.sale_ref,
            status="in_progress",
            stage=stage,
            msgid=row.msgid,
        )

    def status_of(self, sale_ref: str) -> SaleResult | None:
        row = self.journal.get(sale_ref)
        return None if row is None else self._replay(row)

    def _saw_holder(self, sale_ref: str, id_number: str, name: str) -> None:
        """Note whose credential this sale was shown (masked, keyed hash) for its audit."""
        self._seen.setdefault(sale_ref, {})["holder"] = self.journal.evidence_of(
            "resident_id", id_number, name
        )

    def _evidence(self, req: SaleRequest) -> dict[str, Any]:
        """What an audit keeps of an attempt: who stood at the counter for whom, with
        which credential, and who rang it up. Documents masked plus a keyed hash (so
        ``journal search --person`` finds every part a person played), never in clear."""
        ev: dict[str, Any] = {
            "buyer_role": req.buyer.role,
            "operator": req.operator or self.settings.operator,
            "credential_asked": req.credential,
        }
        if req.patient is not None:
            p = req.patient
            ev["patient"] = self.journal.evidence_of(p.doc_type.value, p.number, p.name)
        if req.buyer.id_document is not None:
            d = req.buyer.id_document
            ev["buyer"] = self.journal.evidence_of(d.doc_type.value, d.number, d.name)
        ev.update(self._seen.get(req.sale_ref, {}))
        return ev

    def _show_done(self, result: SaleResult) -> None:
        """The outcome for the pad, sent after the POS has its answer (``_card_session``);
        after a card sale the same frame asks for the card back."""
        session = self._session
        assert session is not None, "a sale runs in a card session"
        cash = yuan(result.cash or 0)
        if session.card_in:
            session.done_lines = ("交易成功 请取卡", f"Paid, take your card. Cash {cash}")
            session.pad_says_take = True
        else:
            session.done_lines = ("交易成功", f"Paid. Cash {cash}")

    @contextmanager
    def _card_session(self, what: str, *, answer_first: bool = False) -> Iterator[_CardSession]:
        """Around one sale or inquiry: afterwards, a card that went in must come out.

        Success or failure, once a card was in the slot the pad asks for it
        (unless its last display already does) and a background watch waits for
        the removal, bounded; the next sale or inquiry ends that watch first.
        A refusal once packs were scanned says they go back (``NOT_SOLD_AFTER_SCAN``).
        The outcome frame (or "take your card") is sent by that background step too,
        once the POS has its answer (``answer_first``: when ``answer_sent`` says so):
        the POS never waits for a cosmetic frame on the serial line.
        """
        session = _CardSession()
        if not answer_first:
            session.answered.set()
        self._session = session
        try:
            yield session
        except SaleError as e:  # a reader that cannot scan asked for no pack: none go back
            session.refused = e.code != "trace_scan_unsupported"
            raise
        finally:
            self._session = None
            show = session.done_lines
            put_back = session.scanned and session.refused
            if session.card_in and not session.pad_says_take:
                show = TAKE_CARD_NOT_SOLD if put_back else TAKE_CARD_AFTER_FAILURE
            elif put_back:
                show = NOT_SOLD_AFTER_SCAN
            if session.card_in or show:
                self._after_answer(what, show, watch=session.card_in, answered=session.answered)

    def answer_sent(self, sale_ref: str) -> None:
        """The POS has this sale's answer: the pad may show the outcome now (see ``sell``)."""
        tail = self._tail
        if tail is not None and tail.of == sale_ref:
            tail.answered.set()

    def _after_answer(
        self, what: str, show: tuple[str, str] | None, *, watch: bool, answered: threading.Event
    ) -> None:
        """In the background, once the POS has its answer: show the outcome, then wait,
        bounded, for the card to be taken."""
        from drivers import DeviceError

        stop = threading.Event()
        timeout = self.settings.card_removal_timeout

        def after() -> None:
            answered.wait(ANSWER_FIRST_WAIT)
            if stop.is_set():  # the next sale has the pad already
                return
            if show is not None:
                try:
                    self.devices.show(*show)
                except Exception:  # the outcome stands; a display hiccup must not change it
                    log.warning("could not update the PIN pad display after %s", what)
            if not watch:
                return
            try:
                self.devices.wait_card_removed(timeout, stop)
            except DeviceError as e:
                if e.code == "device_timeout":
                    self.card_left_in_reader = True
                    log.warning(
                        "card not taken from the reader within %g s after %s; the next sale "
                        "refuses it until it is removed and inserted again",
                        timeout,
                        what,
                    )
                elif e.code != "cancelled":
                    log.warning("could not watch the reader for the card after %s: %s", what, e)
                return
            self.card_left_in_reader = False

        done = threading.Event()

        def job() -> None:
            try:
                after()
            finally:
                done.set()

        self._tail = _Tail(what, done, stop, answered)
        if self._tail_worker is None:  # one worker for every tail, started once
            self._tail_worker = threading.Thread(
                target=self._run_tails, name="card-removal", daemon=True
            )
            self._tail_worker.start()
        self._tail_jobs.put(job)

    def _run_tails(self) -> None:
        """The tails, one after the other (a thread per sale cost each answer ~0.1 ms)."""
        while True:
            self._tail_jobs.get()()

    def _stop_removal_watch(self) -> None:
        """End the previous watch (within one device hold) so this sale can use the reader."""
        tail, self._tail = self._tail, None
        if tail is not None:
            tail.stop.set()
            tail.answered.set()  # it waits for nothing any more
            tail.done.wait(timeout=5)

    # ------------------------------------------------------------------ balance

    def balance(self, req: BalanceRequest) -> BalanceResult:
        """The holder's own personal-account balance (card + PIN, or voucher)."""
        if not self._busy.acquire(blocking=False):
            raise SaleError(
                "device_unavailable",
                "另一笔交易正在进行",
                "another sale is in progress",
                http_status=409,
            )
        cancel = threading.Event()
        try:
            self._cancels["__balance__"] = cancel
            fake = SaleRequest(
                sale_ref="balance",
                items=[BasketLine(sku="-", name="-", quantity=1, unit_price=0)],
                credential=req.credential,
            )
            with self._card_session("a balance inquiry") as session:
                credential, _, _, _ = self._present(fake, 0, cancel)
                lookup = self._lookup(credential)
                account = lookup.personal_account
                balance = account.balance if account else 0
                if session.card_in:  # one frame: the balance, and the card back
                    self.devices.show(
                        f"个人账户余额 {yuan(balance)} 请取卡",
                        f"Balance {yuan(balance)}, take your card",
                    )
                    session.pad_says_take = True
                else:
                    self.devices.show("个人账户余额", yuan(balance))
            return BalanceResult(
                holder=mask_name(lookup.person.name),
                has_personal_account=account is not None,
                balance=balance,
                balance_yuan=yuan(balance),
            )
        finally:
            self._cancels.pop("__balance__", None)
            self._seen.pop("balance", None)
            self._busy.release()

    # ------------------------------------------------------------------ reversal

    def reverse(self, sale_ref: str, reason: str = "") -> SaleResult:
        """A manager's full reversal of a settled sale; repeatable until it has landed."""
        row = self.journal.get(sale_ref)
        if row is None:
            raise SaleError("not_found", "没有这笔交易", f"no sale {sale_ref}", http_status=404)
        if row.state == J.REVERSED:
            return self._replay(row)
        if row.state != J.SETTLED or row.settlement_id is None:
            raise SaleError(
                "not_reversible",
                "只有已结算的交易可以冲正",
                f"only a settled sale can be reversed; this one is {row.state}",
                http_status=409,
            )
        reversal_msgid = row.reversal_msgid or self.journal.next_msgid()
        if row.reversal_msgid is None:  # intent first, so a retry reuses the same key
            row = self.journal.update(sale_ref, J.SETTLED, reversal_msgid=reversal_msgid)
        try:
            self.ledger_round_trips += 1
            rev = self.ledger.reverse(
                row.settlement_id or "",
                reversal_msgid,
                reason,
                psn_no=row.patient_psn_no,
                detail=(row.result or {}).get("ledger_detail"),
            )
        except (OutcomeUnknown, LedgerUnavailable) as e:
            raise SaleError(
                "ledger_unavailable",
                "医保中心暂时无法连接，冲正未完成，请稍后重试",
                f"the ledger cannot be reached ({e.message}); retry the reversal later",
                http_status=503,
            ) from None
        except LedgerError as e:
            if e.code != "already_reversed":
                raise SaleError(e.code, "冲正被拒绝", e.message, http_status=409) from None
            rev = None
        status, answer = loaded(row.result or {})
        reversal = ReceiptReversal(
            msgid=reversal_msgid,
            at=now_shanghai().strftime("%Y-%m-%d %H:%M:%S"),
            reason=reason,
        )
        answer = with_reversal_receipt(self.settings, answer, reversal)
        doc = stored(answer, status)
        # The backend's record of the sale stays with it: the national day end writes the
        # forward line of a reversed sale from it (3202), beside the reverse line.
        if (row.result or {}).get("ledger_detail") is not None:
            doc["ledger_detail"] = (row.result or {})["ledger_detail"]
        self.journal.update(
            sale_ref,
            J.REVERSED,
            reversal_id=getattr(rev, "reversal_id", None),
            result=doc,
        )
        self.journal.release_trace_codes(sale_ref)  # the packs came back: sellable again
        return answer

    # ------------------------------------------------------------------ recovery

    def _looked_up(self, msgid: str) -> Settlement | None:
        """The settlement under ``msgid``; None where the backend cannot look it up (the
        caller then voids, which answers the same question with a promise)."""
        try:
            return self.ledger.get_settlement(msgid)
        except LookupUnsupported:
            return None

    def recover_interrupted(self) -> int:
        """At start-up: a sale a crash left before ``settling`` sent nothing (the intent
        is journaled before any request leaves), so it is concluded "not charged" and
        answers so. Only at start-up: in a running agent such a row is a live sale."""
        done = 0
        for row in self.journal.in_state(J.RECEIVED, J.CARD_READ, J.VALIDATED):
            if row.sale_ref in self._cancels:
                continue
            result = SaleResult(
                sale_ref=row.sale_ref,
                status="failed",
                code="interrupted",
                message=NOT_CHARGED["interrupted"],
            )
            self.journal.update(
                row.sale_ref, J.FAILED, refusal_code="interrupted", result=stored(result, 409)
            )
            done += 1
        return done

    def resolve_unsettled(self, *, min_age: float = 0.0) -> int:
        """Conclude ``settling`` rows this process is not sending. Returns how many.

        A row is "settled" when the ledger holds its msgid, and "not charged" only once
        the ledger has *voided* the msgid, which it does atomically with any settlement
        of it: a request still in the network that arrives later is refused. A 404 alone
        proves nothing (the request may be in flight), so it is never taken as "not
        charged". While the ledger cannot say (unreachable, or an older ledger without
        voids), the row stays ``settling`` and answers ``outcome_pending``.

        ``min_age`` (seconds) leaves younger rows alone, by the time in the msgid (when
        the intent was journaled, just before the request left): another process
        (``reconcile`` on the manager's PC) must not void a sale a till may be sending.
        """
        resolved = 0
        horizon = now_shanghai() - dt.timedelta(seconds=min_age)
        for row in self.journal.in_state(J.SETTLING):
            if row.msgid is None or row.sale_ref in self._cancels:
                continue  # this process is still sending it: its own answer will come
            if min_age and msgid_time(row.msgid) > horizon:
                continue
            try:
                found = self._looked_up(row.msgid)
                if found is None:
                    found = self.ledger.void_settlement(row.msgid, psn_no=row.patient_psn_no)
            except LedgerError as e:
                log.info("sale %s: outcome of %s still open (%s)", row.sale_ref, row.msgid, e.code)
                continue  # still unreachable, or no void: try again on the next round
            if found is None:
                result = SaleResult(
                    sale_ref=row.sale_ref,
                    status="failed",
                    code="not_charged",
                    msgid=row.msgid,
                    message=NOT_CHARGED["not_charged"],
                )
                self.journal.update(
                    row.sale_ref, J.FAILED, refusal_code="not_charged", result=stored(result, 409)
                )
            else:
                self._record_settled(row.sale_ref, row.msgid, found, row.plan or {})
            resolved += 1
        return resolved

    def send_owed_reversals(self, now: dt.datetime | None = None) -> int:
        """Conclude sales whose outcome was unknown while the customer paid cash.

        The msgid is looked up, and voided if it is not there: if it had committed, the
        settlement is reversed (the customer paid cash, so the accounts are credited
        back); if the void wins, nothing was or ever will be charged. Either way the
        row is journaled first and the owed reversal marked done after, so a crash in
        between only repeats an idempotent step.
        """
        now = now or now_shanghai()
        done = 0
        for p in self.journal.pending_reversals(due_at=now):
            try:
                charged = send_owed_reversal(self.journal, self.ledger, p)
            except LedgerError as e:
                delay = min(3600.0, 5.0 * 2**p.attempts) * (0.5 + random.random())
                self.journal.reversal_attempt_failed(
                    p.msgid,
                    e.message,
                    now + dt.timedelta(seconds=delay),
                    escalate=p.attempts + 1 >= REVERSAL_ESCALATE_AFTER,
                )
                continue
            record_owed_reversal(self.journal, p, charged)
            done += 1
        return done

    # ------------------------------------------------------------------ 3505 / 3506

    def send_owed_uploads(self, now: dt.datetime | None = None) -> int:
        """The national sales upload (3505) of every settled sale not yet acknowledged,
        then the return upload (3506) of every reversed one whose 3505 was.

        Owed uploads are read from the journal's sales (nothing to lose between settling
        or reversing and enqueueing); each upload's msgid is journaled before it leaves
        and reused by a resend, and the receipt number names it at the platform (3505
        ``rtal_docno`` = sale_ref; 3506 the sale's setl_id + ``medins_prod_sel_no`` = the
        reversal's msgid), so a crash after sending never makes a second upload. A
        return waits for its sale's 3505: the platform cannot take back a sale it was
        never told of. Failures back off (5 s x 2^n, at most an hour, jittered). A
        backend without 3505 owes nothing; how many are owed:
        ``Journal.uploads_owed_count``."""
        sales = getattr(self.ledger, "sales_upload", None)
        returns = getattr(self.ledger, "sales_return_upload", None)
        now = now or now_shanghai()
        done = 0
        for kind, send in ((J.UPLOAD_SALE, sales), (J.UPLOAD_RETURN, returns)):
            if send is None:
                continue
            for row in self.journal.uploads_owed(kind, due_at=now.isoformat()):
                detail = (row.result or {}).get("ledger_detail") or {}
                lines = (row.plan or {}).get("lines") or []
                msgid, attempts = self.journal.upload_begin(
                    row.sale_ref, kind, self.journal.next_msgid(), now.isoformat()
                )
                try:
                    if kind == J.UPLOAD_SALE:
                        send(msgid, row.sale_ref, detail, lines)
                    else:
                        send(msgid, row.sale_ref, detail, lines,
                             reversal_msgid=row.reversal_msgid or "",
                             returned_at=msgid_time(row.reversal_msgid or msgid))  # fmt: skip
                except LedgerError as e:
                    delay = min(3600.0, 5.0 * 2**attempts) * (0.5 + random.random())
                    self.journal.upload_ended(
                        row.sale_ref, kind, error=e.message,
                        retry_at=(now + dt.timedelta(seconds=delay)).isoformat(),
                    )  # fmt: skip
                    continue
                self.journal.upload_ended(row.sale_ref, kind)
                done += 1
        return done


# --------------------------------------------------------------------------- answers

OUTCOME_UNKNOWN_MESSAGE = (
    "医保中心无应答，结果未知：请收取现金；如已扣款，系统将自动冲正退回 / "
    "the insurance ledger did not answer, so the outcome is unknown: take the sale "
    "in cash; if the accounts were charged, the agent reverses it automatically"
)
OUTCOME_PENDING_MESSAGE = (
    "正在向医保中心确认本笔结果，请勿重复收款，稍后再查 / "
    "the outcome is being confirmed with the insurance ledger: do not take payment "
    "again, ask again shortly"
)
CASH_FALLBACK_REVERSED = (
    "顾客已付现金，医保扣款已自动冲正退回 / "
    "the customer paid cash; the account charge was reversed automatically"
)
CASH_FALLBACK_NOT_CHARGED = (
    "顾客已付现金，医保账户未扣款 / the customer paid cash; the accounts were not charged"
)
NOT_CHARGED = {
    "not_charged": "本笔未扣款（已与医保中心确认），请重新发起交易 / "
    "nothing was charged (confirmed with the ledger): start the sale again",
    "interrupted": "交易中途终端重启，本笔未扣款，请重新发起交易 / "
    "the agent restarted during this sale before anything was sent; nothing was "
    "charged: start the sale again with a new receipt number",
}


OWED_REVERSAL_REASON = "outcome unknown, customer paid cash"


def send_owed_reversal(journal: Journal, ledger: LedgerClient, p: J.PendingReversal) -> bool:
    """One owed reversal's requests (the agent's retries, and the manager's "reverse by
    msgid" once it escalated): the msgid looked up, voided if it is not there, and a
    settlement that had committed reversed under the journaled reversal msgid. Returns
    whether it had been charged; raises ``LedgerError`` while the ledger cannot say."""
    row = journal.get(p.sale_ref)
    psn_no = row.patient_psn_no if row is not None else None
    try:
        found = ledger.get_settlement(p.msgid)
    except LookupUnsupported:  # the void below answers the same question with a promise
        found = None
    if found is None:
        found = ledger.void_settlement(p.msgid, psn_no=psn_no)
    if found is not None and found.status == "settled":
        try:
            ledger.reverse(found.settlement_id, p.reversal_msgid, OWED_REVERSAL_REASON,
                           psn_no=psn_no, detail=found.detail)  # fmt: skip
        except LedgerError as e:
            if e.code != "already_reversed":
                raise
    return found is not None


def record_owed_reversal(journal: Journal, p: J.PendingReversal, charged: bool) -> None:
    """Journal the owed reversal's end: the sale reversed (it had been charged) or failed
    (nothing was), the customer having paid cash; then the reversal is no longer owed."""
    result = SaleResult(
        sale_ref=p.sale_ref,
        status="reversed" if charged else "failed",
        code="cash_fallback",
        msgid=p.msgid,
        message=CASH_FALLBACK_REVERSED if charged else CASH_FALLBACK_NOT_CHARGED,
    )
    journal.update(
        p.sale_ref,
        J.REVERSED if charged else J.FAILED,
        refusal_code="cash_fallback",
        result=stored(result, 409),
    )
    journal.reversal_done(p.msgid)


def _plan_trace_codes(plan: dict[str, Any]) -> list[str]:
    return [str(c) for c in plan.get("trace_codes", ())]


def msgid_time(msgid: str) -> dt.datetime:
    """When a msgid was allocated: its yyyyMMddHHmmss (China time) after the pharmacy code."""
    return msgid_stamp(msgid[12:26]).replace(tzinfo=J.SHANGHAI)


def settled_result(
    settings: SaleSettings,
    sale_ref: str,
    msgid: str,
    settlement: Settlement,
    plan: dict[str, Any],
) -> SaleResult:
    """The POS answer from what the ledger committed (its split is the truth; the plan
    only names the family payers, where the ledger committed the planned legs)."""
    by_account = {leg["account_id"]: leg for leg in plan.get("legs", ())}
    family = [
        PayerLine(
            name=by_account[leg.account_id]["name"],
            relation=Relation(by_account[leg.account_id]["relation"]),
            relation_zh=RELATION_ZH[Relation(by_account[leg.account_id]["relation"])],
            amount=leg.amount,
        )
        for leg in settlement.legs
        if leg.kind is LegKind.MUTUAL_AID and "name" in by_account.get(leg.account_id, {})
    ]
    result = SaleResult(
        sale_ref=sale_ref,
        status="settled",
        msgid=msgid,
        settlement_id=settlement.settlement_id,
        total=plan.get("total", settlement.total),
        account_payable=plan.get("account_payable"),
        personal_account=settlement.personal_account,
        mutual_aid=settlement.mutual_aid,
        family=family,
        cash=settlement.cash,
        skipped=[SkippedLine(**sk) for sk in plan.get("skipped", ())],
        notices=[NoticeLine(**n) for n in plan.get("notices", ())],
    )
    facts = dict(plan.get("receipt") or {})
    # each line's 追溯码 as sent, and the national platform's class where it gave one
    facts["items"] = receipt_items(
        facts.get("items") or (),
        plan.get("lines") or (),
        (settlement.detail or {}).get("chrgitm_lv") or (),
    )
    account_id = facts.pop("patient_account_id", None)
    balance_after = settlement.balances_after.get(account_id) if account_id else None
    receipt = receipt_of(settings, result, facts, balance_after)
    result.receipt_detail = receipt
    result.receipt = render(receipt, settings.receipt_width)
    return result


def receipt_of(
    settings: SaleSettings, result: SaleResult, facts: dict[str, Any], balance_after: int | None
) -> Receipt:
    """A settled sale's receipt from its answer (the ledger's split) and the plan's facts.

    Skipped payers are printed only when one was needed (part of what the accounts
    may pay went to cash), each as a plain sentence naming the relation."""
    personal = result.personal_account or 0
    mutual = result.mutual_aid or 0
    needed = payer_was_needed(result.account_payable, personal, mutual)
    s = settings
    return Receipt(
        store_name=s.store_name or s.pharmacy_code,
        pharmacy_code=s.pharmacy_code,
        terminal_id=s.terminal_id,
        at=msgid_time(result.msgid).strftime("%Y-%m-%d %H:%M:%S") if result.msgid else "",
        sale_ref=result.sale_ref,
        msgid=result.msgid or "",
        settlement_id=result.settlement_id,
        total=result.total or 0,
        account_payable=result.account_payable,
        personal_account=personal,
        mutual_aid=mutual,
        family=[
            ReceiptPayer(relation_zh=p.relation_zh, name=p.name, amount=p.amount)
            for p in result.family
        ],
        cash=result.cash or 0,
        balance_after=balance_after,
        not_used=[
            not_used_sentence(RELATION_ZH[sk.relation], sk.name, sk.reason_code)
            for sk in result.skipped
        ]
        if needed
        else [],
        **{k: v for k, v in facts.items() if k != "items"},
        items=[ReceiptItem(**i) for i in facts.get("items", ())],
    )


def with_reversal_receipt(
    settings: SaleSettings, answer: SaleResult, reversal: ReceiptReversal
) -> SaleResult:
    """A settled sale's ``answer`` as reversed, with the reversal's own receipt (冲正/退款:
    the sale's receipt, every amount negated) for the till's paper. The till's reversal
    and the manager's by msgid (``reconcile.actions``) print the same receipt."""
    sale_receipt = answer.receipt_detail or receipt_of(settings, answer, {}, None)
    answer.status = "reversed"
    answer.reversal = reversal
    answer.receipt_detail = reversed_receipt(sale_receipt, reversal)
    answer.receipt = render(answer.receipt_detail, settings.receipt_width)
    return answer


def stored(result: SaleResult, http_status: int) -> dict[str, Any]:
    """A result as journaled: the body, and the HTTP status it was first answered with."""
    return {**result.model_dump(mode="json"), "http_status": http_status}


def _default_status(result: SaleResult) -> int:
    """The status of a result journaled before statuses were kept (older journals)."""
    if result.status in ("settled", "reversed") and result.code is None:
        return 200
    if result.status == "in_progress":
        return 202
    return 422 if result.status == "refused" else 503


def loaded(doc: dict[str, Any]) -> tuple[int, SaleResult]:
    """(HTTP status, body) of a journaled result."""
    body = dict(doc)
    status = body.pop("http_status", None)
    body.pop("ledger_detail", None)
    if body.get("code") is not None:  # an older journal's ledger code: as the API says it
        body["code"] = sale_code(str(body["code"]))
    result = SaleResult.model_validate(body)
    return (int(status) if status is not None else _default_status(result)), result
