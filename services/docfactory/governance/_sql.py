"""SQL helpers shared by the governance stores (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from docfactory.core.errors import ConfigError


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writers of every process take one at a time where needed.

    SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock up front (waiting up to the
    connection's busy timeout), so a read-then-write sequence cannot interleave with another
    writer. PostgreSQL: a plain transaction; callers lock the rows they need
    (``SELECT ... FOR UPDATE`` or ``INSERT ... ON CONFLICT DO UPDATE``).
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # pysqlite begins lazily (before DML only); an explicit BEGIN IMMEDIATE is honoured
            # and SQLAlchemy's commit()/rollback() end it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def upsert(conn: Connection, table: Table) -> Any:
    """The dialect's ``INSERT`` construct with ``on_conflict_do_*`` (SQLite / PostgreSQL)."""
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise ConfigError(f"governance stores support SQLite and PostgreSQL, not {name}")
