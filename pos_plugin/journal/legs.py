"""The ``legs`` column of ``sales`` (schema version 9): each sale's legs, read narrow.

Why: reconciliation reads only ``(kind, account_id, amount)`` of each leg of every sale
of the day; cutting them out of each plan (a JSON document several times larger) was
half of the journal side's time. The column holds them as canonical compact JSON,
``[["mutual_aid","PA…",500],["personal_account","PA…",1200]]``, sorted, so a reader
decodes them and compares them as they are.

The column is **derived** from ``plan``, by :func:`legs_column` alone: written in the
same UPDATE as the plan (``Journal._apply``), backfilled by the migration (SQLite calls
this function; PostgreSQL's SQL in ``journal/schema.py`` builds the same text), and
written by the benches that write rows directly. It is not part of a row's digest
(the hash chain already covers the plan it follows from); ``journal verify`` derives it
again and reports a row whose column disagrees, since reconciliation trusts it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The column's value for a plan whose legs cannot be read (not JSON, edited by hand?):
# not JSON either, so reconciliation names the sale, as when it read the plan itself.
UNREADABLE = "unreadable"

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def legs_column(plan: Mapping[str, Any] | str | None) -> str | None:
    """The ``legs`` column of a row whose ``plan`` is this (decoded, or as the table keeps
    it): NULL without a plan, ``[]`` for a plan without legs, ``UNREADABLE`` for legs
    that are not objects with a text kind and account_id and an integer amount (fen)."""
    if plan is None:
        return None
    try:
        doc = json.loads(plan) if isinstance(plan, str) else plan
        raw = doc.get("legs")
        legs = [(g["kind"], g["account_id"], g["amount"]) for g in raw or ()]
    except (ValueError, TypeError, KeyError, AttributeError):
        return UNREADABLE
    # (a decoded plan is read as its JSON text would be: a tuple is an array, a str or
    # int subclass its value; a bool is not an amount)
    if not (raw is None or isinstance(raw, list | tuple)) or not all(
        isinstance(k, str) and isinstance(a, str) and isinstance(n, int)
        and not isinstance(n, bool) for k, a, n in legs
    ):  # fmt: skip
        return UNREADABLE
    return _COMPACT.encode(sorted(legs))
