"""Storage for the sandbox ledger: SQLite (default) or PostgreSQL, plain SQL, no ORM.

Why no ORM: the hot path is eight short statements in one transaction (four
reads sent together, four writes), and both engines cache prepared statements for
us (``sqlite3``'s statement cache, psycopg's automatic server-side prepare). One
connection per thread keeps the path lock-free in Python.

Concurrency model, the same on both engines:
- Writes go through one writer thread per process that commits concurrent
  requests together in one transaction (group_commit.py). Writers of
  several processes take turns, one batch at a time: SQLite through a lock file
  (``<db>.writer-lock``) and ``BEGIN IMMEDIATE`` (the database write lock taken up
  front); PostgreSQL through a transaction-level advisory lock. Two copies of one
  request are thus serialised on the idempotency check.
- SQLite: WAL mode with ``synchronous=FULL`` so a commit is durable; reads use
  per-thread connections (WAL snapshots).
- PostgreSQL: READ COMMITTED plus ``SELECT ... FOR UPDATE`` on the accounts a
  settlement touches, in ``account_id`` order: a row lock against any writer that
  does not go through the writer lock.
Balances also carry ``CHECK (balance >= 0)``: the last line of defence.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from pos_plugin.ledger.own.sandbox.group_commit import GroupCommitter
from pos_plugin.world import World

Row = tuple[Any, ...]
T = TypeVar("T")

# PostgreSQL keeps up to 64 subtransactions (savepoints that wrote) of a transaction
# in shared memory; past that, every other session's snapshot looks them up on disk.
PG_MAX_BATCH = 64
_PG_WRITER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('pos-plugin sandbox ledger writer'))"


class Account(NamedTuple):
    balance: int
    owner: str  # a person's psn_no, or the pharmacy code of a receivable
    kind: str  # 'personal' or 'receivable'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pharmacies (
  code TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL,
  api_token TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS persons (
  psn_no TEXT PRIMARY KEY, name TEXT NOT NULL, id_number TEXT NOT NULL,
  insurance_type TEXT NOT NULL, insured_region TEXT NOT NULL, insurance_status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (
  card_no TEXT PRIMARY KEY, card_sn TEXT NOT NULL,
  psn_no TEXT NOT NULL REFERENCES persons(psn_no),
  status TEXT NOT NULL, expiry_date TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vouchers (
  token TEXT PRIMARY KEY, psn_no TEXT NOT NULL REFERENCES persons(psn_no));
CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('personal', 'receivable')),
  owner TEXT NOT NULL,
  opening BIGINT NOT NULL CHECK (opening >= 0),
  balance BIGINT NOT NULL CHECK (balance >= 0));
CREATE INDEX IF NOT EXISTS accounts_owner ON accounts(owner, kind);
CREATE TABLE IF NOT EXISTS bindings (
  binding_id TEXT PRIMARY KEY,
  payer TEXT NOT NULL REFERENCES persons(psn_no),
  patient TEXT NOT NULL REFERENCES persons(psn_no),
  relation TEXT NOT NULL, ord INTEGER NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bindings_patient ON bindings(patient, ord);
CREATE TABLE IF NOT EXISTS entries (
  seq {serial},
  entry_id TEXT NOT NULL UNIQUE,
  msgid TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('sale', 'reversal')),
  pharmacy_code TEXT NOT NULL,
  terminal_id TEXT NOT NULL,
  operator TEXT NOT NULL,
  patient_psn_no TEXT NOT NULL,
  original_id TEXT,
  status TEXT NOT NULL,
  total BIGINT NOT NULL, personal_account BIGINT NOT NULL,
  mutual_aid BIGINT NOT NULL, cash BIGINT NOT NULL,
  proxy INTEGER NOT NULL,
  created_at TEXT NOT NULL, business_date TEXT NOT NULL,
  legs TEXT NOT NULL, balances_after TEXT NOT NULL, lines TEXT NOT NULL,
  reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_day ON entries(pharmacy_code, business_date, seq);
CREATE INDEX IF NOT EXISTS entries_day_terminal
  ON entries(pharmacy_code, business_date, terminal_id, seq,
             kind, total, personal_account, mutual_aid, cash);
CREATE UNIQUE INDEX IF NOT EXISTS entries_one_reversal ON entries(original_id)
  WHERE original_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS postings (
  entry_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(account_id),
  amount BIGINT NOT NULL CHECK (amount <> 0),
  PRIMARY KEY (entry_id, account_id)){without_rowid};
CREATE TABLE IF NOT EXISTS idempotency (
  msgid TEXT PRIMARY KEY, pharmacy_code TEXT NOT NULL, request_hash TEXT NOT NULL,
  status INTEGER NOT NULL, response TEXT NOT NULL){without_rowid};
"""


def receivable_id(pharmacy_code: str) -> str:
    """The pharmacy's receivable account: where every member-account debit is credited."""
    return f"RCV{pharmacy_code}"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class Tx:
    """A thin cursor wrapper that speaks ``?`` placeholders on both engines.

    ``dirty`` is set by every write and by any statement that fails: the group
    commit's fast pass (group_commit.py) reads it to know whether a refused job left
    anything to undo. ``run`` and ``many`` do not wait for their answer in the
    writer's pipeline on PostgreSQL, so they return nothing.
    """

    def __init__(self, conn: Any, pg: bool) -> None:
        self._conn = conn
        self.pg = pg
        self.dirty = False

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        try:
            return self._conn.execute(self._sql(sql), params)
        except BaseException:
            self.dirty = True
            raise

    def _fetch(self, cursor: Any) -> list[Row]:
        try:
            rows: list[Row] = cursor.fetchall()
        except BaseException:
            self.dirty = True  # in a pipeline, an earlier statement's error shows here
            raise
        return rows

    def one(self, sql: str, *params: Any) -> Row | None:
        rows = self._fetch(self._execute(sql, params))
        return rows[0] if rows else None

    def all(self, sql: str, *params: Any) -> list[Row]:
        return self._fetch(self._execute(sql, params))

    def each(self, *queries: tuple[str, Sequence[Any]] | None) -> list[list[Row]]:
        """Several reads that do not depend on each other, sent together (in the writer's
        pipeline on PostgreSQL: one round trip); a ``None`` query reads nothing."""
        cursors = [None if q is None else self._execute(*q) for q in queries]
        return [[] if c is None else self._fetch(c) for c in cursors]

    def run(self, sql: str, *params: Any) -> None:
        self.dirty = True
        self._execute(sql, params)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.dirty = True
        if self.pg:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self._conn.executemany(sql, rows)

    def accounts_query(self, account_ids: Sequence[str]) -> tuple[str, Sequence[Any]] | None:
        """The read of ``lock_accounts`` as a query for ``each``."""
        ids = sorted(set(account_ids))
        if not ids:
            return None
        if self.pg:
            return ("SELECT account_id, balance, owner, kind FROM accounts "
                    "WHERE account_id = ANY(?) ORDER BY account_id FOR UPDATE", (ids,))
        marks = ",".join("?" * len(ids))
        return ("SELECT account_id, balance, owner, kind FROM accounts "
                f"WHERE account_id IN ({marks})", ids)

    @staticmethod
    def accounts(rows: list[Row]) -> dict[str, Account]:
        return {r[0]: Account(int(r[1]), str(r[2]), str(r[3])) for r in rows}

    def lock_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """These accounts (those that exist), row-locked in a fixed order on PostgreSQL."""
        (rows,) = self.each(self.accounts_query(account_ids))
        return self.accounts(rows)

    def post(self, postings: Sequence[tuple[str, str, int]]) -> None:
        """Record ``(entry_id, account_id, amount)`` postings and move each account's
        balance by its amount: two statements for all of them, whatever their number."""
        if not postings:
            return
        rows = ",".join(["(?, ?, ?)"] * len(postings))
        values = [v for posting in postings for v in posting]
        self.run(
            "UPDATE accounts SET balance = balance + v.column3 "
            f"FROM (VALUES {rows}) AS v WHERE accounts.account_id = v.column2",
            *values,
        )
        self.run(f"INSERT INTO postings (entry_id, account_id, amount) VALUES {rows}", *values)

    @property
    def for_update(self) -> str:
        return " FOR UPDATE" if self.pg else ""


class Store:
    """Connections (one per thread), schema, seeding and the audit queries."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = is_postgres(url)
        self._local = threading.local()
        self._conns: list[Any] = []
        self._guard = threading.Lock()
        self._writer: GroupCommitter | None = None

    # ------------------------------------------------------------------ connections
    def _connect(self) -> Any:
        if self.pg:
            import psycopg  # optional dependency: only needed for a PostgreSQL URL

            return psycopg.connect(self.url, autocommit=True)
        conn = sqlite3.connect(
            self.url, isolation_level=None, check_same_thread=False, timeout=30.0,
            cached_statements=256,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._guard:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with self._guard:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):  # closing at shutdown: nothing else to do
                conn.close()
        self._local = threading.local()

    @contextmanager
    def write(self, lock_key: str | None = None) -> Iterator[Tx]:
        """A write transaction outside the writer thread (seeding a new database);
        commits on normal exit, rolls back on any exception."""
        conn = self._conn()
        conn.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
        tx = Tx(conn, self.pg)
        try:
            if self.pg and lock_key is not None:
                tx.one("SELECT pg_advisory_xact_lock(hashtext(?))", lock_key)
            yield tx
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def transact(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` in the writer's next batch; its result once committed."""
        return self._group().submit(fn)

    async def transact_async(self, fn: Callable[[Tx], T]) -> T:
        """``transact`` for a handler on the event loop: awaits instead of blocking it
        (the writer thread wakes the loop when the batch is durable; no thread-pool hop)."""
        return await self._group().submit_async(fn)

    def _group(self) -> GroupCommitter:
        if self._writer is None:
            with self._guard:
                if self._writer is None:
                    self._writer = self._new_writer()
        return self._writer

    def _new_writer(self) -> GroupCommitter:
        if self.pg:
            return GroupCommitter(self._connect, lambda c: Tx(c, True),
                                  begin=("BEGIN", _PG_WRITER_LOCK), max_batch=PG_MAX_BATCH,
                                  pipeline=lambda c: c.pipeline(),
                                  is_broken=lambda c: bool(c.broken or c.closed))
        lock = None if self.url == ":memory:" else self.url + ".writer-lock"
        return GroupCommitter(self._connect, lambda c: Tx(c, False), lock)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot for a lookup or a statement page."""
        conn = self._conn()
        conn.execute("BEGIN" if self.pg else "BEGIN DEFERRED")
        try:
            yield Tx(conn, self.pg)
        finally:
            conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ schema and seed
    def init(self, world: World) -> bool:
        """Create the schema and seed it from the world on first start; True if seeded now.

        Idempotent: on an existing database the balances are the ledger's own and
        the world file is not applied again (a restart must not mint money).
        """
        serial = (
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
            if self.pg
            else "INTEGER PRIMARY KEY"
        )
        conn = self._conn()
        schema = _SCHEMA.replace("{serial}", serial)
        schema = schema.replace("{without_rowid}", "" if self.pg else " WITHOUT ROWID")
        for stmt in schema.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        with self.write(lock_key="seed") as tx:
            if tx.one("SELECT value FROM meta WHERE key = 'seeded'") is not None:
                return False
            _seed(tx, world)
            return True

    def meta(self, key: str) -> str | None:
        with self.read() as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else str(row[0])

    def total_balance(self) -> int:
        """Sum of every account, members and receivables: must equal the world's money."""
        with self.read() as tx:
            row = tx.one("SELECT COALESCE(SUM(balance), 0) FROM accounts")
        return int(row[0]) if row else 0

    def audit(self) -> list[str]:
        """Double-entry invariants; an empty list means the books are sound."""
        problems: list[str] = []
        with self.read() as tx:
            for entry_id, s in tx.all(
                "SELECT entry_id, SUM(amount) FROM postings GROUP BY entry_id HAVING SUM(amount) <> 0"
            ):
                problems.append(f"entry {entry_id} postings sum to {s}, not 0")
            for entry_id, acct in tx.all(
                "SELECT entry_id, account_id FROM postings GROUP BY entry_id, account_id "
                "HAVING MIN(amount) < 0 AND MAX(amount) > 0"
            ):
                problems.append(f"entry {entry_id} debits and credits {acct}")
            for acct, opening, bal, moved in tx.all(
                "SELECT a.account_id, a.opening, a.balance, COALESCE(SUM(p.amount), 0) "
                "FROM accounts a LEFT JOIN postings p ON p.account_id = a.account_id "
                "GROUP BY a.account_id, a.opening, a.balance"
            ):
                if int(opening) + int(moved) != int(bal):
                    problems.append(f"account {acct}: {opening} + {moved} != {bal}")
        return problems


def _seed(tx: Tx, world: World) -> None:
    tx.many(
        "INSERT INTO pharmacies (code, name, region, api_token) VALUES (?, ?, ?, ?)",
        [(p.code, p.name, p.region, p.api_token) for p in world.pharmacies],
    )
    tx.many(
        "INSERT INTO persons (psn_no, name, id_number, insurance_type, insured_region, "
        "insurance_status) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (p.psn_no, p.name, p.id_number, p.insurance_type.value, p.insured_region,
             p.insurance_status.value)
            for p in world.persons
        ],
    )
    tx.many(
        "INSERT INTO cards (card_no, card_sn, psn_no, status, expiry_date) VALUES (?, ?, ?, ?, ?)",
        [
            (c.card_no, c.card_sn, p.psn_no, c.status.value, c.expiry_date.isoformat())
            for p in world.persons
            for c in p.cards
        ],
    )
    tx.many(
        "INSERT INTO vouchers (token, psn_no) VALUES (?, ?)",
        [(t, p.psn_no) for p in world.persons for t in p.evoucher_tokens],
    )
    accounts = [
        (p.account_id, "personal", p.psn_no, p.personal_account_balance,
         p.personal_account_balance)
        for p in world.persons
        if p.account_id is not None
    ]
    accounts += [(receivable_id(ph.code), "receivable", ph.code, 0, 0) for ph in world.pharmacies]
    tx.many(
        "INSERT INTO accounts (account_id, kind, owner, opening, balance) VALUES (?, ?, ?, ?, ?)",
        accounts,
    )
    tx.many(
        "INSERT INTO bindings (binding_id, payer, patient, relation, ord, status) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (b.binding_id, b.payer, b.patient, b.relation.value, b.order, b.status.value)
            for b in world.bindings
        ],
    )
    tx.many(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("seeded", "1"),
            ("world_total", str(world.total_money())),
            ("cross_province_pairs", json.dumps(list(world.cross_province_pairs))),
        ],
    )
