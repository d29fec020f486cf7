"""Schema migrations of docfactory's own tables (Alembic, run programmatically).

The revisions live in the package (``docfactory/migrations``); no ``alembic.ini`` is needed.
DBOS keeps its own system tables (schema ``dbos`` / ``dbos.sqlite``): they are not ours and
are never touched or compared here.

- :func:`upgrade` brings a database to head: ``docfactory db upgrade`` on deploy, and the stores
  through :func:`ensure_schema` (once per engine and process) at start-up.
- Concurrent start-ups are serialized: PostgreSQL takes a transaction-level advisory lock, then
  runs the whole upgrade in that transaction (transactional DDL); SQLite takes the database's
  write lock up front (``BEGIN IMMEDIATE``) and runs the DDL inside that transaction. Whoever
  comes second re-reads the version under the lock and finds nothing left to do.
- Adoption: a database created by the former ``create_all`` code (some of our tables, no version
  table) gets the tables it lacks and is stamped at the baseline revision; its rows are kept.

The version table is ``docfactory_alembic_version`` (not the default ``alembic_version``), so a
database shared with another Alembic-managed application cannot mix the two histories up.

A table added to the code needs a revision (``tests/core/test_migrations.py`` fails otherwise)
and, for a new module, an entry in :func:`docfactory.migrations.schema.target_metadata`
(outside core: the schema knows every domain store; core knows none of them).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from docfactory.core.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "docfactory_alembic_version"
BASELINE = "0001"
# The tables of the baseline revision: finding any of them without a version table means a
# database created by create_all (adopted, not re-created).
BASELINE_TABLES = frozenset(
    {
        "documents",
        "jobs_jobs",
        "jobs_items",
        "jobs_documents",
        "jobs_objects",
        "jobs_object_docs",
        "jobs_executors",
        "governance_quota_counters",
        "review_drafts",
        "audit_records",
        # (the baseline's audit_chain_head is replaced by audit_chains in revision 0003)
        "answer_feedback",
    }
)
# PostgreSQL advisory lock key of the migrations (per database): "docfacto" as a bigint.
LOCK_KEY = int.from_bytes(b"docfacto", "big")


# ---------------------------------------------------------------------------------------------
# Alembic plumbing
# ---------------------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged revisions, bound to ``connection`` when given."""
    from alembic.config import Config

    cfg = Config()
    # ConfigParser interpolation: a literal "%" must be doubled.
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    heads = _script().get_heads()
    if len(heads) != 1:  # a merge revision is missing
        raise ConfigError(f"docfactory migrations have {len(heads)} heads: {heads}")
    return heads[0]


def _known(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _script().get_revision(revision) is not None
    except CommandError:
        return False


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@contextmanager
def _engine(target: Engine | str) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    from docfactory.core.db import make_engine

    engine = make_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed on success."""
    with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        elif dialect == "sqlite":
            # pysqlite runs DDL outside transactions unless one is open: this one is, and it
            # holds the write lock (waiting up to the connection's busy timeout) until commit.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def current_revision(target: Engine | str) -> str | None:
    """The database's revision (None: not under migrations yet, or empty)."""
    with _engine(target) as engine, engine.connect() as conn:
        return _current(conn)


def upgrade(target: Engine | str) -> str:
    """Bring the database (an engine or a URL) to head; returns the head revision.

    Safe to run from several processes at once, and on a database created by ``create_all``
    before migrations existed (adopted: missing tables created, stamped at the baseline).
    Raises ConfigError when the database is at a revision this code does not know (a newer
    docfactory migrated it).
    """
    from alembic import command

    head = head_revision()
    with _engine(target) as engine, _locked(engine) as conn:
        current = _current(conn)
        if current == head:
            return head
        if current is not None and not _known(current):
            raise ConfigError(
                f"database schema is at revision {current!r}, unknown to this docfactory "
                f"(head {head!r}): was it migrated by a newer version?"
            )
        if current is None:
            legacy = BASELINE_TABLES.intersection(sa.inspect(conn).get_table_names())
            if legacy:
                log.warning(
                    "adopting a database created before migrations (%d of %d tables present): "
                    "creating the missing ones, stamping revision %s",
                    len(legacy),
                    len(BASELINE_TABLES),
                    BASELINE,
                )
                cfg = alembic_config(conn)
                cfg.attributes["adopt"] = True
                command.upgrade(cfg, BASELINE)
        command.upgrade(alembic_config(conn), "head")
        log.info("database schema upgraded from %s to %s", current or "nothing", head)
    return head


_migrated: weakref.WeakSet[Engine] = weakref.WeakSet()
_migrating = threading.Lock()


_REVISION_LINE = re.compile(
    r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(None|\"[^\"]*\"|'[^']*')\s*(?:#.*)?$", re.M
)


@functools.cache
def _head_from_files() -> str | None:
    """The head revision read from the revision files' ``revision`` / ``down_revision`` lines,
    without importing Alembic; None when a file does not have the simple form (a merge, a
    computed value): the caller then asks Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((SCRIPT_LOCATION / "versions").glob("*.py")):
        if path.name.startswith("_"):
            continue
        found = dict(
            (m.group(1), m.group(2)) for m in _REVISION_LINE.finditer(path.read_text("utf-8"))
        )
        if "revision" not in found or "down_revision" not in found:
            return None
        revisions.add(found["revision"].strip("\"'"))
        if found["down_revision"] != "None":
            parents.add(found["down_revision"].strip("\"'"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _recorded_revision(engine: Engine) -> str | None:
    """The version table's revision by plain SQL (None: no table, no row, or several)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    except sa.exc.DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def ensure_schema(engine: Engine) -> None:
    """What the stores call instead of ``create_all``: :func:`upgrade` once per engine.

    A database already at head costs one plain query, without importing Alembic (the head is
    read from the revision files). One at a revision this code does not know (a newer
    docfactory during a rolling deploy) is left alone, with a warning.
    """
    if engine in _migrated:
        return
    with _migrating:
        if engine in _migrated:
            return
        head = _head_from_files()
        if head is not None and _recorded_revision(engine) == head:
            _migrated.add(engine)
            return
        current = current_revision(engine)
        if current != head_revision():
            if current is not None and not _known(current):
                log.warning(
                    "database schema is at revision %r, unknown to this docfactory (head %r): "
                    "left as it is",
                    current,
                    head_revision(),
                )
            else:
                upgrade(engine)
        _migrated.add(engine)
