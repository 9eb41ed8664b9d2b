"""The national catalogue on a shared journal, built where both layers may be named.

Why its own module: the catalogue (``ledger.nhsa.catalogue``) may not import the
journal, and the journal may not import the ledger, yet a catalogue kept in a shared
PostgreSQL journal runs on that journal's connections and DDL lock. The agent (a sale's
counter check) and ``pos-plugin catalogue`` (update, show) both build it here, so the
command no longer starts the agent module to get it.
"""

from __future__ import annotations

from typing import Any


def shared_catalogue(source: Any, pharmacy_code: str, *, query: Any = None) -> Any:
    """The national catalogue of ``pharmacy_code`` in the shared journal ``source`` (a
    ``SharedJournal``): its connections and DDL lock are the journal's."""
    from pos_plugin.journal.postgres import PgDb, ensure_schema
    from pos_plugin.ledger.nhsa.catalogue import SharedCatalogue

    return SharedCatalogue(lambda: PgDb(source, dict_rows=False), pharmacy_code,
                           label=source.label, ensure_schema=ensure_schema, query=query)  # fmt: skip
