"""Wiring of WorkflowService into a docfactory server (called by docfactory.app)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from docfactory.core.config import Settings
from docfactory.workflows.flows import FlowRegistry, shipped_flows_dir

FLOWS_DIR_ENV = "DOCFACTORY_FLOWS_DIR"


def flows_dir() -> Path:
    """The flow files: DOCFACTORY_FLOWS_DIR, else the flows shipped with docfactory."""
    return Path(os.environ.get(FLOWS_DIR_ENV) or shipped_flows_dir())


class LazyRunQueue:
    """The DBOS client, created on the first run started (servers that never run a dossier
    pay nothing)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._queue: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._queue is None:
                from docfactory.core.durable import system_database_url
                from docfactory.workflows.engine import RunQueue

                self._queue = RunQueue(system_database_url(self._settings))
            return self._queue

    def start(self, run_id: str, tenant: str) -> None:
        self._get().start(run_id, tenant)

    def notify(self, run_id: str, decision_id: str) -> None:
        self._get().notify(run_id, decision_id)

    def cancel(self, run_id: str) -> None:
        self._get().cancel(run_id)

    def close(self) -> None:
        with self._lock:
            if self._queue is not None:
                self._queue.close()
                self._queue = None


def attach(
    server: grpc.aio.Server,
    settings: Settings,
    engine: Engine,
    closers: list[Any],
    ingestion: Any,
    parser: Any,
    gate: Any,
    *,
    staging: Path | None = None,
    staging_prefix: str = "docfactory-dossier-",
) -> str:
    """Register WorkflowService; return its full name."""
    from docfactory.workflows import servicer
    from docfactory.workflows.repo import WorkflowRepository
    from docfactory.workflows.service import WorkflowService

    queue = LazyRunQueue(settings)
    closers.append(queue.close)
    service = WorkflowService(
        WorkflowRepository(engine),
        queue,
        FlowRegistry(flows_dir()),
        gate=gate,
        ingestion=ingestion,
        parser=parser,
        max_file_bytes=settings.parsing.max_file_bytes,
        source_roots=settings.parsing.ingest_path_roots,
        queued_notice_seconds=settings.workflows.queued_notice_seconds,
        worker_timeout_seconds=settings.workflows.executor_timeout_seconds,
        staging_dir=staging,
        staging_prefix=staging_prefix,
    )
    return servicer.register(server, service)


def worker_supervisor(settings: Settings, address: str, count: int) -> Any:
    """``docfactory serve``: ``count`` dossier worker processes beside the server, pointed at
    it for retrieval (docfactory.core.supervisor), sharing its database and policy."""
    from docfactory.core.config import settings_env
    from docfactory.core.durable import worker_api_key
    from docfactory.core.supervisor import WorkerSupervisor

    env = dict(os.environ) | settings_env(settings)
    env["DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS"] = address
    try:
        env["DOCFACTORY_WORKER_API_KEY"] = worker_api_key(settings)
    except Exception:  # no worker key: runs still progress, without rule retrieval
        env.pop("DOCFACTORY_WORKER_API_KEY", None)
    return WorkerSupervisor("docfactory.workflows.engine", env, count, name="dossier worker")
