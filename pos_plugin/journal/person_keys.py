"""The person-key table: which journal rows name a person, and in which part.

Why: an audit (``pos-plugin journal search --person``) must find a person's sales,
proxy purchases and refused attempts on a journal of years, on every till of a
store. Scanning each row's ``evidence`` JSON for the keyed hash reads the whole
journal; this table holds one row per (person, sale, role), keyed first by the
person, so a search is one index lookup.

What a key is:

- ``holder`` / ``patient`` / ``buyer``: the keyed hash (HMAC-SHA256 with the journal
  key) of the ID number of the credential's holder, of the patient's document, of
  the proxy buyer's document, exactly as the row's ``evidence`` (and, for the holder,
  ``patient_id_hmac``) holds it. The ID number itself is never stored.
- ``family_payer``: ``psn:`` + the 人员编号 of a family account that paid a leg (the
  plan's ``mutual_aid`` legs). The till never learns a family payer's ID number, only
  their psn_no, which the row already keeps in clear; a search by ID number reaches
  these through the psn_no of the rows where the person was the card holder.

The table is **derived**: every key follows from columns of ``sales`` that the hash
chain already covers (``evidence``, ``patient_id_hmac``, ``plan``), and it is
written in the same transaction as the row, only ever added to (``add``). It is
therefore not hash-chained itself; ``journal verify`` derives the keys again from
the rows and their events and reports any difference (a key removed by hand would
hide a person from an audit). On SQLite the file is one till's, so ``pharmacy_code`` is ``''`` there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

ROLES = ("holder", "patient", "buyer", "family_payer")
PSN_PREFIX = "psn:"

# The table, then the backfill into it, then its indexes: building an index over rows
# already there sorts them once, where filling an indexed table inserts each random
# keyed hash into the b-tree (journal/schema.py runs the three in one transaction).
_TABLE = """
    CREATE TABLE IF NOT EXISTS person_keys (
        person TEXT NOT NULL,
        pharmacy_code TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        sale_ref TEXT NOT NULL,
        role TEXT NOT NULL
    )
"""
_INDEXES = """
    CREATE UNIQUE INDEX IF NOT EXISTS person_keys_key
        ON person_keys (person, pharmacy_code, terminal_id, sale_ref, role);
    CREATE INDEX IF NOT EXISTS person_keys_by_sale
        ON person_keys (pharmacy_code, terminal_id, sale_ref)
"""

# The backfill, from what each row already holds (the same keys as ``keys_of``); UNION
# drops the duplicates (the holder named by the evidence and by patient_id_hmac).
_SQLITE_BACKFILL = """
    INSERT OR IGNORE INTO person_keys (person, pharmacy_code, terminal_id, sale_ref, role)
    SELECT json_extract(evidence, '$.' || r.role || '.number_hmac'), '', terminal_id,
           sale_ref, r.role
    FROM sales, (SELECT 'holder' AS role UNION ALL SELECT 'patient' UNION ALL SELECT 'buyer') r
    WHERE json_valid(evidence)
      AND json_type(evidence, '$.' || r.role || '.number_hmac') = 'text'
    UNION
    SELECT patient_id_hmac, '', terminal_id, sale_ref, 'holder' FROM sales
    WHERE patient_id_hmac <> ''
    UNION
    SELECT 'psn:' || json_extract(l.leg, '$.payer_psn_no'), '', l.terminal_id, l.sale_ref,
           'family_payer'
    FROM (SELECT s.terminal_id, s.sale_ref, CASE WHEN e.type = 'object' THEN e.value END AS leg
          FROM sales s, json_each(CASE WHEN json_valid(s.plan) THEN s.plan ELSE '{}' END,
                                  '$.legs') e) l
    WHERE json_extract(l.leg, '$.kind') = 'mutual_aid'
      AND json_type(l.leg, '$.payer_psn_no') = 'text'
"""

# PostgreSQL's json refuses any text holding the escape \u0000 (a POS may send a NUL in
# a name or the operator): it is read as \u0020 instead, same length, same structure,
# so the keyed hashes (hex) come out as Python reads them.
_PG_BACKFILL = """
    INSERT INTO person_keys (person, pharmacy_code, terminal_id, sale_ref, role)
    WITH s AS (
        SELECT pharmacy_code, terminal_id, sale_ref, patient_id_hmac,
               replace(evidence, '\\u0000', '\\u0020')::json AS ev,
               replace(plan, '\\u0000', '\\u0020')::json AS pl
        FROM sales
    )
    SELECT (ev -> r.role) ->> 'number_hmac', pharmacy_code, terminal_id, sale_ref, r.role
    FROM s, (VALUES ('holder'), ('patient'), ('buyer')) AS r(role)
    WHERE json_typeof(ev) = 'object' AND json_typeof(ev -> r.role) = 'object'
      AND json_typeof((ev -> r.role) -> 'number_hmac') = 'string'
    UNION
    SELECT patient_id_hmac, pharmacy_code, terminal_id, sale_ref, 'holder' FROM s
    WHERE patient_id_hmac <> ''
    UNION
    SELECT 'psn:' || (l.value ->> 'payer_psn_no'), s.pharmacy_code, s.terminal_id,
           s.sale_ref, 'family_payer'
    FROM s, json_array_elements(
        CASE WHEN json_typeof(pl) = 'object' AND json_typeof(pl -> 'legs') = 'array'
             THEN pl -> 'legs' ELSE '[]'::json END) AS l(value)
    WHERE json_typeof(l.value) = 'object' AND l.value ->> 'kind' = 'mutual_aid'
      AND json_typeof(l.value -> 'payer_psn_no') = 'string'
    ON CONFLICT DO NOTHING
"""

# A schema migration each (journal/schema.py): self-contained, IF NOT EXISTS, and the
# backfill adds only what is missing, so running it twice changes nothing.
SQLITE_MIGRATION = ";".join((_TABLE, _SQLITE_BACKFILL, _INDEXES))
PG_MIGRATION = ";".join((_TABLE, _PG_BACKFILL, _INDEXES))

# The columns a key is derived from: a change to any of them rewrites the sale's keys.
SOURCE_COLUMNS = frozenset({"evidence", "patient_id_hmac", "plan"})


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def keys_of(row: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(person, role) of every key a sales row yields (JSON columns as text or decoded)."""
    keys: set[tuple[str, str]] = set()
    ev = _json(row.get("evidence"))
    if isinstance(ev, dict):
        for role in ("holder", "patient", "buyer"):
            doc = ev.get(role)
            if isinstance(doc, dict) and isinstance(doc.get("number_hmac"), str):
                keys.add((doc["number_hmac"], role))
    if isinstance(row.get("patient_id_hmac"), str) and row["patient_id_hmac"]:
        keys.add((row["patient_id_hmac"], "holder"))
    plan = _json(row.get("plan"))
    legs = plan.get("legs") if isinstance(plan, dict) else None
    for leg in legs if isinstance(legs, list) else ():
        if (
            isinstance(leg, dict)
            and leg.get("kind") == "mutual_aid"
            and isinstance(leg.get("payer_psn_no"), str)
        ):
            keys.add((PSN_PREFIX + leg["payer_psn_no"], "family_payer"))
    return keys


def add(db: Any, row: Mapping[str, Any], pharmacy_code: str) -> None:
    """The keys the sale's row names now, inside the caller's transaction.

    Only added, never deleted: a till's database role has SELECT, INSERT and UPDATE
    alone (journal/schema.py), and a key a row named once stays true of the attempt (a
    family payer planned and then dropped by a re-plan was still asked to pay, in the
    hash chain's events). ``journal verify`` holds the table to exactly that."""
    till = (pharmacy_code, row["terminal_id"], row["sale_ref"])
    keys = [(person, *till, role) for person, role in sorted(keys_of(row))]
    if keys:
        db.executemany(
            "INSERT INTO person_keys (person, pharmacy_code, terminal_id, sale_ref, role) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            keys,
        )


def differences(
    stored: Iterable[Mapping[str, Any]],
    rows: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    pharmacy_code: str,
) -> list[str]:
    """What ``journal verify`` reports: a key the row names that the table lacks (a search
    would miss the person), or a key that neither the row nor any of its events ever
    named (the table edited by hand, or written by a faulty release)."""
    named: dict[str, set[tuple[str, str]]] = {}
    for e in events:
        detail = _json(e["detail"])
        if isinstance(detail, dict):
            named.setdefault(e["sale_ref"], set()).update(keys_of(detail))
    have: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for k in stored:
        have.setdefault((k["terminal_id"], k["sale_ref"]), set()).add((k["person"], k["role"]))
    problems = []
    seen = set()
    for r in rows:
        at = (r["terminal_id"], r["sale_ref"])
        seen.add(at)
        now = keys_of(dict(r))
        for _, role in sorted(now - have.get(at, set())):
            problems.append(
                f"sale {r['sale_ref']}: its {role} key is missing from person_keys "
                "(a search would miss it)"
            )
        for _, role in sorted(have.get(at, set()) - now - named.get(r["sale_ref"], set())):
            problems.append(f"sale {r['sale_ref']}: person_keys holds a {role} key its row "
                            "never named")  # fmt: skip
    for at in sorted(set(have) - seen):
        problems.append(f"person_keys names a sale {at[1]} that is not in the journal")
    return problems
