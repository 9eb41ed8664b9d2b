"""The Windows service (pywin32's service framework). Imported on Windows only.

Install (as Administrator)::

    pos-plugin service install --config C:\\ProgramData\\pos-plugin\\config.toml
    pos-plugin service start

The service runs as LocalSystem, starts at boot (automatic, delayed start: after the
network), and runs ``run_till`` on a worker thread; the service manager's stop request
sets the same stop event as Ctrl+C does in a console. The config path is stored in the
service's registry key (``Parameters\\config``). Its logs go to the data folder
(%ProgramData%\\pos-plugin\\logs) and start/stop/failure also go to the Event Log.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import servicemanager
import win32service
import win32serviceutil

from pos_plugin.service.common import DESCRIPTION, DISPLAY_NAME, SERVICE_NAME, ServiceError

_PARAMS = "Parameters"


class TillService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = DISPLAY_NAME
    _svc_description_ = DESCRIPTION

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.stop = threading.Event()

    def SvcStop(self) -> None:
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        self.stop.set()

    def SvcDoRun(self) -> None:
        from pos_plugin.config import ConfigError
        from pos_plugin.service.run import StartError, run_till

        config = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config")
        servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting with {config}")
        try:
            run_till(config, self.stop, stderr=False, service_workdir=True)
        except (ConfigError, StartError) as e:
            servicemanager.LogErrorMsg(f"{SERVICE_NAME} did not start: {e}")
            raise SystemExit(2) from None
        servicemanager.LogInfoMsg(f"{SERVICE_NAME}: stopped")


def action(name: str, config: Path | None) -> str:
    cls = f"{TillService.__module__}.{TillService.__name__}"
    try:
        if name == "install":
            if config is None or not config.is_file():
                raise ServiceError(
                    "give --config C:\\ProgramData\\pos-plugin\\config.toml (an existing file)"
                )
            win32serviceutil.InstallService(
                cls,
                SERVICE_NAME,
                DISPLAY_NAME,
                startType=win32service.SERVICE_AUTO_START,
                description=DESCRIPTION,
                delayedstart=True,  # after the network and the USB-serial drivers
            )
            win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", str(config.resolve()))
            return (
                f"service {SERVICE_NAME} installed (automatic start, LocalSystem), config {config}"
            )
        if name == "uninstall":
            win32serviceutil.RemoveService(SERVICE_NAME)
            return f"service {SERVICE_NAME} removed"
        if name == "start":
            win32serviceutil.StartService(SERVICE_NAME)
            return f"service {SERVICE_NAME} starting"
        if name == "stop":
            win32serviceutil.StopService(SERVICE_NAME)
            return f"service {SERVICE_NAME} stopping"
    except Exception as e:  # pywintypes.error: (code, function, message)
        detail = getattr(e, "strerror", None) or str(e)
        raise ServiceError(f"service {name} failed: {detail} (run as Administrator)") from None
    raise ServiceError(f"unknown service action {name!r}")


if __name__ == "__main__":  # pythonservice.exe / the service manager starts us here
    if len(sys.argv) == 1:
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(TillService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(TillService)
