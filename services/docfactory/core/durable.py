"""Durable workers (DBOS) shared by jobs and workflows: their system database, their API key, and
the recovery of a dead executor's workflows, on DBOS Transact's public API only.

DBOS recovers an executor's PENDING workflows when that same executor id restarts; without DBOS
Conductor nothing recovers the workflows of an executor that died for good. docfactory's
workers heartbeat and reap silent executors themselves (``jobs`` and ``workflows`` runtimes);
the survivor that claimed a dead executor hands its workflows back here: it lists them
(``DBOS.list_workflows``) and puts them back on their queue (``DBOS.resume_workflows``), where
the queue's atomic ENQUEUED->PENDING dequeue admits exactly one runner. Completed steps are not
re-run; the step that was in flight is (docfactory's steps are idempotent).

Only one caller claims a given dead executor (the claim deletes its heartbeat row), so the
hand-back happens once per death.
"""

from __future__ import annotations

import os
from typing import Any

from docfactory.core.config import Settings
from docfactory.core.errors import ConfigError


def system_database_url(settings: Settings) -> str:
    """DBOS's system database: the configured one, the metadata database when it is
    PostgreSQL, else ``dbos.sqlite`` in the data folder."""
    if settings.jobs.system_database_url:
        return settings.jobs.system_database_url
    url = settings.resolved_database_url
    if url.startswith("postgresql"):
        return url
    return f"sqlite:///{settings.data_dir / 'dbos.sqlite'}"


def worker_api_key(settings: Settings) -> str:
    """The API key durable workers call docfactory's services with."""
    key = settings.jobs.api_key or os.environ.get("DOCFACTORY_API_KEY", "")
    if not key:
        path = settings.data_dir / "api-key"
        if path.exists():
            key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ConfigError("workers need an API key: set DOCFACTORY_WORKER_API_KEY")
    return key


def recover_executor(executor_id: str, app_version: str, default_queue: str) -> int:
    """Re-enqueue the PENDING workflows of ``executor_id`` (this application version); returns
    how many. Must run in a process where DBOS is launched."""
    from dbos import DBOS

    pending: list[Any] = DBOS.list_workflows(
        status="PENDING",
        executor_id=executor_id,
        app_version=app_version,
        load_input=False,
        load_output=False,
    )
    by_queue: dict[str, list[str]] = {}
    for wf in pending:
        by_queue.setdefault(wf.queue_name or default_queue, []).append(wf.workflow_id)
    for queue, ids in by_queue.items():
        DBOS.resume_workflows(ids, queue_name=queue)
    return len(pending)


def pending_of(system_database_url: str, executor_id: str, app_version: str) -> int:
    """How many workflows ``executor_id`` still holds PENDING (after ``DBOS.destroy``, through a
    client of the system database)."""
    from dbos import DBOSClient

    client = DBOSClient(system_database_url=system_database_url)
    try:
        return len(
            client.list_workflows(
                status="PENDING",
                executor_id=executor_id,
                app_version=app_version,
                load_input=False,
                load_output=False,
            )
        )
    finally:
        client.destroy()
