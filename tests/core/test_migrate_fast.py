"""ensure_schema on a database already at head: one plain query, Alembic not imported (it
cost seconds of every cold command); the head read from the revision files is Alembic's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from docfactory.core import migrate
from tests.conftest import ROOT

PROBE = """
import sys
from docfactory.core import migrate
from docfactory.core.db import make_engine
engine = make_engine(sys.argv[1])
migrate.ensure_schema(engine)
print("alembic" in sys.modules)
"""


def _probe(url: str) -> bool:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip() == "True"


def test_head_from_files_is_alembics_head() -> None:
    assert migrate._head_from_files() == migrate.head_revision()


def test_database_at_head_is_checked_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _probe(url) is True  # empty database: migrated through Alembic
    assert migrate.current_revision(url) == migrate.head_revision()
    assert _probe(url) is False  # at head: plain SQL only
    # a database behind head is still upgraded (the fast path does not hide it)
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '0003'"))
    engine.dispose()
    assert _probe(url) is True
    assert migrate.current_revision(url) == migrate.head_revision()
