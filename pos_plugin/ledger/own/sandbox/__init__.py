"""A reference central ledger (sandbox) that behaves like the real one.

Pharmacies and our own tests talk to it before going live, the way payment
companies ship a sandbox: same contract, real HTTP, real database.
"""

from pos_plugin.ledger.sandbox.server import SandboxServer, main

__all__ = ["SandboxServer", "main"]
