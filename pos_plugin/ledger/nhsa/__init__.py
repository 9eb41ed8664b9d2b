"""The national healthcare-security platform's pharmacy interface (国家医保 定点医药机构接口规范).

The agent's side (envelope, amounts, transport and signers, session, the ledger client)
lives in this package's modules; ``sandbox/`` is the reference platform that speaks the
same wire (docs/nhsa.md). May import ``pos_plugin.ledger.errors``, ``ledger.backend``,
``ledger.own.schemas``, ``models``, ``money``, ``world`` and ``rules.identity``; never
the sale flow, the journal or drivers.
"""
