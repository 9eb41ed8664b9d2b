"""The sandbox ledger's operations: lookup, settle, reverse, statement.

Each operation is one transaction on the store. Answers are built as plain
dicts/JSON text (no response-model round trip on the hot path); the shapes are
the ones declared in ``pos_plugin.ledger.own.schemas`` and checked by the tests.

Idempotency (TigerBeetle/Stripe style): the key is the msgid; a committed
answer is stored with the SHA-256 of the canonical request, and replayed
byte-for-byte for the same request. Rejections raise before anything is
written, so they roll back and never bind the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pydantic_core

from pos_plugin.ledger.own.sandbox import rules
from pos_plugin.ledger.own.sandbox.store import Account, Row, Store, Tx, receivable_id
from pos_plugin.ledger.own.schemas import (
    COMPACT_COLUMNS,
    Credential,
    ReversalRequest,
    SettlementRequest,
)
from pos_plugin.models import LegKind

SHANGHAI = ZoneInfo("Asia/Shanghai")


# The request_hash of a voided msgid's idempotency row: no request body hashes to it.
VOID_DIGEST = "void"


def shanghai_now() -> dt.datetime:
    return dt.datetime.now(SHANGHAI)


class Rejection(Exception):
    """A refusal the HTTP layer turns into ``{"code", "message", ...}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


def _dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 as is: what ``json.dumps(ensure_ascii=False, separators=(",",
    ":"))`` writes, by pydantic's serializer in Rust, 4-5x faster on an answer."""
    return pydantic_core.to_json(obj).decode()


def request_hash(kind: str, payload: dict[str, Any]) -> str:
    """Hash of the canonical request: key order and whitespace never matter."""
    canon = json.dumps([kind, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


_LEG_FIELDS = ("kind", "account_id", "payer_psn_no", "amount", "binding_id")
_ENTRY_COLS = (
    "entry_id, msgid, kind, pharmacy_code, terminal_id, operator, patient_psn_no, original_id, "
    "status, total, personal_account, mutual_aid, cash, proxy, created_at, business_date, legs, "
    "balances_after, reason, seq"
)


class Ledger:
    """Business operations over a ``Store``; one instance serves all threads."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = shanghai_now) -> None:
        self.store = store
        self.clock = clock
        with store.read() as tx:
            self._tokens = {
                str(tok): str(code) for code, tok in tx.all("SELECT code, api_token FROM pharmacies")
            }
            row = tx.one("SELECT value FROM meta WHERE key = 'cross_province_pairs'")
        self._pairs = rules.opened_pairs(json.loads(row[0]) if row else [])
        self._totals: dict[tuple[Any, ...], tuple[Any, list[Row]]] = {}
        self._totals_guard = threading.Lock()

    def pharmacy_for_token(self, token: str) -> str | None:
        return self._tokens.get(token)

    def _now(self) -> tuple[str, str]:
        now = self.clock().astimezone(SHANGHAI)
        return now.isoformat(timespec="milliseconds"), now.date().isoformat()

    def _today(self) -> dt.date:
        return self.clock().astimezone(SHANGHAI).date()

    # ------------------------------------------------------------------ lookup
    def _resolve(self, tx: Tx, cred: Credential) -> tuple[str, str, str | None]:
        """(psn_no, card_status, card_expiry) of a credential, or 404."""
        sql, params = _credential_query(cred)
        return self._credential(cred, tx.one(sql, *params))

    def _credential(self, cred: Credential, row: Row | None) -> tuple[str, str, str | None]:
        """``_resolve`` on the row ``_credential_query`` read."""
        if cred.kind == "card":
            if row is None or row[1] != cred.card_sn:
                raise Rejection(404, "credential_not_found", "no card with this number and serial")
            status = str(row[2])
            if status == "active" and dt.date.fromisoformat(row[3]) < self._today():
                status = "expired"
            return str(row[0]), status, str(row[3])
        if row is None:
            raise Rejection(404, "credential_not_found", "no electronic voucher with this token")
        return str(row[0]), "active", None

    def _lookup(self, tx: Tx, psn_no: str, card_status: str, expiry: str | None) -> dict[str, Any]:
        p = tx.one(
            "SELECT p.psn_no, p.name, p.id_number, p.insurance_type, p.insured_region, "
            "p.insurance_status, a.account_id, a.balance FROM persons p LEFT JOIN accounts a "
            "ON a.owner = p.psn_no AND a.kind = 'personal' WHERE p.psn_no = ?",
            psn_no,
        )
        assert p is not None
        bindings = [
            {
                "binding_id": b[0],
                "payer_psn_no": b[1],
                "payer_name": b[2],
                "payer_account_id": b[3],
                "relation": b[4],
                "order": int(b[5]),
                "payer_insurance_type": b[6],
                "payer_region": b[7],
                "status": b[8],
                "available_balance": int(b[9]),
            }
            for b in tx.all(
                "SELECT b.binding_id, b.payer, p.name, a.account_id, b.relation, b.ord, "
                "p.insurance_type, p.insured_region, b.status, COALESCE(a.balance, 0) "
                "FROM bindings b JOIN persons p ON p.psn_no = b.payer LEFT JOIN accounts a "
                "ON a.owner = b.payer AND a.kind = 'personal' WHERE b.patient = ? "
                "ORDER BY b.ord, b.binding_id",
                psn_no,
            )
        ]
        return {
            "person": {
                "psn_no": p[0],
                "name": p[1],
                "id_number": p[2],
                "insurance_type": p[3],
                "insured_region": p[4],
                "insurance_status": p[5],
            },
            "card_status": card_status,
            "card_expiry": expiry,
            "personal_account": None
            if p[6] is None
            else {"account_id": p[6], "balance": int(p[7])},
            "bindings": bindings,
        }

    def lookup(self, cred: Credential) -> dict[str, Any]:
        with self.store.read() as tx:
            return self._lookup(tx, *self._resolve(tx, cred))

    # ------------------------------------------------------------------ idempotency
    @staticmethod
    def _replay(tx: Tx, msgid: str, digest: str) -> tuple[int, str] | None:
        return Ledger._replay_of(msgid, digest, tx.one(_IDEMPOTENCY_READ, msgid))

    @staticmethod
    def _replay_of(msgid: str, digest: str, row: Row | None) -> tuple[int, str] | None:
        """The stored answer for a replay, a refusal for a voided or reused msgid, or
        None for a new msgid (``row``: the msgid's idempotency row, if any)."""
        if row is None:
            return None
        if row[0] == VOID_DIGEST:
            raise Rejection(
                409,
                "msgid_voided",
                f"msgid {msgid} was voided by the till: it can never commit; nothing was "
                "charged (a new attempt at the sale needs a new msgid)",
            )
        if row[0] != digest:
            raise Rejection(
                409,
                "idempotency_key_reused",
                f"msgid {msgid} is already bound to a different request; "
                "use a new msgid for a new sale",
            )
        return int(row[1]), str(row[2])

    # ------------------------------------------------------------------ settle
    def settle(self, pharmacy: str, key: str, req: SettlementRequest) -> tuple[int, str]:
        _check_shape(pharmacy, key, req)
        digest = request_hash("settlement", req.model_dump(mode="json"))
        return self.store.transact(lambda tx: self._settle(tx, pharmacy, req, digest))

    async def settle_async(
        self, pharmacy: str, key: str, req: SettlementRequest
    ) -> tuple[int, str]:
        """``settle`` for the event loop: same checks, same transaction, awaited."""
        _check_shape(pharmacy, key, req)
        digest = request_hash("settlement", req.model_dump(mode="json"))
        return await self.store.transact_async(lambda tx: self._settle(tx, pharmacy, req, digest))

    def _settle(
        self, tx: Tx, pharmacy: str, req: SettlementRequest, digest: str
    ) -> tuple[int, str]:
        """Checks, then the writes: the postings (which move the balances), the entry and
        the idempotency row. Every refusal is raised before the first write, so the
        writer needs no savepoint for it (group_commit.py).

        The checks' reads go out together (one round trip in the writer's pipeline on
        PostgreSQL), the accounts row-locked; the checks then run in the contract's
        order (docs/ledger-api.md, POST /v1/settlements)."""
        rcv = receivable_id(pharmacy)
        idem, cred, locked, bindings = tx.each(
            (_IDEMPOTENCY_READ, (req.msgid,)),
            _credential_query(req.credential),
            tx.accounts_query([leg.account_id for leg in req.legs] + [rcv]),
            _bindings_query(req),
        )
        replay = self._replay_of(req.msgid, digest, idem[0] if idem else None)
        if replay is not None:
            return replay
        psn_no, card_status, expiry = self._credential(req.credential, cred[0] if cred else None)
        if psn_no != req.patient_psn_no:
            raise Rejection(
                403, "credential_not_patients_own",
                "the card or voucher is not the patient's own; use the patient's own credential",
            )
        if card_status != "active":
            code = "card_lost" if card_status == "lost" else "card_expired"
            raise Rejection(403, code, f"the card is {card_status} and may not pay")
        accounts = Tx.accounts(locked)
        self._check_legs(req, accounts, bindings)
        balances = {acct: a.balance for acct, a in accounts.items()}
        short = [
            {"account_id": leg.account_id, "requested": leg.amount,
             "available": balances.get(leg.account_id, 0)}
            for leg in req.legs
            if balances.get(leg.account_id, 0) < leg.amount
        ]
        if short:
            fresh = self._lookup(tx, psn_no, card_status, expiry)
            raise Rejection(
                409, "insufficient_funds",
                "an account has less than its leg asks for; re-plan with the fresh balances",
                balances=_fresh_balances(fresh), shortfalls=short, lookup=fresh,
            )
        entry_id = "S" + req.msgid  # sequential keys: appends, not random page writes
        paid = sum(leg.amount for leg in req.legs)
        pa = sum(leg.amount for leg in req.legs if leg.kind is LegKind.PERSONAL_ACCOUNT)
        after = {leg.account_id: balances[leg.account_id] - leg.amount for leg in req.legs}
        postings = [(entry_id, leg.account_id, -leg.amount) for leg in req.legs]
        tx.post([*postings, (entry_id, rcv, paid)] if postings else [])
        created_at, business_date = self._now()
        legs = [leg.model_dump(mode="json") for leg in req.legs]
        tx.run(
            "INSERT INTO entries (entry_id, msgid, kind, pharmacy_code, terminal_id, operator, "
            "patient_psn_no, original_id, status, total, personal_account, mutual_aid, cash, "
            "proxy, created_at, business_date, legs, balances_after, lines, reason) "
            "VALUES (?, ?, 'sale', ?, ?, ?, ?, NULL, 'settled', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
            entry_id, req.msgid, pharmacy, req.terminal_id, req.operator, req.patient_psn_no,
            req.total, pa, paid - pa, req.cash, int(req.proxy), created_at, business_date,
            _dumps(legs), _dumps(after),
            _dumps([line.model_dump(mode="json") for line in req.lines]),
        )
        text = _dumps({
            "settlement_id": entry_id, "msgid": req.msgid, "pharmacy_code": pharmacy,
            "terminal_id": req.terminal_id, "operator": req.operator,
            "patient_psn_no": req.patient_psn_no, "status": "settled", "legs": legs,
            "balances_after": after, "personal_account": pa, "mutual_aid": paid - pa,
            "cash": req.cash, "total": req.total, "proxy": req.proxy,
            "created_at": created_at, "business_date": business_date, "reversal": None,
        })
        tx.run(
            "INSERT INTO idempotency (msgid, pharmacy_code, request_hash, status, response) "
            "VALUES (?, ?, ?, 201, ?)",
            req.msgid, pharmacy, digest, text,
        )
        return 201, text

    def _check_legs(
        self, req: SettlementRequest, accounts: dict[str, Account], bindings: list[Row]
    ) -> None:
        """Every leg draws on an account that may pay for this patient (else 403);
        ``bindings``: what ``_bindings_query`` read."""
        mutual = [leg for leg in req.legs if leg.kind is LegKind.MUTUAL_AID]
        own = [leg for leg in req.legs if leg.kind is LegKind.PERSONAL_ACCOUNT]
        if own:
            leg = own[0]
            account = accounts.get(leg.account_id)
            if (account is None or account.kind != "personal"
                    or account.owner != req.patient_psn_no or leg.payer_psn_no != account.owner):
                raise Rejection(
                    403, "binding_not_allowed",
                    "the personal_account leg must draw on the patient's own personal account",
                    leg=0,
                )
        if not mutual:
            return
        found = {r[0]: r for r in bindings}
        for i, leg in enumerate(req.legs):
            if leg.kind is not LegKind.MUTUAL_AID:
                continue
            r = found.get(leg.binding_id)
            why: str | None
            if r is None or r[2] != req.patient_psn_no:
                why = f"binding {leg.binding_id} does not bind a payer to this patient"
            elif r[1] != leg.payer_psn_no or r[7] != leg.account_id:
                why = f"leg account/payer do not match binding {leg.binding_id}"
            else:
                why = rules.refusal(
                    binding_status=r[4], relation=r[3], payer_insurance_type=r[5],
                    payer_has_account=r[7] is not None, payer_region=r[6],
                    patient_insurance_type=r[8], patient_insurance_status=r[9],
                    patient_region=r[10], pairs=self._pairs,
                )
            if why is not None:
                raise Rejection(
                    403, "binding_not_allowed",
                    f"mutual-aid leg {i} may not pay for this patient: {why}",
                    leg=i, binding_id=leg.binding_id,
                )

    # ------------------------------------------------------------------ void
    def void(self, pharmacy: str, msgid: str) -> tuple[int, str]:
        """Make ``msgid`` final: void it unless a settlement committed under it first.

        The void is a row in the idempotency table, the same unique key a settlement
        takes, written by the same writer (one batch at a time, its jobs one after
        another; store.py): a settlement and a void of one msgid are serialised, so
        exactly one of them wins and the loser sees the winner
        (a late settlement request is refused with ``msgid_voided``). Repeating a void
        answers the first one's result.
        """
        _check_key(pharmacy, msgid, msgid)
        return self.store.transact(lambda tx: self._void(tx, pharmacy, msgid))

    def _void(self, tx: Tx, pharmacy: str, msgid: str) -> tuple[int, str]:
        row = tx.one("SELECT request_hash, response FROM idempotency WHERE msgid = ?", msgid)
        if row is not None and row[0] == VOID_DIGEST:
            return 200, str(row[1])
        if row is not None:
            sale = tx.one(
                f"SELECT {_ENTRY_COLS} FROM entries WHERE msgid = ? AND kind = 'sale'", msgid
            )
            if sale is None:
                raise Rejection(409, "not_a_settlement",
                                f"msgid {msgid} names a reversal, not a settlement; "
                                "only a settlement's msgid can be voided")
            body = _sale(sale)
            rev = tx.one(
                "SELECT entry_id, msgid, created_at FROM entries WHERE original_id = ?", sale[0]
            )
            if rev is not None:
                body["reversal"] = {"reversal_id": rev[0], "msgid": rev[1], "created_at": rev[2]}
            return 200, _dumps({"msgid": msgid, "status": "settled", "voided_at": None,
                                "settlement": body})
        created_at, _ = self._now()
        text = _dumps({"msgid": msgid, "status": "voided", "voided_at": created_at,
                       "settlement": None})
        tx.run(
            "INSERT INTO idempotency (msgid, pharmacy_code, request_hash, status, response) "
            "VALUES (?, ?, ?, 200, ?)",
            msgid, pharmacy, VOID_DIGEST, text,
        )
        return 200, text

    # ------------------------------------------------------------------ read back
    def get_settlement(self, pharmacy: str, msgid: str) -> dict[str, Any]:
        with self.store.read() as tx:
            row = tx.one(
                f"SELECT {_ENTRY_COLS} FROM entries WHERE msgid = ? AND pharmacy_code = ? "
                "AND kind = 'sale'",
                msgid, pharmacy,
            )
            if row is None:
                raise Rejection(404, "settlement_not_found", f"no settlement with msgid {msgid}")
            rev = tx.one(
                "SELECT entry_id, msgid, created_at FROM entries WHERE original_id = ?", row[0]
            )
        body = _sale(row)
        if rev is not None:
            body["reversal"] = {"reversal_id": rev[0], "msgid": rev[1], "created_at": rev[2]}
        return body

    def get_reversal(self, pharmacy: str, msgid: str) -> dict[str, Any]:
        with self.store.read() as tx:
            row = tx.one(
                f"SELECT {_ENTRY_COLS} FROM entries WHERE msgid = ? AND pharmacy_code = ? "
                "AND kind = 'reversal'",
                msgid, pharmacy,
            )
            if row is None:
                raise Rejection(404, "reversal_not_found", f"no reversal with msgid {msgid}")
            orig = tx.one("SELECT msgid FROM entries WHERE entry_id = ?", row[7])
        return _reversal(row, str(orig[0]) if orig else "")

    # ------------------------------------------------------------------ reverse
    def reverse(
        self, pharmacy: str, settlement_id: str, key: str, req: ReversalRequest
    ) -> tuple[int, str]:
        _check_key(pharmacy, key, req.msgid)
        digest = request_hash("reversal", {"settlement_id": settlement_id, **req.model_dump()})
        return self.store.transact(
            lambda tx: self._reverse(tx, pharmacy, settlement_id, req, digest)
        )

    def _reverse(
        self, tx: Tx, pharmacy: str, settlement_id: str, req: ReversalRequest, digest: str
    ) -> tuple[int, str]:
        replay = self._replay(tx, req.msgid, digest)
        if replay is not None:
            return replay
        row = tx.one(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE entry_id = ? AND kind = 'sale'"
            + tx.for_update,
            settlement_id,
        )
        if row is None or row[3] != pharmacy:
            raise Rejection(404, "settlement_not_found", f"no settlement {settlement_id}")
        if row[8] != "settled":
            prev = tx.one("SELECT msgid FROM entries WHERE original_id = ?", settlement_id)
            raise Rejection(
                409, "already_reversed",
                f"settlement {settlement_id} was already reversed",
                reversal_msgid=prev[0] if prev else None,
            )
        legs = json.loads(row[16])
        rcv = receivable_id(pharmacy)
        accounts = tx.lock_accounts([leg["account_id"] for leg in legs] + [rcv])
        entry_id = "R" + req.msgid
        paid = sum(int(leg["amount"]) for leg in legs)
        after = {leg["account_id"]: accounts[leg["account_id"]].balance + int(leg["amount"])
                 for leg in legs}  # fmt: skip
        postings = [(entry_id, leg["account_id"], int(leg["amount"])) for leg in legs]
        tx.post([*postings, (entry_id, rcv, -paid)] if postings else [])
        created_at, business_date = self._now()
        terminal = req.terminal_id or str(row[4])
        operator = req.operator or str(row[5])
        tx.run(
            "INSERT INTO entries (entry_id, msgid, kind, pharmacy_code, terminal_id, operator, "
            "patient_psn_no, original_id, status, total, personal_account, mutual_aid, cash, "
            "proxy, created_at, business_date, legs, balances_after, lines, reason) "
            "VALUES (?, ?, 'reversal', ?, ?, ?, ?, ?, 'settled', ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "'[]', ?)",
            entry_id, req.msgid, pharmacy, terminal, operator, row[6], settlement_id,
            -int(row[9]), -int(row[10]), -int(row[11]), -int(row[12]), int(row[13]),
            created_at, business_date, row[16], _dumps(after), req.reason,
        )
        tx.run("UPDATE entries SET status = 'reversed' WHERE entry_id = ?", settlement_id)
        new = tx.one(f"SELECT {_ENTRY_COLS} FROM entries WHERE entry_id = ?", entry_id)
        assert new is not None
        text = _dumps(_reversal(new, str(row[1])))
        tx.run(
            "INSERT INTO idempotency (msgid, pharmacy_code, request_hash, status, response) "
            "VALUES (?, ?, ?, 201, ?)",
            req.msgid, pharmacy, digest, text,
        )
        return 201, text

    # ------------------------------------------------------------------ statement
    def _statement_totals(self, tx: Tx, where: str, args: list[Any]) -> list[Row]:
        """The day's totals by kind: one aggregate on the covering index ``entries_day_terminal``.

        SQLite: remembered per (day, terminal filter) with the snapshot's ``MAX(seq)``.
        Entries are never deleted and their amounts never change, and the single
        writer gives every new entry a higher ``seq``, so an unchanged ``MAX(seq)``
        means unchanged totals: the pages after the first of a day skip the
        aggregate (~50 ms per 100,000 rows). PostgreSQL assigns ``seq`` before
        commit (commits may land out of order), so it always aggregates.
        """
        sql = (
            "SELECT kind, COUNT(*), COALESCE(SUM(total), 0), COALESCE(SUM(personal_account), 0),"
            " COALESCE(SUM(mutual_aid), 0), COALESCE(SUM(cash), 0) "
            f"FROM entries WHERE {where} GROUP BY kind"
        )
        if tx.pg:
            return tx.all(sql, *args)
        top = tx.one("SELECT MAX(seq) FROM entries")
        key = (where, *args)
        mark = top[0] if top else None
        hit = self._totals.get(key)
        if hit is not None and hit[0] == mark:
            return hit[1]
        agg = tx.all(sql, *args)
        with self._totals_guard:
            if len(self._totals) >= 1024:
                self._totals.clear()
            self._totals[key] = (mark, agg)
        return agg

    def statement(
        self, pharmacy: str, day: dt.date, terminal_id: str | None, page: int, page_size: int,
        after: int | None = None, compact: bool = False,
    ) -> str:
        """One statement page as JSON text (see ``statement_page``)."""
        return self.statement_page(pharmacy, day, terminal_id, page, page_size, after,
                                   compact)[0]  # fmt: skip

    def statement_page(
        self, pharmacy: str, day: dt.date, terminal_id: str | None, page: int, page_size: int,
        after: int | None = None, compact: bool = False,
    ) -> tuple[str, int | None, int | None]:
        """One statement page as JSON text, and the next page and cursor (None on the last).

        docs/ledger-api.md, GET /v1/statements.

        Keyset paging on ``seq`` (the commit order): with the ``after`` cursor a page is
        ``seq > after``; a bare ``page`` number finds its first ``seq`` on the index alone
        (no row is read or built for the pages skipped). Rows are serialised by the
        database (SQLite ``json_object``, PostgreSQL ``json_build_object``) with ``legs``
        spliced in as stored: no per-row dict or ``json.loads``/``dumps`` in Python.
        Totals are one ``GROUP BY kind`` over the whole day (with the terminal filter).
        ``compact``: rows as arrays in ``COMPACT_COLUMNS`` order, legs as [kind, account, amount].
        """
        where = "pharmacy_code = ? AND business_date = ?"
        args: list[Any] = [pharmacy, day.isoformat()]
        if terminal_id is not None:
            where += " AND terminal_id = ?"
            args.append(terminal_id)
        e_where = "e." + where.replace(" AND ", " AND e.")
        with self.store.read() as tx:
            if compact:
                row_json = _ROW_ARRAY_PG if tx.pg else _ROW_ARRAY_SQLITE
            else:
                row_json = _ROW_JSON_PG if tx.pg else _ROW_JSON_SQLITE
            agg = self._statement_totals(tx, where, args)
            if after is not None:
                start, start_args = "e.seq > ?", [after]
            elif page == 1:
                start, start_args = "1 = 1", []
            else:  # the page's first seq, found on the index; NULL past the end (no rows)
                start = (f"e.seq >= (SELECT seq FROM entries WHERE {where} "
                         "ORDER BY seq LIMIT 1 OFFSET ?)")
                start_args = [*args, (page - 1) * page_size]
            rows = tx.all(
                f"SELECT e.seq, {row_json} FROM entries e "
                "LEFT JOIN entries o ON o.entry_id = e.original_id "
                f"WHERE {e_where} AND {start} ORDER BY e.seq LIMIT ?",
                *args, *start_args, page_size + 1,
            )
        keys = ("count", "total", "personal_account", "mutual_aid", "cash")
        totals = {k: dict.fromkeys(keys, 0) for k in ("sale", "reversal")}
        for kind, *vals in agg:
            totals[kind] = {k: int(v) for k, v in zip(keys, vals, strict=True)}
        net = {k: totals["sale"][k] + totals["reversal"][k] for k in keys}
        net["count"] = totals["sale"]["count"] - totals["reversal"]["count"]
        more = len(rows) > page_size
        head: dict[str, Any] = {
            "pharmacy_code": pharmacy,
            "date": day.isoformat(),
            "terminal_id": terminal_id,
            "totals": {"sales": totals["sale"], "reversals": totals["reversal"], "net": net},
        }
        tail: dict[str, Any] = {
            "page": page,
            "page_size": page_size,
            "next_page": page + 1 if more else None,
        }
        if after is not None:  # only a client that asked for the cursor gets the field
            tail["next_after"] = int(rows[page_size - 1][0]) if more else None
        if compact:
            head["columns"] = list(COMPACT_COLUMNS)
        body = ",".join(r[1] for r in rows[:page_size])
        text = f"{_dumps(head)[:-1]},\"rows\":[{body}],{_dumps(tail)[1:]}"
        return text, tail["next_page"], tail.get("next_after")


# One statement row as JSON text, built by the database (same keys and order as before).
_ROW_JSON_SQLITE = (
    "json_object('msgid', e.msgid, 'settlement_id', e.entry_id, 'terminal_id', e.terminal_id, "
    "'kind', e.kind, 'status', CASE WHEN e.kind = 'sale' THEN e.status END, "
    "'original_msgid', o.msgid, 'created_at', e.created_at, 'total', e.total, "
    "'personal_account', e.personal_account, 'mutual_aid', e.mutual_aid, 'cash', e.cash, "
    "'legs', json(e.legs))"
)
_ROW_JSON_PG = (
    "json_build_object('msgid', e.msgid, 'settlement_id', e.entry_id, "
    "'terminal_id', e.terminal_id, 'kind', e.kind, "
    "'status', CASE WHEN e.kind = 'sale' THEN e.status END, 'original_msgid', o.msgid, "
    "'created_at', e.created_at, 'total', e.total, 'personal_account', e.personal_account, "
    "'mutual_aid', e.mutual_aid, 'cash', e.cash, 'legs', e.legs::json)::text"
)

# The same row as an array in COMPACT_COLUMNS order (``format=compact``), each leg as
# [kind, account_id, amount] in the order stored. Building the leg arrays costs the
# server ~30 ms a 10,000-row page; it saves every reader a dict per leg and a pass in
# Python to turn it into a tuple. SQLite drops the JSON subtype of a subquery's
# result, hence ``json(...)`` around the legs.
_ROW_ARRAY_SQLITE = (
    "json_array(e.msgid, e.entry_id, e.terminal_id, e.kind, "
    "CASE WHEN e.kind = 'sale' THEN e.status END, o.msgid, e.created_at, e.total, "
    "e.personal_account, e.mutual_aid, e.cash, json((SELECT json_group_array(json_array("
    "json_extract(g.value, '$.kind'), json_extract(g.value, '$.account_id'), "
    "json_extract(g.value, '$.amount'))) FROM json_each(e.legs) g)))"
)
_ROW_ARRAY_PG = (
    "json_build_array(e.msgid, e.entry_id, e.terminal_id, e.kind, "
    "CASE WHEN e.kind = 'sale' THEN e.status END, o.msgid, e.created_at, e.total, "
    "e.personal_account, e.mutual_aid, e.cash, COALESCE((SELECT json_agg(json_build_array("
    "g->>'kind', g->>'account_id', (g->>'amount')::bigint)) "
    "FROM json_array_elements(e.legs::json) g), '[]'::json))::text"
)


_IDEMPOTENCY_READ = "SELECT request_hash, status, response FROM idempotency WHERE msgid = ?"


def _credential_query(cred: Credential) -> tuple[str, tuple[Any, ...]]:
    """The read ``Ledger._credential`` checks: the card's row, or the voucher's."""
    if cred.kind == "card":
        return ("SELECT psn_no, card_sn, status, expiry_date FROM cards WHERE card_no = ?",
                (cred.card_no,))
    return "SELECT psn_no FROM vouchers WHERE token = ?", (cred.token,)


def _bindings_query(req: SettlementRequest) -> tuple[str, list[Any]] | None:
    """The bindings the mutual-aid legs name, with what the binding rule needs of payer
    and patient (``Ledger._check_legs``); None without a mutual-aid leg."""
    ids = [leg.binding_id for leg in req.legs if leg.kind is LegKind.MUTUAL_AID]
    if not ids:
        return None
    marks = ",".join("?" * len(ids))
    return (
        "SELECT b.binding_id, b.payer, b.patient, b.relation, b.status, p.insurance_type, "
        "p.insured_region, a.account_id, t.insurance_type, t.insurance_status, "
        "t.insured_region FROM bindings b JOIN persons p ON p.psn_no = b.payer "
        "JOIN persons t ON t.psn_no = b.patient LEFT JOIN accounts a "
        "ON a.owner = b.payer AND a.kind = 'personal' "
        f"WHERE b.binding_id IN ({marks})",
        ids,
    )


def _check_key(pharmacy: str, key: str, msgid: str) -> None:
    if key != msgid:
        raise Rejection(422, "invalid_request", "Idempotency-Key must equal the body's msgid",
                        field="Idempotency-Key")
    if msgid[:12] != pharmacy:
        raise Rejection(403, "pharmacy_mismatch",
                        "the msgid's pharmacy code is not the pharmacy of this token")


def _check_shape(pharmacy: str, key: str, req: SettlementRequest) -> None:
    """Checks that need no database: key, pharmacy, sums, distinct accounts."""
    _check_key(pharmacy, key, req.msgid)
    if req.pharmacy_code != pharmacy:
        raise Rejection(403, "pharmacy_mismatch",
                        "pharmacy_code is not the pharmacy of this token")
    if sum(leg.amount for leg in req.legs) + req.cash != req.total:
        raise Rejection(422, "invalid_request", "legs + cash must equal total", field="total")
    if req.total <= 0:
        raise Rejection(422, "invalid_request", "total must be positive", field="total")
    accounts = [leg.account_id for leg in req.legs]
    if len(set(accounts)) != len(accounts):
        raise Rejection(422, "invalid_request", "an account appears in two legs", field="legs")
    for i, leg in enumerate(req.legs):
        if leg.kind is LegKind.PERSONAL_ACCOUNT and i != 0:
            raise Rejection(422, "invalid_request",
                            "the personal_account leg must be the first leg",
                            field=f"legs[{i}].kind")
        if leg.kind is LegKind.MUTUAL_AID and not leg.binding_id:
            raise Rejection(422, "invalid_request", "a mutual_aid leg needs its binding_id",
                            field=f"legs[{i}].binding_id")


def _fresh_balances(lookup: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    if lookup["personal_account"] is not None:
        out[lookup["personal_account"]["account_id"]] = lookup["personal_account"]["balance"]
    for b in lookup["bindings"]:
        if b["payer_account_id"] is not None:
            out[b["payer_account_id"]] = b["available_balance"]
    return out


def _sale(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "settlement_id": r[0], "msgid": r[1], "pharmacy_code": r[3], "terminal_id": r[4],
        "operator": r[5], "patient_psn_no": r[6], "status": r[8], "legs": json.loads(r[16]),
        "balances_after": json.loads(r[17]), "personal_account": int(r[10]),
        "mutual_aid": int(r[11]), "cash": int(r[12]), "total": int(r[9]),
        "proxy": bool(r[13]), "created_at": r[14], "business_date": r[15], "reversal": None,
    }


def _reversal(r: tuple[Any, ...], original_msgid: str) -> dict[str, Any]:
    return {
        "reversal_id": r[0], "msgid": r[1], "settlement_id": r[7],
        "original_msgid": original_msgid, "pharmacy_code": r[3], "terminal_id": r[4],
        "legs": json.loads(r[16]), "balances_after": json.loads(r[17]),
        "personal_account": -int(r[10]), "mutual_aid": -int(r[11]), "cash": -int(r[12]),
        "total": -int(r[9]), "reason": r[18], "created_at": r[14], "business_date": r[15],
    }
