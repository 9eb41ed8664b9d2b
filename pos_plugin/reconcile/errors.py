"""What reconciling or closing a day can refuse, in words the manager can act on."""

from __future__ import annotations


class ReconcileError(Exception):
    """A problem stated in words the manager (or installer) can act on."""


class DayNotBalanced(ReconcileError):
    """close-day refused: breaks remain and no reason was given."""


class DayAlreadyClosed(ReconcileError):
    """close-day refused: the day is closed already (a closed day is never changed)."""


class DayNotClosed(ReconcileError):
    """reopen refused: the day is not closed."""
