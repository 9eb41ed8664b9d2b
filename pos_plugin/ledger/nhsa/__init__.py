"""The national healthcare-security platform's pharmacy interface (国家医保 定点医药机构接口规范).

The agent's side: ``client`` (``NhsaLedgerClient``, a ``LedgerClient``), built on
``envelope`` (request envelope, tolerant answer parsing), ``amounts`` (yuan <-> fen
with ``Decimal``), ``transport`` + ``signers`` (one POST per call, signed per
province), ``session`` (9001/9002) and ``settings`` (``NhsaSettings``); ``sandbox/`` is
the reference platform that speaks the same wire (docs/nhsa.md); ``simulated`` the
client with the simulator's faults (``serve --simulate``). May import
``pos_plugin.ledger.errors``, ``ledger.backend``, ``ledger.own.schemas`` (and the fault
model of ``ledger.own.faults``), ``models``, ``money``, ``world`` and
``rules.identity``; never the sale flow, the journal or drivers.
"""
