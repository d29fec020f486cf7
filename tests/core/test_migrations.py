"""Alembic migrations of docfactory's tables, on SQLite and on a fresh PostgreSQL database.

The guard: a database migrated to head has exactly the schema of the SQLAlchemy definitions
(``compare_metadata`` finds nothing, and the reflected schema equals what ``create_all``
makes). Changing a table without a revision fails here. Also: adoption of a database created
by the former ``create_all`` code, repeated and concurrent upgrades, ``docfactory db``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from docfactory.core import migrate
from docfactory.core.config import load_settings
from docfactory.core.db import make_engine
from docfactory.core.errors import ConfigError
from docfactory.migrations import schema
from tests.conftest import ROOT

PG_ADMIN_URL = os.environ.get(
    "DOCFACTORY_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@functools.cache
def _postgres_unavailable() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL unreachable at {PG_ADMIN_URL}: {type(exc).__name__}: {exc}"[:300]
    return None


NewDb = Callable[[], str]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDb]:
    """A factory of fresh, empty databases (URLs) of one kind, dropped afterwards."""
    engines: list[Engine] = []
    if request.param == "sqlite":

        def sqlite_db() -> str:
            return f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:8]}.sqlite'}"

        yield sqlite_db
        return
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    engines.append(admin)
    names: list[str] = []

    def pg_db() -> str:
        name = f"docfactory_mig_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    try:
        yield pg_db
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engines() -> Iterator[Callable[[str], Engine]]:
    made: list[Engine] = []

    def make(url: str) -> Engine:
        engine = make_engine(url)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


def _diffs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": migrate.VERSION_TABLE,
                "include_object": schema.include_object,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return list(compare_metadata(context, schema.target_metadata()))


def _snapshot(engine: Engine) -> dict[str, Any]:
    """The reflected schema (types, nullability, server defaults incl. SERIAL, keys, indexes,
    unique constraints) of our tables, in comparable form."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) & _ours()):
        out[table] = {
            "columns": [
                {**c, "type": repr(c["type"])}
                for c in sorted(insp.get_columns(table), key=lambda c: c["name"])
            ],
            "pk": insp.get_pk_constraint(table),
            "indexes": sorted(insp.get_indexes(table), key=lambda i: str(i["name"])),
            "uniques": sorted(insp.get_unique_constraints(table), key=lambda u: str(u["name"])),
            "checks": sorted(insp.get_check_constraints(table), key=lambda c: str(c["name"])),
            "fks": insp.get_foreign_keys(table),
        }
    return out


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE}"))
        return [r[0] for r in rows]


def _legacy_create_all(engine: Engine, tables: set[str] | None = None) -> None:
    """What the stores did before migrations: create_all of their own tables."""
    from docfactory.core.db import Base
    from docfactory.jobs.repo import metadata as jobs_metadata
    from docfactory.workflows.repo import metadata as workflows_metadata

    schema.target_metadata()  # imports every module that maps a table on Base
    for metadata in (Base.metadata, jobs_metadata, workflows_metadata):
        chosen = [t for name, t in metadata.tables.items() if tables is None or name in tables]
        metadata.create_all(engine, tables=chosen)


# ---------------------------------------------------------------------------------------------


def _ours() -> set[str]:
    return set(schema.target_metadata().tables)


def test_one_head_above_the_baseline() -> None:
    head = migrate.head_revision()  # raises on several heads (a merge revision is missing)
    baseline = migrate._script().get_revision(migrate.BASELINE)
    assert baseline is not None and baseline.down_revision is None
    assert migrate.BASELINE in {
        r.revision for r in migrate._script().iterate_revisions(head, "base")
    }
    assert _ours() >= migrate.BASELINE_TABLES


def test_upgraded_schema_matches_the_definitions(
    new_db: NewDb, engines: Callable[[str], Engine]
) -> None:
    engine = engines(new_db())
    assert migrate.current_revision(engine) is None
    assert migrate.upgrade(engine) == migrate.head_revision()
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(sa.inspect(engine).get_table_names()) == _ours() | {migrate.VERSION_TABLE}
    assert _diffs(engine) == []

    # Tables that are not ours (DBOS, another application) are ignored, not "to be removed".
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE workflow_status_like (id INTEGER PRIMARY KEY)"))
    assert _diffs(engine) == []


def test_upgraded_schema_equals_create_all(new_db: NewDb, engines: Callable[[str], Engine]) -> None:
    migrated, created = engines(new_db()), engines(new_db())
    migrate.upgrade(migrated)
    _legacy_create_all(created)
    expected = _snapshot(created)
    assert set(expected) == _ours()
    assert _snapshot(migrated) == expected


def test_a_changed_definition_is_detected(new_db: NewDb, engines: Callable[[str], Engine]) -> None:
    """The guard itself: a column added in code without a revision shows up as a difference."""
    engine = engines(new_db())
    migrate.upgrade(engine)
    changed = sa.MetaData()
    for table in schema.target_metadata().tables.values():
        table.to_metadata(changed)
    changed.tables["documents"].append_column(sa.Column("language", sa.String(8)))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": migrate.VERSION_TABLE})
        diffs = compare_metadata(context, changed)
    assert [d[0] for d in diffs] == ["add_column"]


@pytest.mark.parametrize("legacy", ["all", "some"])
def test_adopts_a_database_created_by_create_all(
    new_db: NewDb, engines: Callable[[str], Engine], legacy: str
) -> None:
    """Old deployments: tables made by create_all (all of them, or only those of the stores that
    ran), no version table. Stamped at the baseline, the missing tables made, rows kept."""
    from docfactory.ingestion.adapters.documents import DocumentRecord, SqlDocumentRepository

    url = new_db()
    engine = engines(url)
    present = None if legacy == "all" else {"documents", "audit_records", "audit_chain_head"}
    _legacy_create_all(engine, present)
    now = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO documents (tenant, document_id, collection, filename, source_uri,"
                " sha256, version, classification, state, mime_type, page_count, chunk_count,"
                " size_bytes, error_reason, error_message, metadata, created_at, updated_at)"
                " VALUES ('acme', 'd1', 'c', 'a.pdf', 's3://b/a.pdf', '', 3, 2, 'INDEXED', '',"
                " 1, 4, 10, '', '', '{\"k\": \"v\"}', :now, :now)"
            ),
            {"now": now},
        )
    assert migrate.current_revision(engine) is None

    # The store's start-up path (ensure_schema) adopts it, on another engine of the database.
    repo = SqlDocumentRepository(engines(url))
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _version_rows(engine) == [migrate.head_revision()]
    record = repo.get("acme", "d1")
    assert record is not None
    assert (record.version, record.chunk_count, record.metadata) == (3, 4, {"k": "v"})
    assert set(sa.inspect(engine).get_table_names()) >= _ours()
    assert _diffs(engine) == []
    repo.save(DocumentRecord("acme", "d2", "c", "b.pdf", "s3://b/b.pdf", state="INDEXED"))
    assert repo.get("acme", "d2") is not None


def test_upgrade_twice_and_store_restarts_are_harmless(
    new_db: NewDb, engines: Callable[[str], Engine]
) -> None:
    from docfactory.governance.audit import AuditLog
    from docfactory.jobs.repo import JobsRepository
    from docfactory.measurement.feedback import FeedbackStore

    url = new_db()
    assert migrate.upgrade(url) == migrate.head_revision()
    assert migrate.upgrade(url) == migrate.head_revision()
    engine = engines(url)
    for _ in range(2):  # stores built several times on one engine, as in the app and tests
        AuditLog(engine).append(tenant="t", key_id="k", use_case="u", action="SEARCH")
        JobsRepository(engine)
        FeedbackStore(engine)
    assert _version_rows(engine) == [migrate.head_revision()]
    assert len(AuditLog(engine).verify().problems) == 0


def test_ensure_schema_runs_once_per_engine(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'once.sqlite'}")
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    migrate.ensure_schema(engine)
    assert statements
    statements.clear()
    migrate.ensure_schema(engine)
    assert statements == []
    # A new engine on the migrated database: one cheap check, no migration.
    other = make_engine(f"sqlite:///{tmp_path / 'once.sqlite'}")
    sa.event.listen(other, "before_cursor_execute", lambda *a: statements.append(a[2]))
    migrate.ensure_schema(other)
    assert not any("CREATE" in s.upper() or "IMMEDIATE" in s.upper() for s in statements)
    engine.dispose()
    other.dispose()


def test_unknown_revision_is_refused_by_upgrade_and_tolerated_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'newer.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'ffff9999'"))
    with pytest.raises(ConfigError, match="ffff9999"):
        migrate.upgrade(engine)
    with caplog.at_level(logging.WARNING, logger="docfactory.core.migrate"):
        migrate.ensure_schema(engine)
    assert "ffff9999" in caplog.text
    engine.dispose()


def _upgrade_in_child(url: str, start: Any, out: Any) -> None:
    try:
        migrate.head_revision()  # load the scripts before the race
        start.wait(120)
        out.put(("ok", migrate.upgrade(url)))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_concurrent_adoptions_from_processes(
    new_db: NewDb, engines: Callable[[str], Engine]
) -> None:
    """Replicas of an old deployment restarting at once: one adopts, the others find it done.
    (A fresh database raced from threads: the next test.)"""
    url = new_db()
    engine = engines(url)
    _legacy_create_all(engine, {"documents", "jobs_jobs"})
    ctx = multiprocessing.get_context("spawn")
    n = 3
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_upgrade_in_child, args=(url, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
    assert results == [("ok", migrate.head_revision())] * n
    assert _version_rows(engine) == [migrate.head_revision()]
    assert _diffs(engine) == []


def test_concurrent_upgrades_from_threads(new_db: NewDb, engines: Callable[[str], Engine]) -> None:
    url = new_db()
    n = 4
    per_thread = [engines(url) for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[Any] = []

    def run(engine: Engine) -> None:
        barrier.wait(30)
        try:
            results.append(migrate.upgrade(engine))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [migrate.head_revision()] * n
    assert _version_rows(per_thread[0]) == [migrate.head_revision()]


def _cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
        "DOCFACTORY_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT / "services"),
    }
    return subprocess.run(
        [sys.executable, "-m", "docfactory.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_db_upgrade_and_current(tmp_path: Path) -> None:
    data = tmp_path / "data"
    head = migrate.head_revision()
    r = _cli(["db", "current"], data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"none (head is {head})"
    r = _cli(["db", "upgrade"], data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{head} (head)"
    url = load_settings(env={}, overrides={"data_dir": str(data)}).resolved_database_url
    assert url.startswith("sqlite")
    engine = make_engine(url)
    assert migrate.current_revision(engine) == head
    assert _diffs(engine) == []
    engine.dispose()
