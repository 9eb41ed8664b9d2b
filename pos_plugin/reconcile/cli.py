"""``pos-plugin reconcile`` and ``pos-plugin close-day``.

Where the two sides come from:
- a real till: ``--config config.toml`` gives the pharmacy code, the ledger URL
  and the journal path; the ledger token is read from the keyring;
- the sandbox / simulate case: ``--journal FILE`` (repeat it for each till of the
  store), ``--ledger-url URL`` and ``--token TOKEN`` (or the environment variable
  ``POS_PLUGIN_LEDGER_TOKEN``; a token on the command line is visible to other
  users of the machine). ``--pharmacy`` defaults to the code in the journals' msgids.
- a shared PostgreSQL journal: ``--journal postgresql://...`` (or ``[journal] url``
  in the config) holds every till of the store, reconciled as a whole and per
  till; ``--terminal T01`` (repeatable) narrows it to some tills, like giving
  only those tills' files. Its password: in the URL, libpq's PGPASSWORD or
  ~/.pgpass, or (with ``--config``) the keyring's ``journal_db_password``.

Exit codes: 0 balanced (or closed), 1 breaks found (or close refused), 2 a usage or
configuration problem, 3 the ledger or a journal could not be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pos_plugin.money import yuan
from pos_plugin.reconcile.matching import KIND_LABEL, Reconciliation

if TYPE_CHECKING:
    from pos_plugin.journal.sources import JournalSource

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOKEN_ENV = "POS_PLUGIN_LEDGER_TOKEN"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM-DD") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--date",
        type=_date,
        default=None,
        help="business date YYYY-MM-DD (Asia/Shanghai; default today)",
    )
    p.add_argument("--config", help="config.toml of a real till (ledger token from the keyring)")
    p.add_argument(
        "--journal",
        action="append",
        default=[],
        metavar="FILE",
        help="a till's journal file (repeat for every till of the store), or a shared "
        "journal's postgresql:// URL",
    )
    p.add_argument(
        "--terminal",
        action="append",
        default=[],
        metavar="TILL",
        help="shared journal: only this till (repeat; default every till of the pharmacy)",
    )
    p.add_argument("--ledger-url", help="the ledger's base URL (sandbox / simulate)")
    p.add_argument("--token", help=f"the ledger token (sandbox); or set {TOKEN_ENV}")
    p.add_argument("--pharmacy", help="pharmacy code (default: from the config or the journals)")
    p.add_argument(
        "--ledger-kind",
        choices=("own", "nhsa"),
        default=None,
        help="own: our ledger API's statement; nhsa: the national platform's 3201/3202 "
        "(default: the config's [ledger] kind, else own)",
    )
    p.add_argument(
        "--world",
        help="nhsa without --config: the world file whose first pharmacy is this one (as "
        "serve --simulate); default the example world",
    )
    p.add_argument(
        "--no-resolve",
        action="store_true",
        help="do not resolve 'settling' rows by msgid (writes nothing to the journals)",
    )


def build_reconcile_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pos-plugin reconcile",
        description="Reconcile the tills' journals with the central ledger's daily statement.",
    )
    _common(p)
    p.add_argument("--csv", metavar="FILE", help="write the breaks and every msgid (UTF-8, BOM)")
    p.add_argument("--html", metavar="FILE", help="write the manager's page (printable)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON")
    p.add_argument(
        "--reverse-msgid",
        metavar="MSGID",
        help="nhsa: reverse (2601) this centre-only settlement, the break's one action "
        "(journaled, never twice), then reconcile again",
    )
    return p


def build_close_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pos-plugin close-day",
        description="Reconcile a day and record it as closed in every given journal.",
    )
    _common(p)
    p.add_argument("--reason", help="why the day is closed with breaks (kept with the day)")
    p.add_argument("--by", default=os.environ.get("USER", "manager"), help="who closes the day")
    return p


def _sources(args: argparse.Namespace) -> tuple[list[JournalSource], Any, str | None]:
    """(journal sources, ledger client, pharmacy code) from the arguments."""
    from pos_plugin.config import (
        ConfigError,
        get_secret,
        journal_password,
        load_config,
        secret_store,
    )
    from pos_plugin.journal.postgres import SharedJournal, is_postgres_url
    from pos_plugin.ledger.own.client import HttpLedgerClient

    pharmacy = args.pharmacy
    url = args.ledger_url
    token = args.token or os.environ.get(TOKEN_ENV)
    kw: dict[str, Any] = {}
    cfg = load_config(args.config) if args.config else None
    if cfg is not None:
        pharmacy = pharmacy or cfg.pharmacy.code
    terminals = tuple(args.terminal)
    given = list(args.journal) or ([cfg.journal_target] if cfg is not None else [])
    journals: list[JournalSource] = []
    for j in given:
        if is_postgres_url(j):
            own = cfg is not None and j == cfg.journal.url  # its password from the keyring
            password = (
                journal_password(cfg.journal, secret_store(cfg)) if cfg is not None and own else None
            )
            journals.append(SharedJournal(j, pharmacy, terminals, password))
        else:
            journals.append(os.path.abspath(j))
    if cfg is not None:
        url = url or cfg.ledger.url
        kw = {
            "connect_timeout": cfg.ledger.connect_timeout,
            "read_timeout": cfg.ledger.read_timeout,
            "ca_bundle": cfg.ledger.ca_bundle,
        }
        token = token or get_secret("ledger_token", secret_store(cfg))
    journals = list(dict.fromkeys(journals))
    if terminals and not any(isinstance(j, SharedJournal) for j in journals):
        raise ConfigError("--terminal narrows a shared postgresql:// journal; give files per till")
    if not journals:
        raise ConfigError("give --journal FILE (one per till) or --config config.toml")
    if not url:
        raise ConfigError("give --ledger-url URL or --config config.toml")
    kind = args.ledger_kind or (cfg.ledger.kind if cfg is not None else "own")
    if kind == "nhsa":
        return journals, _nhsa_client(args, cfg, url), pharmacy
    if not token:
        raise ConfigError(f"give --token, set {TOKEN_ENV}, or use --config (keyring)")
    return journals, HttpLedgerClient(url, token, **kw), pharmacy


def _nhsa_client(args: argparse.Namespace, cfg: Any, url: str) -> Any:
    """The national platform's client: the config's [nhsa] (keyring secrets), or the world
    file's first pharmacy over the ``plain`` transport (the sandbox, as serve --simulate)."""
    from pos_plugin.config import ConfigError, get_secret, secret_store
    from pos_plugin.ledger.nhsa.client import NhsaLedgerClient
    from pos_plugin.ledger.nhsa.settings import NhsaSettings
    from pos_plugin.world import load_world

    if cfg is not None:
        if cfg.nhsa is None:
            raise ConfigError('--ledger-kind nhsa needs an [nhsa] table in the config')
        store = secret_store(cfg)
        secrets = {n: get_secret(n, store) or "" for n in cfg.nhsa.secret_names()}
        return NhsaLedgerClient(url, cfg.nhsa, secrets=secrets)
    pharmacy = load_world(args.world).pharmacies[0]
    settings = NhsaSettings(
        fixmedins_code=pharmacy.code,
        fixmedins_name=pharmacy.name[:20],
        mdtrtarea_admvs=pharmacy.region,
    )
    return NhsaLedgerClient(url, settings)


def _run(
    args: argparse.Namespace,
) -> tuple[Reconciliation, list[JournalSource], dict[str, Any] | None]:
    from pos_plugin.reconcile.close import closed_state
    from pos_plugin.reconcile.national import reconcile_for

    journals, ledger, pharmacy = _sources(args)
    day = args.date or dt.datetime.now(SHANGHAI).date()
    try:
        rec = reconcile_for(day, journals, ledger, pharmacy, resolve=not args.no_resolve)
        wanted = getattr(args, "reverse_msgid", None)
        if wanted:
            _reverse_one(rec, journals, ledger, wanted)
            rec = reconcile_for(day, journals, ledger, pharmacy, resolve=not args.no_resolve)
    finally:
        ledger.close()
    return rec, journals, closed_state(journals, rec)


def _reverse_one(rec: Reconciliation, journals: list[JournalSource], ledger: Any, msgid: str
                 ) -> None:  # fmt: skip
    """The break's one action (national: 2601 of a centre-only settlement), or say why not."""
    from pos_plugin.reconcile.errors import ReconcileError
    from pos_plugin.reconcile.national import REVERSE_ACTION, reverse_centre_only

    b = next((b for b in rec.breaks if b.msgid == msgid), None)
    if b is None or b.action != REVERSE_ACTION:
        raise ReconcileError(
            f"{msgid} is not a centre-only settlement this day offers to reverse "
            "(only a break marked with the 2601 action can be reversed this way)"
        )
    psn_no = next(e.patient for e in b.ledger if e.patient)
    done = reverse_centre_only(journals, ledger, msgid, psn_no or "", rec.date)
    print(
        f"冲正 2601 {msgid}: "
        + ("已于之前完成 already done before" if done.already else "已完成 done")
    )


def summary(rec: Reconciliation, closed: dict[str, Any] | None = None) -> str:
    """The text a manager reads in the terminal: status, totals side by side, each break."""
    lines = [
        f"对账 Reconciliation {rec.date}  药店 pharmacy {rec.pharmacy_code}  "
        f"收银机 tills {', '.join(t.terminal_id for t in rec.terminals) or '-'}",
        (
            f"平账 BALANCED: {rec.balanced_count} 笔一致 msgids agree"
            if rec.balanced
            else f"有差异 BREAKS: {len(rec.breaks)}  (平账 balanced {rec.balanced_count})"
        ),
    ]
    if closed:
        lines.append(
            f"已关账 closed {closed['closed_at']} by {closed['closed_by']}"
            + (" — 关账后结果已改变 CHANGED since closing" if closed["changed_since_close"] else "")
        )
    lines.append("")
    lines.append(f"{'':24}{'本店 till':>16}{'中心 ledger':>16}{'差 diff':>14}")
    j, led = rec.journal, rec.ledger
    lines.append(
        f"{'销售笔数 sales':24}{j.sales_count:>16}{led.sales_count:>16}"
        f"{led.sales_count - j.sales_count:>14}"
    )
    lines.append(
        f"{'冲正笔数 reversals':24}{j.reversals_count:>16}{led.reversals_count:>16}"
        f"{led.reversals_count - j.reversals_count:>14}"
    )
    for fund, label in (
        ("total", "净额 net total"),
        ("personal_account", "个人账户 personal"),
        ("mutual_aid", "共济 mutual aid"),
        ("cash", "现金 cash"),
    ):
        a, b = getattr(j.net, fund), getattr(led.net, fund)
        lines.append(f"{label:24}{yuan(a):>16}{yuan(b):>16}{yuan(b - a):>14}")
    if len(rec.terminals) > 1:
        lines.append("")
        for t in rec.terminals:
            lines.append(
                f"  收银机 till {t.terminal_id}: "
                + ("一致 balanced" if t.balanced else f"{t.breaks} 处差异 breaks")
                + f", 本店 {yuan(t.journal.net.total)} / 中心 {yuan(t.ledger.net.total)}"
            )
    for i, b in enumerate(rec.breaks, 1):
        zh, en = KIND_LABEL[b.kind]
        lines.append("")
        lines.append(f"[{i}] {zh} / {en}  {b.msgid}" + "".join(f" + {r}" for r in b.related))
        if b.action:
            lines.append(f"    可操作 action: {b.action} (pos-plugin reconcile --reverse-msgid {b.msgid})")
        if b.explanation:
            lines.append(f"    {b.explanation.what_zh}")
            lines.append(f"    {b.explanation.what_en}")
            lines.append(f"    处理: {b.explanation.todo_zh}")
            lines.append(f"    To do: {b.explanation.todo_en}")
    for n in rec.notes:
        lines.append("")
        lines.append(f"注意 note: {n.zh}")
        lines.append(f"           {n.en}")
    if rec.resolved:
        lines.append("")
        lines.append(
            f"已按流水号确认结果 resolved by msgid before matching: {', '.join(rec.resolved)}"
        )
    return "\n".join(lines)


def _guard(fn: Any, argv: Sequence[str] | None) -> int:
    from pos_plugin.config import ConfigError
    from pos_plugin.journal.postgres import JournalUnavailable
    from pos_plugin.journal.sources import JournalSourceError
    from pos_plugin.ledger.errors import LedgerError
    from pos_plugin.reconcile.errors import ReconcileError

    try:
        return int(fn(argv))
    except ConfigError as e:
        print(f"configuration problem: {e}", file=sys.stderr)
        return 2
    except JournalUnavailable as e:  # a shared journal's database down, or no journal in it
        print(str(e), file=sys.stderr)
        return 3
    except (ReconcileError, JournalSourceError) as e:
        print(str(e), file=sys.stderr)
        return 3 if "not found" in str(e) else 2
    except LedgerError as e:
        print(f"the ledger could not be read: {e}", file=sys.stderr)
        return 3
    except sqlite3.DatabaseError as e:  # a --journal that is not a journal file
        print(
            f"a journal could not be read ({e}): give the till's journal file",
            file=sys.stderr,
        )
        return 3
    except OSError as e:  # --csv / --html / --json into a missing or read-only folder
        where = f" {e.filename}" if e.filename else ""
        print(f"cannot write{where}: {e.strerror or e}; check the folder exists", file=sys.stderr)
        return 2


def _reconcile(argv: Sequence[str] | None) -> int:
    args = build_reconcile_parser().parse_args(argv)
    rec, _journals, closed = _run(args)
    print(summary(rec, closed))
    if args.csv:
        from pos_plugin.reconcile.csv_report import write_csv

        print(f"CSV: {write_csv(rec, args.csv).resolve()}")
    if args.html:
        from pos_plugin.reconcile.manager_page import write_html

        print(f"HTML: {write_html(rec, args.html, closed).resolve()}")
    if args.json:
        import json

        body = rec.as_dict(details=True)
        body["closed"] = closed
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(body, f, ensure_ascii=False, indent=1)
        print(f"JSON: {os.path.abspath(args.json)}")
    return 0 if rec.balanced else 1


def _close(argv: Sequence[str] | None) -> int:
    from pos_plugin.reconcile.close import close_day
    from pos_plugin.reconcile.errors import DayAlreadyClosed, DayNotBalanced

    args = build_close_parser().parse_args(argv)
    if args.date is None:
        print("close-day needs --date YYYY-MM-DD", file=sys.stderr)
        return 2
    rec, journals, _closed = _run(args)
    print(summary(rec))
    print()
    try:
        records = close_day(journals, rec, reason=args.reason, closed_by=args.by)
    except DayNotBalanced as e:
        print(f"不能关账 NOT CLOSED: {e}", file=sys.stderr)
        return 1
    except DayAlreadyClosed as e:
        print(f"已关账 already closed: {e}", file=sys.stderr)
        return 1
    print(
        f"已关账 CLOSED {rec.date} in {len(records)} journal(s)"
        + (f"; 原因 reason kept: {args.reason}" if records and records[0]["reason"] else "")
    )
    print("之后该日的销售将被拒绝 / later sales dated that day are refused.")
    return 0


def reconcile_main(argv: Sequence[str] | None = None) -> int:
    """``pos-plugin reconcile ...``: 0 balanced, 1 breaks, 2 usage/config, 3 cannot read."""
    return _guard(_reconcile, argv)


def close_day_main(argv: Sequence[str] | None = None) -> int:
    """``pos-plugin close-day ...``: 0 closed, 1 refused, 2 usage/config, 3 cannot read."""
    return _guard(_close, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pos_plugin.reconcile.cli reconcile|close-day ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "close-day":
        return close_day_main(argv[1:])
    if argv and argv[0] == "reconcile":
        return reconcile_main(argv[1:])
    return reconcile_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
