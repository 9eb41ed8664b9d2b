"""Where a till keeps its files: one data folder, never the working directory.

A Windows service starts in ``C:\\Windows\\System32`` and a systemd service in ``/``, so
a relative journal path must not depend on the working directory. The rule:

1. ``[data] dir`` in config.toml, if given; a relative one is taken from the config
   file's folder.
2. Else ``POS_PLUGIN_DATA_DIR``, if set.
3. Else ``STATE_DIRECTORY`` (systemd sets it for ``StateDirectory=pos-plugin``:
   ``/var/lib/pos-plugin``).
4. Else per OS: ``%ProgramData%\\pos-plugin`` on Windows (readable by the service
   account LocalSystem and by administrators); on Linux ``/var/lib/pos-plugin`` when
   it exists (the service's folder), otherwise the user's data folder
   (``~/.local/share/pos-plugin``, platformdirs) for a till run by hand.

Relative paths in ``[journal] path`` and ``[log] dir`` are then taken from the data
folder. Logs go to ``<data>/logs`` unless ``[log] dir`` or systemd's
``LOGS_DIRECTORY`` says otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "pos-plugin"
LINUX_SERVICE_DIR = Path("/var/lib") / APP


def default_data_dir() -> Path:
    """The data folder when the config names none (rules 2-4 above)."""
    for var in ("POS_PLUGIN_DATA_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            # systemd may list several folders separated by ':'; the first is ours
            return Path(value.split(os.pathsep)[0] if var == "STATE_DIRECTORY" else value)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / APP
    if LINUX_SERVICE_DIR.is_dir() and os.access(LINUX_SERVICE_DIR, os.W_OK):
        return LINUX_SERVICE_DIR
    import platformdirs

    return platformdirs.user_data_path(APP, appauthor=False)


def resolve(path: str | Path, base: Path) -> Path:
    """``path`` itself if absolute (``~`` expanded), else ``base / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def default_log_dir(data_dir: Path) -> Path:
    value = os.environ.get("LOGS_DIRECTORY")  # systemd's LogsDirectory=pos-plugin
    return Path(value.split(os.pathsep)[0]) if value else data_dir / "logs"
