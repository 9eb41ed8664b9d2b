"""The ledger interface the sale flow calls, whichever backend is behind it.

The sale service, recovery and reconciliation hold a ``LedgerClient`` and nothing
more specific, so a second backend (the national platform, ``ledger/nhsa/``) plugs
in without touching them. Today's shapes are our own API's (``ledger.own.schemas``);
every backend raises only the typed errors of ``pos_plugin.ledger.errors``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from pos_plugin.ledger.own.schemas import (
    CompactStatement,
    Credential,
    ReversalResult,
    Settlement,
    SettlementRequest,
    Statement,
)
from pos_plugin.models import PersonLookup


class LedgerClient(Protocol):
    """What the sale service needs from a central ledger (HTTP today, national platform later)."""

    def lookup(self, credential: Credential) -> PersonLookup: ...

    def settle(self, request: SettlementRequest) -> Settlement: ...

    def get_settlement(self, msgid: str) -> Settlement | None:
        """What committed under ``msgid`` (None: nothing yet). May raise
        ``LookupUnsupported`` (a backend without the lookup): never take that as None."""
        ...

    def void_settlement(self, msgid: str, *, psn_no: str | None = None) -> Settlement | None:
        """Final word on a msgid: None = nothing is (or, own API, ever will be) charged
        under it; else what committed. ``psn_no``: the patient, for a backend whose
        void names them (the national platform's 2601)."""
        ...

    def reverse(
        self,
        settlement_id: str,
        msgid: str,
        reason: str = "",
        *,
        psn_no: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> ReversalResult:
        """Reverse a settlement in full under a new ``msgid``. ``psn_no`` and ``detail``
        (the settlement's ``Settlement.detail`` as journaled) for a backend whose
        reversal names more than the settlement id (the national platform's 2103)."""
        ...

    def get_reversal(self, msgid: str) -> ReversalResult | None: ...

    def statement(
        self, pharmacy_code: str, date: dt.date, terminal_id: str | None = None
    ) -> Statement: ...

    def statement_compact(
        self, pharmacy_code: str, date: dt.date, terminal_id: str | None = None
    ) -> CompactStatement: ...
