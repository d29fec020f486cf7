"""Fixtures: every SQL test runs on SQLite and on the real PostgreSQL (one schema per test)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.governance._db import PG_URL, engine_for


@functools.cache
def postgres_unavailable() -> str | None:
    """None when PostgreSQL answers, else why the PostgreSQL cases are skipped."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL unreachable at {PG_URL}: {type(exc).__name__}: {exc}"[:300]
    return None


@dataclass
class DbTarget:
    kind: str  # "sqlite" | "postgresql"
    url: str
    schema: str | None = None
    engines: list[Engine] = field(default_factory=list)

    def new_engine(self) -> Engine:
        engine = engine_for(self.url, self.schema)
        self.engines.append(engine)
        return engine

    @functools.cached_property
    def engine(self) -> Engine:
        return self.new_engine()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DbTarget]:
    if request.param == "sqlite":
        target = DbTarget("sqlite", f"sqlite:///{tmp_path / 'governance.db'}")
        yield target
        for engine in target.engines:
            engine.dispose()
        return
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    schema = f"gov_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    target = DbTarget("postgresql", PG_URL, schema)
    try:
        yield target
    finally:
        for engine in target.engines:
            engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
