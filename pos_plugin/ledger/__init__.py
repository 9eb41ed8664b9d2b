"""Client for the central insurance ledger, and (in ``sandbox``) a reference ledger.

The sale service talks to the ledger only through ``LedgerClient`` so that an
adapter to the national platform's numbered transactions can replace the HTTP
client later without touching the rules or the journal.
"""

from pos_plugin.ledger.client import HttpLedgerClient, LedgerClient
from pos_plugin.ledger.schemas import (
    Credential,
    LineSummary,
    ReversalResult,
    Settlement,
    SettlementRequest,
    Statement,
    StatementRow,
    StatementTotals,
    Totals,
)

__all__ = [
    "Credential",
    "HttpLedgerClient",
    "LedgerClient",
    "LineSummary",
    "ReversalResult",
    "Settlement",
    "SettlementRequest",
    "Statement",
    "StatementRow",
    "StatementTotals",
    "Totals",
]
