"""Wiring of JobsService into a docfactory server (called by docfactory.app)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from docfactory.core.config import Settings
from docfactory.jobs.service import JobsService
from docfactory.jobs.storage import make_object_store

log = logging.getLogger("docfactory.jobs")


def attach(
    server: grpc.aio.Server,
    settings: Settings,
    engine: Engine,
    closers: list[Any],
    *,
    source_granted: Callable[[str, str, str], bool] | None = None,
) -> tuple[str, JobsService]:
    """Register JobsService (and the webhook when configured); return the service name and
    the service (it also takes background uploads from IngestionService)."""
    from docfactory.core.durable import system_database_url
    from docfactory.jobs import servicer
    from docfactory.jobs.repo import JobsRepository
    from docfactory.jobs.runtime import JobQueue

    queue = JobQueue(system_database_url(settings))
    closers.append(queue.close)
    service = JobsService(
        JobsRepository(engine),
        queue,
        store=make_object_store(settings),
        upload_bucket=settings.jobs.upload_bucket,
        source_granted=source_granted,
    )
    jobs_cfg = settings.jobs
    if jobs_cfg.webhook_port is not None:
        from docfactory.jobs.webhook import WebhookServer

        hook = WebhookServer(
            service,
            jobs_cfg.webhook_host,
            jobs_cfg.webhook_port,
            jobs_cfg.webhook_token,
            jobs_cfg.webhook_tenant,
            jobs_cfg.webhook_collection,
        )
        hook.start()
        closers.append(hook.close)
        log.info("MinIO webhook on %s:%d/events", jobs_cfg.webhook_host, hook.port)
        print(f"docfactory: webhook on {jobs_cfg.webhook_host}:{hook.port}", flush=True)
    return servicer.register(server, service), service


def worker_supervisor(settings: Settings, ingestion_address: str, count: int) -> Any:
    """``docfactory serve --workers N``: N ``docfactory worker`` processes beside the server,
    pointed at it (docfactory.core.supervisor)."""
    from docfactory.core.config import settings_env
    from docfactory.core.durable import worker_api_key
    from docfactory.core.supervisor import WorkerSupervisor

    env = {
        **os.environ,
        **settings_env(settings),
        "DOCFACTORY_INGESTION_ADDRESS": ingestion_address,
        "DOCFACTORY_WORKER_API_KEY": worker_api_key(settings),
    }
    return WorkerSupervisor("docfactory.jobs.runtime", env, count, name="bulk worker")
