"""The ``pos-plugin`` command.

Every sub-command returns an exit code and prints errors as one plain sentence
(never a traceback) so a till operator can act on them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Only what the parser needs: ``--help`` must not load pydantic and the serial stack;
# each command imports what it uses.
from pos_plugin.secrets_store import ALL_SECRET_NAMES, OPTIONAL_SECRET_NAMES, SECRET_NAMES

if TYPE_CHECKING:
    from pos_plugin.journal.journal import PersonRecord, VerifyReport


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.rules_only:
        from pos_plugin.rules_demo import run_rules_demo

        return run_rules_demo()
    try:
        from pos_plugin.demo import run_demo
    except ImportError:  # the full sale flow is not installed yet: show the rules
        from pos_plugin.rules_demo import run_rules_demo

        return run_rules_demo()
    return run_demo(ledger_kind=args.ledger_kind)


def _cmd_secrets(args: argparse.Namespace) -> int:
    from pos_plugin.config import (
        ConfigError,
        check_store,
        get_optional_secret,
        get_secret,
        load_config,
        secret_store,
        set_secret,
    )

    store = secret_store(load_config(args.config) if args.config else None)
    if args.action == "set":
        value = (
            getpass.getpass(f"value for {args.name}: ")
            if sys.stdin.isatty()
            else sys.stdin.readline().strip()
        )
        if not value:
            print("no value given; nothing stored", file=sys.stderr)
            return 2
        set_secret(args.name, value, store)
        print(f"{args.name} stored in {store.describe()}")
        return 0
    check_store(store)  # an unusable store: its how-to once, not once per secret
    print(f"secrets in {store.describe()}:")
    failures = 0
    for name in SECRET_NAMES:
        try:
            get_secret(name, store)
            print(f"  {name}: set")
        except ConfigError as e:
            print(f"  {name}: {e}")
            failures += 1
    for name in OPTIONAL_SECRET_NAMES:
        state = "set" if get_optional_secret(name, store) else "not set (needed only by some tills)"
        print(f"  {name}: {state}")
    return 1 if failures else 0


def _cmd_sandbox_ledger(args: argparse.Namespace) -> int:
    from pos_plugin.ledger.own.sandbox.server import main as sandbox_main

    return int(sandbox_main(args.rest))


def _cmd_sandbox_nhsa(args: argparse.Namespace) -> int:
    from pos_plugin.ledger.nhsa.sandbox.server import main as nhsa_main

    return int(nhsa_main(args.rest))


def _cmd_catalogue(args: argparse.Namespace) -> int:
    from pos_plugin.catalogue_cli import main as catalogue_main

    return int(catalogue_main(args.rest))


def _cmd_simulate_devices(args: argparse.Namespace) -> int:
    from drivers.simulator.__main__ import main as sim_main

    return int(sim_main(args.rest))


def _cmd_serve(args: argparse.Namespace) -> int:
    import threading

    from pos_plugin.shutdown import stop_on_signals, wait_until_stopped

    if not args.simulate:
        if not args.config:
            print("give --config FILE (see config.example.toml), or --simulate", file=sys.stderr)
            return 2
        from pos_plugin.service.run import run_till

        with stop_on_signals(threading.Event()) as stop:
            return run_till(
                args.config,
                stop,
                log_level=args.log_level,
                on_ready=lambda url: print(f"pos-plugin listening on {url}", flush=True),
            )

    from pos_plugin.agent import start_simulated
    from pos_plugin.config import ConfigError, check_ledger_url
    from pos_plugin.logs import setup_logging
    from pos_plugin.rules.identity import mask_card_no
    from pos_plugin.service.run import ADDR_IN_USE
    from pos_plugin.world import load_world

    if args.ledger_url is not None:
        try:
            check_ledger_url(args.ledger_url, "--ledger-url")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    load_world(args.world)  # a missing or invalid world file: one sentence, before anything starts
    setup_logging(args.log_level or "WARNING", Path(args.workdir) / "logs" if args.workdir else None)
    with stop_on_signals(threading.Event()) as stop:
        try:
            agent = start_simulated(
                world_path=args.world,
                port=args.port,  # 0: a free port, chosen by the OS; the banner says which
                workdir=args.workdir,
                ledger_url=args.ledger_url,
                transport=args.transport,
                ledger_kind=args.ledger_kind,
            )
        except OSError as e:
            if e.errno in ADDR_IN_USE:
                print(f"port {args.port} is in use: give another --port", file=sys.stderr)
                return 2
            raise
        try:
            ledger = ("the national platform's interface (sandbox-nhsa)"
                      if args.ledger_kind == "nhsa" else "our ledger API (sandbox-ledger)")  # fmt: skip
            print(f"pos-plugin (simulated devices, {ledger}) listening on {agent.url}")
            print(f"  pos token:     {agent.tokens['pos']}")
            print(f"  manager token: {agent.tokens['manager']}")
            print(f"  OpenAPI:       {agent.url}/docs")
            print(f"  serial line:   {agent.simulator.path if agent.simulator else '-'}")
            # Card numbers are personal data even in a sandbox banner (it ends up in
            # terminals, screenshots and CI logs): the full numbers are in the world file.
            persons = agent.world.persons if agent.world else ()
            cards = [c.card_no for p in persons for c in p.cards]
            example = mask_card_no(cards[0]) if cards else "..."
            print(
                '  present a card: POST /v1/simulator/present {"card_no": CARD, "pin": "correct"}'
                f" (CARD: a card_no from the world file, e.g. {example})",
                flush=True,
            )
            wait_until_stopped(stop)
        finally:
            agent.stop()
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from pos_plugin.service import LINUX_CONFIG, ServiceError, systemd_unit, windows_action

    config = Path(args.config) if args.config else None
    if args.action == "unit":
        print(systemd_unit(config.resolve() if config else LINUX_CONFIG, user=args.user), end="")
        return 0
    try:
        print(windows_action(args.action, config))
    except ServiceError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


def _cmd_reader(args: argparse.Namespace) -> int:
    from drivers.readers.check import run_check
    from pos_plugin.config import load_config

    cfg = load_config(args.config)
    return run_check(cfg.reader, cfg.pharmacy.code, print)


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from pos_plugin.reconcile.cli import reconcile_main

    return reconcile_main(args.rest)


def _cmd_close_day(args: argparse.Namespace) -> int:
    from pos_plugin.reconcile.cli import close_day_main

    return close_day_main(args.rest)


def _cmd_reopen_day(args: argparse.Namespace) -> int:
    from pos_plugin.reconcile.cli import reopen_day_main

    return reopen_day_main(args.rest)


def _cmd_journal(args: argparse.Namespace) -> int:
    from pos_plugin.journal.journal import Journal
    from pos_plugin.journal.postgres import JournalUnavailable, is_postgres_url

    target, password = args.path, None
    if args.config:
        from pos_plugin.config import journal_password, load_config, secret_store

        cfg = load_config(args.config)
        target = target or cfg.journal_target
        if target == cfg.journal.url:
            password = journal_password(cfg.journal, secret_store(cfg))
    if not target:
        print("give the journal file (or postgresql:// URL), or --config FILE", file=sys.stderr)
        return 2
    if not is_postgres_url(target):
        p = Path(target)
        if p.is_dir():
            print(f"{p} is a folder: give the journal file in it (journal.sqlite3)", file=sys.stderr)
            return 2
        if not p.is_file():  # never create an empty journal only to call it intact
            print(f"no journal at {p}: check the path (see [journal] path)", file=sys.stderr)
            return 2
        j = Journal(
            target, hmac_key=b"verify-only", pharmacy_code="X" * 12, terminal_id="-",
            upgrade=False,  # verifying an old journal (or a backup) must not change it
        )  # fmt: skip
        try:
            return _print_verify(j.verify())
        finally:
            j.close()
    try:
        tills = _shared_tills(target, password, args.pharmacy, args.terminal)
        if not tills:
            print("no till's rows in this journal (check --pharmacy / --terminal)", file=sys.stderr)
            return 2
        worst = 0
        for code, terminal in tills:
            j = Journal(
                target, hmac_key=b"verify-only", pharmacy_code=code, terminal_id=terminal,
                password=password,
            )  # fmt: skip
            try:
                print(f"{code} {terminal}: ", end="")
                worst = max(worst, _print_verify(j.verify()))
            finally:
                j.close()
    except JournalUnavailable as e:
        print(str(e), file=sys.stderr)
        return 3
    return worst


def _cmd_journal_search(args: argparse.Namespace) -> int:
    """A person's sales, proxy purchases and refused attempts, found by the keyed hash.

    The ID number is read from ``--person`` (or typed at a hidden prompt with ``-``,
    so it stays out of the shell's history), hashed with the journal key and
    forgotten; the listing shows only masked documents.
    """
    from pathlib import Path

    from pos_plugin.config import get_secret, journal_password, load_config, secret_store
    from pos_plugin.journal.journal import Journal
    from pos_plugin.journal.postgres import is_postgres_url
    from pos_plugin.rules.identity import check_resident_id, normalize_id_number

    target, password, code, terminal = args.path, None, "X" * 12, "-"
    cfg = load_config(args.config) if args.config else None
    if cfg is not None:
        target = target or cfg.journal_target
        if target == cfg.journal.url:
            password = journal_password(cfg.journal, secret_store(cfg))
        code, terminal = cfg.pharmacy.code, cfg.pharmacy.terminal_id
    # A shared journal: every till of the store (the config's pharmacy, or --pharmacy),
    # or, given neither, every pharmacy in the database; each line names its till.
    scope = "store" if args.pharmacy or cfg is not None else "all"
    if args.pharmacy:
        if len(args.pharmacy) != 12:
            print("--pharmacy is the 12-character pharmacy code", file=sys.stderr)
            return 2
        code = args.pharmacy
    if not target:
        print("give the journal file (or postgresql:// URL), or --config FILE", file=sys.stderr)
        return 2
    if not is_postgres_url(target) and not Path(target).is_file():
        print(f"no journal at {target}: check the path (see [journal] path)", file=sys.stderr)
        return 2
    if args.key_file:  # a sandbox journal (serve --simulate keeps its key in journal.key)
        key = Path(args.key_file).read_bytes()
    else:
        key = get_secret("journal_hmac_key", secret_store(cfg)).encode("utf-8")
    person = args.person if args.person != "-" else getpass.getpass("ID number: ")
    person = normalize_id_number(person)
    if not person:
        print("give the person's ID number: --person NUMBER (or - to type it)", file=sys.stderr)
        return 2
    if len(person) == 18 and not check_resident_id(person, dt.date.today()).valid:
        print("note: this is not a valid resident ID number; searching anyway", file=sys.stderr)
    j = Journal(
        target, hmac_key=key, pharmacy_code=code, terminal_id=terminal, password=password,
        upgrade=False,  # a search reads; it must not migrate (or back up) the journal
    )  # fmt: skip
    try:
        found = j.rows_of_person(person, scope=scope)
    finally:
        j.close()
    from pos_plugin.rules.identity import mask_id_number

    print(f"{mask_id_number(person)}: {len(found)} record(s)")
    for rec in found:
        print("  " + _search_line(rec, with_pharmacy=scope == "all" and j.is_shared))
    return 0


_ROLE_WORDS = {
    "holder": "card holder",
    "patient": "patient",
    "buyer": "proxy buyer",
    "family_payer": "family payer",
}


def _search_line(rec: PersonRecord, *, with_pharmacy: bool = False) -> str:
    """One journal row as an auditor reads it, masked, ending with the till it is from."""
    row, roles = rec.row, rec.roles
    ev = row.evidence or {}
    kind = "proxy purchase" if row.proxy or ev.get("buyer_role") == "proxy" else "sale"
    if row.state in ("refused", "failed"):
        kind = f"{kind} {row.state.upper()} ({row.refusal_code})"
    else:
        kind = f"{kind} {row.state}"
    parts = [
        row.created_at[:19].replace("T", " "),
        row.sale_ref,
        kind,
        "as " + "+".join(_ROLE_WORDS.get(r, r) for r in roles),
    ]
    if ev.get("card_no_masked"):
        parts.append(f"card {ev['card_no_masked']}")
    elif ev.get("credential") == "evoucher":
        parts.append("e-voucher")
    for who in ("holder", "patient", "buyer"):
        doc = ev.get(who)
        if doc:
            name = f" {doc['name_masked']}" if doc.get("name_masked") else ""
            parts.append(f"{who} {doc['number_masked']}{name}")
    if ev.get("operator"):
        parts.append(f"operator {ev['operator']}")
    if row.total is not None:
        parts.append(f"total {row.total} fen")
    if row.msgid:
        parts.append(f"msgid {row.msgid}")
    parts.append(f"till {rec.pharmacy_code} {row.terminal_id}" if with_pharmacy
                 else f"till {row.terminal_id}")  # fmt: skip
    return "; ".join(parts)


def _shared_tills(
    url: str, password: str | None, pharmacy: str | None, terminals: Sequence[str]
) -> list[tuple[str, str]]:
    """(pharmacy, terminal) of every till with rows in a shared journal, narrowed as asked."""
    from pos_plugin.journal.postgres import SharedJournal

    db = SharedJournal(url, password=password).open_reader()
    try:
        rows = db.execute(
            "SELECT pharmacy_code, terminal_id FROM sales UNION "
            "SELECT pharmacy_code, terminal_id FROM events ORDER BY 1, 2"
        ).fetchall()
    finally:
        db.close()
    return [
        (code, term)
        for code, term in rows
        if (pharmacy is None or code == pharmacy) and (not terminals or term in terminals)
    ]


def _print_verify(report: VerifyReport) -> int:
    print(
        f"{report.sales} sales, {report.events} events: {'chain intact' if report.ok else 'TAMPERED'}"
    )
    for problem in report.problems:
        print(f"  {problem}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-plugin",
        description="Pharmacy till agent: medical-insurance personal-account payments.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the scripted demo on the embedded defaults")
    demo.add_argument("--rules-only", action="store_true", help="show only the rule decisions")
    demo.add_argument(
        "--ledger-kind",
        choices=("own", "nhsa"),
        default="own",
        help="the scripted day through our own ledger API or the national platform's interface",
    )
    demo.set_defaults(func=_cmd_demo)

    secrets = sub.add_parser("secrets", help="set and check the keyring entries")
    secrets_sub = secrets.add_subparsers(dest="action", required=True)
    s_set = secrets_sub.add_parser("set", help="store one secret (read from the terminal or stdin)")
    s_set.add_argument("name", choices=ALL_SECRET_NAMES)
    s_set.add_argument(
        "--config", help="the store this config.toml names ([secrets] store); default the keyring"
    )
    s_check = secrets_sub.add_parser("check", help="say which secrets are set")
    s_check.add_argument(
        "--config", help="the store this config.toml names ([secrets] store); default the keyring"
    )
    secrets.set_defaults(func=_cmd_secrets)

    serve = sub.add_parser("serve", help="run the agent (--config FILE, or --simulate)")
    serve.add_argument("--config", help="config.toml for a real till")
    serve.add_argument("--simulate", action="store_true", help="device simulator + sandbox ledger")
    serve.add_argument("--world", help="world file for --simulate (default: the example world)")
    serve.add_argument(
        "--port",
        type=int,
        default=8765,
        help="local API port for --simulate (default 8765; 0 = a free port, printed)",
    )
    serve.add_argument("--workdir", help="--simulate: keep the journal and sandbox here")
    serve.add_argument(
        "--ledger-url", help="--simulate: use this ledger instead of an embedded one"
    )
    serve.add_argument(
        "--ledger-kind",
        choices=("own", "nhsa"),
        default="own",
        help="--simulate: settle through our own ledger API (own) or the national platform's "
        "pharmacy interface (nhsa: 9001, 1101, 2102, 2601, 2103; an embedded sandbox-nhsa "
        "unless --ledger-url)",
    )
    serve.add_argument(
        "--transport",
        choices=("auto", "pty", "socket"),
        default="auto",
        help="--simulate: the simulator's serial line (auto: a pty on POSIX, a socket on Windows)",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="override [log] level (DEBUG also shows the serial trace when [serial] trace is on)",
    )
    serve.set_defaults(func=_cmd_serve)

    service = sub.add_parser(
        "service", help="run as a service: Windows install|uninstall|start|stop, Linux unit"
    )
    service.add_argument("action", choices=("install", "uninstall", "start", "stop", "unit"))
    service.add_argument("--config", help="the config.toml the service runs with")
    service.add_argument("--user", default="pos-plugin", help="unit: the service's Linux user")
    service.set_defaults(func=_cmd_service)

    journal = sub.add_parser("journal", help="journal tools")
    journal_sub = journal.add_subparsers(dest="action", required=True)
    verify = journal_sub.add_parser("verify", help="check the hash chain and every row")
    verify.add_argument(
        "path",
        nargs="?",
        help="the journal file, or a shared journal's postgresql:// URL (every till's chain)",
    )
    verify.add_argument("--config", help="verify the journal of this config.toml")
    verify.add_argument("--pharmacy", help="shared journal: only this pharmacy's tills")
    verify.add_argument(
        "--terminal", action="append", default=[], help="shared journal: only this till (repeat)"
    )
    verify.set_defaults(func=_cmd_journal)
    search = journal_sub.add_parser(
        "search",
        help="a person's sales, proxy purchases and refused attempts (by keyed hash)",
    )
    search.add_argument("path", nargs="?", help="the journal file, or a postgresql:// URL")
    search.add_argument("--config", help="search the journal of this config.toml")
    search.add_argument(
        "--person", required=True, help="the person's ID number (- to type it unseen)"
    )
    search.add_argument(
        "--key-file",
        help="the journal key in a file (a sandbox's journal.key); default: the keyring",
    )
    search.add_argument(
        "--pharmacy",
        help="shared journal: only this pharmacy's tills (default: --config's pharmacy, "
        "or every pharmacy in the database)",
    )
    search.set_defaults(func=_cmd_journal_search)

    reader = sub.add_parser("reader", help="reader tools")
    reader_sub = reader.add_subparsers(dest="action", required=True)
    check = reader_sub.add_parser(
        "check", help="load the reader library, show the reader's info, read a card (masked)"
    )
    check.add_argument("--config", default="config.toml", help="config.toml (default: ./config.toml)")
    reader.set_defaults(func=_cmd_reader)

    rec = sub.add_parser(
        "reconcile",
        help="reconcile a day's journal(s) against the ledger (--date, --journal, --csv, --html)",
        add_help=False,
    )
    rec.set_defaults(func=_cmd_reconcile)
    close = sub.add_parser(
        "close-day", help="record a reconciled day as closed (--date, --reason)", add_help=False
    )
    close.set_defaults(func=_cmd_close_day)
    reopen = sub.add_parser(
        "reopen-day", help="reopen a closed day with a reason (--date, --reason)", add_help=False
    )
    reopen.set_defaults(func=_cmd_reopen_day)
    catalogue = sub.add_parser(
        "catalogue",
        help="the national drug catalogue on this till (update | show | upload-mapping)",
        add_help=False,
    )
    catalogue.set_defaults(func=_cmd_catalogue)

    sandbox = sub.add_parser(
        "sandbox-ledger",
        help="run the reference ledger (--db PATH --world FILE --port N)",
        add_help=False,
    )
    sandbox.set_defaults(func=_cmd_sandbox_ledger)
    nhsa = sub.add_parser(
        "sandbox-nhsa",
        help="run the reference national platform (--db PATH --world FILE --port N)",
        add_help=False,
    )
    nhsa.set_defaults(func=_cmd_sandbox_nhsa)

    sim = sub.add_parser(
        "simulate-devices",
        help="run the card reader / PIN pad simulator (a pty, or --transport socket)",
    )
    sim.set_defaults(func=_cmd_simulate_devices)
    return parser


# Sub-commands whose options belong to their own parser.
_PASS_THROUGH = (
    "sandbox-ledger", "sandbox-nhsa", "simulate-devices", "reconcile", "close-day",
    "reopen-day", "catalogue",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in _PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    from drivers.errors import DeviceError
    from pos_plugin.config import ConfigError
    from pos_plugin.journal.postgres import JournalUnavailable
    from pos_plugin.journal.schema import JournalSchemaError
    from pos_plugin.service.run import StartError
    from pos_plugin.world import WorldError

    try:
        code: int = args.func(args)
    except ConfigError as e:
        print(f"configuration problem: {e}", file=sys.stderr)
        return 2
    except (WorldError, StartError) as e:
        print(str(e), file=sys.stderr)
        return 2
    except (JournalUnavailable, JournalSchemaError) as e:
        print(str(e), file=sys.stderr)
        return 3
    except DeviceError as e:  # the reader (library) cannot be used: say why, in both languages
        print(f"reader problem [{e.code}]: {e.message}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # a port in use, a folder that cannot be written...
        where = f"{e.filename}: " if e.filename else ""
        print(f"{args.command} failed: {where}{e.strerror or e}", file=sys.stderr)
        return 3
    except Exception as e:  # the last net: one sentence, and where the details are
        logging.getLogger("pos_plugin.cli").exception("%s failed", args.command)
        print(
            f"{args.command} failed unexpectedly ({type(e).__name__}: {e}); "
            "please report this with the log",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
