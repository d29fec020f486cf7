"""OpenTelemetry tracing: one trace per request across services. Off unless an exporter is set.

- ``setup_tracing`` installs an SDK ``TracerProvider`` (``DOCFACTORY_OTEL_EXPORTER`` = ``otlp`` or
  ``console``, or an exporter passed in, e.g. an in-memory one in tests). The standard ``OTEL_*``
  variables (service name, resource attributes, sampler, OTLP endpoint/headers, propagators) are
  read by the SDK and the exporter.
- ``TracingInterceptor`` (server) opens one SERVER span per RPC, continuing the W3C
  ``traceparent`` of the incoming metadata; it sits before ``ServiceInterceptor``.
- ``outgoing_metadata()`` (used by ``core.clients.call_options``) puts the current span's
  ``traceparent`` on downstream calls, so chunking and embedding join the caller's trace.
- ``span("parse")`` opens an internal span.

When tracing is off nothing of OpenTelemetry is imported or installed (the extra ``tracing`` is
optional): the interceptor passes handlers
through untouched, ``span`` returns a shared null context, ``outgoing_metadata`` returns ``()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from docfactory.core.auth import principal_or_none
from docfactory.core.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from docfactory.core.config import TracingConfig

log = logging.getLogger("docfactory.tracing")

TRACER_NAME = "docfactory"
EXPORTERS = ("", "otlp", "console")
# Probes and discovery are not traced (the same methods ServiceInterceptor leaves public).
UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()


def enabled() -> bool:
    return _tracer is not None


def setup_tracing(
    config: TracingConfig | None = None,
    *,
    exporter: SpanExporter | None = None,
    service_name: str = "docfactory",
    batch: bool | None = None,
    make_global: bool = True,
) -> bool:
    """Install the SDK provider when an exporter is configured (or given). Returns whether
    tracing is on. Idempotent: an already installed provider is kept; with no exporter
    configured nothing is installed (and nothing of the SDK is imported)."""
    global _provider, _tracer
    kind = (config.exporter if config is not None else "").strip().lower()
    if kind not in EXPORTERS:
        raise ConfigError(
            f"DOCFACTORY_OTEL_EXPORTER must be one of 'otlp', 'console' or empty, not {kind!r}"
        )
    if _tracer is not None:
        return True
    if exporter is None and not kind:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "tracing needs opentelemetry-sdk: pip install 'docfactory[tracing]'"
        ) from exc
    if exporter is None:
        exporter = _make_exporter(kind, config.endpoint if config is not None else "")
        batch = True if batch is None else batch
    attrs: dict[str, Any] = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = service_name
    provider = TracerProvider(resource=Resource.create(attrs))
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    if kind and make_global:
        # Make it the global provider too (for other instrumentations), once per process.
        with contextlib.suppress(Exception):
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
        log.info("tracing on: exporter %s", kind)
    return True


def _make_exporter(kind: str, endpoint: str) -> SpanExporter:
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "DOCFACTORY_OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-grpc: "
            "pip install 'docfactory[tracing]'"
        ) from exc
    # Without an endpoint the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
    return OTLPSpanExporter(endpoint=endpoint or None)


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()


def shutdown_tracing() -> None:
    """Flush and remove the provider: tracing is off again (tests, process exit)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """An internal span around a stage (``with tracing.span("parse"):``); a no-op when off."""
    if _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(name, attributes=attributes or None)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """W3C trace context (``traceparent``, ``tracestate``) of the current span, for gRPC
    metadata of a downstream call; empty when tracing is off or no span is current."""
    if _tracer is None:
        return ()
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


def _extract(metadata: Any) -> Any:
    from opentelemetry import propagate

    carrier: Mapping[str, str] = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    return propagate.extract(carrier)


def _split(method: str) -> tuple[str, str]:
    parts = method.strip("/").split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else (method, "")


def _status_code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> int:
    if exc is not None and not isinstance(exc, grpc.aio.AbortError):
        if isinstance(exc, grpc.aio.AioRpcError):
            return int(exc.code().value[0])
        return int(grpc.StatusCode.UNKNOWN.value[0])
    try:
        code = context.code()
    except Exception:  # pragma: no cover - older grpc without ServicerContext.code()
        code = None
    if code is None:
        return 0 if exc is None else int(grpc.StatusCode.UNKNOWN.value[0])
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(code)


class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A SERVER span per RPC, parented by the caller's ``traceparent`` when present.

    The span is opened inside the handler behaviour (not in ``intercept_service``), so it is the
    current span of the task that runs the servicer and of the downstream calls it makes."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if _tracer is None or handler is None or method.startswith(UNTRACED_PREFIXES):
            return handler
        return _wrap(handler, method)


def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    service, name = _split(method)
    span_name = method.lstrip("/")
    base_attrs = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    @contextlib.contextmanager
    def rpc_span(context: grpc.aio.ServicerContext) -> Iterator[Span]:
        if _tracer is None:  # turned off while the server runs (tests)
            yield trace.INVALID_SPAN
            return
        tracer = _tracer
        parent = _extract(context.invocation_metadata())
        with tracer.start_as_current_span(
            span_name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=base_attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as sp:
            failure: BaseException | None = None
            try:
                yield sp
            except BaseException as exc:
                failure = exc
                raise
            finally:
                principal = principal_or_none()
                if principal is not None:
                    sp.set_attribute("docfactory.tenant", principal.tenant)
                code = _status_code(context, failure)
                sp.set_attribute("rpc.grpc.status_code", code)
                if code != 0:
                    sp.set_status(Status(StatusCode.ERROR, grpc_code_name(code)))
                if failure is not None and not isinstance(failure, grpc.aio.AbortError):
                    sp.record_exception(failure)

    if handler.response_streaming:
        inner_stream = handler.unary_stream or handler.stream_stream

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with rpc_span(context):
                stream: AsyncIterator[Any] = inner_stream(request, context)
                async for item in stream:
                    yield item

        stream_factory = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return stream_factory(
            stream_behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    inner_unary = handler.unary_unary or handler.stream_unary

    async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with rpc_span(context):
            return await inner_unary(request, context)

    factory = (
        grpc.unary_unary_rpc_method_handler
        if handler.unary_unary
        else grpc.stream_unary_rpc_method_handler
    )
    return factory(
        unary_behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def grpc_code_name(code: int) -> str:
    for sc in grpc.StatusCode:
        if sc.value[0] == code:
            return str(sc.name)
    return str(code)
