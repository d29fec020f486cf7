"""Every docfactory table in one place, for the migrations (autogenerate compare, env.py).

It lives outside ``core`` because it imports the domain stores that map the tables: ``core``
imports no domain package (the import-linter contracts in ``.importlinter`` check it).
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa


@functools.cache
def target_metadata() -> sa.MetaData:
    """Every docfactory table in one MetaData: what the migrations must produce."""
    from docfactory.core.db import Base
    from docfactory.governance import audit, quotas, reviews  # noqa: F401 - map their tables
    from docfactory.ingestion.adapters import documents  # noqa: F401
    from docfactory.jobs.repo import metadata as jobs_metadata
    from docfactory.measurement import feedback  # noqa: F401
    from docfactory.workflows.repo import metadata as workflows_metadata

    combined = sa.MetaData()
    for metadata in (Base.metadata, jobs_metadata, workflows_metadata):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate filter: tables of the database that are not ours (DBOS, another
    application sharing the database) are ignored instead of being proposed for removal."""
    if type_ == "table" and reflected and compare_to is None:
        return name in target_metadata().tables
    return True
