"""OpenTelemetry tracing: one trace per request across services. Off unless an exporter is set.

- ``setup_tracing`` installs an SDK ``TracerProvider`` (``DOCFACTORY_OTEL_EXPORTER`` = ``otlp`` or
  ``console``, or an exporter passed in, e.g. an in-memory one in tests). The standard ``OTEL_*``
  variables (service name, resource attributes, sampler, OTLP endpoint/headers, propagators) are
  read by the SDK and the exporter.
- The spans of RPCs come from the maintained ``opentelemetry-instrumentation-grpc``:
  ``server_interceptors()`` (its aio server interceptor, first in the chain: one SERVER span per
  RPC, named by the method and continuing the caller's W3C ``traceparent``; probes and
  reflection untraced) and ``client_interceptors()`` (on ``core.clients.Channels``: a CLIENT span
  per downstream call, whose context travels in the call's metadata).
- ``set_attribute`` annotates the current span (``ServiceInterceptor`` adds the tenant);
  ``span("parse")`` opens an internal span.

When tracing is off nothing of OpenTelemetry is imported or installed (the extra ``tracing`` is
optional): both interceptor lists are empty, ``span`` returns a shared null context and
``set_attribute`` does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

import grpc

from docfactory.core.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from docfactory.core.config import TracingConfig

log = logging.getLogger("docfactory.tracing")

TRACER_NAME = "docfactory"
EXPORTERS = ("", "otlp", "console")
# Probes and discovery are not traced (the same services ServiceInterceptor leaves public).
UNTRACED_SERVICE_PREFIXES = ("grpc.health.v1.Health", "grpc.reflection.")

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


def set_attribute(key: str, value: str | int | bool) -> None:
    """Set an attribute on the current span (inside a handler: the RPC's SERVER span)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute(key, value)


def _instrumentation() -> Any:
    try:
        from opentelemetry.instrumentation import grpc as otel_grpc
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "tracing needs opentelemetry-instrumentation-grpc: pip install 'docfactory[tracing]'"
        ) from exc
    return otel_grpc


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The OpenTelemetry aio server interceptor (first in a server's chain), or none when off."""
    if _provider is None:
        return []
    otel_grpc = _instrumentation()
    from opentelemetry.instrumentation.grpc import filters

    untraced = filters.any_of(*(filters.service_prefix(p) for p in UNTRACED_SERVICE_PREFIXES))
    return [otel_grpc.aio_server_interceptor(_provider, filter_=filters.negate(untraced))]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The OpenTelemetry aio client interceptors (for channels to other services), or none."""
    if _provider is None:
        return []
    return list(_instrumentation().aio_client_interceptors(_provider))
