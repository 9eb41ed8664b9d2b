"""A reference central ledger (sandbox) that behaves like the real one.

Pharmacies and our own tests talk to it before going live, the way payment
companies ship a sandbox: same contract, real HTTP, real database. ``server``
runs it (``pos-plugin sandbox-ledger``); ``app`` is the HTTP layer, ``service``
the ledger's rules of money, ``store`` its database. Imports only
``pos_plugin.ledger.own.schemas``, ``models`` and ``world`` of the agent.
"""
