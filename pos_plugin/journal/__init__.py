"""The durable, hash-chained record of every sale.

``journal`` is the one ``Journal`` facade the sale flow writes through (SQLite WAL
with ``synchronous=FULL`` by default); ``postgres`` is the shared PostgreSQL engine
behind the same facade; ``sources`` names where a journal is read from (a file or a
shared journal); ``closed_days`` is the closed-day table and the check a sale asks.
May import ``rules.identity`` (masking) and ``models``; never the sale flow,
reconciliation or the ledger.
"""
