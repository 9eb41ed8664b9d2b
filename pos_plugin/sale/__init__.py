"""One sale at the counter: ``service`` (sale, balance inquiry, reversal, recovery)
and ``models`` (the POS API's request and answer shapes).
May import rules, the journal, the ledger interface and (lazily) drivers' results;
never reconciliation or the HTTP layer.
"""
