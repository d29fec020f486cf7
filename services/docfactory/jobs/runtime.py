"""Durable execution of jobs on DBOS Transact.

* ``docfactory.jobs.scan`` (one per IngestPrefix): lists the prefix, diffs it against the last
  processed ETags (checkpointed step), then enqueues one ``docfactory.jobs.object`` workflow per
  new / changed / removed object on the ``docfactory-ingest`` queue (concurrency per worker).
* ``docfactory.jobs.object``: fetch -> expand -> upload each document to IngestionService (its
  stub) -> record outcomes, as one checkpointed step whose retries DBOS runs as declared on the
  step (``max_attempts``, ``retry_interval_seconds``, ``backoff_rate``; only transient errors
  are retried); then FAILED keeping the last error.

Workers (``docfactory worker``) are DBOS executors with a unique executor id each. DBOS recovers
an executor's PENDING workflows when that same executor restarts; without DBOS Conductor nothing
notices that an executor died for good. So every worker heartbeats in ``jobs_executors`` and
reaps the executors silent for ``executor_timeout_seconds``: one survivor claims (deletes) the
dead executor's row and puts its pending workflows back on their queue
(``docfactory.core.durable.recover_executor``, DBOS's public list/resume API; the atomic
ENQUEUED->PENDING dequeue admits exactly one runner). Completed steps are not re-run; the step
in flight is, which is safe because its effects are idempotent.

SIGTERM drains: the worker stops dequeuing, lets its in-flight workflows finish for
``shutdown_grace_seconds``, and hands back what is still unfinished (its heartbeat row is left
expired, so a surviving or restarted worker recovers those workflows at once).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from docfactory.archives import ArchiveLimits
from docfactory.core.clients import channel_options
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.core.durable import (
    pending_of,
    recover_executor,
    system_database_url,
    worker_api_key,
)
from docfactory.core.errors import ConfigError, DocfactoryError
from docfactory.core.tls import sync_channel
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.pipeline import (
    Target,
    TransientError,
    Uploader,
    delete_documents,
    process_object,
    process_upload,
)
from docfactory.jobs.repo import (
    CANCELLED,
    DELETE,
    DONE,
    UPSERT,
    JobsRepository,
    PlanItem,
    executors,
)
from docfactory.jobs.storage import ObjectStore, make_object_store

log = logging.getLogger("docfactory.jobs")

QUEUE = "docfactory-ingest"
APP_NAME = "docfactory"
# Fixed so every worker (and recovery across workers) agrees on the version of the workflows.
APP_VERSION = "docfactory-jobs-1"
SCAN_WORKFLOW = "docfactory.jobs.scan"
OBJECT_WORKFLOW = "docfactory.jobs.object"
UPLOAD_WORKFLOW = "docfactory.jobs.upload"
INTERNAL = 2


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits.from_config(settings.jobs)


def workflow_id(job_id: str, key: str) -> str:
    return f"{job_id}:{hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()}"


# --------------------------------------------------------------------------- enqueue side


class JobQueue:
    """Enqueues workflows from outside the workers (the gRPC server, the webhook)."""

    def __init__(self, url: str) -> None:
        from dbos import DBOS, DBOSClient

        DBOS.migrate(url)
        self._client = DBOSClient(system_database_url=url, application_name=APP_NAME)

    def _enqueue(self, name: str, wid: str, *args: Any) -> None:
        self._client.enqueue(
            {
                "workflow_name": name,
                "queue_name": QUEUE,
                "workflow_id": wid,
                "app_version": APP_VERSION,
            },
            *args,
        )

    def enqueue_scan(self, job_id: str) -> None:
        self._enqueue(SCAN_WORKFLOW, f"{job_id}:scan", job_id)

    def enqueue_object(self, job_id: str, item: PlanItem) -> None:
        self._enqueue(
            OBJECT_WORKFLOW, workflow_id(job_id, item.key), job_id, item.key, item.action, item.etag
        )

    def cancel(self, job_id: str, keys: Sequence[str]) -> None:
        """Cancel the job's scan and the given items' workflows (enqueued ones never start,
        running ones stop at their next step; the steps also check the job's state)."""
        wids = [f"{job_id}:scan", *(workflow_id(job_id, k) for k in keys)]
        self._client.cancel_workflows(wids)

    def enqueue_upload(self, job_id: str, key: str, etag: str, upload: dict[str, Any]) -> None:
        """A staged background upload; ``upload`` (filename, source_uri, classification,
        metadata) travels as a workflow input, which DBOS stores durably."""
        self._enqueue(UPLOAD_WORKFLOW, workflow_id(job_id, key), job_id, key, etag, upload)

    def close(self) -> None:
        self._client.destroy()


# --------------------------------------------------------------------------- worker side


@dataclass
class _Runtime:
    settings: Settings
    repo: JobsRepository
    store: ObjectStore
    uploader: Uploader
    limits: ArchiveLimits
    policy_path: str

    def classification(self, bucket: str, key: str) -> int:
        if not self.policy_path:
            return INTERNAL
        from docfactory.governance.contracts import object_classification

        return object_classification(self.policy_path, bucket, key)


_RT: _Runtime | None = None


def _rt() -> _Runtime:
    if _RT is None:
        raise RuntimeError("jobs runtime not started in this process (run `docfactory worker`)")
    return _RT


def _remove_staged(rt: _Runtime, bucket: str, key: str) -> None:
    """Remove a staged background upload (the job keeps the outcome); never fails the job."""
    try:
        rt.store.remove(bucket, key)
    except Exception:
        log.warning("could not remove staged upload s3://%s/%s", bucket, key, exc_info=True)


def _failure(exc: BaseException) -> tuple[str, str, bool]:
    """(reason, message, worth retrying) of a step's error."""
    if isinstance(exc, TransientError):
        return exc.reason, exc.message, True
    if isinstance(exc, DocfactoryError):
        return exc.reason, exc.message, False
    return "WORKER_ERROR", f"{type(exc).__name__}: {exc}", True


def _retryable(exc: BaseException) -> bool:
    return _failure(exc)[2]


def _attempt() -> int:
    """1-based attempt number of the running step (DBOS counts its declared retries)."""
    from dbos import DBOS

    status = DBOS.step_status
    return (status.current_attempt or 0) + 1 if status is not None else 1


def _counted(fn: Callable[..., int]) -> Callable[..., int]:
    """Tag a step's error with the attempt that raised it (the FAILED message counts them)."""

    @functools.wraps(fn)
    def run(*args: Any) -> int:
        try:
            return fn(*args)
        except Exception as exc:
            exc.attempt = _attempt()  # type: ignore[attr-defined]
            raise

    return run


def _register() -> tuple[Any, Any, Any]:
    from dbos import DBOS, SetWorkflowID
    from dbos import error as dbos_error

    jobs_cfg = _rt().settings.jobs

    def retried_step(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
        """A step whose transient failures DBOS retries, as declared here: attempts, first
        delay and backoff factor from the configuration."""
        return DBOS.step(
            name=name,
            retries_allowed=True,
            max_attempts=max(1, jobs_cfg.max_attempts),
            interval_seconds=jobs_cfg.retry_interval_seconds,
            backoff_rate=jobs_cfg.backoff_rate,
            should_retry=_retryable,
        )

    @DBOS.step(name="docfactory.jobs.plan")
    def plan_step(job_id: str) -> list[tuple[str, str, str]]:
        rt = _rt()
        job = rt.repo.job_header(job_id)
        if job is None:
            return []
        try:
            listed = {o.key: o.etag for o in rt.store.list_objects(job["bucket"], job["prefix"])}
        except DocfactoryError as err:
            rt.repo.fail_job(job_id, err.reason, err.message)
            return []
        known = rt.repo.known_objects(
            job["tenant"], job["collection"], job["bucket"], job["prefix"]
        )
        plan = [PlanItem(k, UPSERT, e) for k, e in sorted(listed.items()) if known.get(k) != e]
        plan += [PlanItem(k, DELETE, "") for k in sorted(known) if k not in listed]
        skipped = sum(1 for k, e in listed.items() if known.get(k) == e)
        rt.repo.add_items(job_id, plan, skipped=skipped)
        return [(p.key, p.action, p.etag) for p in plan]

    @DBOS.workflow(name=SCAN_WORKFLOW)
    def scan_workflow(job_id: str) -> int:
        plan = plan_step(job_id)
        queue = DBOS.retrieve_queue(QUEUE)
        assert queue is not None
        for key, action, etag in plan:
            with SetWorkflowID(workflow_id(job_id, key)):
                queue.enqueue(object_workflow, job_id, key, action, etag)
        return len(plan)

    @retried_step("docfactory.jobs.process")
    @_counted
    def process_step(job_id: str, key: str, action: str, etag: str) -> int:
        rt = _rt()
        job = rt.repo.job_header(job_id)
        if job is None or job["state"] == CANCELLED:  # cancelled: nothing more is indexed
            return 0
        rt.repo.start_attempt(job_id, key, _attempt())
        tenant, collection, bucket = job["tenant"], job["collection"], job["bucket"]
        previous = rt.repo.object_docs(tenant, collection, bucket, key)
        if action == DELETE:
            rt.repo.record_documents(job_id, key, delete_documents(rt.uploader, tenant, previous))
            rt.repo.finish_item(
                job_id,
                tenant=tenant,
                collection=collection,
                bucket=bucket,
                key=key,
                etag=None,
                docs={},
            )
            return len(previous)
        target = Target(tenant, collection, bucket, rt.classification(bucket, key), etag)
        outcomes = process_object(
            rt.store,
            rt.uploader,
            target,
            key,
            rt.limits,
            rt.settings.jobs.upload_concurrency,
            on_outcome=lambda o: rt.repo.record_documents(job_id, key, [o]),
        )
        current = {o.source_uri: o.document_id for o in outcomes if o.document_id}
        stale = {u: d for u, d in previous.items() if u not in current}
        rt.repo.record_documents(job_id, key, delete_documents(rt.uploader, tenant, stale))
        rt.repo.finish_item(
            job_id,
            tenant=tenant,
            collection=collection,
            bucket=bucket,
            key=key,
            etag=etag,
            docs=current,
        )
        return len(outcomes)

    @retried_step("docfactory.jobs.upload")
    @_counted
    def upload_step(job_id: str, key: str, etag: str, upload: dict[str, Any]) -> int:
        rt = _rt()
        job = rt.repo.job_header(job_id)
        if job is None:
            return 0
        if job["state"] == CANCELLED:  # the staged copy goes, nothing is indexed
            _remove_staged(rt, job["bucket"], key)
            return 0
        state = rt.repo.item_states(job_id).get(key)
        if state is not None and state[0] == DONE:  # re-run after a crash past the finish
            return 0
        rt.repo.start_attempt(job_id, key, _attempt())
        tenant, collection, bucket = job["tenant"], job["collection"], job["bucket"]
        target = Target(tenant, collection, bucket, int(upload["classification"]))
        outcome = process_upload(
            rt.store,
            rt.uploader,
            target,
            key,
            str(upload["source_uri"]),
            str(upload["filename"]),
            dict(upload.get("metadata") or {}),
        )
        rt.repo.record_documents(job_id, key, [outcome])
        rt.repo.finish_item(
            job_id,
            tenant=tenant,
            collection=collection,
            bucket=bucket,
            key=key,
            etag=etag,
            docs={},
            remember_object=False,
        )
        _remove_staged(rt, bucket, key)
        return 1

    @DBOS.step(name="docfactory.jobs.discard_upload")
    def discard_step(job_id: str, key: str) -> None:
        rt = _rt()
        job = rt.repo.job_header(job_id)
        if job is not None:
            _remove_staged(rt, job["bucket"], key)

    @DBOS.step(name="docfactory.jobs.fail")
    def fail_step(job_id: str, key: str, reason: str, message: str) -> None:
        _rt().repo.fail_item(job_id, key, reason, message)

    def outcome(job_id: str, key: str, step: Callable[..., int], *args: Any) -> str:
        """Run a retried step; once DBOS gave up (or the error is not worth retrying), record
        the item FAILED with the last error."""
        try:
            step(job_id, key, *args)
            return "DONE"
        except dbos_error.DBOSMaxStepRetriesExceeded as exc:
            last: BaseException = exc.errors[-1] if exc.errors else exc
            attempts = exc.max_retries
        except dbos_error.DBOSException:  # cancellation and the like: DBOS's own control flow
            raise
        except Exception as exc:  # not worth retrying: failed at the attempt that raised it
            last, attempts = exc, int(getattr(exc, "attempt", 1))
        reason, message, _ = _failure(last)
        fail_step(job_id, key, reason, f"after {attempts} attempt(s): {message}")
        return "FAILED"

    @DBOS.workflow(name=OBJECT_WORKFLOW)
    def object_workflow(job_id: str, key: str, action: str, etag: str) -> str:
        return outcome(job_id, key, process_step, action, etag)

    @DBOS.workflow(name=UPLOAD_WORKFLOW)
    def upload_workflow(job_id: str, key: str, etag: str, upload: dict[str, Any]) -> str:
        result = outcome(job_id, key, upload_step, etag, upload)
        if result == "FAILED":
            # Failed for good: the job keeps the reason; the caller re-uploads to try again.
            discard_step(job_id, key)
        return result

    return scan_workflow, object_workflow, upload_workflow


_WORKFLOWS: tuple[Any, Any, Any] | None = None


def _ensure_registered() -> None:
    global _WORKFLOWS
    if _WORKFLOWS is None:
        _WORKFLOWS = _register()


def _ingestion_address(settings: Settings) -> str:
    address = settings.addresses.ingestion or os.environ.get("DOCFACTORY_ADDRESS", "")
    if not address:
        raise ConfigError(
            "workers reach IngestionService by address: set DOCFACTORY_INGESTION_ADDRESS"
        )
    return address


def run_worker(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run one worker (DBOS executor) until ``stop`` is set or SIGTERM/SIGINT."""
    from dbos import DBOS

    global _RT
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    executor_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.resolved_database_url)
    repo = JobsRepository(engine)
    repo.heartbeat(executor_id, socket.gethostname(), os.getpid())
    channel = sync_channel(  # TLS (and the worker's client certificate) when configured
        _ingestion_address(settings),
        settings.tls,
        channel_options(settings.server.max_message_bytes),
    )
    _RT = _Runtime(
        settings=settings,
        repo=repo,
        store=make_object_store(settings),
        uploader=Uploader(
            ing_grpc.IngestionServiceStub(channel),
            worker_api_key(settings),
            timeout=settings.jobs.upload_timeout_seconds,
        ),
        limits=archive_limits(settings),
        policy_path=settings.policy_file,
    )
    _ensure_registered()
    DBOS(
        config={
            "name": APP_NAME,
            "system_database_url": system_database_url(settings),
            "executor_id": executor_id,
            "application_version": APP_VERSION,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    DBOS.register_queue(
        QUEUE,
        worker_concurrency=max(1, settings.jobs.worker_concurrency),
        polling_interval_sec=settings.jobs.queue_polling_seconds,
    )
    print(f"docfactory worker {executor_id} ready", flush=True)
    try:
        while not stop.is_set():
            try:
                repo.heartbeat(executor_id, socket.gethostname(), os.getpid())
                for dead in repo.claim_dead_executors(
                    executor_id, settings.jobs.executor_timeout_seconds
                ):
                    n = recover_executor(dead, APP_VERSION, QUEUE)
                    log.warning("recovered %d workflows of dead worker %s", n, dead)
                    print(f"recovered {n} workflows of {dead}", flush=True)
            except Exception:  # keep the worker alive through a database hiccup
                log.exception("heartbeat/reaper failed")
            stop.wait(settings.jobs.heartbeat_seconds)
    finally:
        if _drain(settings, repo, executor_id):
            # Nothing runs any more: close. Otherwise the steps still running are abandoned
            # with the process (main() exits without joining them); closing their channel
            # under them would only make them fail and retry here for nothing.
            channel.close()
            engine.dispose()
            _RT = None


def _drain(settings: Settings, repo: JobsRepository, executor_id: str) -> bool:
    """Graceful stop: no new work is dequeued, the in-flight workflows get
    ``shutdown_grace_seconds`` to finish; what is still unfinished is handed back (the
    heartbeat row is left expired, so another worker's reaper recovers it at once). True when
    everything finished."""
    from dbos import DBOS

    grace = max(0, math.ceil(settings.jobs.shutdown_grace_seconds))
    DBOS.destroy(workflow_completion_timeout_sec=grace)
    # Past this point a step still running belongs to a workflow that is handed back: when it
    # returns, DBOS (now destroyed) cannot record its result and logs that as an error with a
    # traceback. Nothing is lost (the workflow reruns elsewhere from its last recorded step),
    # so those records are dropped rather than read as a failure.
    logging.getLogger("dbos").setLevel(logging.CRITICAL)
    try:
        left = pending_of(system_database_url(settings), executor_id, APP_VERSION)
    except Exception:  # database gone: the row stays and expires, the reaper recovers
        log.exception("worker %s: hand-back failed", executor_id)
        return False
    if left:
        _expire(repo, executor_id)
        print(f"worker {executor_id} stopped: {left} workflow(s) handed back", flush=True)
        return False
    repo.remove_executor(executor_id)
    print(f"worker {executor_id} stopped: drained", flush=True)
    return True


def _expire(repo: JobsRepository, executor_id: str) -> None:
    """Leave the executor's heartbeat row silent since forever: the next reaper claims it."""
    with repo.engine.begin() as conn:
        conn.execute(
            executors.update()
            .where(executors.c.executor_id == executor_id)
            .values(heartbeat_at=0.0)
        )


def main() -> None:
    from docfactory.core.config import load_settings
    from docfactory.core.logging import setup_logging

    setup_logging()
    run_worker(load_settings())
    # A step still running past the grace period is not joined (its workflow was handed back).
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
