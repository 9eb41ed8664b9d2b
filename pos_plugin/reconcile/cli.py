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

``pos-plugin reopen-day --date D --reason TEXT`` reopens a closed day (the journals
only: no ledger is asked); ``--reverse-msgid`` takes the one repair a break offers.

Exit codes: 0 balanced (or closed, reopened), 1 breaks found (or close / reopen
refused), 2 a usage or configuration problem, 3 the ledger or a journal could not be
read.
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
from pos_plugin.reconcile.matching import KIND_LABEL, BreakKind, Reconciliation

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
    p.add_argument(
        "--csv",
        metavar="FILE",
        help="write the breaks and every msgid (UTF-8, BOM); the totals (and notes) go "
        "beside it, one table per file: FILE-totals.csv, FILE-notes.csv",
    )
    p.add_argument("--html", metavar="FILE", help="write the manager's page (printable)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON")
    p.add_argument(
        "--reverse-msgid",
        metavar="MSGID",
        help="reverse by msgid the break the day offers it on (own ledger: a settlement the "
        "till does not have, an escalated owed reversal; nhsa: 2601 of a centre-only "
        "settlement), journaled first, never twice; then reconcile again",
    )
    p.add_argument("--reason", help="with --reverse-msgid: why (kept with the reversal)")
    p.add_argument("--by", default=os.environ.get("USER", "manager"), help="who acts")
    return p


def build_close_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pos-plugin close-day",
        description="Reconcile a day and record it as closed in every given journal.",
    )
    _common(p)
    p.add_argument(
        "--reason",
        help="why the day is closed with breaks, with national uploads owed, or (with "
        "--force) today while still selling; kept with the day",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="close today although the shift is still selling (a sale in progress or one "
        "begun in the last 15 minutes); needs --reason",
    )
    p.add_argument("--by", default=os.environ.get("USER", "manager"), help="who closes the day")
    return p


def build_reopen_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pos-plugin reopen-day",
        description="Reopen a closed day, with a reason: the close and the reopen are both "
        "kept in the day's history (hash-chained in the journal); close it again later.",
    )
    p.add_argument("--date", type=_date, required=True, help="business date YYYY-MM-DD")
    p.add_argument("--reason", required=True, help="why the day is reopened (kept)")
    p.add_argument("--config", help="config.toml of a real till")
    p.add_argument("--journal", action="append", default=[], metavar="FILE",
                   help="a till's journal file (repeat for every till), or a shared "
                   "journal's postgresql:// URL")  # fmt: skip
    p.add_argument("--pharmacy", help="pharmacy code (default: from the config or the journals)")
    p.add_argument("--by", default=os.environ.get("USER", "manager"), help="who reopens the day")
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
) -> tuple[Reconciliation, list[JournalSource], dict[str, Any] | None, bool]:
    """(the day, its journals, its closed state, whether on the national platform)."""
    from pos_plugin.reconcile.close import closed_state
    from pos_plugin.reconcile.national import is_national, reconcile_for

    journals, ledger, pharmacy = _sources(args)
    day = args.date or dt.datetime.now(SHANGHAI).date()
    # the CSV's msgids sheet and --json list every msgid; otherwise only totals and breaks
    every = bool(getattr(args, "csv", None) or getattr(args, "json", None))
    try:
        rec = reconcile_for(day, journals, ledger, pharmacy, resolve=not args.no_resolve,
                            every_msgid=every)  # fmt: skip
        wanted = getattr(args, "reverse_msgid", None)
        if wanted:
            _reverse_one(rec, journals, ledger, wanted, args.by, args.reason or "", _paper(args))
            rec = reconcile_for(day, journals, ledger, pharmacy, resolve=not args.no_resolve,
                                every_msgid=every)  # fmt: skip
        national = is_national(ledger)
    finally:
        ledger.close()
    return rec, journals, closed_state(journals, rec), national


def _paper(args: argparse.Namespace) -> Any:
    """The till's receipt printer from ``--config`` ([receipt]), else 80 mm."""
    from pos_plugin.config import load_config
    from pos_plugin.reconcile.actions import Paper

    if not args.config:
        return Paper()
    receipt = load_config(args.config).receipt
    return Paper(receipt.store_name, receipt.width)


def _reverse_one(rec: Reconciliation, journals: list[JournalSource], ledger: Any, msgid: str,
                 by: str, reason: str, paper: Any) -> None:  # fmt: skip
    """The break's reversal by msgid (``tools.take_reverse``), or say why not; the
    reversal's receipt after it, where it credited accounts back (to print and hand over)."""
    from pos_plugin.reconcile.errors import ReconcileError
    from pos_plugin.reconcile.tools import take_reverse

    try:
        done = take_reverse(rec, journals, ledger, msgid, by=by, reason=reason, paper=paper)
    except LookupError as e:
        raise ReconcileError(
            f"{e}: only a break offering \"reverse by msgid\" (可操作 action) can be "
            "reversed this way"
        ) from None
    said = {"recorded": "已记入中心的冲正 the centre's reversal journaled",
            "not_charged": "中心确认未扣款 the ledger confirmed nothing was charged"}
    print(
        f"冲正 reverse by msgid {msgid}: "
        + ("之前已完成，本次未发送任何请求 already done before: nothing was sent" if done["already"]
           else said.get(done["outcome"], "已完成 done"))
    )  # fmt: skip
    if done.get("receipt"):
        print("冲正小票 reversal receipt:")
        print("\n".join(done["receipt"]))


def _history_lines(history: list[dict[str, Any]]) -> list[str]:
    out = ["", "关账记录 close history:"]
    for h in history:
        out.append(
            f"  {str(h['at'])[:19].replace('T', ' ')}  "
            + ("关账 closed  " if h["action"] == "closed" else "重新打开 reopened  ")
            + f"by {h['by']}"
            + (f"; 原因 reason: {h['reason']}" if h["reason"] else "")
            + (f" [{'; '.join(h['overrides'])}]" if h["overrides"] else "")
        )
    return out


def summary(rec: Reconciliation, closed: dict[str, Any] | None = None) -> str:
    """The text a manager reads in the terminal: status, totals side by side, each break
    (a status mismatch with what the cashier took)."""
    from pos_plugin.reconcile.csv_report import cashier_took

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
            lines.append(
                f"    可操作 action: {b.action}, reverse by msgid (pos-plugin reconcile --date {rec.date} "
                f"--reverse-msgid {b.msgid})"
            )
        if b.explanation:
            lines.append(f"    {b.explanation.what_zh}")
            lines.append(f"    {b.explanation.what_en}")
        took = cashier_took(b) if b.kind is BreakKind.STATUS_MISMATCH else None
        if took:
            lines.append(f"    收银员收取: {took[0]}")
            lines.append(f"    {took[1]}")
        if b.explanation:
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
    from pos_plugin.reconcile.close import day_history

    args = build_reconcile_parser().parse_args(argv)
    rec, journals, closed, _national = _run(args)
    history = day_history(journals, rec.date, rec.pharmacy_code)
    print(summary(rec, closed))
    if history:
        print("\n".join(_history_lines(history)))
    if args.csv:
        from pos_plugin.reconcile.actions import sale_refs
        from pos_plugin.reconcile.csv_report import write_sheets

        for written in write_sheets(rec, args.csv, sale_refs(rec, journals)):
            print(f"CSV: {written.resolve()}")
    if args.html:
        from pos_plugin.reconcile.page_html import write_html

        print(f"HTML: {write_html(rec, args.html, closed, history).resolve()}")
    if args.json:
        import json

        body = rec.as_dict(details=True)
        body["closed"] = closed
        body["history"] = history
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(body, f, ensure_ascii=False, indent=1)
        print(f"JSON: {os.path.abspath(args.json)}")
    return 0 if rec.balanced else 1


def _close(argv: Sequence[str] | None) -> int:
    from pos_plugin.reconcile.close import CloseRefused, close_day, day_history
    from pos_plugin.reconcile.errors import DayAlreadyClosed, DayNotBalanced

    args = build_close_parser().parse_args(argv)
    if args.date is None:
        print("close-day needs --date YYYY-MM-DD", file=sys.stderr)
        return 2
    rec, journals, _closed, national = _run(args)
    print(summary(rec))
    print()
    try:
        records = close_day(journals, rec, reason=args.reason, closed_by=args.by,
                            force=args.force, national=national)  # fmt: skip
    except (DayNotBalanced, CloseRefused) as e:
        print(f"不能关账 NOT CLOSED: {e}", file=sys.stderr)
        return 1
    except DayAlreadyClosed as e:
        print(f"已关账 already closed: {e} (reopen it first: pos-plugin reopen-day)",
              file=sys.stderr)  # fmt: skip
        return 1
    print(
        f"已关账 CLOSED {rec.date} in {len(records)} journal(s)"
        + (f"; 原因 reason kept: {args.reason}" if records and records[0]["reason"] else "")
    )
    print("之后该日的销售将被拒绝 / later sales dated that day are refused.")
    print("\n".join(_history_lines(day_history(journals, rec.date, rec.pharmacy_code))))
    return 0


def _reopen(argv: Sequence[str] | None) -> int:
    from pos_plugin.config import ConfigError, load_config
    from pos_plugin.journal.postgres import SharedJournal, is_postgres_url
    from pos_plugin.journal.sources import open_source, pharmacy_codes
    from pos_plugin.reconcile.close import day_history, reopen_day
    from pos_plugin.reconcile.errors import DayNotClosed

    args = build_reopen_parser().parse_args(argv)
    cfg = load_config(args.config) if args.config else None
    code = args.pharmacy or (cfg.pharmacy.code if cfg is not None else None)
    given = list(args.journal) or ([cfg.journal_target] if cfg is not None else [])
    if not given:
        raise ConfigError("give --journal FILE (one per till) or --config config.toml")
    journals: list[JournalSource] = [
        SharedJournal(j, code) if is_postgres_url(j) else os.path.abspath(j) for j in given
    ]
    if code is None:
        found: set[str] = set()
        for j in journals:
            db, _ = open_source(j)
            try:
                found |= pharmacy_codes(db)
            finally:
                db.close()
        if len(found) != 1:
            raise ConfigError("give --pharmacy CODE: the journals do not name one pharmacy")
        code = found.pop()
    try:
        rows = reopen_day(journals, args.date, code, reason=args.reason, by=args.by)
    except DayNotClosed as e:
        print(f"未重新打开 NOT REOPENED: {e}", file=sys.stderr)
        return 1
    print(f"已重新打开 REOPENED {args.date} in {len(rows)} journal(s); 原因 reason kept: "
          f"{args.reason}")  # fmt: skip
    print("该日可以再次销售和关账 / sales dated that day are taken again; close it again later.")
    print("\n".join(_history_lines(day_history(journals, args.date, code))))
    return 0


def reconcile_main(argv: Sequence[str] | None = None) -> int:
    """``pos-plugin reconcile ...``: 0 balanced, 1 breaks, 2 usage/config, 3 cannot read."""
    return _guard(_reconcile, argv)


def close_day_main(argv: Sequence[str] | None = None) -> int:
    """``pos-plugin close-day ...``: 0 closed, 1 refused, 2 usage/config, 3 cannot read."""
    return _guard(_close, argv)


def reopen_day_main(argv: Sequence[str] | None = None) -> int:
    """``pos-plugin reopen-day ...``: 0 reopened, 1 refused, 2 usage/config, 3 cannot read."""
    return _guard(_reopen, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pos_plugin.reconcile.cli reconcile|close-day|reopen-day ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "close-day":
        return close_day_main(argv[1:])
    if argv and argv[0] == "reopen-day":
        return reopen_day_main(argv[1:])
    if argv and argv[0] == "reconcile":
        return reconcile_main(argv[1:])
    return reconcile_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
