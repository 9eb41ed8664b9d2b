"""What the Windows service and the systemd unit share: names and the error type."""

from __future__ import annotations

SERVICE_NAME = "pos-plugin"
DISPLAY_NAME = "pos-plugin pharmacy till agent"
DESCRIPTION = (
    "Medical-insurance personal-account payments for the till: card reader, PIN pad, "
    "central ledger, journal."
)


class ServiceError(Exception):
    """A service action failed; the message says what to do."""
