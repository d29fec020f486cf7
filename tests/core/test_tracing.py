"""OpenTelemetry tracing over the real embedded server: one trace per request, spanning the
ingestion -> chunking/embedding and answering -> embedding hops; nothing recorded when off."""

from __future__ import annotations

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

UPLOAD = "docfactory.ingestion.v1.IngestionService/UploadDocument"


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


def _by_suffix(spans: list[ReadableSpan], suffix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.endswith(suffix)]


def _one(spans: list[ReadableSpan], suffix: str) -> ReadableSpan:
    found = _by_suffix(spans, suffix)
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
    running = await start_server(make_settings(), port=0)
    try:
        doc = tmp_path / "report.txt"
        doc.write_text(TEXT)
        async with grpc.aio.insecure_channel(running.address) as ch:
            resp = await upload(ch, doc)
            assert resp.document.chunk_count >= 1
            spans = list(exporter.get_finished_spans())

            # Ingestion: UploadDocument (server) -> parse/chunk/embed/index (internal) ->
            # ChunkElements and Embed (servers, called over gRPC) in the same trace.
            up = _one(spans, "/UploadDocument")
            assert up.name == UPLOAD and up.kind == SpanKind.SERVER and up.parent is None
            attrs = dict(up.attributes or {})
            assert attrs["rpc.system"] == "grpc"
            assert attrs["rpc.service"] == "docfactory.ingestion.v1.IngestionService"
            assert attrs["rpc.method"] == "UploadDocument"
            assert attrs["docfactory.tenant"] == "acme"
            assert attrs["rpc.grpc.status_code"] == 0
            chunk_rpc = _one(spans, "/ChunkElements")
            embed_rpcs = _by_suffix(spans, "/Embed")
            assert embed_rpcs
            trace_id = _trace_id(up)
            for s in [chunk_rpc, *embed_rpcs]:
                assert s.kind == SpanKind.SERVER
                assert _trace_id(s) == trace_id, s.name
                assert s.parent is not None and s.parent.is_remote, s.name
                assert dict(s.attributes or {})["docfactory.tenant"] == "acme"
            stages = {n: _one(spans, n) for n in ("parse", "chunk", "embed", "index")}
            for stage in stages.values():
                assert _trace_id(stage) == trace_id
                assert stage.kind == SpanKind.INTERNAL
                assert up in _ancestors(stage, spans), stage.name
            # the downstream server spans are children of the stage that called them
            assert chunk_rpc.parent is not None
            assert chunk_rpc.parent.span_id == _span_id(stages["chunk"])
            for s in embed_rpcs:
                assert s.parent is not None and s.parent.span_id == _span_id(stages["embed"])
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
            emb = _one(spans, "/Embed")
            assert {_trace_id(s) for s in spans} == {_trace_id(sr)}
            assert emb.parent is not None and emb.parent.span_id == _span_id(retrieve)
            assert retrieve.parent is not None and retrieve.parent.span_id == _span_id(sr)

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
    # off: no trace context on downstream calls, and span() is a shared null context
    token = set_principal(Principal(tenant="acme", key_id="k", api_key="key-acme"))
    try:
        assert [k for k, _ in call_options()["metadata"]] == ["x-api-key"]
    finally:
        set_principal(None)
        del token
    assert tracing.span("a") is tracing.span("b")
    assert tracing.outgoing_metadata() == ()


def test_config_from_env(tracing_off: None) -> None:
    s = load_settings(
        env={"DOCFACTORY_OTEL_EXPORTER": "otlp", "DOCFACTORY_OTEL_ENDPOINT": "http://c:4317"}
    )
    assert s.tracing == TracingConfig(exporter="otlp", endpoint="http://c:4317")
    assert load_settings(env={}).tracing.exporter == ""
    with pytest.raises(ConfigError):
        tracing.setup_tracing(TracingConfig(exporter="zipkin"))
    assert not tracing.enabled()


def test_console_exporter_and_propagation(tracing_off: None) -> None:
    assert tracing.setup_tracing(TracingConfig(exporter="console"), batch=False, make_global=False)
    assert tracing.enabled()
    with tracing.span("outer") as sp:
        md = dict(tracing.outgoing_metadata())
        ctx = sp.get_span_context()
        assert md["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    tracing.shutdown_tracing()
    assert not tracing.enabled()
