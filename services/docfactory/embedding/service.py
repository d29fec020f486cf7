"""Embedding domain logic: validation and request batching on the model."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from docfactory.core import metrics
from docfactory.core.config import EmbeddingConfig
from docfactory.core.errors import InvalidArgument
from docfactory.embedding.adapters.models import EmbeddingModel


@dataclass
class _Pending:
    texts: Sequence[str]
    query: bool
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Groups texts from requests that arrive together into one model call.

    The first request waits at most ``max_wait_ms`` for company; a batch never exceeds
    ``batch_size`` texts (a single larger request is split). Model calls run in a worker thread
    so the event loop keeps serving other RPCs.
    """

    def __init__(self, model: EmbeddingModel, batch_size: int, max_wait_ms: float) -> None:
        self._model = model
        self._batch_size = max(1, batch_size)
        self._max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self.model_calls = 0

    def _ensure_started(self) -> asyncio.Queue[_Pending]:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    async def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._model.dimension), dtype=np.float32)
        queue = self._ensure_started()
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await queue.put(_Pending(texts, query, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            group = [first]
            size = len(first.texts)
            deadline = time.monotonic() + self._max_wait
            while size < self._batch_size:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    break
                group.append(nxt)
                size += len(nxt.texts)
            for query in (True, False):
                part = [p for p in group if p.query is query and not p.future.cancelled()]
                if part:
                    await self._run_group(part, query)

    async def _run_group(self, group: list[_Pending], query: bool) -> None:
        texts = [t for p in group for t in p.texts]
        try:
            chunks = []
            for i in range(0, len(texts), self._batch_size):
                batch = texts[i : i + self._batch_size]
                metrics.EMBED_BATCH_SIZE.observe(len(batch))
                self.model_calls += 1
                chunks.append(await asyncio.to_thread(self._model.embed, batch, query=query))
            vectors = np.concatenate(chunks, axis=0)
        except Exception as exc:
            for p in group:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        offset = 0
        for p in group:
            n = len(p.texts)
            if not p.future.done():
                p.future.set_result(vectors[offset : offset + n])
            offset += n

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class EmbeddingService:
    def __init__(self, model: EmbeddingModel, cfg: EmbeddingConfig) -> None:
        self.model = model
        self._cfg = cfg
        self._batcher = MicroBatcher(model, cfg.batch_size, cfg.max_batch_wait_ms)
        self._counter = model.tokenizer()

    @property
    def batcher(self) -> MicroBatcher:
        return self._batcher

    async def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        if not texts:
            raise InvalidArgument("texts must not be empty", reason="EMPTY_INPUT")
        if len(texts) > self._cfg.max_texts_per_request:
            raise InvalidArgument(
                f"at most {self._cfg.max_texts_per_request} texts per request, got {len(texts)}",
                reason="TOO_MANY_TEXTS",
            )
        metrics.EMBED_TEXTS.labels("query" if query else "passage").inc(len(texts))
        return await self._batcher.embed(texts, query=query)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [self._counter.count(t) for t in texts]

    async def close(self) -> None:
        await self._batcher.close()
