"""Issue 24, item 5: embedding starvation. Tenant A's Embed requests at the documented cap
(512 texts x 256 characters) must not hold tenant B's Search behind them: the shared model
computes B's query embedding after at most the micro-batch in progress, bulk work is shared
round-robin between tenants, a tenant holds a bounded number of texts in flight, and the
micro-batches of a caller that is gone (cancelled, deadline passed) are never computed.

Behavioural, not timed: the model is wrapped to record which texts each call computed, in
order; speed is measured by ``bench/bench_noisy.py``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.app import RunningServer, start_server
from docfactory.core.auth import Principal, set_deadline, set_principal
from docfactory.core.config import EmbeddingConfig
from docfactory.core.errors import DeadlineExceeded, ResourceExhausted
from docfactory.embedding.adapters.models import load_model
from docfactory.embedding.service import EmbeddingService
from docfactory.embedding.v1 import embedding_service_pb2 as emb_pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
from docfactory.inprocess import InProcessEmbedder
from tests.security._env import Env, make_env, md

pytestmark = pytest.mark.asyncio(loop_scope="module")

CAP_TEXTS = 512
CAP_CHARS = 256
B_QUERY = "Quels sont les horaires d'ouverture des agences du sud ?"


def cap_texts(tag: str) -> list[str]:
    """512 texts of 256 characters, each starting with ``tag``."""
    filler = " le taux du prêt immobilier dépend de la durée et de l'apport du client" * 5
    return [(f"{tag}-{i:03d}" + filler)[:CAP_CHARS] for i in range(CAP_TEXTS)]


class Recorder:
    """Wraps the server's model instance: one entry per computed model call, in order."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[tuple[bool, tuple[str, ...]]] = []
        self._orig = model.embed

    def __enter__(self) -> Recorder:
        orig = self._orig

        def embed(texts: Sequence[str], *, query: bool) -> np.ndarray:
            out: np.ndarray = orig(texts, query=query)
            self.calls.append((query, tuple(texts)))
            return out

        self.model.embed = embed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.embed

    def texts_of(self, tag: str, calls: Sequence[tuple[bool, tuple[str, ...]]] = ()) -> int:
        return sum(sum(1 for t in texts if t.startswith(tag)) for _, texts in (calls or self.calls))

    def calls_of(self, tag: str, start: int = 0) -> int:
        return sum(1 for _, texts in self.calls[start:] if any(t.startswith(tag) for t in texts))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Env, RunningServer, grpc.aio.Channel]]:
    env = make_env(tmp_path_factory.mktemp("fairness"))
    running = await start_server(env.settings, port=0)
    channel = grpc.aio.insecure_channel(running.address)
    try:
        yield env, running, channel
    finally:
        await channel.close()
        await running.stop(0.5)


async def _until(cond: Any) -> None:
    for _ in range(6000):  # a bound on waiting, never asserted on
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_search_of_b_goes_before_a_cap_embeds_and_cancel_stops_a(
    server: tuple[Env, RunningServer, grpc.aio.Channel],
) -> None:
    env, _, channel = server
    emb = emb_grpc.EmbeddingServiceStub(channel)
    ans = ans_grpc.AnsweringServiceStub(channel)
    # warm the path (model weights, B's policy and audit) outside the recorded part
    await ans.Search(
        ans_pb.SearchRequest(query="bonjour", mode=3, use_case="uc-public"),  # type: ignore[arg-type]
        metadata=md("read-sud"),
        timeout=120,
    )
    with Recorder(load_model(env.settings.embedding)) as rec:
        # Tenant A: two Embed calls at the cap, in flight together (1,024 texts).
        a_calls = [
            emb.Embed(
                emb_pb.EmbedRequest(texts=cap_texts(f"a{n}"), input_type=emb_pb.INPUT_TYPE_PASSAGE),
                metadata=md("read-nord"),
                timeout=300,
            )
            for n in range(2)
        ]
        await _until(lambda: rec.texts_of("a") > 0)  # A's work is on the model
        # Tenant B: a hybrid Search while A's texts are being embedded.
        await ans.Search(
            ans_pb.SearchRequest(query=B_QUERY, mode=3, use_case="uc-public"),  # type: ignore[arg-type]
            metadata=md("read-sud"),
            timeout=300,
        )
        b_at = next(i for i, (q, texts) in enumerate(rec.calls) if q and B_QUERY in texts)
        a_before_b = rec.texts_of("a", rec.calls[:b_at])
        # B's query embedding was computed while most of A's texts were still waiting (the old
        # single FIFO batcher computed all 1,024 of A's texts first).
        assert a_before_b < CAP_TEXTS, (a_before_b, b_at)
        assert not any(c.done() for c in a_calls)

        # Tenant A goes away: its remaining micro-batches are dropped, not computed.
        for c in a_calls:
            c.cancel()
        for c in a_calls:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await c
        at_cancel = len(rec.calls)
        # A probe of A's own (its tenant's bulk queue is FIFO): once it is computed, any
        # micro-batch of the cancelled calls still queued would have been computed first.
        await emb.Embed(
            emb_pb.EmbedRequest(texts=["a-probe"], input_type=emb_pb.INPUT_TYPE_PASSAGE),
            metadata=md("read-nord"),
            timeout=300,
        )
        assert rec.texts_of("a-probe") == 1
        a_total = rec.texts_of("a0") + rec.texts_of("a1")
        assert a_total < 2 * CAP_TEXTS - CAP_TEXTS // 2, a_total
        # at most the micro-batch in progress (and one started before the cancel arrived)
        assert rec.calls_of("a0", at_cancel) + rec.calls_of("a1", at_cancel) <= 2


# ---- the scheduler alone, on a gated model (deterministic: the test opens the gate) ----


class GatedModel:
    name = "gated"
    dimension = 4
    max_input_tokens = 512

    def __init__(self) -> None:
        self.calls: list[tuple[bool, tuple[str, ...]]] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        self.started.set()
        self.gate.wait(60)
        self.calls.append((query, tuple(texts)))
        return np.ones((len(texts), self.dimension), dtype=np.float32)

    def tokenizer(self) -> Any:
        class _Count:
            name = "chars"

            def count(self, text: str) -> int:
                return len(text)

        return _Count()


def _principal(tenant: str) -> Principal:
    return Principal(tenant=tenant, key_id=f"key-{tenant}", api_key=f"k-{tenant}")


async def _as(tenant: str, coro_fn: Any, deadline_s: float | None = None) -> Any:
    set_principal(_principal(tenant))
    set_deadline(time.monotonic() + deadline_s if deadline_s is not None else None)
    return await coro_fn()


def _svc(**cfg: Any) -> tuple[EmbeddingService, GatedModel]:
    model = GatedModel()
    # fixed micro-batches of 4 (the gate makes the model look slow: no query-time sizing)
    base: dict[str, Any] = {"batch_size": 4, "max_batch_wait_ms": 0, "query_wait_ms": 0}
    return EmbeddingService(model, EmbeddingConfig(**{**base, **cfg})), model


async def test_bulk_round_robin_between_tenants_in_process_path() -> None:
    """Ingestion's in-process embedder (the embedded default) is scheduled as its caller's
    tenant: B's passages and B's query do not wait for the whole of A's document."""
    svc, model = _svc()
    a_texts = [f"a-{i}" for i in range(16)]  # 4 micro-batches of A
    a = asyncio.create_task(_as("nord", lambda: InProcessEmbedder(svc).embed_passages(a_texts)))
    await _until(model.started.is_set)  # A's first micro-batch is on the model
    b = asyncio.create_task(_as("sud", lambda: svc.embed(["b-0", "b-1"], query=False)))
    q = asyncio.create_task(_as("sud", lambda: svc.embed(["b-query"], query=True)))
    await asyncio.sleep(0.05)  # let both requests reach the queue
    model.gate.set()
    await asyncio.gather(a, b, q)
    order = [texts[0].split("-")[0] + ("q" if query else "") for query, texts in model.calls]
    # A's micro-batch in progress, then B's query, then B's passages, then A's remaining ones
    assert order == ["a", "bq", "b", "a", "a", "a"], order
    await svc.close()


async def test_a_stream_of_queries_does_not_stop_bulk_work() -> None:
    svc, model = _svc()
    a = asyncio.create_task(
        _as("nord", lambda: svc.embed([f"a-{i}" for i in range(8)], query=False))
    )
    await _until(model.started.is_set)
    queries = [
        asyncio.create_task(_as("sud", lambda: svc.embed(["q"] * 4, query=True))) for _ in range(6)
    ]
    await asyncio.sleep(0.05)
    model.gate.set()
    await asyncio.gather(a, *queries)
    order = [texts[0][0] for _, texts in model.calls]
    assert order == ["a", "q", "q", "q", "q", "a", "q", "q"], order
    await svc.close()


async def test_deadline_passed_drops_remaining_micro_batches() -> None:
    svc, model = _svc()
    task = asyncio.create_task(
        _as("nord", lambda: svc.embed([f"a-{i}" for i in range(12)], query=False), 0.05)
    )
    await _until(model.started.is_set)
    await asyncio.sleep(0.1)  # the deadline passes while the first micro-batch computes
    model.gate.set()
    with pytest.raises(DeadlineExceeded):
        await task
    await asyncio.sleep(0.05)
    assert len(model.calls) == 1  # the 2 other micro-batches were never computed
    await svc.close()


async def test_tenant_admission_waits_then_refuses_with_retry() -> None:
    svc, model = _svc(tenant_max_texts=8)
    first = asyncio.create_task(_as("nord", lambda: svc.embed(["a"] * 8, query=False)))
    await _until(model.started.is_set)
    # A holds its 8 texts: its next request waits in its own queue; with a deadline it cannot
    # meet, it is refused with a retry delay (RESOURCE_EXHAUSTED + RetryInfo over gRPC).
    with pytest.raises(ResourceExhausted) as err:
        await _as("nord", lambda: svc.embed(["a"] * 4, query=False), 0.05)
    assert err.value.reason == "EMBEDDING_TENANT_BUSY"
    assert err.value.retry_after_seconds is not None and err.value.retry_after_seconds > 0
    # another tenant is admitted meanwhile, and A's waiting request goes once room is freed
    other = asyncio.create_task(_as("sud", lambda: svc.embed(["b"], query=False)))
    waiting = asyncio.create_task(_as("nord", lambda: svc.embed(["a2"] * 4, query=False)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    model.gate.set()
    await asyncio.gather(first, other, waiting)
    await svc.close()
