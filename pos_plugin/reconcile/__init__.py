"""The end of the day: the store manager's reconciliation against the ledger.

``matching`` is the pure core (entries in, matches and breaks out, no I/O);
``msgid_order`` puts one side in msgid order in bounded memory (temporary files past
a limit); ``day`` reads both sides and resolves what is still open; ``close`` records a
closed day; ``csv_report`` and ``manager_page`` show it; ``cli`` is ``pos-plugin
reconcile`` and ``close-day``. May import the journal, the ledger and the sale service
(to resolve an open sale as the agent does); nothing here imports the HTTP API or drivers.
"""
