"""Database targets of the governance tests (importable by spawned worker processes)."""

from __future__ import annotations

import os

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from docfactory.core.db import make_engine

PG_URL = os.environ.get(
    "DOCFACTORY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def engine_for(url: str, schema: str | None = None) -> Engine:
    """SQLite through the project's factory; PostgreSQL confined to one schema."""
    if schema is None:
        return make_engine(url)
    return create_engine(
        url,
        connect_args={"options": f"-csearch_path={schema}"},
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
    )
