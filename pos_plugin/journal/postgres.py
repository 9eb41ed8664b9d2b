"""The journal on PostgreSQL: one shared database for the tills of a store, or of a chain.

Why: a chain that reconciles many tills and stores together points them at one
PostgreSQL database instead of one SQLite file per till (ARCHITECTURE.md, "Where
scale comes from"); no home-made server. ``Journal`` keeps its logic and its SQL;
this module holds what PostgreSQL needs in addition, and why:

- Rows carry ``pharmacy_code`` and ``terminal_id``; a sale is keyed by
  (pharmacy_code, terminal_id, sale_ref). Terminal ids are only unique within a
  pharmacy (the ledger knows a till by pharmacy code + terminal id), so the
  pharmacy is part of every key.
- Each till keeps its **own** hash chain: events carry the till, a till's next
  event chains to that till's last one, and a unique index on (till, prev_hash)
  makes a fork impossible even if every other guard failed.
- One till's multi-statement change takes a transaction-level advisory lock on
  the till (``pg_advisory_xact_lock(hashtext(pharmacy), hashtext(terminal))``,
  the two-key form, whose key space never overlaps the sandbox ledger's one-key
  msgid locks) under READ COMMITTED, so two agent processes for one till by
  mistake wait for each other instead of forking the chain. READ COMMITTED is
  asked for explicitly: under REPEATABLE READ the snapshot would predate the
  lock wait and miss the other writer's last event.
- ``msgid_clock`` is keyed by (pharmacy_code, till_index), the namespace a msgid
  is unique in, and its row is locked while a msgid is allocated: two tills
  given the same index by mistake share one counter instead of issuing the same
  msgid (which the UNIQUE msgid column would then refuse mid-sale).
- Durability: a committed transaction with ``synchronous_commit`` on is the
  equivalent of SQLite's ``synchronous=FULL``; the one step that may be lost
  (a sale merely received) uses ``SET LOCAL synchronous_commit = off``.
- JSON columns stay TEXT (not jsonb), so a row's digest covers the exact text
  written; money columns are BIGINT (PostgreSQL's INTEGER is 32-bit).

psycopg is imported only when a ``postgresql://`` URL is used (the ``postgres``
extra), so a till on SQLite does not need it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PG_SCHEMES = ("postgresql://", "postgres://")

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    pharmacy_code TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    sale_ref TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    msgid TEXT UNIQUE,
    settlement_id TEXT,
    business_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    patient_psn_no TEXT,
    patient_id_masked TEXT,
    patient_id_hmac TEXT,
    proxy INTEGER NOT NULL DEFAULT 0,
    evidence TEXT,
    total BIGINT,
    account_payable BIGINT,
    personal_account BIGINT,
    mutual_aid BIGINT,
    cash BIGINT,
    plan TEXT,
    result TEXT,
    refusal_code TEXT,
    reversal_msgid TEXT UNIQUE,
    reversal_id TEXT,
    PRIMARY KEY (pharmacy_code, terminal_id, sale_ref)
);
CREATE INDEX IF NOT EXISTS sales_by_state ON sales(pharmacy_code, terminal_id, state);
CREATE INDEX IF NOT EXISTS sales_by_day ON sales(pharmacy_code, business_date);
CREATE INDEX IF NOT EXISTS sales_by_patient ON sales(patient_id_hmac);
CREATE INDEX IF NOT EXISTS sales_by_reversal_day ON sales(substr(reversal_msgid, 13, 8));
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pharmacy_code TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    sale_ref TEXT NOT NULL,
    at TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    row_digest TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_till ON events(pharmacy_code, terminal_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS events_one_successor
    ON events(pharmacy_code, terminal_id, prev_hash);
CREATE TABLE IF NOT EXISTS msgid_clock (
    pharmacy_code TEXT NOT NULL,
    till_index INTEGER NOT NULL CHECK (till_index BETWEEN 0 AND 9),
    stamp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (pharmacy_code, till_index)
);
CREATE TABLE IF NOT EXISTS pending_reversals (
    msgid TEXT PRIMARY KEY,
    pharmacy_code TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    sale_ref TEXT NOT NULL,
    reversal_msgid TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    escalated INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pending_by_till
    ON pending_reversals(pharmacy_code, terminal_id, done, next_attempt_at);
"""

# Serialises CREATE ... IF NOT EXISTS between processes starting together (two
# concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalogue).
_DDL_LOCK = 7_201_101
DDL_LOCK = _DDL_LOCK  # also taken by journal.schema.migrate_pg


class JournalUnavailable(Exception):
    """The PostgreSQL journal cannot be reached, or holds no journal: said with the URL
    (its password removed) so an installer can act on it."""


def is_postgres_url(target: object) -> bool:
    """A ``postgresql://`` (or ``postgres://``) URL given as text; a Path is always a file."""
    return isinstance(target, str) and target.startswith(PG_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password (in the user part or as ``?password=``): for logs and labels."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_has_password(url: str) -> bool:
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return ":" in user or any(k == "password" for k, _ in parse_qsl(parts.query))


class PgDb:
    """One psycopg connection (autocommit; transactions are explicit) that speaks the
    journal's ``?`` placeholders, and reopens itself once broken (a till runs for
    days; a database restart must not need an agent restart)."""

    def __init__(self, target: SharedJournal, *, dict_rows: bool) -> None:
        self._target = target
        self._dict_rows = dict_rows
        self.conn: Any = target.connect(dict_rows=dict_rows)

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params or None)

    def executemany(self, sql: str, params_seq: Sequence[Sequence[Any]], /) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), params_seq)

    def scalar(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        """The first column of the first row (None without a row), whatever the row factory."""
        from psycopg.rows import tuple_row

        with self.conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(sql.replace("?", "%s"), params or None).fetchone()
        return None if row is None else row[0]

    def stream(
        self, sql: str, params: Sequence[Any] = (), size: int = 10_000
    ) -> Iterator[list[Any]]:
        """The rows of a query in lists of up to ``size``, from a server-side cursor: a
        result of any length is never all in this process (a plain ``execute`` keeps
        the whole result in libpq's memory). Only inside a transaction (``BEGIN``)."""
        from psycopg.rows import tuple_row

        with self.conn.cursor(name="reconcile_stream", row_factory=tuple_row) as cur:
            cur.itersize = size
            cur.execute(sql.replace("?", "%s"), params or None)
            while rows := cur.fetchmany(size):
                yield rows

    def reopen_if_broken(self) -> None:
        """Only between transactions: a new connection mid-transaction would lose it."""
        if self.conn.closed or self.conn.broken:
            self.conn = self._target.connect(dict_rows=self._dict_rows)

    def rollback_quietly(self) -> None:
        if not (self.conn.closed or self.conn.broken):
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class SharedJournal:
    """A shared PostgreSQL journal as a reconciliation source: where, and whose rows.

    ``pharmacy_code`` and ``terminals`` narrow what the readers see (``None`` / empty:
    every pharmacy / every till). The password, when not in the URL, comes from the
    caller (the keyring's ``journal_db_password``); libpq's own ``PGPASSWORD`` and
    ``~/.pgpass`` also work. It is never part of the label, repr or equality.
    """

    url: str
    pharmacy_code: str | None = None
    terminals: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, source: str | SharedJournal) -> SharedJournal:
        return source if isinstance(source, SharedJournal) else cls(source)

    def scoped(self, pharmacy_code: str | None, terminals: Sequence[str] = ()) -> SharedJournal:
        return dataclasses.replace(self, pharmacy_code=pharmacy_code, terminals=tuple(terminals))

    @property
    def label(self) -> str:
        """Where rows came from, as a reconciliation shows it (no password)."""
        scope = [x for x in (self.pharmacy_code, ",".join(self.terminals)) if x]
        return redact(self.url) + (f" [{' '.join(scope)}]" if scope else "")

    def __str__(self) -> str:
        return self.label

    def connect(self, *, dict_rows: bool = False) -> Any:
        """A psycopg connection in autocommit mode; errors name the URL, never the password."""
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
            from psycopg.rows import dict_row, tuple_row
        except ImportError:
            raise JournalUnavailable(
                "a postgresql:// journal needs psycopg: pip install 'pos-plugin[postgres]'"
            ) from None
        try:
            given = conninfo_to_dict(self.url)
        except psycopg.Error as e:
            raise JournalUnavailable(
                f"the journal URL {redact(self.url)} is not a valid PostgreSQL URL: {_first_line(e)}"
            ) from None
        kw: dict[str, Any] = {}
        if "connect_timeout" not in given:
            kw["connect_timeout"] = 10
        if "application_name" not in given:
            kw["application_name"] = "pos-plugin journal"
        if self.password is not None and "password" not in given:
            kw["password"] = self.password
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row if dict_rows else tuple_row,
                **kw,
            )
        except psycopg.OperationalError as e:
            raise JournalUnavailable(
                f"the journal database {redact(self.url)} cannot be reached: {_first_line(e)}"
            ) from None

    def open_reader(self) -> PgDb:
        """A connection on which ``sales`` and ``pending_reversals`` show this source's rows only.

        Temporary views of the same names (PostgreSQL searches the session's
        temporary schema first) narrow them to the pharmacy and tills asked for, so
        the reconciliation's reading SQL is one text for SQLite files and for the
        shared journal. Raises JournalUnavailable when the database holds no journal.
        """
        from psycopg import sql

        db = PgDb(self, dict_rows=False)
        try:
            tables = {}
            for name in ("sales", "pending_reversals"):
                row = db.execute(
                    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(?)",
                    (name,),
                ).fetchone()
                if row is None:
                    raise JournalUnavailable(f"journal {self.label} not found (no table {name})")
                tables[name] = sql.Identifier(row[0], name)
            conds = []
            if self.pharmacy_code is not None:
                conds.append(sql.SQL("pharmacy_code = {}").format(sql.Literal(self.pharmacy_code)))
            if self.terminals:
                conds.append(
                    sql.SQL("terminal_id IN ({})").format(
                        sql.SQL(", ").join(sql.Literal(t) for t in self.terminals)
                    )
                )
            if conds:
                where = sql.SQL(" AND ").join(conds)
                for name, real in tables.items():
                    db.conn.execute(
                        sql.SQL("CREATE TEMP VIEW {} AS SELECT * FROM {} WHERE {}").format(
                            sql.Identifier(name), real, where
                        )
                    )
        except BaseException:
            db.close()
            raise
        return db


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def ensure_schema(db: PgDb, ddl: str) -> None:
    """Create tables and indexes once, even when several tills start at the same moment.

    When every table already exists nothing is run: a till's database role then
    needs no CREATE privilege (PostgreSQL checks it even for ``IF NOT EXISTS``),
    so a chain can create the schema once as its owner and give tills DML only.
    """
    tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl)
    if all(db.scalar("SELECT to_regclass(?) IS NOT NULL", (t,)) for t in tables):
        return
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(?)", (_DDL_LOCK,))
        for stmt in ddl.split(";"):
            if stmt.strip():
                db.execute(stmt)
    except BaseException:
        db.rollback_quietly()
        raise
    db.execute("COMMIT")


def begin_till_tx(db: PgDb, pharmacy_code: str, terminal_id: str, *, durable: bool) -> None:
    """Open one till's transaction: READ COMMITTED, the till's advisory lock, and for a
    step whose loss costs no money, no wait for the WAL flush."""
    db.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
    db.execute(
        "SELECT pg_advisory_xact_lock(hashtext(?), hashtext(?))", (pharmacy_code, terminal_id)
    )
    if not durable:
        db.execute("SET LOCAL synchronous_commit = off")
