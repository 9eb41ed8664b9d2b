"""Storage for the national-platform sandbox: SQLite, plain SQL, double entry.

Why SQLite only (the own sandbox also speaks PostgreSQL): this sandbox is a
reference for the wire, not a load target; one embedded file keeps it a
zero-setup test and demo server on every OS. Every write is ``BEGIN IMMEDIATE``
(the write lock up front, so a read-balance-then-debit never interleaves with
another writer), WAL with ``synchronous=FULL`` (an answered 2102 survives a crash
of the sandbox), one connection per thread.

Money: every settlement is an entry whose postings sum to zero: the member
accounts it draws on (negative) and the pharmacy's receivable (positive); a
reversal (2103, or a 2601 that found a committed 2102) posts the opposite.
``audit()`` checks that, and ``total_balance()`` must always equal the world's
money (``meta.world_total``): nothing is minted or lost.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pos_plugin.world import World

Row = tuple[Any, ...]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pharmacies (
  code TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persons (
  psn_no TEXT PRIMARY KEY, name TEXT NOT NULL, id_number TEXT NOT NULL,
  insutype TEXT NOT NULL, insured_region TEXT NOT NULL, insurance_status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS persons_id ON persons(id_number);
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
  opening INTEGER NOT NULL CHECK (opening >= 0),
  balance INTEGER NOT NULL CHECK (balance >= 0));
CREATE INDEX IF NOT EXISTS accounts_owner ON accounts(owner, kind);
CREATE TABLE IF NOT EXISTS bindings (
  binding_id TEXT PRIMARY KEY,
  payer TEXT NOT NULL REFERENCES persons(psn_no),
  patient TEXT NOT NULL REFERENCES persons(psn_no),
  relation TEXT NOT NULL, ord INTEGER NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bindings_patient ON bindings(patient, ord);
CREATE TABLE IF NOT EXISTS catalogue (
  med_list_codg TEXT PRIMARY KEY, name TEXT NOT NULL,
  insurance_class TEXT NOT NULL CHECK (insurance_class IN ('A', 'B', 'C')),
  price_limit INTEGER);
CREATE TABLE IF NOT EXISTS sign_ins (
  sign_no TEXT PRIMARY KEY, fixmedins_code TEXT NOT NULL, opter TEXT NOT NULL,
  day TEXT NOT NULL, sign_time TEXT NOT NULL, signed_out_at TEXT,
  expired INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sign_ins_day ON sign_ins(fixmedins_code, opter, day);
CREATE TABLE IF NOT EXISTS ids (n INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settlements (
  setl_id TEXT PRIMARY KEY,
  msgid TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('sale', 'reversal')),
  infno TEXT NOT NULL CHECK (infno IN ('2102', '2103', '2601')),
  fixmedins_code TEXT NOT NULL,
  psn_no TEXT NOT NULL,
  mdtrt_id TEXT NOT NULL,
  original_setl_id TEXT REFERENCES settlements(setl_id),
  status TEXT NOT NULL CHECK (status IN ('settled', 'reversed')),
  insutype TEXT NOT NULL, clr_type TEXT NOT NULL,
  medfee_sumamt INTEGER NOT NULL, fund_pay_sumamt INTEGER NOT NULL,
  acct_pay INTEGER NOT NULL, acct_mulaid_pay INTEGER NOT NULL,
  psn_cash_pay INTEGER NOT NULL, balc INTEGER NOT NULL,
  setl_time TEXT NOT NULL, business_date TEXT NOT NULL,
  legs TEXT NOT NULL, setlinfo TEXT NOT NULL, detlcutinfo TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS settlements_one_reversal ON settlements(original_setl_id)
  WHERE original_setl_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS settlements_day ON settlements(fixmedins_code, business_date);
CREATE TABLE IF NOT EXISTS postings (
  setl_id TEXT NOT NULL REFERENCES settlements(setl_id),
  account_id TEXT NOT NULL REFERENCES accounts(account_id),
  amount INTEGER NOT NULL CHECK (amount <> 0),
  PRIMARY KEY (setl_id, account_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  msgid TEXT PRIMARY KEY, fixmedins_code TEXT NOT NULL, infno TEXT NOT NULL,
  request_hash TEXT NOT NULL, response TEXT NOT NULL, received_at TEXT NOT NULL,
  omsgid TEXT, outcome TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
  file_qury_no TEXT PRIMARY KEY, fixmedins_code TEXT NOT NULL, filename TEXT NOT NULL,
  content BLOB NOT NULL, dld_endtime TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sales_uploads (
  fixmedins_code TEXT NOT NULL, rtal_docno TEXT NOT NULL, setl_id TEXT NOT NULL,
  msgid TEXT NOT NULL, lines TEXT NOT NULL, received_at TEXT NOT NULL,
  PRIMARY KEY (fixmedins_code, rtal_docno));
CREATE TABLE IF NOT EXISTS sales_returns (
  fixmedins_code TEXT NOT NULL, setl_id TEXT NOT NULL, medins_prod_sel_no TEXT NOT NULL,
  msgid TEXT NOT NULL, lines TEXT NOT NULL, received_at TEXT NOT NULL,
  PRIMARY KEY (fixmedins_code, setl_id, medins_prod_sel_no));
CREATE TABLE IF NOT EXISTS catalogue_mappings (
  fixmedins_code TEXT NOT NULL, fixmedins_hilist_id TEXT NOT NULL,
  fixmedins_hilist_name TEXT NOT NULL, list_type TEXT NOT NULL, med_list_codg TEXT NOT NULL,
  begndate TEXT NOT NULL, enddate TEXT NOT NULL, detail TEXT NOT NULL, msgid TEXT NOT NULL,
  received_at TEXT NOT NULL, PRIMARY KEY (fixmedins_code, fixmedins_hilist_id));
CREATE INDEX IF NOT EXISTS messages_omsgid ON messages(omsgid) WHERE omsgid IS NOT NULL;
"""


def receivable_id(fixmedins_code: str) -> str:
    """The pharmacy's receivable account: where every member-account debit is credited."""
    return f"RCV{fixmedins_code}"


def personal_id(psn_no: str) -> str:
    """A person's personal account, named as the world file derives it."""
    return f"PA{psn_no}"


class Tx:
    """A cursor wrapper: one, all, run."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def one(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, *params: Any) -> list[Row]:
        return list(self._conn.execute(sql, params).fetchall())

    def run(self, sql: str, *params: Any) -> int:
        return self._conn.execute(sql, params).rowcount

    def insert_id(self, sql: str, *params: Any) -> int:
        cur = self._conn.execute(sql, params)
        assert cur.lastrowid is not None
        return int(cur.lastrowid)


class Store:
    """Connections (one per thread), schema, seeding and the audit queries."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._guard = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._guard:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._guard:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):  # closing at shutdown: nothing else to do
                conn.close()
        self._local = threading.local()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: commits on normal exit, rolls back on any exception."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot."""
        conn = self._conn()
        conn.execute("BEGIN DEFERRED")
        try:
            yield Tx(conn)
        finally:
            conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ schema and seed
    def init(self, world: World) -> bool:
        """Create the schema and seed it on first start; True if seeded now.

        On an existing database the balances are the platform's own and the world
        file is not applied again (a restart must not mint money).
        """
        conn = self._conn()
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        with self.write() as tx:
            if tx.one("SELECT value FROM meta WHERE key = 'seeded'") is not None:
                return False
            _seed(tx, world)
            return True

    def meta(self, key: str) -> str | None:
        with self.read() as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else str(row[0])

    def balance(self, account_id: str) -> int | None:
        with self.read() as tx:
            row = tx.one("SELECT balance FROM accounts WHERE account_id = ?", account_id)
        return None if row is None else int(row[0])

    def balances(self) -> dict[str, int]:
        with self.read() as tx:
            return {str(a): int(b) for a, b in tx.all("SELECT account_id, balance FROM accounts")}

    def total_balance(self) -> int:
        """Sum of every account, members and receivables: must equal the world's money."""
        with self.read() as tx:
            row = tx.one("SELECT COALESCE(SUM(balance), 0) FROM accounts")
        return int(row[0]) if row else 0

    def audit(self) -> list[str]:
        """Double-entry and bookkeeping invariants; an empty list means the books are sound."""
        problems: list[str] = []
        with self.read() as tx:
            for setl_id, s in tx.all(
                "SELECT setl_id, SUM(amount) FROM postings GROUP BY setl_id HAVING SUM(amount) <> 0"
            ):
                problems.append(f"settlement {setl_id} postings sum to {s}, not 0")
            for acct, opening, bal, moved in tx.all(
                "SELECT a.account_id, a.opening, a.balance, COALESCE(SUM(p.amount), 0) "
                "FROM accounts a LEFT JOIN postings p ON p.account_id = a.account_id "
                "GROUP BY a.account_id, a.opening, a.balance"
            ):
                if int(opening) + int(moved) != int(bal):
                    problems.append(f"account {acct}: {opening} + {moved} != {bal}")
            for setl_id, kind, acct_pay, posted in tx.all(
                "SELECT s.setl_id, s.kind, s.acct_pay, COALESCE(SUM(p.amount), 0) "
                "FROM settlements s LEFT JOIN postings p ON p.setl_id = s.setl_id "
                "AND p.account_id LIKE 'RCV%' GROUP BY s.setl_id, s.kind, s.acct_pay"
            ):
                if int(acct_pay) != int(posted):
                    problems.append(f"settlement {setl_id} ({kind}): acct_pay {acct_pay} "
                                    f"but {posted} credited to the receivable")
            for setl_id, medfee, fund, acct, cash, mulaid in tx.all(
                "SELECT setl_id, medfee_sumamt, fund_pay_sumamt, acct_pay, psn_cash_pay, "
                "acct_mulaid_pay FROM settlements"
            ):
                if medfee != fund + acct + cash:
                    problems.append(f"settlement {setl_id}: medfee {medfee} != "
                                    f"fund {fund} + acct {acct} + cash {cash}")
                if abs(mulaid) > abs(acct) or (mulaid and (mulaid > 0) != (acct > 0)):
                    problems.append(f"settlement {setl_id}: mutual aid {mulaid} not within "
                                    f"acct_pay {acct}")
            for (orig,) in tx.all(
                "SELECT s.setl_id FROM settlements s WHERE s.kind = 'sale' AND "
                "(s.status = 'reversed') <> EXISTS (SELECT 1 FROM settlements r "
                "WHERE r.original_setl_id = s.setl_id)"
            ):
                problems.append(f"settlement {orig}: status and reversal rows disagree")
        world = self.meta("world_total")
        if world is not None and int(world) != self.total_balance():
            problems.append(f"money not conserved: {self.total_balance()} != world {world}")
        return problems


def _seed(tx: Tx, world: World) -> None:
    for ph in world.pharmacies:
        tx.run("INSERT INTO pharmacies (code, name, region) VALUES (?, ?, ?)",
               ph.code, ph.name, ph.region)
        tx.run("INSERT INTO accounts (account_id, kind, owner, opening, balance) "
               "VALUES (?, 'receivable', ?, 0, 0)", receivable_id(ph.code), ph.code)
    for p in world.persons:
        tx.run(
            "INSERT INTO persons (psn_no, name, id_number, insutype, insured_region, "
            "insurance_status) VALUES (?, ?, ?, ?, ?, ?)",
            p.psn_no, p.name, p.id_number.upper(), p.insurance_type.value, p.insured_region,
            p.insurance_status.value,
        )
        for c in p.cards:
            tx.run("INSERT INTO cards (card_no, card_sn, psn_no, status, expiry_date) "
                   "VALUES (?, ?, ?, ?, ?)",
                   c.card_no, c.card_sn, p.psn_no, c.status.value, c.expiry_date.isoformat())
        for t in p.evoucher_tokens:
            tx.run("INSERT INTO vouchers (token, psn_no) VALUES (?, ?)", t, p.psn_no)
        if p.personal_account_balance is not None:
            tx.run("INSERT INTO accounts (account_id, kind, owner, opening, balance) "
                   "VALUES (?, 'personal', ?, ?, ?)", personal_id(p.psn_no), p.psn_no,
                   p.personal_account_balance, p.personal_account_balance)
    for b in world.bindings:
        tx.run("INSERT INTO bindings (binding_id, payer, patient, relation, ord, status) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               b.binding_id, b.payer, b.patient, b.relation.value, b.order, b.status.value)
    for item in world.catalogue:
        tx.run("INSERT INTO catalogue (med_list_codg, name, insurance_class, price_limit) "
               "VALUES (?, ?, ?, ?)",
               item.med_list_codg, item.name, item.insurance_class, item.price_limit)
    for key, value in (("seeded", "1"), ("world_total", str(world.total_money())),
                       ("cross_province_pairs", json.dumps(list(world.cross_province_pairs)))):
        tx.run("INSERT INTO meta (key, value) VALUES (?, ?)", key, value)
