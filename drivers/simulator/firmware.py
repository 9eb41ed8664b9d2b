"""What the reader + PIN pad + scanner do with each request (no I/O here).

The Simulator's serial loop decodes a request and calls :meth:`Firmware.handle`,
which may *hold* up to the request's ``hold_ms`` for a card, a scan or a PIN.
Control calls (present a card, scan a voucher...) come from other threads and
wake holds through one Condition.

The device keeps the instant each card was inserted and each code was scanned,
and reports their age in CARD_INSERTED / VOUCHER (protocol version 2): that is
how the host tells a card presented to its sale from one left in the reader.

The simulated customer: a card or code given with ``at_once=False`` is held in
the customer's hand and presented when the pad asks for one (at the next
WAIT_CREDENTIAL, or at once if one is being held now), as a customer does who
waits for "insert card". ``at_once=True`` puts it in the reader (or the
scanner) now: a card left by the previous customer, a code scanned while no
sale waits. A card cannot go into an occupied slot: it stays in the hand until
the reader is empty.

The simulated cashier scans 追溯码 (SCAN_TRACE): each pack asked is taken from the
shelf of the line's product (the world file's catalogue ``trace_codes``, in order,
each pack once per simulator run), unless ``trace_script`` says otherwise for the
next scans: "pack" (the next pack), "garbled" (a misread: the next pack's code with
its last digit lost; the pack stays on the shelf), "repeat" (the pack scanned last,
scanned again), "cancel" (Cancel on the pad), "none" (nothing is scanned: the host's
wait runs out; it stays at the head of the script). A product with no pack left is
"none". A code in the scanner's queue (``scan(..., at_once=True)``) is answered first.

A pack scanned off the shelf waits on the counter with its basket until the sale's fate
is on the pad, as a real cashier sees it (a simulator-only rule: a device keeps no shelf,
and the protocol needs nothing for it). The pad saying ``PUT_BACK`` (the agent's display
after a sale it refused or cancelled once packs were scanned for it) sends the basket's
packs back onto the shelf, in their order, before the next scan: the next sale scans them
again. Otherwise a basket left with the customer: once its amount was shown
(SHOW_AMOUNT), the next basket's first pack, or the next amount, closes it as sold.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from drivers import apdu
from drivers import packets as pk
from drivers.simulator.chip import ChipMute, SimChip

PinScript = str  # "correct" | "wrong" | "blocked" | "none" | "cancel"
PIN_SCRIPTS = ("correct", "wrong", "blocked", "none", "cancel")
TRACE_SCRIPTS = ("pack", "garbled", "repeat", "cancel", "none")
PUT_BACK = "放回药品"
"""What the pad shows when a sale whose packs were scanned did not go through
(``pos_plugin.sale.service.NOT_SOLD_AFTER_SCAN``): the cashier puts them back."""


def age_ms(since: float) -> int:
    """Whole milliseconds since ``since`` (monotonic), truncated, saturating at u32."""
    return min(pk.MAX_AGE_MS, max(0, int((time.monotonic() - since) * 1000)))


@dataclass
class Hand:
    """What the customer holds and will present when the pad asks."""

    card: tuple[SimChip, list[str]] | None = None
    vouchers: list[str] = field(default_factory=list)


@dataclass
class PinEntry:
    deadline: float
    result: pk.PinResultPacket | None = None


class Firmware:
    MODEL = "POS-SIM-1"
    VERSION = "1.0"

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.chip: SimChip | None = None
        self.inserted_at = 0.0  # monotonic instant the card in the reader went in
        self.pin_script: list[PinScript] = []
        self.vouchers: deque[tuple[str, float]] = deque()  # scanned codes, with scan instant
        self.hand = Hand()
        self.display: tuple[str, str] = ("", "")
        self.amount: tuple[int, str] | None = None
        self.pin_entry: PinEntry | None = None
        self.pin_delay = 0.0  # seconds the simulated customer takes to type
        self.events: dict[str, int] = {}
        self.online = True
        self.shelf: dict[str, deque[str]] = {}  # product -> its packs' 追溯码, next first
        self.trace_script: list[str] = []  # what the cashier does at the next scans
        self.last_trace: str | None = None  # the pack scanned last (for "repeat")
        # The packs of the basket being sold, (product, code) in scan order; ``paying``
        # once its amount was shown; the packs of a refused basket, back before the next scan.
        self.counter: list[tuple[str, str]] = []
        self.paying = False
        self.putting_back: list[tuple[str, str]] = []

    # ------------------------------------------------------------ control side

    def note(self, kind: str) -> None:
        with self.cond:
            self.events[kind] = self.events.get(kind, 0) + 1
            self.cond.notify_all()

    def wait_for(self, kind: str, timeout: float, after: int = 0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.events.get(kind, 0) > after, timeout)

    def insert(self, chip: SimChip, script: list[PinScript], *, at_once: bool = False) -> None:
        """Present a card: into the reader now, or when the pad next asks (see the module doc).

        The card already in the reader keeps its insertion: presenting it again
        only changes what the customer will type, it is not a re-insertion.
        """
        with self.cond:
            if chip is self.chip:
                self.pin_script = list(script)
            elif at_once:
                self.chip, self.pin_script, self.inserted_at = chip, list(script), time.monotonic()
                self.pin_entry = None
            else:
                self.hand.card = (chip, list(script))
            self.cond.notify_all()

    def remove(self) -> None:
        """The customer takes the card out and puts away what they had not shown yet."""
        with self.cond:
            self.chip = None
            self.pin_entry = None
            self.hand = Hand()
            self.cond.notify_all()

    def scan(self, token: str, *, at_once: bool = False) -> None:
        with self.cond:
            if at_once:
                self.vouchers.append((token, time.monotonic()))
            else:
                self.hand.vouchers.append(token)
            self.cond.notify_all()

    def script_scans(self, script: list[str]) -> None:
        """What the cashier does at the next SCAN_TRACE requests (see the module doc)."""
        with self.cond:
            self.trace_script = list(script)
            self.cond.notify_all()

    def _present_from_hand(self, sources: int) -> None:
        """The pad asks: the customer inserts the card (slot free) / shows the code."""
        now = time.monotonic()
        if sources & pk.Source.CARD and self.hand.card is not None and self.chip is None:
            (self.chip, self.pin_script), self.inserted_at = self.hand.card, now
            self.hand.card = None
        if sources & pk.Source.QR and self.hand.vouchers:
            self.vouchers.extend((t, now) for t in self.hand.vouchers)
            self.hand.vouchers = []

    def power(self, online: bool) -> None:
        """Unplugged: the pad forgets a running PIN entry; the card stays inserted."""
        with self.cond:
            self.online = online
            self.pin_entry = None
            self.cond.notify_all()

    # ------------------------------------------------------------ request side

    def handle(self, req: pk.Packet) -> pk.Packet:
        self.note(req.NAME.lower())
        match req:
            case pk.Hello():
                with self.cond:
                    self.pin_entry = None
                return pk.Info(model=self.MODEL, firmware=self.VERSION, max_payload=1024)
            case pk.Abort():
                with self.cond:
                    self.pin_entry = None
                return pk.Ok()
            case pk.Display(line1=l1, line2=l2):
                self.display = (l1, l2)
                if PUT_BACK in l1:
                    with self.cond:
                        self.putting_back += self.counter
                        self.counter, self.paying = [], False
                return pk.Ok()
            case pk.ShowAmount(amount_fen=amount, label=label):
                self.amount = (amount, label)
                with self.cond:
                    if self.paying:  # a second amount: the basket before it was sold
                        self.counter = []
                    self.paying = True
                return pk.Ok()
            case pk.WaitCredential():
                return self._wait_credential(req)
            case pk.ReadCard():
                return self._read_card()
            case pk.Apdu(apdu=command):
                return self._apdu(command)
            case pk.Eject():
                with self.cond:  # a motorised reader: the card comes out
                    self.chip, self.pin_entry = None, None
                    self.cond.notify_all()
                return pk.Ok()
            case pk.WaitRemoved(hold_ms=hold):
                with self.cond:
                    gone = self.cond.wait_for(
                        lambda: self.chip is None or not self.online, hold / 1000
                    )
                return pk.CardRemoved() if gone and self.chip is None else pk.Pending()
            case pk.VerifyPin():
                return self._verify_pin(req)
            case pk.Poll(hold_ms=hold):
                return self._poll(hold / 1000)
            case pk.ScanTrace():
                return self._scan_trace(req)
        return pk.Error(code=pk.DevError.UNKNOWN_COMMAND, detail=req.NAME)

    def _wait_credential(self, req: pk.WaitCredential) -> pk.Packet:
        def ready() -> bool:
            self._present_from_hand(req.sources)
            card = bool(req.sources & pk.Source.CARD) and self.chip is not None
            qr = bool(req.sources & pk.Source.QR) and bool(self.vouchers)
            return card or qr or not self.online

        with self.cond:
            self.cond.wait_for(ready, req.hold_ms / 1000)
            if req.sources & pk.Source.QR and self.vouchers:
                token, scanned_at = self.vouchers.popleft()
                return pk.Voucher(token=token, age_ms=age_ms(scanned_at))
            chip = self.chip if req.sources & pk.Source.CARD else None
            inserted_at = self.inserted_at
        if chip is None:
            return pk.Pending()
        try:
            return pk.CardInserted(atr=chip.power_on(), age_ms=age_ms(inserted_at))
        except ChipMute:
            return pk.Error(code=pk.DevError.CARD_MUTE, detail="no ATR")

    def _scan_trace(self, req: pk.ScanTrace) -> pk.Packet:
        """Show the line and the pack asked; answer the scanner's oldest code, or what
        the cashier does now (``_cashier_scans``), or PENDING after the hold."""
        note = req.note or "请扫追溯码"
        self.display = (req.name, f"{note} {req.pack}/{req.packs}")
        with self.cond:
            self._put_back()
            self.cond.wait_for(
                lambda: bool(self.vouchers) or self._cashier_acts(req.product) or not self.online,
                req.hold_ms / 1000,
            )
            if self.vouchers:
                code, scanned_at = self.vouchers.popleft()
                return pk.TraceCode(code=code.encode("utf-8"), age_ms=age_ms(scanned_at))
            if not self.online or not self._cashier_acts(req.product):
                return pk.Pending()
            return self._cashier_scans(req.product)

    def _cashier_acts(self, product: str) -> bool:
        """Whether the cashier's next step answers now ("none", or no pack left: no)."""
        step = self.trace_script[0] if self.trace_script else "pack"
        if step == "none":
            return False
        if step in ("pack", "garbled"):
            return bool(self.shelf.get(product))
        return step == "cancel" or self.last_trace is not None

    def _cashier_scans(self, product: str) -> pk.Packet:
        step = self.trace_script.pop(0) if self.trace_script else "pack"
        self.note(f"trace_{step}")
        if step == "cancel":
            return pk.Error(code=pk.DevError.CANCELLED, detail="cancel key")
        if step == "repeat":
            code = self.last_trace or ""
        elif step == "garbled":
            code = self.shelf[product][0][:-1]  # the pack stays: the cashier scans it again
        else:
            code = self.last_trace = self.shelf[product].popleft()
            if self.paying:  # the first pack of a new basket: the last one was sold
                self.counter, self.paying = [], False
            self.counter.append((product, code))
        return pk.TraceCode(code=code.encode("ascii"), age_ms=0)

    def _put_back(self) -> None:
        """The packs of a refused basket back on their shelves, each in its old place."""
        for product, code in reversed(self.putting_back):
            self.shelf.setdefault(product, deque()).appendleft(code)
        self.putting_back = []

    def _read_card(self) -> pk.Packet:
        """SELECT the SSC application, then SELECT + READ BINARY EF05 and EF06."""
        chip = self.chip
        if chip is None:
            return pk.Error(code=pk.DevError.NO_CARD)
        try:
            _, sw = apdu.split_response(chip.transmit(apdu.select_aid()))
            if sw != apdu.SW_OK:
                return pk.Error(code=pk.DevError.NOT_SSC, sw=sw)
            files = []
            for fid in (apdu.EF_CARD_INFO, apdu.EF_HOLDER):
                _, sw = apdu.split_response(chip.transmit(apdu.select_ef(fid)))
                if sw == apdu.SW_OK:
                    data, sw = apdu.split_response(chip.transmit(apdu.read_binary()))
                if sw != apdu.SW_OK:
                    return pk.Error(code=pk.DevError.FILE_ERROR, sw=sw, detail=f"{fid:04X}")
                files.append(data)
        except ChipMute:
            return pk.Error(code=pk.DevError.CARD_MUTE)
        return pk.CardFiles(card_info=files[0], holder=files[1])

    def _apdu(self, command: bytes) -> pk.Packet:
        chip = self.chip
        if chip is None:
            return pk.Error(code=pk.DevError.NO_CARD)
        if len(command) >= 2 and command[1] in apdu.PIN_INSTRUCTIONS:
            return pk.Error(code=pk.DevError.FORBIDDEN, detail="PIN commands stay in the reader")
        try:
            return pk.ApduResponse(rapdu=chip.transmit(command))
        except ChipMute:
            return pk.Error(code=pk.DevError.CARD_MUTE)

    def _verify_pin(self, req: pk.VerifyPin) -> pk.Packet:
        with self.cond:
            chip = self.chip
            if chip is None:
                return pk.Error(code=pk.DevError.NO_CARD)
            if self.pin_entry is not None:
                return pk.Error(code=pk.DevError.BUSY, detail="PIN entry running")
            script = (
                self.pin_script.pop(0)
                if len(self.pin_script) > 1
                else (self.pin_script[0] if self.pin_script else "correct")
            )
            entry = PinEntry(deadline=time.monotonic() + req.timeout_ms / 1000)
            self.pin_entry = entry
            self.display = ("请输入密码", "")
            self.events["pin_entry"] = self.events.get("pin_entry", 0) + 1
            self.cond.notify_all()
        if script in ("none", "cancel"):
            if script == "cancel":
                entry.result = pk.PinResultPacket(outcome=pk.PinCode.CANCELLED)
        else:
            if script == "blocked":
                chip.tries_left = 0
            if self.pin_delay:
                time.sleep(self.pin_delay)
            entry.result = self._chip_verify(chip, correct=script != "wrong")
        return self._poll(req.hold_ms / 1000)

    @staticmethod
    def _chip_verify(chip: SimChip, correct: bool) -> pk.PinResultPacket:
        """The keypad's digits go straight to the chip; only the status word comes back."""
        digits = chip.typed_pin(correct)
        chip.transmit(apdu.select_aid())
        rapdu = chip.transmit(bytes((0x00, apdu.INS_VERIFY, 0x00, 0x00, len(digits))) + digits)
        del digits
        sw = int.from_bytes(rapdu[-2:], "big")
        if sw == apdu.SW_OK:
            return pk.PinResultPacket(
                outcome=pk.PinCode.VERIFIED, tries_left=chip.tries_left, sw=sw
            )
        if sw & 0xFFF0 == apdu.SW_WRONG_PIN_MASK and sw & 0x0F:
            return pk.PinResultPacket(outcome=pk.PinCode.WRONG, tries_left=sw & 0x0F, sw=sw)
        if sw in (apdu.SW_PIN_BLOCKED, apdu.SW_WRONG_PIN_MASK):
            return pk.PinResultPacket(outcome=pk.PinCode.BLOCKED, tries_left=0, sw=sw)
        return pk.PinResultPacket(outcome=pk.PinCode.BLOCKED, tries_left=pk.NO_TRIES, sw=sw)

    def _poll(self, hold: float) -> pk.Packet:
        with self.cond:
            entry = self.pin_entry
            if entry is None:
                return pk.Error(code=pk.DevError.NO_PENDING)
            end = min(time.monotonic() + hold, entry.deadline)
            self.cond.wait_for(
                lambda: entry.result is not None or self.pin_entry is not entry,
                max(0.0, end - time.monotonic()),
            )
            if self.pin_entry is not entry:
                return pk.Error(code=pk.DevError.NO_PENDING, detail="aborted")
            if entry.result is None and time.monotonic() >= entry.deadline:
                entry.result = pk.PinResultPacket(outcome=pk.PinCode.TIMEOUT)
            if entry.result is None:
                return pk.Pending()
            self.pin_entry = None
            self.display = ("", "")
            return entry.result
