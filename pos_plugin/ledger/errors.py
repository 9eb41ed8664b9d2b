"""Typed ledger errors: one class per thing the caller must do differently.

Why typed: the sale service reacts to *kinds* of failure (re-plan on
insufficient funds, resolve later on an unknown outcome, tell the manager on a
bad token), so each kind is its own class with a stable ``code`` (the ledger's
error code) and a message a cashier or store manager can act on.
"""

from __future__ import annotations

from typing import Any

from pos_plugin.models import PersonLookup


class LedgerError(Exception):
    """Base class: every ledger error has a ``code`` and an actionable ``message``."""

    code: str = "ledger_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.body = body or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class LedgerUnavailable(LedgerError):
    """The ledger could not be reached and we KNOW nothing was committed (e.g. refused)."""

    code = "ledger_unavailable"


class OutcomeUnknown(LedgerError):
    """A request may have been committed but we could not find out; resolve it by msgid later."""

    code = "outcome_unknown"

    def __init__(self, message: str, *, msgid: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.msgid = msgid


class InsufficientFunds(LedgerError):
    """An account had less than its leg asked for; re-plan with ``fresh`` balances."""

    code = "insufficient_funds"

    def __init__(
        self,
        message: str,
        *,
        fresh: dict[str, int],
        lookup: PersonLookup | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.fresh = fresh  # account_id -> available fen, as the ledger sees them now
        self.lookup = lookup  # the patient's lookup with fresh balances, for re-planning


class IdempotencyConflict(LedgerError):
    """The msgid is already bound to a different request: a bug or a reused sequence number."""

    code = "idempotency_key_reused"


class Unauthorised(LedgerError):
    """The ledger refused our token (401) or this pharmacy may not do that (403)."""

    code = "unauthorised"


class BindingNotAllowed(LedgerError):
    """A leg draws on an account that may not pay for this patient."""

    code = "binding_not_allowed"


class CardRefused(LedgerError):
    """The credential may not pay: card reported lost, expired, or not the patient's own."""

    code = "card_refused"


class NotFound(LedgerError):
    """No such credential, settlement or reversal (for this pharmacy)."""

    code = "not_found"


class AlreadyReversed(LedgerError):
    """The settlement was already reversed under another msgid."""

    code = "already_reversed"


class InvalidRequest(LedgerError):
    """The ledger rejected the request's shape; ``field`` names the culprit."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field


class MsgidVoided(LedgerError):
    """The msgid was voided (``void_settlement``): it can never commit; nothing was charged."""

    code = "msgid_voided"


class VoidUnsupported(LedgerError):
    """The ledger cannot void a msgid (an older ledger): an unknown outcome stays unknown."""

    code = "void_unsupported"


class LookupUnsupported(LedgerError):
    """The backend has no lookup by msgid (the national platform): an open outcome is
    concluded by voiding (2601), never by asking."""

    code = "lookup_unsupported"
