"""Wiring of JobsService into a docfactory server (called by docfactory.app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
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


class WorkerSupervisor:
    """``docfactory serve --workers N``: N ``docfactory worker`` processes beside the server,
    pointed at it, restarted when one exits unexpectedly (with a growing delay), stopped with
    the server. Production runs workers as their own deployment instead (deploy/k8s)."""

    def __init__(self, settings: Settings, ingestion_address: str, count: int) -> None:
        from docfactory.core.durable import worker_api_key

        self._count = count
        self._env = {
            **os.environ,
            "DOCFACTORY_INGESTION_ADDRESS": ingestion_address,
            "DOCFACTORY_DATA_DIR": str(settings.data_dir),
            "DOCFACTORY_DATABASE_URL": settings.resolved_database_url,
            "DOCFACTORY_WORKER_API_KEY": worker_api_key(settings),
        }
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._restarts = [0] * count
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def _spawn(self, i: int) -> None:
        self._procs[i] = subprocess.Popen(
            [sys.executable, "-m", "docfactory.jobs.runtime"], env=self._env
        )

    async def start(self) -> None:
        for i in range(self._count):
            self._spawn(i)
        self._task = asyncio.create_task(self._watch())
        log.info("started %d worker process(es)", self._count)

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(1.0)
            for i, proc in enumerate(self._procs):
                if self._stopping or proc is None or proc.poll() is None:
                    continue
                self._restarts[i] += 1
                delay = min(30.0, 0.5 * 2 ** min(self._restarts[i], 6))
                log.warning(
                    "worker %d exited with %s; restarting in %.1fs", i, proc.returncode, delay
                )
                self._procs[i] = None
                await asyncio.sleep(delay)
                if not self._stopping:
                    self._spawn(i)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.poll() is None]

    async def stop(self, grace_seconds: float = 15.0) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        live = [p for p in self._procs if p is not None and p.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)

        def wait_all() -> None:
            for p in live:
                try:
                    p.wait(grace_seconds)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)

        await asyncio.to_thread(wait_all)
