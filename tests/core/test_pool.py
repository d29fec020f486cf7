"""EndpointPool on real sockets, against small stand-in OpenAI-compatible servers (stdlib HTTP,
SSE streaming) that can misbehave on demand: saturation, health fallback, retries before
streaming only, deadlines, DNS entries, structured output, context fitting, embeddings.

The same pool against real `transformers serve` replicas: tests/e2e/test_pool_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from docfactory.answering.adapters.generators import OpenAIChatGenerator, Sampling, Usage
from docfactory.answering.prompt import PromptPassage
from docfactory.core.auth import set_deadline
from docfactory.core.config import EmbeddingConfig, GenerationConfig
from docfactory.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from docfactory.core.pool import EndpointPool, PoolSettings, _resolve
from docfactory.embedding.adapters.models import OpenAIEmbeddingModel


class StandIn:
    """One stand-in server; ``mode`` selects its behaviour."""

    def __init__(self, mode: str = "ok", health: bool = True) -> None:
        self.mode = mode
        self.health = health
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.tokenize = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _json(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    if not outer.health:
                        self._json(404, {"detail": "Not Found"})
                    elif outer.mode == "sick":
                        self._json(503, {"status": "unhealthy"})
                    else:
                        self._json(200, {})
                elif self.path == "/v1/models":
                    model: dict[str, Any] = {"id": "mistral-test", "object": "model"}
                    if outer.tokenize:
                        model["max_model_len"] = 400  # as vLLM lists it
                    self._json(200, {"data": [model]})
                else:
                    self._json(404, {})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                outer.requests.append((self.path, body))
                if self.path == "/tokenize":
                    if not outer.tokenize:
                        self._json(404, {"detail": "Not Found"})
                        return
                    text = body.get("prompt") or "".join(
                        m["content"] for m in body.get("messages", [])
                    )
                    self._json(200, {"count": len(text) // 2 + 1, "max_model_len": 400})
                    return
                if self.path == "/v1/embeddings":
                    vecs = [[float(len(t)), 1.0, 0.0] for t in body["input"]]
                    data = [{"index": i, "embedding": v} for i, v in enumerate(vecs)]
                    self._json(200, {"data": data})
                    return
                if outer.mode == "error":
                    self._json(500, {"error": "boom"})
                    return
                if outer.mode == "bad":
                    self._json(400, {"error": "context too long"})
                    return
                if not body.get("stream"):
                    fmt = body.get("response_format")
                    content = '{"name": "Dupont", "age": 42}' if fmt else "plain text"
                    if outer.mode == "badjson":
                        content = "not json"
                    self._json(200, {"choices": [{"message": {"content": content}}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                role = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
                self.wfile.write(f"data: {json.dumps(role)}\n\n".encode())
                words = ["Bonjour", " [1]", " fin."]
                for i, word in enumerate(words):
                    if outer.mode == "slow":
                        time.sleep(0.5)
                    chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if outer.mode == "cut" and i == 0:
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        return
                usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def chats(self) -> int:
        return sum(1 for p, _ in self.requests if p == "/v1/chat/completions")


@pytest.fixture
def standins() -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for s in made:
        s.close()


def _settings(**kw: Any) -> PoolSettings:
    base: dict[str, Any] = {"health_interval_seconds": 0, "eject_seconds": 0.5}
    return PoolSettings(**{**base, **kw})


def _gen(urls: list[str], pool_kw: dict[str, Any] | None = None, **cfg: Any) -> OpenAIChatGenerator:
    gcfg = GenerationConfig(urls=tuple(urls), model="mistral-test", **cfg)
    pool = EndpointPool(urls, name="chat-test", settings=_settings(**(pool_kw or {})))
    return OpenAIChatGenerator(gcfg, pool=pool)


async def _collect(gen: OpenAIChatGenerator, usage: Usage | None = None) -> str:
    msgs = [{"role": "user", "content": "Bonjour ?"}]
    return "".join([p async for p in gen.stream_messages(msgs, usage or Usage())])


async def test_balances_and_streams(standins: list[StandIn]) -> None:
    a, b = StandIn(), StandIn()
    standins += [a, b]
    gen = _gen([a.url, b.url])
    usage = Usage()
    try:
        texts = await asyncio.gather(*(_collect(gen, usage) for _ in range(10)))
    finally:
        await gen.close()
    assert all(t == "Bonjour [1] fin." for t in texts)
    assert usage.prompt_tokens == 7 and usage.completion_tokens == 3
    assert a.chats() >= 3 and b.chats() >= 3, (a.chats(), b.chats())
    body = a.requests[-1][1]
    assert body["stream"] is True and body["model"] == "mistral-test"
    assert body["messages"] == [{"role": "user", "content": "Bonjour ?"}]


async def test_saturated_pool_fails_fast_with_retry_after(standins: list[StandIn]) -> None:
    slow = StandIn("slow")
    standins.append(slow)
    gen = _gen([slow.url], {"max_concurrency_per_replica": 1, "retry_after_seconds": 2.0})
    try:
        first = gen.stream_messages([{"role": "user", "content": "x"}], Usage())
        assert await first.__anext__() == "Bonjour"  # holds the only slot
        t0 = time.monotonic()
        with pytest.raises(ResourceExhausted) as err:
            await _collect(gen)
        assert time.monotonic() - t0 < 0.5
        assert err.value.reason == "POOL_SATURATED" and err.value.retry_after_seconds == 2.0
        await first.aclose()  # closing the stream frees the slot
        assert gen.pool.stats()[0].outstanding == 0
        assert await _collect(gen) == "Bonjour [1] fin."
    finally:
        await gen.close()


async def test_retries_another_replica_before_streaming_and_ejects(
    standins: list[StandIn],
) -> None:
    bad, good = StandIn("error"), StandIn()
    standins += [bad, good]
    gen = _gen([bad.url, good.url], {"eject_after_errors": 2, "eject_seconds": 30})
    try:
        for _ in range(4):
            assert await _collect(gen) == "Bonjour [1] fin."
    finally:
        await gen.close()
    stats = {s.url: s for s in gen.pool.stats()}
    assert stats[bad.url].failures == 2 and not stats[bad.url].up  # ejected after 2 errors
    assert stats[good.url].served == 4
    assert bad.chats() == 2


async def test_no_retry_once_streamed_and_rejections_not_retried(
    standins: list[StandIn],
) -> None:
    cut = StandIn("cut")
    standins.append(cut)
    gen = _gen([cut.url])
    try:
        pieces: list[str] = []
        with pytest.raises(Unavailable) as err:
            async for p in gen.stream_messages([{"role": "user", "content": "x"}], Usage()):
                pieces.append(p)
        assert pieces == ["Bonjour"]
        assert err.value.reason == "GENERATION_INTERRUPTED"
    finally:
        await gen.close()
    assert cut.chats() == 1
    bad, good = StandIn("bad"), StandIn()
    standins += [bad, good]
    gen = _gen([bad.url])
    try:
        with pytest.raises(InvalidArgument) as err2:
            await _collect(gen)
        assert err2.value.reason == "GENERATION_REJECTED"
    finally:
        await gen.close()


async def test_all_down_is_unavailable_quickly() -> None:
    dead = ["http://127.0.0.1:9/v1", "http://127.0.0.1:19/v1"]  # nothing listens
    gen = _gen(dead)
    try:
        for _ in range(2):
            t0 = time.monotonic()
            with pytest.raises(Unavailable) as err:
                await _collect(gen)
            assert time.monotonic() - t0 < 2.0
            assert err.value.reason == "NO_HEALTHY_REPLICA"
            assert err.value.retry_after_seconds and err.value.retry_after_seconds > 0
        assert all(not s.up for s in gen.pool.stats())
    finally:
        await gen.close()


async def test_health_checks_fallback_eject_and_readmit(standins: list[StandIn]) -> None:
    plain, sick = StandIn(health=False), StandIn("sick")
    standins += [plain, sick]
    pool = EndpointPool([plain.url, sick.url], name="h", settings=_settings(eject_seconds=0.2))
    try:
        pool.check_now()
        ups = {s.url: s.up for s in pool.stats()}
        assert ups == {plain.url: True, sick.url: False}
        replicas = {r.url: r for r in pool.replicas()}
        assert replicas[plain.url].health_path == "/models"  # no /health: GET /v1/models
        sick.mode = "ok"
        pool.check_now()
        assert all(s.up for s in pool.stats())  # re-admitted
    finally:
        await pool.aclose()


async def test_background_health_thread_readmits(standins: list[StandIn]) -> None:
    s = StandIn("sick")
    standins.append(s)
    pool = EndpointPool(
        [s.url], name="bg", settings=PoolSettings(health_interval_seconds=0.1, eject_seconds=0.1)
    )
    pool.start()
    try:
        for _ in range(50):
            if not pool.stats()[0].up:
                break
            await asyncio.sleep(0.05)
        assert not pool.stats()[0].up
        s.mode = "ok"
        for _ in range(50):
            if pool.stats()[0].up:
                break
            await asyncio.sleep(0.05)
        assert pool.stats()[0].up
    finally:
        await pool.aclose()


async def test_grpc_deadline_becomes_http_timeout(standins: list[StandIn]) -> None:
    slow = StandIn("slow")
    standins.append(slow)
    gen = _gen([slow.url])
    try:
        set_deadline(time.monotonic() + 0.3)
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await _collect(gen)
        assert time.monotonic() - t0 < 1.5
    finally:
        set_deadline(None)
        await gen.close()


async def test_dns_entries(standins: list[StandIn]) -> None:
    assert "http://127.0.0.1:8000/v1" in _resolve("dns+http://localhost:8000/v1")
    s = StandIn()
    standins.append(s)
    port = s.url.split(":")[2].split("/")[0]
    gen = _gen([f"dns+http://127.0.0.1:{port}/v1"], {"dns_refresh_seconds": 0.1})
    try:
        assert [r.url for r in gen.pool.replicas()] == [s.url]
        assert await _collect(gen) == "Bonjour [1] fin."
    finally:
        await gen.close()


async def test_complete_json_sends_schema_and_validates(standins: list[StandIn]) -> None:
    s = StandIn()
    standins.append(s)
    gen = _gen([s.url])
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    msgs = [{"role": "user", "content": "Extrais le nom et l'âge."}]
    try:
        assert await gen.complete_json(msgs, schema) == {"name": "Dupont", "age": 42}
        body = s.requests[-1][1]
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == schema
        assert body["stream"] is False and body["temperature"] == 0.0  # extraction sampling
        strict = {**schema, "properties": {**schema["properties"], "age": {"type": "string"}}}
        with pytest.raises(Unavailable) as err:
            await gen.complete_json(msgs, strict)
        assert err.value.reason == "MODEL_OUTPUT_INVALID"
        s.mode = "badjson"
        with pytest.raises(Unavailable):
            await gen.complete_json(msgs, schema)
        custom = Sampling(max_tokens=5, temperature=0.7, extra={"seed": 3})
        await gen.complete([{"role": "user", "content": "x"}], custom)
        assert s.requests[-1][1]["seed"] == 3 and s.requests[-1][1]["max_tokens"] == 5
    finally:
        await gen.close()


async def test_context_budget_trims_passages(standins: list[StandIn]) -> None:
    s = StandIn()
    standins.append(s)
    passages = [PromptPassage(i, "mot " * 200, f"doc{i}.md") for i in range(1, 6)]
    # Without /tokenize: approximate count (chars / 3) against context_tokens.
    gen = _gen([s.url], context_tokens=1500, max_tokens=200)
    try:
        kept = await gen.fit_passages("Question ?", passages, "fr")
        assert 1 <= len(kept) < 5
        assert [p.marker for p in kept] == list(range(1, len(kept) + 1))
        assert gen._tokenize is False
        few = await gen.fit_passages("Question ?", passages[:1], "fr")
        assert few == passages[:1]
        # With /tokenize (vLLM): the server's count and its max_model_len (400) rule.
        s.tokenize = True
        gen2 = _gen([s.url], context_tokens=100_000, max_tokens=100)
        kept2 = await gen2.fit_passages("Question ?", passages, "fr")
        await gen2.close()
        assert gen2._tokenize is True and gen2._max_model_len == 400
        assert len(kept2) <= 1 and all(p.text.endswith("[…]") for p in kept2)
    finally:
        await gen.close()


def test_embeddings_through_pool(standins: list[StandIn]) -> None:
    s = StandIn()
    standins.append(s)
    cfg = EmbeddingConfig(backend="openai", model="bge-m3", urls=("http://127.0.0.1:9/v1", s.url))
    model = OpenAIEmbeddingModel(cfg)
    try:
        vecs = model.embed(["a", "bbb"], query=False)
        assert model.dimension == 3 and vecs.shape == (2, 3)
        assert abs(float((vecs[0] ** 2).sum()) - 1.0) < 1e-5
        stats = {st.url: st for st in model.pool.stats()}
        assert not stats["http://127.0.0.1:9/v1"].up  # refused connection: ejected at once
    finally:
        model.close()
