"""Run a real till until told to stop: the one code path of ``serve --config`` and of the
Windows service.

The caller owns the stop event (Ctrl+C / SIGTERM through pos_plugin.shutdown, or the
service manager's stop request); this function configures logging, starts the agent,
waits in ticks, and stops the agent in order (API first, so no sale starts while the
journal closes; the running device transaction is cancelled so its sale is journaled
as ended rather than cut off).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from pos_plugin.config import Config, ConfigError, load_config
from pos_plugin.journal.schema import JournalSchemaError
from pos_plugin.logs import setup_logging
from pos_plugin.shutdown import wait_until_stopped

log = logging.getLogger("pos_plugin.service")


class StartError(Exception):
    """The till could not start; the message is one sentence saying what to do."""


def configure_logging(cfg: Config, level: str | None = None, *, stderr: bool = True) -> Path | None:
    try:
        return setup_logging(
            level or cfg.log.level,
            cfg.log_dir,
            max_bytes=cfg.log.max_bytes,
            backup_count=cfg.log.backup_count,
            stderr=stderr,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(
            f"cannot write the log in {cfg.log_dir} ({e.strerror or e}): create the folder "
            "for the service's user, or set [log] dir"
        ) from None


def run_till(
    config_path: str | Path,
    stop: threading.Event,
    *,
    log_level: str | None = None,
    stderr: bool = True,
    on_ready: Callable[[str], None] | None = None,
    service_workdir: bool = False,
) -> int:
    """Serve until ``stop`` is set; returns the exit code. Raises ConfigError / StartError.

    ``service_workdir``: move to a working folder of our own first (a Windows service
    starts in System32): the vendor library's folder for a library reader, whose DLL
    reads its .ini from the current directory (docs/readers.md), else the data folder.
    """
    from pos_plugin.agent import start_from_config

    cfg = load_config(config_path)
    if cfg.reader.kind == "serial":
        cfg.serial_url()  # a config mistake: said before anything starts
    log_file = configure_logging(cfg, log_level, stderr=stderr)
    if service_workdir:
        library = cfg.reader.library if cfg.reader.kind != "serial" else None
        folder = Path(library).resolve().parent if library else cfg.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        os.chdir(folder)
        log.info("working folder %s", folder)
    log.info(
        "starting: config %s, data folder %s, log %s",
        Path(config_path).resolve(),
        cfg.data_dir,
        log_file,
    )
    try:
        agent = start_from_config(cfg)
    except ConfigError:
        raise
    except JournalSchemaError as e:
        raise StartError(str(e)) from None
    except sqlite3.Error as e:
        raise StartError(f"the journal {cfg.journal_target} cannot be used ({e})") from None
    except OSError as e:
        if e.errno in ADDR_IN_USE:
            raise StartError(
                f"port {cfg.api.port} on {cfg.api.host} is in use (is another pos-plugin "
                "running?): stop it, or set another [api] port"
            ) from None
        where = f" {e.filename}" if e.filename else ""
        raise StartError(f"cannot start:{where} {e.strerror or e}") from None
    log.info("serving on %s", agent.url)
    if on_ready is not None:
        on_ready(agent.url)
    try:
        wait_until_stopped(stop)
    finally:
        log.info("stopping")
        agent.stop()
        log.info("stopped")
    return 0


ADDR_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", 10048)}
