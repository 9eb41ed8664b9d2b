"""Our own ledger API (docs/ledger-api.md): ``client`` (HTTP, the agent's side),
``schemas`` (the wire shapes both sides share) and ``sandbox/`` (the reference server
that tests and vendors without the national platform run against).
May import ``pos_plugin.ledger.errors``, ``models``, ``world``; never the sale flow.
"""
