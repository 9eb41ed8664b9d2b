"""The national healthcare-security platform's pharmacy interface (docs/nhsa.md).

The agent's side: ``client`` (``NhsaLedgerClient``, a ``LedgerClient``), built on
``envelope`` (request envelope, tolerant answer parsing), ``amounts`` (yuan <-> fen
with ``Decimal``), ``transport`` + ``signers`` (one POST per call, signed per
province), ``session`` (9001/9002) and ``settings`` (``NhsaSettings``).
``sandbox/`` is the reference platform that tests run against.
May import ``pos_plugin.ledger.errors``, ``ledger.own.schemas``, ``models``, ``rules.identity``
(masking); never the sale flow, the journal or drivers.
"""
