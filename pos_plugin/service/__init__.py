"""Running the agent as a service: a Windows service (pywin32) or a systemd unit (Linux).

``pos-plugin service unit`` prints the systemd unit (docs/operations.md installs it);
``pos-plugin service install|uninstall|start|stop`` drive the Windows service manager
through pywin32 (the ``windows`` extra). This module imports on every OS; the part
that needs pywin32 (``pos_plugin.service.windows``) is imported only on Windows.
``common``: the service's names and error, shared by both; ``run``: the one way a till
runs until stopped (``serve --config`` and the Windows service).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from pos_plugin.service.common import DISPLAY_NAME, ServiceError

__all__ = ["LINUX_CONFIG", "ServiceError", "systemd_unit", "windows_action"]

LINUX_CONFIG = Path("/etc/pos-plugin/config.toml")


def systemd_unit(
    config: Path = LINUX_CONFIG,
    executable: str | None = None,
    user: str = "pos-plugin",
    serial_group: str = "dialout",
) -> str:
    """The unit file for ``/etc/systemd/system/pos-plugin.service``.

    StateDirectory and LogsDirectory make systemd create ``/var/lib/pos-plugin`` and
    ``/var/log/pos-plugin`` owned by the service user and pass them to the agent
    (``STATE_DIRECTORY``, ``LOGS_DIRECTORY``: pos_plugin/paths.py), so the journal and
    the logs never depend on the working directory.
    """
    exe = executable or str(Path(sys.executable).with_name("pos-plugin"))
    cmd = " ".join(shlex.quote(a) for a in (exe, "serve", "--config", str(config)))
    return f"""\
# pos-plugin: the pharmacy till agent (docs/operations.md, "Linux").
# Install: pos-plugin service unit > /etc/systemd/system/pos-plugin.service
#          systemctl daemon-reload && systemctl enable --now pos-plugin
[Unit]
Description={DISPLAY_NAME}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
Group={user}
# The card reader's serial port (/dev/ttyUSB0, /dev/ttyS0) belongs to this group.
SupplementaryGroups={serial_group}
ExecStart={cmd}
# Journal: /var/lib/pos-plugin (STATE_DIRECTORY); logs: /var/log/pos-plugin (LOGS_DIRECTORY).
StateDirectory=pos-plugin
StateDirectoryMode=0700
LogsDirectory=pos-plugin
LogsDirectoryMode=0750
WorkingDirectory=/var/lib/pos-plugin
UMask=0077
# SIGTERM stops the agent cleanly (the API first, then the journal); a sale still
# settling is resolved by msgid at the next start.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
# Hardening: the agent needs its data folder, the serial port and the network.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def windows_action(action: str, config: Path | None) -> str:
    """install / uninstall / start / stop the Windows service; returns what was done."""
    if sys.platform != "win32":
        raise ServiceError(
            f"`service {action}` drives the Windows service manager; on Linux install the "
            "systemd unit: `pos-plugin service unit > /etc/systemd/system/pos-plugin.service` "
            "(docs/operations.md)"
        )
    try:
        from pos_plugin.service import windows
    except ImportError:
        raise ServiceError(
            'pywin32 is not installed: run `pip install "pos-plugin[windows]"` '
            "(as Administrator, in the same Python)"
        ) from None
    return windows.action(action, config)
