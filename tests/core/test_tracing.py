"""OpenTelemetry tracing (opentelemetry-instrumentation-grpc's interceptors) over the real
embedded server: one trace per request, spanning the ingestion -> chunking/embedding and
answering -> embedding hops; nothing recorded, and nothing of OpenTelemetry imported, when off."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from docfactory.app import start_server
from docfactory.core import tracing
from docfactory.core.auth import Principal, set_principal
from docfactory.core.clients import call_options
from docfactory.core.config import Settings, TracingConfig, load_settings
from docfactory.core.errors import ConfigError
from tests.helpers import search, upload

TEXT = (
    "Tracing report\n\n"
    "The quarterly maintenance of the pumping station happens every March. "
    "Operators record the pressure of each pump and the state of the valves.\n\n"
    "Spare parts are ordered from the regional warehouse two weeks in advance."
)

UPLOAD = "/docfactory.ingestion.v1.IngestionService/UploadDocument"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    tracing.shutdown_tracing()
    exp = InMemorySpanExporter()
    assert tracing.setup_tracing(exporter=exp)
    try:
        yield exp
    finally:
        tracing.shutdown_tracing()


@pytest.fixture
def tracing_off() -> Iterator[None]:
    tracing.shutdown_tracing()
    yield
    tracing.shutdown_tracing()


def _by_suffix(
    spans: list[ReadableSpan], suffix: str, kind: SpanKind | None = None
) -> list[ReadableSpan]:
    return [s for s in spans if s.name.endswith(suffix) and kind in (None, s.kind)]


def _one(spans: list[ReadableSpan], suffix: str, kind: SpanKind | None = None) -> ReadableSpan:
    found = _by_suffix(spans, suffix, kind)
    assert len(found) == 1, (suffix, [s.name for s in spans])
    return found[0]


def _trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    trace_id: int = span.context.trace_id
    return trace_id


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def _ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    by_id = {_span_id(s): s for s in spans}
    out = []
    cur: ReadableSpan | None = span
    while cur is not None and cur.parent is not None:
        cur = by_id.get(cur.parent.span_id)
        if cur is not None:
            out.append(cur)
    return out


async def test_one_trace_per_request(
    exporter: InMemorySpanExporter, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Split as in production: chunking and embedding in their own server, so that ingestion
    # and answering reach them over gRPC (in one process, ingestion calls them directly).
    models = await start_server(make_settings(), ("chunking", "embedding"), port=0)
    remote = {"chunking": models.address, "embedding": models.address}
    running = await start_server(
        make_settings(addresses=remote), ("ingestion", "answering"), port=0
    )
    try:
        doc = tmp_path / "report.txt"
        doc.write_text(TEXT)
        async with grpc.aio.insecure_channel(running.address) as ch:
            resp = await upload(ch, doc)
            assert resp.document.chunk_count >= 1
            spans = list(exporter.get_finished_spans())

            # Ingestion: UploadDocument (server) -> parse/chunk/embed/index (internal) ->
            # ChunkElements and Embed (client spans, then the servers' spans across the gRPC
            # hop) in the same trace.
            up = _one(spans, "/UploadDocument")
            assert up.name == UPLOAD and up.kind == SpanKind.SERVER and up.parent is None
            attrs = dict(up.attributes or {})
            assert attrs["rpc.system"] == "grpc"
            assert attrs["rpc.service"] == "docfactory.ingestion.v1.IngestionService"
            assert attrs["rpc.method"] == "UploadDocument"
            assert attrs["docfactory.tenant"] == "acme"
            assert attrs["rpc.grpc.status_code"] == 0
            chunk_rpc = _one(spans, "/ChunkElements", SpanKind.SERVER)
            embed_rpcs = _by_suffix(spans, "/Embed", SpanKind.SERVER)
            assert embed_rpcs
            calls = {_span_id(c): c for c in _by_suffix(spans, "", SpanKind.CLIENT)}
            trace_id = _trace_id(up)
            for s in [chunk_rpc, *embed_rpcs]:
                assert _trace_id(s) == trace_id, s.name
                # parented across the hop by the caller's CLIENT span of the same method
                assert s.parent is not None and s.parent.is_remote, s.name
                assert calls[s.parent.span_id].name == s.name
                assert dict(s.attributes or {})["docfactory.tenant"] == "acme"
            stages = {n: _one(spans, n) for n in ("parse", "chunk", "embed", "index")}
            for stage in stages.values():
                assert _trace_id(stage) == trace_id
                assert stage.kind == SpanKind.INTERNAL
                assert up in _ancestors(stage, spans), stage.name
            # the downstream calls are children of the stage that made them
            assert chunk_rpc.parent is not None
            assert _ancestors(chunk_rpc, spans)[:2] == [
                calls[chunk_rpc.parent.span_id],
                stages["chunk"],
            ]
            for s in embed_rpcs:
                assert _ancestors(s, spans)[1] is stages["embed"]
            # one trace for the whole upload: every span of it is under UploadDocument
            assert {_trace_id(s) for s in spans} == {trace_id}

            # Answering: Search (server) -> retrieve -> Embed (server) in one new trace.
            exporter.clear()
            found = await search(ch, "When is the pumping station maintained?")
            assert found.results
            spans = list(exporter.get_finished_spans())
            sr = _one(spans, "/Search")
            assert sr.parent is None and sr.kind == SpanKind.SERVER
            assert _trace_id(sr) != trace_id
            retrieve = _one(spans, "retrieve")
            emb = _one(spans, "/Embed", SpanKind.SERVER)
            assert {_trace_id(s) for s in spans} == {_trace_id(sr)}
            assert _ancestors(emb, spans) == [_one(spans, "/Embed", SpanKind.CLIENT), retrieve, sr]

            # A failed RPC: status code on the span, and still one span.
            exporter.clear()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await search(ch, "anything", key="wrong-key")
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            failed = _one(list(exporter.get_finished_spans()), "/Search")
            code = grpc.StatusCode.UNAUTHENTICATED.value[0]
            assert dict(failed.attributes or {})["rpc.grpc.status_code"] == code
            assert "docfactory.tenant" not in dict(failed.attributes or {})
    finally:
        await running.stop(0.5)
        await models.stop(0.5)


async def test_off_records_nothing(
    tracing_off: None, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # An exporter installed, then removed: it must see nothing more. With no exporter
    # configured, setup installs no provider and the server handlers are not wrapped.
    spy = InMemorySpanExporter()
    assert tracing.setup_tracing(exporter=spy)
    tracing.shutdown_tracing()
    assert not tracing.setup_tracing(make_settings().tracing)
    assert not tracing.enabled()
    running = await start_server(make_settings(), port=0)
    try:
        assert not tracing.enabled()
        doc = tmp_path / "report.txt"
        doc.write_text(TEXT)
        async with grpc.aio.insecure_channel(running.address) as ch:
            assert (await upload(ch, doc)).document.chunk_count >= 1
            assert (await search(ch, "pumping station")).results
    finally:
        await running.stop(0.5)
    assert spy.get_finished_spans() == ()
    # no SDK provider was made global either (the API's no-op proxy is still in place)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    # off: no interceptors, no trace context on downstream calls, span() a shared null context
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []
    token = set_principal(Principal(tenant="acme", key_id="k", api_key="key-acme"))
    try:
        assert [k for k, _ in call_options()["metadata"]] == ["x-api-key"]
    finally:
        set_principal(None)
        del token
    assert tracing.span("a") is tracing.span("b")
    tracing.set_attribute("docfactory.tenant", "acme")  # a no-op


OFF_PROCESS = """
import asyncio, sys
from grpc_health.v1 import health_pb2, health_pb2_grpc
from docfactory.app import start_server
from docfactory.core.clients import Channels
from docfactory.core.config import load_settings

async def main():
    running = await start_server(load_settings(), port=0)
    channels = Channels(1 << 20)  # how services call each other
    try:
        stub = health_pb2_grpc.HealthStub(channels.get(running.address))
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    finally:
        await channels.close()
        await running.stop(0.5)

asyncio.run(main())
print("loaded:", sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""


def test_off_imports_no_opentelemetry(make_settings: Callable[..., Settings]) -> None:
    # A server process that starts and answers over a service-to-service channel without
    # DOCFACTORY_OTEL_EXPORTER loads no OpenTelemetry module at all: the extra is optional.
    settings = make_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFACTORY_", "OTEL_"))}
    env |= {
        "DOCFACTORY_DATA_DIR": str(settings.data_dir),
        "DOCFACTORY_KEYS_FILE": str(settings.keys_file),
        "DOCFACTORY_HOST": "127.0.0.1",
    }
    out = subprocess.run(
        [sys.executable, "-c", OFF_PROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "loaded: []"


def test_config_from_env(tracing_off: None) -> None:
    s = load_settings(
        env={"DOCFACTORY_OTEL_EXPORTER": "otlp", "DOCFACTORY_OTEL_ENDPOINT": "http://c:4317"}
    )
    assert s.tracing == TracingConfig(exporter="otlp", endpoint="http://c:4317")
    assert load_settings(env={}).tracing.exporter == ""
    with pytest.raises(ConfigError):
        tracing.setup_tracing(TracingConfig(exporter="zipkin"))
    assert not tracing.enabled()


def test_console_exporter_and_interceptors(tracing_off: None) -> None:
    assert tracing.setup_tracing(TracingConfig(exporter="console"), batch=False, make_global=False)
    assert tracing.enabled()
    with tracing.span("outer") as sp:
        tracing.set_attribute("docfactory.tenant", "acme")
        assert sp.get_span_context().is_valid
        assert dict(sp.attributes or {})["docfactory.tenant"] == "acme"
    assert len(tracing.server_interceptors()) == 1
    assert len(tracing.client_interceptors()) == 4  # unary/stream x unary/stream
    tracing.shutdown_tracing()
    assert not tracing.enabled()
    assert tracing.server_interceptors() == []
