"""A fresh PostgreSQL schema for one test, dropped afterwards.

The shared-journal tests run against the real server the ledger tests use
(``tests/ledger/conftest.py``: ``PG_BASE``, ``pg_available``) and are skipped,
saying why, when none answers. Each test gets its own schema through the URL's
``options=-csearch_path=<schema>``, so tests never see each other's rows.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.ledger.conftest import PG_BASE, pg_available

__all__ = ["PG_BASE", "SKIP_REASON", "fresh_schema", "sql"]

SKIP_REASON = "no PostgreSQL server at 127.0.0.1:5432 (the shared-journal tests need one)"


@functools.cache
def _available() -> bool:
    return pg_available()


@contextmanager
def fresh_schema(prefix: str = "journal") -> Iterator[str]:
    """Yield a postgresql:// URL whose search_path is a new, empty schema; drop it after."""
    if not _available():
        pytest.skip(SKIP_REASON)
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def sql(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement as a person with database access would (autocommit); rows if any."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return list(cur.fetchall()) if cur.description else []
