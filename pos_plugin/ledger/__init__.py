"""The central ledger, as the sale flow sees it, and its backends.

- ``errors``: the typed ledger errors every backend raises (the sale flow catches
  only these); ``backend``: the interface the sale flow calls (``LedgerClient``).
- ``own/``: our own ledger API (docs/ledger-api.md): its HTTP client, its schemas,
  and ``own/sandbox/``, its reference server. Room for ``nhsa/`` beside it.
May import ``pos_plugin.models`` and ``money``; never the sale flow, the journal or drivers.
"""
