"""A reference national platform (sandbox) speaking the 定点医药机构接口规范 over HTTP.

What tests, demos and vendors run the agent's national backend against before a
province's test environment: 9001/9002, 1101, 2101/2102, 2103 and 2601 on one envelope
endpoint, the family cascade done centrally, balances in SQLite, fault hooks.
``server`` runs it (``pos-plugin sandbox-nhsa``); ``app`` is the HTTP layer, ``platform``
the transactions, ``wire`` the envelope and field checks, ``store`` the database,
``faults`` the test hooks. Imports only ``world``, ``rules.identity`` and the own
sandbox's ledger-side ``rules`` (never the agent's ``pos_plugin.rules.family``, nor the
agent's ``ledger.nhsa`` client: a reference must not share the code it checks).
"""
