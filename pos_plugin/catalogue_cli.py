"""``pos-plugin catalogue update|show|upload-mapping``: the national drug catalogue.

Why a command and not a timer: the catalogue is published by the platform (daily at
most), a download is ~10^5 rows over 1312 pages, and a store decides when the till may
spend that time; ``show`` prints its date so a manager sees how fresh the counter's
check is. The client is the config's ``[nhsa]`` (keyring secrets), or, for the sandbox,
the world file's first pharmacy over ``plain`` (as ``reconcile --ledger-kind nhsa``).
``upload-mapping --file mapping.csv`` sends the store's SKU -> national code mapping
(3301, ``ledger/nhsa/mapping.py``): the file is checked whole first, nothing is sent
while a row is bad; then one line per row says what the platform made of it.

Exit codes: 0 done, 1 the platform refused some mapping rows (each named), 2 a usage,
configuration or file problem (nothing sent), 3 the platform (or the shared journal's
database) could not be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pos-plugin catalogue",
                                description="The national drug catalogue (1312) on this till.")
    p.add_argument("action", choices=("update", "show", "upload-mapping"))
    p.add_argument("--file", help="upload-mapping: the CSV of SKU -> national catalogue code")
    p.add_argument("--config", help="config.toml of a real till ([nhsa], journal path)")
    p.add_argument("--journal", help="the till's journal file (the catalogue sits beside it)")
    p.add_argument("--catalogue", help="the catalogue file (default: beside the journal)")
    p.add_argument("--ledger-url", help="the platform's URL (sandbox)")
    p.add_argument("--world", help="sandbox: the world file whose first pharmacy this is")
    return p


def _client(args: argparse.Namespace, cfg: Any) -> Any:
    from pos_plugin.config import ConfigError, get_secret, secret_store
    from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
    from pos_plugin.ledger.nhsa.settings import NhsaSettings
    from pos_plugin.world import load_world

    url = args.ledger_url or (cfg.ledger.url if cfg is not None else None)
    if not url:
        raise ConfigError("give --ledger-url URL or --config config.toml")
    if cfg is not None:
        if cfg.nhsa is None:
            raise ConfigError('the catalogue needs ledger.kind = "nhsa" and an [nhsa] table')
        store = secret_store(cfg)
        secrets = {n: get_secret(n, store) or "" for n in cfg.nhsa.secret_names()}
        return NhsaLedgerClient(url, cfg.nhsa, secrets=secrets)
    ph = load_world(args.world).pharmacies[0]
    return NhsaLedgerClient(url, NhsaSettings(fixmedins_code=ph.code,
                                              fixmedins_name=ph.name[:20],
                                              mdtrtarea_admvs=ph.region))  # fmt: skip


def _store(args: argparse.Namespace, cfg: Any) -> Any:
    """The till's catalogue: the file beside its journal (or ``--catalogue``), or on a
    shared journal (``postgresql://``) the table in that database, for this pharmacy
    (the config's, or the world file's first)."""
    from pos_plugin.config import ConfigError, journal_password, secret_store
    from pos_plugin.ledger.nhsa import catalogue as cat

    if args.catalogue:
        return cat.Catalogue(Path(args.catalogue))
    journal = args.journal or (str(cfg.journal_target) if cfg is not None else "")
    if not journal:
        raise ConfigError("give --journal FILE|URL, --catalogue FILE or --config config.toml")
    if not journal.startswith(("postgresql://", "postgres://")):
        return cat.Catalogue(cat.path_beside(journal))
    from pos_plugin.catalogues import shared_catalogue
    from pos_plugin.journal.postgres import SharedJournal
    from pos_plugin.world import load_world

    if cfg is not None:
        password = journal_password(cfg.journal, secret_store(cfg)) if cfg.journal.url else None
        code = cfg.pharmacy.code
    else:
        password, code = None, load_world(args.world).pharmacies[0].code
    return shared_catalogue(SharedJournal(journal, code, (), password), code)


def _run(argv: Sequence[str] | None) -> int:
    from pos_plugin.config import load_config
    from pos_plugin.ledger.nhsa import catalogue as cat

    args = build_parser().parse_args(argv)
    cfg = load_config(args.config) if args.config else None
    if args.action == "upload-mapping":
        return _upload_mapping(args, cfg)
    store = _store(args, cfg)
    where = store.path
    if args.action == "update":
        client = _client(args, cfg)
        try:
            n = cat.update(client, store)
        finally:
            client.close()
        print(f"医保目录已更新 catalogue updated: {n} items -> {where}")
    info = store.info()
    print(f"医保目录 catalogue {where}: {info['count']} items, "
          f"updated {info['updated_at'] or 'never (run: pos-plugin catalogue update)'}")
    return 0


def _upload_mapping(args: argparse.Namespace, cfg: Any) -> int:
    from pos_plugin.config import ConfigError
    from pos_plugin.ledger.nhsa import mapping

    if not args.file:
        raise ConfigError("upload-mapping needs --file mapping.csv")
    try:
        rows = mapping.read_mapping(args.file)  # every row checked before anything is sent
    except mapping.MappingFileError as e:
        raise mapping.MappingFileError(f"{args.file}: {e}") from None
    client = _client(args, cfg)
    try:
        results = mapping.upload(client.catalogue_mapping_upload, rows)
    finally:
        client.close()
    refused = [r for r in results if not r.ok]
    for r in results:
        said = "ok 已对照" if r.ok else f"refused 未对照: {r.message}"
        print(f"row {r.row} {r.sku}: {said}")
    print(f"目录对照 mapping: {len(results) - len(refused)} of {len(results)} rows accepted")
    if refused and all(r.message.startswith("not sent:") for r in refused):
        return 3
    return 1 if refused else 0


def main(argv: Sequence[str] | None = None) -> int:
    """0 done, 1 mapping rows refused, 2 usage/config/file, 3 the platform could not be read."""
    from pos_plugin.config import ConfigError
    from pos_plugin.journal.postgres import JournalUnavailable
    from pos_plugin.ledger.errors import LedgerError
    from pos_plugin.ledger.nhsa.mapping import MappingFileError

    try:
        return _run(argv)
    except ConfigError as e:
        print(f"configuration problem: {e}", file=sys.stderr)
        return 2
    except MappingFileError as e:
        print(f"the mapping file: {e}", file=sys.stderr)
        return 2
    except JournalUnavailable as e:
        print(f"the shared journal's catalogue could not be read: {e}", file=sys.stderr)
        return 3
    except LedgerError as e:
        print(f"the platform could not be read: {e}", file=sys.stderr)
        return 3
