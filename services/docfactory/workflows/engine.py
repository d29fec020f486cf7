"""Durable execution of dossier runs on DBOS Transact (the job engine's runtime).

A run's analysis = one DBOS workflow (``docfactory.workflows.run``, workflow id = run id) on
the ``docfactory-dossier`` queue, partitioned by tenant (a tenant gets at most
``workflows.tenant_concurrency`` of a worker's slots; DBOS dequeues across the partitions);
each step (start, classify, required, extract per document, check, retrieve, draft, sign-off
bookkeeping, release) is a DBOS step with declared retries (``retries_allowed``,
``max_attempts``, exponential backoff). The analysis workflow ends when the run waits for
people: the wait is the run's state in the database, not a workflow holding a worker slot.
The server records each decision and enqueues a short ``docfactory.workflows.decide`` workflow
on ``docfactory-dossier-decisions`` (partitioned by run, concurrency 1: one run's decisions are
applied one at a time, in order); the sign-off deadline is a delayed decide workflow (a durable
timer) that escalates the run and arms the next one.

Workers (``python -m docfactory.workflows.engine``, or ``docfactory dossier worker``) are DBOS
executors. As in docfactory.jobs, each heartbeats (``workflow_executors``); survivors claim an
executor silent for ``executor_timeout_seconds`` and recover its pending runs through DBOS's
recovery (re-enqueue; one worker dequeues). Finished steps are not re-run (their outputs are
checkpointed); the step in flight is, and its effects are idempotent.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from docfactory.core.config import Settings, TlsConfig
from docfactory.core.db import make_engine
from docfactory.core.durable import recover_executor, system_database_url, worker_api_key
from docfactory.core.tls import sync_channel
from docfactory.workflows.note import Passage
from docfactory.workflows.repo import CANCELLED, REJECTED, WorkflowRepository
from docfactory.workflows.steps import AMENDED, APPROVED, WAIT, RunSteps

log = logging.getLogger("docfactory.workflows")

F = TypeVar("F", bound=Callable[..., Any])

#: The runs' analysis (classify, extract, check, retrieve, draft), one partition per tenant.
QUEUE = "docfactory-dossier"
#: Decisions and deadline timers of waiting runs, one partition per run (applied in order).
DECISIONS_QUEUE = "docfactory-dossier-decisions"
APP_NAME = "docfactory"
APP_VERSION = "docfactory-workflows-2"
RUN_WORKFLOW = "docfactory.workflows.run"
DECIDE_WORKFLOW = "docfactory.workflows.decide"
TIMER = "deadline"
# Step retry policy (DBOS): transient failures (database busy, search unavailable) are retried.
MAX_ATTEMPTS = 3
RETRY_INTERVAL_SECONDS = 1.0
BACKOFF_RATE = 2.0


# --------------------------------------------------------------------------- server side


class RunQueue:
    """Starts runs and delivers decisions from outside the workers (the gRPC server)."""

    def __init__(self, url: str) -> None:
        from dbos import DBOS, DBOSClient

        DBOS.migrate(url)
        self._client = DBOSClient(system_database_url=url, application_name=APP_NAME)

    def start(self, run_id: str, tenant: str) -> None:
        self._client.enqueue(
            {
                "workflow_name": RUN_WORKFLOW,
                "queue_name": QUEUE,
                "workflow_id": run_id,
                "app_version": APP_VERSION,
                "queue_partition_key": tenant,  # per-tenant caps, fair dequeue
            },
            run_id,
        )

    def notify(self, run_id: str, decision_id: str) -> None:
        """Apply a decision (or a cancellation) recorded in the database."""
        self._client.enqueue(
            {
                "workflow_name": DECIDE_WORKFLOW,
                "queue_name": DECISIONS_QUEUE,
                "workflow_id": f"{run_id}:decision:{decision_id}",
                "app_version": APP_VERSION,
                "queue_partition_key": run_id,
            },
            run_id,
            "decision",
        )

    def cancel(self, run_id: str) -> None:
        self._client.cancel_workflow(run_id)

    def close(self) -> None:
        self._client.destroy()


# --------------------------------------------------------------------------- worker side


class GrpcSearcher:
    """Passages of the rule collections through AnsweringService.Search, with the worker's
    key acting for the run's tenant (as the jobs workers upload)."""

    def __init__(
        self, address: str, api_key: str, tls: TlsConfig | None = None, timeout: float = 30.0
    ) -> None:
        from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc

        # TLS (and this worker's client certificate under mTLS) when configured.
        self._channel = sync_channel(address, tls or TlsConfig())
        self._stub = ans_grpc.AnsweringServiceStub(self._channel)
        self._key = api_key
        self._timeout = timeout

    def search(
        self,
        *,
        tenant: str,
        use_case: str,
        query: str,
        collections: Sequence[str],
        top_k: int,
    ) -> list[Passage]:
        from docfactory.answering.v1 import answering_service_pb2 as ans_pb
        from docfactory.core.auth import API_KEY_HEADER, ON_BEHALF_HEADER

        resp = self._stub.Search(
            ans_pb.SearchRequest(
                query=query, collections=list(collections), top_k=top_k, use_case=use_case
            ),
            metadata=((API_KEY_HEADER, self._key), (ON_BEHALF_HEADER, tenant)),
            timeout=self._timeout,
        )
        return [
            Passage(
                document_id=r.citation.document_id,
                filename=r.citation.document_name,
                page=r.citation.page_numbers[0] if r.citation.page_numbers else 0,
                quote=r.text,
                score=float(r.score),
                collection=r.citation.collection,
            )
            for r in resp.results
        ]

    def close(self) -> None:
        self._channel.close()


def _typed_extractor() -> Any:
    from docfactory.workflows import extract

    return extract.typed_extractor()


def make_extractor() -> tuple[Any, str]:
    """vLLM structured outputs when DOCFACTORY_WORKFLOWS_VLLM_URL is set, else the embedded
    typed extractors."""
    from docfactory.workflows import extract

    url = os.environ.get("DOCFACTORY_WORKFLOWS_VLLM_URL", "")
    if url:
        model = os.environ.get("DOCFACTORY_WORKFLOWS_VLLM_MODEL", "mistral-small")
        return extract.vllm_extractor(url, model), model
    return extract.typed_extractor(), "typed"


_STEPS: RunSteps | None = None


def _steps() -> RunSteps:
    if _STEPS is None:
        raise RuntimeError("workflow runtime not started in this process")
    return _STEPS


def _register() -> Any:
    from dbos import DBOS, SetEnqueueOptions

    def step(name: str) -> Callable[[F], F]:
        return DBOS.step(  # type: ignore[return-value]
            name=name,
            retries_allowed=True,
            max_attempts=MAX_ATTEMPTS,
            interval_seconds=RETRY_INTERVAL_SECONDS,
            backoff_rate=BACKOFF_RATE,
        )

    @step("docfactory.workflows.start")
    def start_step(run_id: str) -> bool:
        return _steps().start(run_id)

    @step("docfactory.workflows.classify")
    def classify_step(run_id: str) -> dict[str, str]:
        return _steps().classify(run_id)

    @step("docfactory.workflows.required")
    def required_step(run_id: str, types: dict[str, str]) -> list[str]:
        return _steps().required(run_id, types)

    @step("docfactory.workflows.extract")
    def extract_step(run_id: str, document_id: str) -> int:
        return _steps().extract(run_id, document_id)

    @step("docfactory.workflows.check")
    def check_step(run_id: str, round_: int) -> int:
        return _steps().check(run_id, round_)

    @step("docfactory.workflows.retrieve")
    def retrieve_step(run_id: str) -> int:
        return _steps().retrieve(run_id)

    @step("docfactory.workflows.draft")
    def draft_step(run_id: str, round_: int) -> int:
        return _steps().draft(run_id, round_)

    @step("docfactory.workflows.await")
    def await_step(run_id: str) -> float:
        return _steps().await_signoff(run_id)

    @step("docfactory.workflows.deadline")
    def deadline_step(run_id: str) -> float:
        return _steps().deadline(run_id)

    @step("docfactory.workflows.decisions")
    def decisions_step(run_id: str) -> list[Any]:
        outcome = _steps().evaluate_decisions(run_id)
        return [outcome, _steps().round_of(run_id)]

    @step("docfactory.workflows.release")
    def release_step(run_id: str) -> None:
        _steps().release(run_id)

    @step("docfactory.workflows.reject")
    def reject_step(run_id: str) -> None:
        _steps().reject(run_id)

    @step("docfactory.workflows.fail")
    def fail_step(run_id: str, reason: str, message: str) -> None:
        _steps().fail(run_id, reason, message)

    def arm_timer(run_id: str, seconds: float) -> None:
        """A durable timer: a decide workflow delayed until the sign-off deadline (it holds no
        worker slot while it waits)."""
        with SetEnqueueOptions(queue_partition_key=run_id, delay_seconds=max(1.0, seconds)):
            _queue(DECISIONS_QUEUE).enqueue(decide_workflow, run_id, TIMER)

    def settle(run_id: str) -> str:
        """Apply the decisions recorded so far: amendments (checks and note recomputed),
        release, rejection; WAIT while the run needs more decisions."""
        while True:
            outcome, round_ = decisions_step(run_id)
            if outcome == AMENDED:
                check_step(run_id, round_)
                draft_step(run_id, round_)
                continue
            if outcome == APPROVED:
                release_step(run_id)
                return "COMPLETED"
            if outcome == REJECTED:
                reject_step(run_id)
                return REJECTED
            return str(outcome)  # WAIT, or cancelled/ended elsewhere

    @DBOS.workflow(name=RUN_WORKFLOW)
    def run_workflow(run_id: str) -> str:
        """The analysis of a dossier, up to the sign-off. The run then waits for people
        without a workflow: each decision (and the deadline timer) starts a short
        ``decide`` workflow, so a run waiting for a person never holds a worker slot."""
        try:
            if not start_step(run_id):
                return CANCELLED
            types = classify_step(run_id)
            if required_step(run_id, types):
                return "INCOMPLETE"
            for document_id, doc_type in types.items():
                if doc_type:
                    extract_step(run_id, document_id)
            check_step(run_id, 0)
            retrieve_step(run_id)
            draft_step(run_id, 0)
            outcome = settle(run_id)
            if outcome == WAIT:
                left = await_step(run_id)
                if left > 0:
                    arm_timer(run_id, left)
            return outcome
        except Exception as exc:  # a step out of retries: the run fails with its reason
            fail_step(run_id, "STEP_FAILED", f"{type(exc).__name__}: {exc}")
            return "FAILED"

    @DBOS.workflow(name=DECIDE_WORKFLOW)
    def decide_workflow(run_id: str, trigger: str) -> str:
        """One decision (or the deadline) of a waiting run; the decisions of one run are
        applied one at a time (its own partition of the decisions queue, concurrency 1)."""
        try:
            if trigger == TIMER:
                left = deadline_step(run_id)  # escalates once the deadline has passed
                if left > 0:
                    arm_timer(run_id, left)
                return WAIT if left > 0 else "ENDED"
            return settle(run_id)
        except Exception as exc:
            fail_step(run_id, "STEP_FAILED", f"{type(exc).__name__}: {exc}")
            return "FAILED"

    return run_workflow


_WORKFLOW: Any = None


def _ensure_registered() -> None:
    global _WORKFLOW
    if _WORKFLOW is None:
        _WORKFLOW = _register()


def _worker_key(settings: Settings) -> str:
    try:
        return worker_api_key(settings)
    except Exception:
        return ""


@dataclass
class WorkerOptions:
    executor_id: str = ""
    heartbeat_seconds: float = 2.0
    executor_timeout_seconds: float = 10.0
    concurrency: int = 2
    polling_seconds: float = 0.5
    tenant_concurrency: int = 0  # 0: half the slots, at least 1

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WorkerOptions:
        wf = settings.workflows
        opts = cls(
            heartbeat_seconds=wf.heartbeat_seconds,
            executor_timeout_seconds=wf.executor_timeout_seconds,
            concurrency=max(1, wf.concurrency),
            polling_seconds=wf.queue_polling_seconds,
            tenant_concurrency=wf.tenant_concurrency,
        )
        return replace(opts, **overrides)

    @property
    def per_tenant(self) -> int:
        """Runs of one tenant analysed at once by this worker: never every slot when there are
        two or more."""
        wanted = self.tenant_concurrency or max(1, self.concurrency // 2)
        return max(1, min(wanted, self.concurrency))


_QUEUES: dict[str, Any] = {}


def _queue(name: str) -> Any:
    return _QUEUES[name]


def register_queues(opts: WorkerOptions) -> None:
    """The two queues, partitioned: runs by tenant (a tenant gets at most ``per_tenant`` of a
    worker's slots, and DBOS dequeues across the tenants' partitions), decisions by run (one at
    a time per run, in the order they were recorded)."""
    from dbos import DBOS

    _QUEUES[QUEUE] = DBOS.register_queue(
        QUEUE,
        worker_concurrency=opts.concurrency,
        partition_worker_concurrency=opts.per_tenant,
        polling_interval_sec=opts.polling_seconds,
        on_conflict="always_update",
    )
    _QUEUES[DECISIONS_QUEUE] = DBOS.register_queue(
        DECISIONS_QUEUE,
        worker_concurrency=opts.concurrency,
        partition_concurrency=1,
        polling_interval_sec=opts.polling_seconds,
        on_conflict="always_update",
    )


def run_worker(
    settings: Settings,
    stop: threading.Event | None = None,
    options: WorkerOptions | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Run one workflow worker (DBOS executor) until ``stop`` is set or SIGTERM/SIGINT."""
    from dbos import DBOS

    from docfactory.governance.audit import AuditLog

    global _STEPS
    opts = options or WorkerOptions.from_settings(settings)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    executor_id = opts.executor_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.resolved_database_url)
    repo = WorkflowRepository(engine)
    repo.heartbeat(executor_id, socket.gethostname(), os.getpid())
    address = (
        os.environ.get("DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS", "")
        or settings.addresses.answering
        or os.environ.get("DOCFACTORY_ADDRESS", "")
    )
    key = _worker_key(settings)
    searcher = GrpcSearcher(address, key, settings.tls) if address and key else None
    extractor, extractor_name = make_extractor()
    refusal = None
    if settings.policy_file:  # the use cases decide whether pages may go to the model
        from docfactory.governance.contracts import model_refusal

        policy_file = settings.policy_file
        refusal = functools.partial(model_refusal, policy_file)
    _STEPS = RunSteps(
        repo,
        extractor,
        audit=AuditLog(engine),
        searcher=searcher,
        extractor_name=extractor_name,
        model_refusal=refusal,
        local_extractor=None if extractor_name == "typed" else _typed_extractor(),
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
    register_queues(opts)
    metrics_port = os.environ.get("DOCFACTORY_WORKFLOWS_METRICS_PORT", "")
    if metrics_port:  # step timings live in the workers: expose them to Prometheus
        from docfactory.core.metrics import start_metrics_server

        bound = start_metrics_server(int(metrics_port))
        print(f"docfactory workflow worker metrics on :{bound}/metrics", file=sys.stderr)
    print(f"docfactory workflow worker {executor_id} ready", file=sys.stderr, flush=True)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            try:
                repo.heartbeat(executor_id, socket.gethostname(), os.getpid())
                for dead in repo.claim_dead_executors(executor_id, opts.executor_timeout_seconds):
                    n = recover_executor(dead, APP_VERSION, QUEUE)
                    log.warning("recovered %d runs of dead worker %s", n, dead)
                    print(f"recovered {n} runs of {dead}", file=sys.stderr, flush=True)
            except Exception:  # keep the worker alive through a database hiccup
                log.exception("heartbeat/reaper failed")
            stop.wait(opts.heartbeat_seconds)
    finally:
        repo.mark_stopped(executor_id)
        DBOS.destroy(workflow_completion_timeout_sec=0)
        if searcher is not None:
            searcher.close()
        engine.dispose()
        _STEPS = None


def main() -> None:
    from docfactory.core.config import load_settings
    from docfactory.core.logging import setup_logging

    setup_logging()
    run_worker(load_settings())
    exit_now(0)


def exit_now(code: int) -> None:
    """End this process once the worker stopped: a step still in flight past the drain is
    recovered by another worker (its state is durable), so the process exits without joining
    DBOS's executor threads."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
