"""The journal: the till's durable record of every sale, reversal and proxy purchase.

Why it exists: money must never be taken without a record, nor twice. The intent
(state ``settling``, the msgid and the planned legs) is written and fsynced
*before* the settlement request leaves; the outcome after. A crash in between
leaves a ``settling`` row that start-up resolves against the ledger by msgid.

SQLite in WAL mode with ``synchronous=FULL`` (every commit survives power loss).
Every change to a sale appends an event whose hash chains to the previous
event's and carries a digest of the sale row as it then stood, so editing a row
or an event by hand shows up in ``pos-plugin journal verify``.

Given a ``postgresql://`` URL instead of a file, the journal is one till's share
of a PostgreSQL database that several tills (and stores) write together: the
same statements, narrowed to this till's rows, each till with its own hash
chain (postgres.py says what differs and why). The SQLite statements are
unchanged, so existing journal files verify as before.

Personal data: ID numbers are stored masked plus a keyed hash (HMAC-SHA256 with
the journal key from the keyring) to find a person's rows in an audit; never in
clear. No PIN ever reaches this module.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pos_plugin.journal import person_keys
from pos_plugin.journal.legs import legs_column
from pos_plugin.journal.postgres import (
    DDL_LOCK,
    PG_SCHEMA,
    JournalUnavailable,
    PgDb,
    SharedJournal,
    begin_till_tx,
    is_postgres_url,
    redact,
)
from pos_plugin.journal.schema import JournalNotADatabase, migrate_pg, migrate_sqlite
from pos_plugin.rules.identity import mask_id_number, mask_name, normalize_id_number

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The states of a sale, in the order they are normally reached.
RECEIVED = "received"
CARD_READ = "card_read"
VALIDATED = "validated"
SETTLING = "settling"
SETTLED = "settled"
REFUSED = "refused"
FAILED = "failed"  # stopped before any request left: nothing was charged
UNKNOWN = "unknown"  # the ledger may have committed; a reversal is queued (customer paid cash)
REVERSED = "reversed"
FINAL_STATES = frozenset({SETTLED, REFUSED, FAILED, REVERSED})

UPLOAD_SALE = "3505"  # 商品销售: a settled national sale
UPLOAD_RETURN = "3506"  # 商品销售退货: that sale reversed (its packs came back)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    sale_ref TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    msgid TEXT UNIQUE,
    settlement_id TEXT,
    business_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    patient_psn_no TEXT,
    patient_id_masked TEXT,
    patient_id_hmac TEXT,
    proxy INTEGER NOT NULL DEFAULT 0,
    evidence TEXT,
    total INTEGER,
    account_payable INTEGER,
    personal_account INTEGER,
    mutual_aid INTEGER,
    cash INTEGER,
    plan TEXT,
    result TEXT,
    refusal_code TEXT,
    reversal_msgid TEXT UNIQUE,
    reversal_id TEXT
);
CREATE INDEX IF NOT EXISTS sales_by_state ON sales(state);
CREATE INDEX IF NOT EXISTS sales_by_day ON sales(business_date);
CREATE INDEX IF NOT EXISTS sales_by_patient ON sales(patient_id_hmac);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sale_ref TEXT NOT NULL,
    at TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    row_digest TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_sale ON events(sale_ref);
CREATE TABLE IF NOT EXISTS msgid_clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stamp TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_reversals (
    msgid TEXT PRIMARY KEY,
    sale_ref TEXT NOT NULL,
    reversal_msgid TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    escalated INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
"""

GENESIS = "0" * 64
_SALE_COLUMNS = [
    "sale_ref",
    "request_hash",
    "state",
    "msgid",
    "settlement_id",
    "business_date",
    "created_at",
    "updated_at",
    "terminal_id",
    "patient_psn_no",
    "patient_id_masked",
    "patient_id_hmac",
    "proxy",
    "evidence",
    "total",
    "account_payable",
    "personal_account",
    "mutual_aid",
    "cash",
    "plan",
    "result",
    "refusal_code",
    "reversal_msgid",
    "reversal_id",
]


_COLUMN_NAMES = frozenset(_SALE_COLUMNS)
# The sales columns derived from others (schema version 9: ``legs``, from ``plan``,
# journal/legs.py). Not written by a caller, and not in a row's digest: the chain
# covers what they follow from, and ``verify`` derives them again instead.
_DERIVED_COLUMNS = frozenset({"legs"})
_UNSET = object()  # a column not given (None is a value: NULL)
# The sales columns that hold an integer (money in fen, the proxy flag); the rest hold text.
_INTEGER_COLUMNS = frozenset(
    {"proxy", "total", "account_payable", "personal_account", "mutual_aid", "cash"}
)


def _stored(column: str, value: Any) -> Any:
    """A sales column's value as the table keeps it and a read returns it: JSON text for
    a dict or a list, 1/0 for a bool. The journal digests the row it keeps in memory
    (``Journal._apply``), so a value the table would store as something else (a
    number in a text column, a float) is refused rather than digested wrongly."""
    if isinstance(value, dict | list):
        return _canonical(value)
    if isinstance(value, bool):
        return int(value)
    kind = int if column in _INTEGER_COLUMNS else str
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"journal column {column} takes {kind.__name__}, not {value!r}")
    return value


class SaleRefReused(Exception):
    """The POS sent an existing sale_ref with a different body."""


@dataclass(frozen=True)
class SaleRow:
    """One sale as journaled. The JSON columns (``evidence``, ``plan``, ``result``) are
    decoded when first read: the steps of a sale write them and never read them back."""

    sale_ref: str
    request_hash: str
    state: str
    msgid: str | None
    settlement_id: str | None
    business_date: str
    created_at: str
    updated_at: str
    terminal_id: str
    patient_psn_no: str | None
    patient_id_masked: str | None
    patient_id_hmac: str | None
    proxy: bool
    evidence_json: str | None = field(repr=False)
    total: int | None
    account_payable: int | None
    personal_account: int | None
    mutual_aid: int | None
    cash: int | None
    plan_json: str | None = field(repr=False)
    result_json: str | None = field(repr=False)
    refusal_code: str | None
    reversal_msgid: str | None
    reversal_id: str | None

    @cached_property
    def evidence(self) -> dict[str, Any] | None:
        return _decoded(self.evidence_json)

    @cached_property
    def plan(self) -> dict[str, Any] | None:
        return _decoded(self.plan_json)

    @cached_property
    def result(self) -> dict[str, Any] | None:
        return _decoded(self.result_json)


def _decoded(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class PersonRecord:
    """One row that names a person, for an audit: the parts they played in it and the
    till it was journaled on (``pharmacy_code`` is ``""`` for a till's own file)."""

    row: SaleRow
    roles: tuple[str, ...]
    pharmacy_code: str = ""

    @property
    def till(self) -> str:
        return self.row.terminal_id


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events: int
    sales: int
    problems: tuple[str, ...]


@dataclass(frozen=True)
class PendingReversal:
    msgid: str
    sale_ref: str
    reversal_msgid: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    escalated: bool


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class _Db(Protocol):
    """What the journal needs of a connection: sqlite3's, or PgDb (same ``?`` SQL)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> _Cursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> Any: ...
    def close(self) -> None: ...


def now_shanghai() -> dt.datetime:
    return dt.datetime.now(SHANGHAI)


# The one JSON form the hash chain and the row digests are computed over. One encoder
# for every call: ``json.dumps`` with options builds a new one each time.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
)


def _canonical(obj: Any) -> str:
    return _CANONICAL.encode(obj)


def _canonical_of(members: dict[str, str]) -> str:
    """``_canonical`` of an object whose members are given as their canonical text: the
    same text, without encoding a member (a plan, an evidence) again."""
    return "{" + ",".join(f"{_key(k)}:{members[k]}" for k in sorted(members)) + "}"


@functools.cache
def _key(name: str) -> str:
    """A member name (a column, an event field) as canonical JSON: the few there are."""
    return _canonical(name)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _row_digest(row: dict[str, Any]) -> str:
    """The digest of a sales row that an event carries: its columns but the derived ones
    (``_DERIVED_COLUMNS``), so a row digested before they existed keeps its digest."""
    return _sha(_canonical({k: v for k, v in row.items() if k not in _DERIVED_COLUMNS}))


class Journal:
    """The journal of one till. Thread-safe: one connection behind a lock.

    A till handles one sale at a time, so a lock costs nothing and keeps every
    multi-statement change atomic and the hash chain linear. On PostgreSQL the
    till's advisory lock does the same between processes (postgres.py).

    ``path``: the till's SQLite file, or a ``postgresql://`` URL of a shared
    journal; ``password`` is used for the URL when it holds none (the keyring's
    ``journal_db_password``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        hmac_key: bytes,
        pharmacy_code: str,
        terminal_id: str,
        till_index: int = 0,
        password: str | None = None,
        upgrade: bool = True,
    ) -> None:
        if len(pharmacy_code) != 12:
            raise ValueError("the pharmacy code has 12 characters")
        if not 0 <= till_index <= 9:
            raise ValueError("till_index is a digit, 0 to 9, distinct for each till of a pharmacy")
        self.till_index = till_index
        self.pharmacy_code = pharmacy_code
        self.terminal_id = terminal_id
        self._key = hmac_key
        self._lock = threading.RLock()
        self._tables_seen: set[str] = set()
        self._db: _Db
        self._pg: PgDb | None = None
        # SQL narrowing a statement to this till's rows: empty on SQLite (one file
        # per till, statements exactly as they always were), the till on PostgreSQL.
        self._and = self._where = ""
        self._till: tuple[str, ...] = ()
        if is_postgres_url(path):
            self._shared: SharedJournal | None = SharedJournal(
                str(path), pharmacy_code, (terminal_id,), password
            )
            self.path = redact(str(path))
            self._pg = PgDb(self._shared, dict_rows=True)
            self._db = self._pg
            pg = self._pg
            if upgrade:
                migrate_pg(
                    pg,
                    PG_SCHEMA,
                    where=self.path,
                    lock=DDL_LOCK,
                    table_exists=lambda t: bool(
                        pg.scalar("SELECT to_regclass(?) IS NOT NULL", (t,))
                    ),
                )
            elif not pg.scalar("SELECT to_regclass('sales') IS NOT NULL"):
                # read as it is (journal search, perhaps by a role that may only read)
                pg.close()
                raise JournalUnavailable(f"journal {self.path} not found (no table sales)")
            self._and = " AND pharmacy_code = ? AND terminal_id = ?"
            self._where = " WHERE pharmacy_code = ? AND terminal_id = ?"
            self._till = (pharmacy_code, terminal_id)
            self._keys_pharmacy = pharmacy_code
            self._columns = self._sales_columns()
            return
        self._shared = None
        self._keys_pharmacy = ""  # one till's file (person_keys.py)
        self.path = str(path)
        # The backup copy made before this open upgraded the file (journal/schema.py).
        self.upgrade_backup: Path | None = None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise JournalNotADatabase(f"the journal {self.path} cannot be opened ({e})") from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self.upgrade_backup = migrate_sqlite(db, self.path, _SCHEMA, upgrade=upgrade)
        except sqlite3.DatabaseError as e:
            db.close()
            raise JournalNotADatabase(f"{self.path} is not a journal file ({e})") from None
        except BaseException:
            db.close()
            raise
        self._db = db
        self._columns = self._sales_columns()

    def _sales_columns(self) -> tuple[str, ...]:
        """The sales table's columns, in order, but the derived ones: a new row is
        digested as they hold it."""
        cur: Any = self._db.execute("SELECT * FROM sales LIMIT 0")
        return tuple(d[0] for d in cur.description if d[0] not in _DERIVED_COLUMNS)

    @property
    def is_shared(self) -> bool:
        """True for a shared PostgreSQL journal."""
        return self._pg is not None

    @property
    def source(self) -> str | SharedJournal:
        """What reconciliation reads for this till's store: its file, or on a shared
        journal every till of its pharmacy (the store as a whole)."""
        if self._shared is not None:
            return self._shared.scoped(self.pharmacy_code)
        return self.path

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on this journal's own connection (``?`` placeholders), reopened first
        if PostgreSQL dropped it. Also the sale service's closed-day check, so that a
        shared journal is not asked on a new connection per sale."""
        with self._lock:
            if self._pg is not None:
                self._pg.reopen_if_broken()
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[_Db]:
        """One transaction. ``durable=False`` skips this commit's fsync (WAL with
        synchronous=NORMAL); the next durable commit syncs it too. Only for steps
        whose loss in a power cut loses no money (a sale merely received)."""
        if self._pg is not None:
            with self._lock, self._pg_tx(self._pg, durable) as db:
                yield db
            return
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _pg_tx(self, db: PgDb, durable: bool) -> Iterator[_Db]:
        """The PostgreSQL transaction: this till's advisory lock, READ COMMITTED, and
        ``synchronous_commit = off`` for a step that may be lost (postgres.py)."""
        db.reopen_if_broken()
        try:
            begin_till_tx(db, self.pharmacy_code, self.terminal_id, durable=durable)
            yield db
        except BaseException:
            db.rollback_quietly()
            raise
        db.execute("COMMIT")

    # ------------------------------------------------------------------ identity

    def person_key(self, id_number: str) -> str:
        """The keyed hash that finds a person's rows without storing the number."""
        return hmac.new(
            self._key, normalize_id_number(id_number).encode("utf-8"), hashlib.sha256
        ).hexdigest()

    def evidence_of(self, doc_type: str, number: str, name: str | None = None) -> dict[str, str]:
        """What an audit keeps of a shown document: its type, masked number and keyed hash
        (and the masked name, where one was given)."""
        ev = {
            "doc_type": doc_type,
            "number_masked": mask_id_number(number),
            "number_hmac": self.person_key(number),
        }
        if name:
            ev["name_masked"] = mask_name(name)
        return ev

    def rows_of_person(self, id_number: str, *, scope: str = "till") -> list[PersonRecord]:
        """Every sale, proxy purchase and refused or failed attempt that names this person,
        with the parts they played (``holder``: the card or voucher was theirs;
        ``patient``: their document was shown as the patient's; ``buyer``: they bought
        for someone else; ``family_payer``: their family account paid a part). Found by
        the keyed hash in the person-key table (person_keys.py), one index lookup: the
        number itself is never stored, and the caller should not keep it either.

        ``scope`` on a shared journal: ``till`` (this till's rows), ``store`` (every till
        of this pharmacy) or ``all`` (every pharmacy in the database); a till's own file
        is one till's. A family payer is known to a till only by psn_no: those rows are
        found through the psn_no of the rows where this person was the card holder.
        """
        if scope not in ("till", "store", "all"):
            raise ValueError("scope is till, store or all")
        key = self.person_key(id_number)
        if not self._has_table("person_keys"):  # a journal from before version 6, unchanged
            return self.rows_of_person_by_scan(id_number, scope=scope)
        found = self._records_of([key], scope)
        psns = {r.row.patient_psn_no for r in found if "holder" in r.roles and r.row.patient_psn_no}
        if psns:
            found += self._records_of([person_keys.PSN_PREFIX + p for p in sorted(psns)], scope)
        merged: dict[tuple[str, str, str], PersonRecord] = {}
        for rec in found:
            at = (rec.pharmacy_code, rec.row.terminal_id, rec.row.sale_ref)
            roles = set(rec.roles) | set(merged[at].roles if at in merged else ())
            merged[at] = PersonRecord(
                rec.row, tuple(r for r in person_keys.ROLES if r in roles), rec.pharmacy_code
            )
        return sorted(
            merged.values(),
            key=lambda r: (r.row.created_at, r.pharmacy_code, r.row.terminal_id, r.row.sale_ref),
        )

    def _records_of(self, persons: Sequence[str], scope: str) -> list[PersonRecord]:
        """The rows keyed to any of ``persons``, one record per (row, role)."""
        marks = ",".join("?" * len(persons))
        sql = (
            "SELECT k.role AS pk_role, k.pharmacy_code AS pk_pharmacy, s.* FROM person_keys k "
            "JOIN sales s ON s.sale_ref = k.sale_ref AND s.terminal_id = k.terminal_id"
        )
        args: tuple[str, ...] = tuple(persons)
        if self._pg is not None:
            sql += " AND s.pharmacy_code = k.pharmacy_code"
        sql += f" WHERE k.person IN ({marks})"
        if self._pg is not None and scope != "all":
            sql += " AND k.pharmacy_code = ?"
            args += (self.pharmacy_code,)
            if scope == "till":
                sql += " AND k.terminal_id = ?"
                args += (self.terminal_id,)
        out = []
        for raw in self.query(sql, args):
            d = dict(raw)
            role, pharmacy = d.pop("pk_role"), d.pop("pk_pharmacy")
            out.append(PersonRecord(self._decode(d), (role,), pharmacy))
        return out

    def rows_of_person_by_scan(self, id_number: str, *, scope: str = "till") -> list[PersonRecord]:
        """The search as it was before the person-key table: every row's ``evidence`` JSON
        scanned for the keyed hash (a 64-hex HMAC cannot occur there by accident). Kept
        for a journal of an older version opened without upgrading it (``journal search``
        reads, it never migrates), and as the benchmark's baseline. Finds no family
        payer (a plan names them by psn_no only)."""
        key = self.person_key(id_number)
        narrow, args = self._and, self._till
        if self._pg is not None and scope != "till":
            narrow, args = ((" AND pharmacy_code = ?", (self.pharmacy_code,))
                            if scope == "store" else ("", ()))  # fmt: skip
        rows = self.query(
            "SELECT * FROM sales WHERE (patient_id_hmac = ? OR evidence LIKE ?)"
            + narrow
            + " ORDER BY created_at",
            (key, f"%{key}%", *args),
        )
        found: list[PersonRecord] = []
        for raw in rows:
            row = self._decode(raw)
            ev = row.evidence or {}
            roles = [
                role
                for role in ("holder", "patient", "buyer")
                if (ev.get(role) or {}).get("number_hmac") == key
            ]
            if row.patient_id_hmac == key and "holder" not in roles:
                roles.insert(0, "holder")
            found.append(PersonRecord(row, tuple(roles), raw.get("pharmacy_code", "") if self._pg else ""))
        return found

    def has_table(self, name: str) -> bool:
        """Whether the journal has table ``name`` (``closed_days`` appears with the first
        close of a day). A table is never dropped from a journal (schema.py), so once
        seen it is not asked again: a check made before every sale costs a read only
        while the table is missing."""
        if name not in self._tables_seen and self._has_table(name):
            self._tables_seen.add(name)
        return name in self._tables_seen

    def _has_table(self, name: str) -> bool:
        if self._pg is not None:
            with self._lock:
                self._pg.reopen_if_broken()
                return bool(self._pg.scalar("SELECT to_regclass(?) IS NOT NULL", (name,)))
        return bool(
            self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        )

    # ------------------------------------------------------------------ msgid

    def next_msgid(self, now: dt.datetime | None = None) -> str:
        """pharmacy code (12) + yyyyMMddHHmmss + 4-digit sequence: never repeats.

        The sequence's first digit is this till's index, so the tills of one
        pharmacy (each with its own journal) never issue the same msgid in the
        same second; the other three digits count within the second. The last
        stamp and count are persisted, so a restart (or a clock set back)
        continues after the last one issued instead of repeating it.
        """
        with self._tx() as db:
            return self._allocate_msgid(db, now)

    def _allocate_msgid(self, db: _Db, now: dt.datetime | None) -> str:
        now = (now or now_shanghai()).astimezone(SHANGHAI)
        stamp = now.strftime("%Y%m%d%H%M%S")
        clock = (self.pharmacy_code, self.till_index)
        if self._pg is not None:
            # Keyed by the msgid's own namespace and row-locked (postgres.py).
            db.execute(
                "INSERT INTO msgid_clock(pharmacy_code, till_index, stamp, seq) "
                "VALUES (?, ?, '', -1) ON CONFLICT DO NOTHING",
                clock,
            )
            row = db.execute(
                "SELECT stamp, seq FROM msgid_clock WHERE pharmacy_code = ? AND till_index = ? "
                "FOR UPDATE",
                clock,
            ).fetchone()
        else:
            row = db.execute("SELECT stamp, seq FROM msgid_clock WHERE id = 1").fetchone()
        if row is None or stamp > row["stamp"]:
            seq = 0
        else:
            stamp, seq = row["stamp"], row["seq"] + 1
            if seq > 999:  # 1,000 in one second on one till: borrow the next second
                nxt = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S") + dt.timedelta(seconds=1)
                stamp, seq = nxt.strftime("%Y%m%d%H%M%S"), 0
        if self._pg is not None:
            db.execute(
                "UPDATE msgid_clock SET stamp = ?, seq = ? WHERE pharmacy_code = ? AND till_index = ?",
                (stamp, seq, *clock),
            )
        else:
            db.execute(
                "INSERT INTO msgid_clock(id, stamp, seq) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET stamp = excluded.stamp, seq = excluded.seq",
                (stamp, seq),
            )
        return f"{self.pharmacy_code}{stamp}{self.till_index}{seq:03d}"

    # ------------------------------------------------------------------ sales

    def begin_sale(
        self, sale_ref: str, request_hash: str, *, now: dt.datetime | None = None
    ) -> SaleRow | None:
        """Record a new sale as ``received``; return the existing row for a repeated ref.

        Raises SaleRefReused when the ref exists with a different request body.
        """
        now = (now or now_shanghai()).astimezone(SHANGHAI)
        # Not fsynced on its own: a received sale lost in a power cut has charged
        # nothing, and the POS's retry with the same ref simply starts it again.
        with self._tx(durable=False) as db:
            stamp = now.isoformat()
            given: dict[str, Any] = {
                "sale_ref": sale_ref, "request_hash": request_hash, "state": RECEIVED,
                "business_date": now.date().isoformat(), "created_at": stamp,
                "updated_at": stamp, "terminal_id": self.terminal_id,
            }  # fmt: skip
            if self._pg is not None:  # one table for every pharmacy's tills
                given["pharmacy_code"] = self.pharmacy_code
            inserted = db.execute(
                f"INSERT INTO sales({', '.join(given)}) VALUES ({', '.join('?' * len(given))})"
                " ON CONFLICT DO NOTHING",
                tuple(given.values()),
            ).rowcount
            if not inserted:  # a repeated ref
                existing = db.execute(
                    "SELECT * FROM sales WHERE sale_ref = ?" + self._and, (sale_ref, *self._till)
                ).fetchone()
                if existing["request_hash"] != request_hash:
                    raise SaleRefReused(sale_ref)
                return self._decode(existing)
            # the row as the table now holds it: every other column NULL, proxy 0 (its
            # digest: ``self._columns`` leaves out the derived ones, as ``_row_digest``)
            row = dict.fromkeys(self._columns) | {"proxy": 0} | given
            event = self._event(sale_ref, RECEIVED, "{}", stamp, self._chain_head(db),
                                _sha(_canonical(row)))  # fmt: skip
            self._insert_events(db, [event])
        return None

    def update(
        self,
        sale_ref: str,
        state: str,
        *,
        via: Sequence[tuple[str, dict[str, Any]]] = (),
        new_msgid: bool = False,
        **fields: Any,
    ) -> SaleRow:
        """Move a sale to ``state``, setting columns, and chain its events; one transaction.

        ``via`` lists states passed through on the way (each with its columns), so
        that steps which need no durability of their own (card read, validated)
        share the fsync of the step that does (settling). ``new_msgid`` allocates
        the sale's msgid in the same transaction.
        """
        with self._tx() as db:
            if new_msgid:
                fields = {**fields, "msgid": self._allocate_msgid(db, None)}
            return self._apply(db, sale_ref, [*via, (state, fields)])

    def _apply(
        self, db: _Db, sale_ref: str, steps: Sequence[tuple[str, dict[str, Any]]]
    ) -> SaleRow:
        """The steps of ``update`` inside an open transaction; returns the row after them.

        Each step is an event carrying the digest of the row as that step left it. The
        row is read once and the steps applied to it here; the table then takes them
        in one UPDATE, and the events in one statement. What is written is what a
        statement per step wrote: the same row, events and chain."""
        assert steps, "update() with no step"
        for _, cols in steps:
            unknown = cols.keys() - _COLUMN_NAMES
            if unknown:
                raise ValueError(f"unknown journal columns: {sorted(unknown)}")
        found = db.execute(
            "SELECT * FROM sales WHERE sale_ref = ?" + self._and, (sale_ref, *self._till)
        ).fetchone()
        if found is None:
            raise KeyError(sale_ref)
        row = dict(found)
        # Each step's event carries the digest of ``row`` (``_sha(_canonical(row))`` below),
        # which leaves out the derived legs column: a digest means what it did before v9.
        has_legs = row.pop("legs", _UNSET) is not _UNSET
        stamp = now_shanghai().isoformat()
        head = self._chain_head(db)
        changed: dict[str, Any] = {}
        events = []
        plan: Any = _UNSET
        for step_state, cols in steps:
            plan = cols.get("plan", plan)
            values = {k: _stored(k, v) for k, v in cols.items()}
            values["state"] = step_state
            values["updated_at"] = stamp
            row.update(values)
            changed.update(values)
            # the event's detail is the step's columns but the result (the answer the POS
            # got is in the row, digested); a plan or an evidence is encoded once
            detail = _canonical_of({
                k: values[k] if isinstance(v, dict | list) else _canonical(v)
                for k, v in cols.items() if k != "result"
            })  # fmt: skip
            events.append(self._event(sale_ref, step_state, detail, stamp, head,
                                      _sha(_canonical(row))))  # fmt: skip
            head = events[-1][-1]
        if has_legs and plan is not _UNSET:
            changed["legs"] = legs_column(plan)  # in the UPDATE that writes the plan
        assignments = ", ".join(f"{k} = ?" for k in changed)
        db.execute(
            f"UPDATE sales SET {assignments} WHERE sale_ref = ?" + self._and,
            (*changed.values(), sale_ref, *self._till),
        )
        self._insert_events(db, events)
        if any(person_keys.SOURCE_COLUMNS.intersection(cols) for _, cols in steps):
            # derived from the row just written, in its transaction (person_keys.py)
            person_keys.add(db, row, self._keys_pharmacy)
        return self._decode(row)

    def get(self, sale_ref: str) -> SaleRow | None:
        rows = self.query(
            "SELECT * FROM sales WHERE sale_ref = ?" + self._and, (sale_ref, *self._till)
        )
        return self._decode(rows[0]) if rows else None

    def by_msgid(self, msgid: str) -> SaleRow | None:
        rows = self.query("SELECT * FROM sales WHERE msgid = ?" + self._and, (msgid, *self._till))
        return self._decode(rows[0]) if rows else None

    def in_state(self, *states: str) -> list[SaleRow]:
        marks = ",".join("?" for _ in states)
        rows = self.query(
            f"SELECT * FROM sales WHERE state IN ({marks}){self._and} ORDER BY created_at",
            (*states, *self._till),
        )
        return [self._decode(r) for r in rows]

    def sales_on(self, business_date: dt.date) -> list[SaleRow]:
        rows = self.query(
            f"SELECT * FROM sales WHERE business_date = ?{self._and} ORDER BY created_at",
            (business_date.isoformat(), *self._till),
        )
        return [self._decode(r) for r in rows]

    # ------------------------------------------------------------------ reversals owed

    def owe_reversal(self, sale_ref: str, msgid: str, **fields: Any) -> SaleRow:
        """The sale's outcome is unknown and the customer paid cash: journal ``unknown``,
        a new reversal msgid, and the reversal owed for ``msgid``, in ONE transaction
        (apart, a crash between them left an unknown sale nothing would ever conclude)."""
        with self._tx() as db:
            reversal_msgid = self._allocate_msgid(db, None)
            row = self._apply(
                db, sale_ref, [(UNKNOWN, {**fields, "reversal_msgid": reversal_msgid})]
            )
            self._queue(db, sale_ref, msgid, reversal_msgid)
        return row

    def queue_reversal(self, sale_ref: str, msgid: str, reversal_msgid: str) -> None:
        """Owe a reversal for a settlement whose outcome is unknown (the customer paid cash)."""
        with self._tx() as db:
            self._queue(db, sale_ref, msgid, reversal_msgid)

    def _queue(self, db: _Db, sale_ref: str, msgid: str, reversal_msgid: str) -> None:
        if self._pg is not None:
            db.execute(
                "INSERT INTO pending_reversals(msgid, sale_ref, reversal_msgid, "
                "next_attempt_at, pharmacy_code, terminal_id) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (msgid, sale_ref, reversal_msgid, now_shanghai().isoformat(), *self._till),
            )
            return
        db.execute(
            "INSERT OR IGNORE INTO pending_reversals(msgid, sale_ref, reversal_msgid, "
            "next_attempt_at) VALUES (?, ?, ?, ?)",
            (msgid, sale_ref, reversal_msgid, now_shanghai().isoformat()),
        )

    def pending_reversals(self, *, due_at: dt.datetime | None = None) -> list[PendingReversal]:
        sql = "SELECT * FROM pending_reversals WHERE done = 0" + self._and
        args: tuple[str, ...] = self._till
        if due_at is not None:
            sql += " AND next_attempt_at <= ?"
            args = (*args, due_at.astimezone(SHANGHAI).isoformat())
        rows = self.query(sql + " ORDER BY next_attempt_at", args)
        return [
            PendingReversal(
                msgid=r["msgid"],
                sale_ref=r["sale_ref"],
                reversal_msgid=r["reversal_msgid"],
                attempts=r["attempts"],
                next_attempt_at=r["next_attempt_at"],
                last_error=r["last_error"],
                escalated=bool(r["escalated"]),
            )
            for r in rows
        ]

    def reversal_attempt_failed(
        self, msgid: str, error: str, next_at: dt.datetime, *, escalate: bool
    ) -> None:
        greatest = "GREATEST" if self._pg is not None else "MAX"  # MAX(a, b) is SQLite's
        with self._tx() as db:
            db.execute(
                "UPDATE pending_reversals SET attempts = attempts + 1, last_error = ?, "
                f"next_attempt_at = ?, escalated = {greatest}(escalated, ?) WHERE msgid = ?"
                + self._and,
                (error, next_at.astimezone(SHANGHAI).isoformat(), int(escalate), msgid,
                 *self._till),
            )  # fmt: skip

    def reversal_done(self, msgid: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE pending_reversals SET done = 1 WHERE msgid = ?" + self._and,
                (msgid, *self._till),
            )

    # ------------------------------------------------------------------ 3505 / 3506 uploads

    def _owed(self, kind: str, *, day: dt.date | None = None,
              due_at: str | None = None) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
        """FROM/WHERE and arguments of what this till owes the platform of ``kind``."""
        sql, args = owed_uploads_sql(kind, self.pharmacy_code, self.terminal_id,
                                     shared=self._pg is not None, day=day)  # fmt: skip
        if due_at is not None:
            sql += " AND (u.next_attempt_at IS NULL OR u.next_attempt_at <= ?)"
            args = (*args, due_at)
            if kind == UPLOAD_RETURN:  # a return goes only after its sale's 3505 was taken
                sql += (" AND EXISTS (SELECT 1 FROM sales_uploads f WHERE f.sale_ref = s.sale_ref"
                        f" AND f.kind = '{UPLOAD_SALE}' AND f.pharmacy_code = ?"
                        " AND f.terminal_id = ? AND f.done_at IS NOT NULL)")  # fmt: skip
                args = (*args, self.pharmacy_code, self.terminal_id)
        return sql, args

    def uploads_owed(self, kind: str = UPLOAD_SALE, *, due_at: str | None = None
                     ) -> list[SaleRow]:  # fmt: skip
        """National sales (3505) or returns (3506) not yet acknowledged by the platform,
        oldest first; with ``due_at`` only those due to be sent then (a return only once
        its sale's 3505 is acknowledged)."""
        sql, args = self._owed(kind, due_at=due_at)
        with self._lock:
            refs = [r[0] if not isinstance(r, dict) else r["sale_ref"]
                    for r in self._db.execute("SELECT s.sale_ref" + sql + " ORDER BY s.created_at",
                                              args).fetchall()]  # fmt: skip
        return [row for ref in refs if (row := self.get(ref)) is not None]

    def uploads_owed_count(self, kind: str | None = None, *, day: dt.date | None = None) -> int:
        """How many uploads this till still owes the platform: 3505 and 3506 together
        (``kind`` one of them), of every day or of the business ``day`` (a sale's 3505 by
        the day it was sold, a return's 3506 by the day it was reversed). What
        ``/v1/health`` shows and what close-day asks (also :func:`count_uploads_owed`)."""
        with self._lock:
            if self._pg is not None:
                self._pg.reopen_if_broken()
            return count_uploads_owed(self._db, self.pharmacy_code, self.terminal_id,
                                      shared=self._pg is not None, day=day, kind=kind)  # fmt: skip

    def upload_begin(self, sale_ref: str, kind: str, msgid: str, now: str) -> tuple[str, int]:
        """(msgid, attempts): the upload's msgid, journaled before the request leaves (the
        first one wins: a resend after a crash carries the same msgid); the attempt counted."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO sales_uploads (sale_ref, kind, pharmacy_code, terminal_id, msgid, "
                "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (sale_ref, kind, self.pharmacy_code, self.terminal_id, msgid, now),
            )
            db.execute(
                "UPDATE sales_uploads SET attempts = attempts + 1 WHERE sale_ref = ? AND kind = ?"
                " AND pharmacy_code = ? AND terminal_id = ?",
                (sale_ref, kind, self.pharmacy_code, self.terminal_id),
            )
            r = db.execute(
                "SELECT msgid, attempts FROM sales_uploads WHERE sale_ref = ? AND kind = ? "
                "AND pharmacy_code = ? AND terminal_id = ?",
                (sale_ref, kind, self.pharmacy_code, self.terminal_id),
            ).fetchone()
        if isinstance(r, dict):
            return str(r["msgid"]), int(r["attempts"])
        return str(r[0]), int(r[1])

    def upload_ended(self, sale_ref: str, kind: str, *, error: str | None = None,
                     retry_at: str | None = None) -> None:  # fmt: skip
        """Acknowledged (``error`` None), or the error kept and the next attempt's time."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._tx() as db:
            if error is None:
                db.execute(
                    "UPDATE sales_uploads SET done_at = ?, last_error = NULL WHERE sale_ref = ?"
                    " AND kind = ? AND pharmacy_code = ? AND terminal_id = ?",
                    (now, sale_ref, kind, self.pharmacy_code, self.terminal_id),
                )
            else:
                db.execute(
                    "UPDATE sales_uploads SET last_error = ?, next_attempt_at = ? WHERE "
                    "sale_ref = ? AND kind = ? AND pharmacy_code = ? AND terminal_id = ?",
                    (error[:500], retry_at or now, sale_ref, kind, self.pharmacy_code,
                     self.terminal_id),
                )

    # ------------------------------------------------------------------ 追溯码

    def trace_codes_sold(self, codes: Sequence[str]) -> set[str]:
        """Which of ``codes`` this store sold and did not take back."""
        if not codes:
            return set()
        marks = ",".join("?" * len(codes))
        with self._lock:
            rows = self._db.execute(
                f"SELECT code FROM trace_codes WHERE code IN ({marks}) AND released_at IS NULL"
                " AND pharmacy_code = ?",
                (*codes, self.pharmacy_code),
            ).fetchall()
        return {r["code"] for r in rows}

    def claim_trace_codes(self, sale_ref: str, msgid: str, codes: Sequence[str]) -> None:
        """Record the packs of a settled sale (a code released before is sold again; a
        code already held by another sale keeps its first sale: the counter checked, and
        "notice" mode sells it knowingly)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._tx() as db:
            for code in codes:
                db.execute(
                    "INSERT INTO trace_codes (code, pharmacy_code, sale_ref, msgid, sold_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET "
                    "sale_ref = excluded.sale_ref, msgid = excluded.msgid, "
                    "sold_at = excluded.sold_at, released_at = NULL "
                    "WHERE trace_codes.released_at IS NOT NULL",
                    (code, self.pharmacy_code, sale_ref, msgid, now),
                )

    def release_trace_codes(self, sale_ref: str) -> None:
        """A reversed sale's packs are sellable again."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._tx() as db:
            db.execute(
                "UPDATE trace_codes SET released_at = ? WHERE sale_ref = ? "
                "AND pharmacy_code = ? AND released_at IS NULL",
                (now, sale_ref, self.pharmacy_code),
            )

    # ------------------------------------------------------------------ centre reversals

    def centre_reversal(self, msgid: str) -> dict[str, Any] | None:
        """The manager's 2601 of a centre-only settlement under ``msgid``, if ever asked."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM centre_reversals WHERE msgid = ?", (msgid,)
            ).fetchone()
        return dict(row) if row is not None else None

    def centre_reversal_begin(
        self, msgid: str, psn_no: str, business_date: str, by: str
    ) -> dict[str, Any]:
        """Journal the intent (first) and count the attempt; the row as it is now."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._tx() as db:
            db.execute(
                "INSERT INTO centre_reversals (msgid, pharmacy_code, psn_no, business_date, "
                "requested_at, requested_by) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (msgid) DO NOTHING",
                (msgid, self.pharmacy_code, psn_no, business_date, now, by),
            )
            db.execute(
                "UPDATE centre_reversals SET attempts = attempts + 1 WHERE msgid = ?", (msgid,)
            )
        got = self.centre_reversal(msgid)
        assert got is not None
        return got

    def centre_reversal_ended(self, msgid: str, error: str | None = None) -> None:
        """Done (``error`` None), or the attempt's error kept for the next one."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._tx() as db:
            if error is None:
                db.execute(
                    "UPDATE centre_reversals SET done_at = ?, last_error = NULL WHERE msgid = ?",
                    (now, msgid),
                )
            else:
                db.execute(
                    "UPDATE centre_reversals SET last_error = ? WHERE msgid = ?", (error, msgid)
                )

    # ------------------------------------------------------------------ integrity

    def _chain_head(self, db: _Db) -> str:
        """The hash of the till's last event (on PostgreSQL: this till's chain)."""
        last = db.execute(
            "SELECT hash FROM events" + self._where + " ORDER BY seq DESC LIMIT 1", self._till
        ).fetchone()
        return str(last["hash"]) if last else GENESIS

    @staticmethod
    def _event(
        sale_ref: str, state: str, detail: str, at: str, prev: str, digest: str
    ) -> tuple[str, str, str, str, str, str, str]:
        """An event's columns, chained to ``prev``, carrying ``digest`` (of the row it
        records) and ``detail`` (canonical JSON); its hash, the chain's new head, last.
        The hash covers ``prev`` and the canonical JSON of sale_ref, at, state, detail
        and digest (``verify`` computes it again from the stored columns)."""
        body = _canonical_of({"sale_ref": _canonical(sale_ref), "at": _canonical(at),
                              "state": _canonical(state), "detail": detail,
                              "row": _canonical(digest)})  # fmt: skip
        return (sale_ref, at, state, detail, digest, prev, _sha(prev + body))

    def _insert_events(self, db: _Db, events: Sequence[tuple[str, ...]]) -> None:
        """Insert events made by ``_event``, in chain order."""
        if self._pg is not None:
            db.executemany(
                "INSERT INTO events(sale_ref, at, state, detail, row_digest, prev_hash, hash, "
                "pharmacy_code, terminal_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*e, *self._till) for e in events],
            )
        else:
            db.executemany(
                "INSERT INTO events(sale_ref, at, state, detail, row_digest, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                events,
            )

    # ------------------------------------------------------------------ business days

    def record_day_event(
        self,
        business_date: str,
        action: str,
        *,
        by: str,
        reason: str | None,
        detail: dict[str, Any],
        within: Callable[[Any], None] | None = None,
        at: str | None = None,
    ) -> dict[str, Any]:
        """A close or reopen of a business day: a ``day_history`` row and, in the same
        transaction, an event in this journal's hash chain (sale_ref ``day:<date>``,
        state ``day_<action>``) carrying the row's digest; ``within(db)`` runs first in
        that transaction (the closed_days change it records); ``at``: when (default now;
        one time for a store's journals). Returns the row."""
        at = at or now_shanghai().isoformat()
        with self._tx() as db:
            if within is not None:
                within(db)
            db.execute(
                "INSERT INTO day_history (pharmacy_code, terminal_id, business_date, action, at, "
                "by_whom, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.pharmacy_code, self.terminal_id, business_date, action, at, by, reason,
                 _canonical(detail)),
            )  # fmt: skip
            row = dict(
                db.execute(
                    "SELECT * FROM day_history WHERE pharmacy_code = ? AND terminal_id = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (self.pharmacy_code, self.terminal_id),
                ).fetchone()
            )
            event = {"action": action, "by": by, "reason": reason, "seq": row["seq"]}
            self._insert_events(db, [self._event(
                f"day:{business_date}", f"day_{action}", _canonical(event), at,
                self._chain_head(db), _sha(_canonical(row)))])  # fmt: skip
        return row

    # ------------------------------------------------------------------ manager reversals

    def ledger_reversal(self, msgid: str) -> dict[str, Any] | None:
        """The manager's reversal by msgid on our own ledger, if ever asked."""
        rows = self.query("SELECT * FROM ledger_reversals WHERE msgid = ?", (msgid,))
        return dict(rows[0]) if rows else None

    def ledger_reversal_begin(
        self, msgid: str, *, sale_ref: str | None, reversal_msgid: str, business_date: str,
        by: str, reason: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        """Journal the intent first (the first reversal msgid wins: a retry reuses it) and
        count the attempt; the row as it is now."""
        now = now_shanghai().isoformat()
        with self._tx() as db:
            db.execute(
                "INSERT INTO ledger_reversals (msgid, pharmacy_code, terminal_id, sale_ref, "
                "reversal_msgid, business_date, requested_at, requested_by, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msgid) DO NOTHING",
                (msgid, self.pharmacy_code, self.terminal_id, sale_ref, reversal_msgid,
                 business_date, now, by, reason),
            )  # fmt: skip
            db.execute(
                "UPDATE ledger_reversals SET attempts = attempts + 1 WHERE msgid = ?", (msgid,)
            )
        got = self.ledger_reversal(msgid)
        assert got is not None
        return got

    def ledger_reversal_ended(
        self, msgid: str, *, outcome: str | None = None, error: str | None = None
    ) -> None:
        """Done with ``outcome`` (reversed / not_charged / already_reversed), or the
        attempt's error kept for the next one."""
        with self._tx() as db:
            if error is None:
                db.execute(
                    "UPDATE ledger_reversals SET done_at = ?, outcome = ?, last_error = NULL "
                    "WHERE msgid = ?",
                    (now_shanghai().isoformat(), outcome, msgid),
                )
            else:
                db.execute(
                    "UPDATE ledger_reversals SET last_error = ? WHERE msgid = ?",
                    (error[:500], msgid),
                )

    def verify(self) -> VerifyReport:
        """Recompute the event chain and each sale's row digest; list what does not match.

        On a shared journal: this till's chain and this till's rows."""
        problems: list[str] = []
        last_digest: dict[str, str] = {}
        prev = GENESIS
        with self._lock:
            events = self.query("SELECT * FROM events" + self._where + " ORDER BY seq", self._till)
            sales = self.query("SELECT * FROM sales" + self._where, self._till)
        for e in events:
            body = _canonical(
                {
                    "sale_ref": e["sale_ref"],
                    "at": e["at"],
                    "state": e["state"],
                    "detail": json.loads(e["detail"]),
                    "row": e["row_digest"],
                }
            )
            if e["prev_hash"] != prev or e["hash"] != _sha(prev + body):
                problems.append(f"event {e['seq']} ({e['sale_ref']}): the hash chain is broken")
            prev = e["hash"]
            last_digest[e["sale_ref"]] = e["row_digest"]
        # a journal before version 9 (read without upgrading) has no legs column
        has_legs = bool(sales) and "legs" in sales[0].keys()  # noqa: SIM118 (a Row's `in` is its values)
        for s in sales:
            if last_digest.get(s["sale_ref"]) != _row_digest(dict(s)):
                problems.append(f"sale {s['sale_ref']}: the row was changed outside the journal")
            if has_legs and s["legs"] != legs_column(s["plan"]):
                problems.append(f"sale {s['sale_ref']}: its legs column does not match its plan "
                                "(reconciliation reads the legs from it)")  # fmt: skip
        if self._has_table("person_keys"):  # derived, not chained: derived again here
            keys = self.query(
                "SELECT * FROM person_keys" + self._where,
                self._till,
            )
            problems += person_keys.differences(keys, sales, events, self._keys_pharmacy)
        problems += self._verify_days(events)
        return VerifyReport(not problems, len(events), len(sales), tuple(problems))

    def _verify_days(self, events: Sequence[Any]) -> list[str]:
        """Each close and reopen of a day (``day_history``) against its chained event: the
        same rows, in the same order, with the digests the chain holds."""
        chained = [e for e in events if str(e["sale_ref"]).startswith("day:")]
        rows = []
        if self._has_table("day_history"):  # a journal older than the table (verify-only)
            rows = self.query("SELECT * FROM day_history" + self._where + " ORDER BY seq",
                              self._till)  # fmt: skip
        problems = [
            f"day event {e['seq']} ({e['sale_ref']}): its close/reopen record was changed "
            "or removed outside the journal"
            for e, r in zip(chained, rows, strict=False)
            if e["row_digest"] != _sha(_canonical(dict(r)))
        ]
        if len(rows) != len(chained):
            problems.append(
                f"the closed-day history has {len(rows)} record(s) but the hash chain "
                f"{len(chained)}: a close or reopen was added or removed outside the journal"
            )
        return problems

    @staticmethod
    def _decode(row: Any) -> SaleRow:
        d = dict(row)
        d.pop("pharmacy_code", None)  # a shared journal's column; the till knows its pharmacy
        d.pop("legs", None)  # derived from the plan, for reconciliation (journal/legs.py)
        for k in ("evidence", "plan", "result"):
            d[f"{k}_json"] = d.pop(k)
        d["proxy"] = bool(d["proxy"])
        return SaleRow(**d)


# --------------------------------------------------------------------------- uploads owed


def owed_uploads_sql(kind: str, pharmacy_code: str, terminal_id: str | None, *, shared: bool,
                     day: dt.date | None = None) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    """``FROM ... WHERE ...`` (alias ``s`` = sales, ``u`` = the upload) and its arguments:
    the sales of one till (``terminal_id``; None: every till of the pharmacy) that owe
    the platform an upload of ``kind``.

    Owed is *derived* from ``sales``, never enqueued, so nothing can be lost between
    settling (or reversing) and enqueueing: a national sale (its plan journaled its
    lines, its result the platform's record) settled or reversed owes a 3505; reversed,
    it also owes a 3506. ``day``: a 3505 of a sale of that business day, a 3506 of a
    reversal made that day (its msgid's yyyyMMdd, China time)."""
    if kind not in (UPLOAD_SALE, UPLOAD_RETURN):
        raise ValueError(f"no upload kind {kind!r}")
    sql = (" FROM sales s LEFT JOIN sales_uploads u ON u.sale_ref = s.sale_ref AND u.kind = ?"
           " AND u.pharmacy_code = ? AND u.terminal_id = s.terminal_id"
           " WHERE u.done_at IS NULL AND s.plan LIKE ? AND s.result LIKE ?")  # fmt: skip
    # (the patterns as parameters: psycopg takes a bare % in the text for a placeholder)
    args: tuple[Any, ...] = (kind, pharmacy_code, '%"lines"%', '%"ledger_detail"%')
    if terminal_id is not None:
        sql += " AND s.terminal_id = ?"
        args = (*args, terminal_id)
    if shared:  # one database for many pharmacies: a till id is only unique within one
        sql += " AND s.pharmacy_code = ?"
        args = (*args, pharmacy_code)
    if kind == UPLOAD_SALE:
        sql += " AND s.state IN ('settled', 'reversed')"
        if day is not None:
            sql += " AND s.business_date = ?"
            args = (*args, day.isoformat())
    else:
        sql += " AND s.state = 'reversed' AND s.reversal_msgid IS NOT NULL"
        if day is not None:
            sql += " AND substr(s.reversal_msgid, 13, 8) = ?"
            args = (*args, day.strftime("%Y%m%d"))
    return sql, args


def count_uploads_owed(db: Any, pharmacy_code: str, terminal_id: str | None = None, *,
                       shared: bool = False, day: dt.date | None = None,
                       kind: str | None = None) -> int:  # fmt: skip
    """How many uploads (3505 sales + 3506 returns, or ``kind`` only) a till (or, with
    ``terminal_id`` None, every till of the pharmacy) owes the platform, of every day or
    of business ``day``: on any connection to its journal (an sqlite3 connection to a
    till's file, or a PgDb on the shared journal with ``shared=True``), so close-day and
    the manager page ask the same question as ``/v1/health``."""
    total = 0
    for k in (kind,) if kind else (UPLOAD_SALE, UPLOAD_RETURN):
        sql, args = owed_uploads_sql(k, pharmacy_code, terminal_id, shared=shared, day=day)
        r = db.execute("SELECT count(*) AS n" + sql, args).fetchone()
        total += int(r["n"] if isinstance(r, dict) else r[0])
    return total
