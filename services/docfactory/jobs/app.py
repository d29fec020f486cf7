"""Wiring of JobsService into a docfactory server (called by docfactory.app)."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from docfactory.core.config import Settings

log = logging.getLogger("docfactory.jobs")


def attach(server: grpc.aio.Server, settings: Settings, engine: Engine, closers: list[Any]) -> str:
    """Register JobsService (and the webhook when configured); return the service name."""
    from docfactory.jobs import servicer
    from docfactory.jobs.repo import JobsRepository
    from docfactory.jobs.runtime import JobQueue, system_database_url
    from docfactory.jobs.service import JobsService

    queue = JobQueue(system_database_url(settings))
    closers.append(queue.close)
    service = JobsService(JobsRepository(engine), queue)
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
    return servicer.register(server, service)
