"""The server interceptor chain (``interceptor_chain``): OpenTelemetry's when tracing is on
(core/tracing.py), the service-key gate of an internal listener, then ``ServiceInterceptor``:
authentication (API key -> tenant), deadline propagation, request validation, metrics, and the
mapping of docfactory errors to gRPC status with ErrorInfo (AIP-193). ``rewrap`` is the one
helper that re-wraps a method handler's behaviour.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from docfactory.core import metrics, tls, tracing
from docfactory.core.auth import (
    Authenticator,
    Principal,
    act_on_behalf,
    key_from_metadata,
    on_behalf_from_metadata,
    set_deadline,
    set_principal,
)
from docfactory.core.errors import (
    ERROR_DOMAIN,
    DocfactoryError,
    InvalidArgument,
    error_for_code,
    infrastructure_error,
)
from docfactory.core.errors import error_from_rpc as error_from_rpc  # re-export
from docfactory.core.validation import validate_request

log = logging.getLogger("docfactory.rpc")

# Methods reachable without an API key (probes and discovery).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


#: Longest status message sent to a client (a message never carries more than a short prefix
#: of caller input; this is the backstop that keeps trailers far under metadata limits).
MAX_STATUS_MESSAGE = 1024


def to_status(err: DocfactoryError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason=err.reason,
        domain=ERROR_DOMAIN,
        metadata={k[:64]: v[:256] for k, v in err.metadata.items()},
    )
    details = [any_pb2.Any()]
    details[0].Pack(info)
    if err.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d[:512])
                for f, d in err.field_violations
            ]
        )
        extra_bad = any_pb2.Any()
        extra_bad.Pack(bad)
        details.append(extra_bad)
    if err.retry_after_seconds is not None:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(err.retry_after_seconds),
                nanos=int((err.retry_after_seconds % 1) * 1e9),
            )
        )
        extra = any_pb2.Any()
        extra.Pack(retry)
        details.append(extra)
    message = err.message
    if len(message) > MAX_STATUS_MESSAGE:
        message = message[: MAX_STATUS_MESSAGE - 1] + "…"
    status = status_pb2.Status(code=err.code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


class _Undecodable:
    """What the wrapped deserializer returns for bytes that are not a valid request message
    (invalid UTF-8 in a string field, truncated or foreign bytes): the handler then answers
    INVALID_ARGUMENT instead of gRPC's bare UNKNOWN/INTERNAL without ErrorInfo."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _safe_deserializer(deserializer: Callable[[bytes], Any] | None) -> Any:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            owner = getattr(deserializer, "__self__", None)
            name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request")
            return _Undecodable(str(name))

    return deserialize


def check_request(request: Any) -> None:
    """Decoding failures and field rules (docfactory.core.validation), before any work."""
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"the request is not a valid {request.type_name} message: a string field holds "
            "invalid UTF-8, or the bytes are not protobuf",
            reason="MALFORMED_REQUEST",
        )
    validate_request(request)


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        check_request(request)
        yield request


_HANDLER_FACTORIES = {  # (request_streaming, response_streaming) -> handler factory
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def rewrap(
    handler: grpc.RpcMethodHandler,
    behavior: Callable[..., Any],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` (unary or streaming request and response) that
    runs ``behavior``."""
    factory: Any = _HANDLER_FACTORIES[
        (bool(handler.request_streaming), bool(handler.response_streaming))
    ]
    return factory(
        behavior,
        request_deserializer=request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _behavior_of(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    fn: Callable[..., Any] = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    return fn


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, DocfactoryError):
        return str(exc.code.name)
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    if (infra := infrastructure_error(exc)) is not None:  # disk full, database down
        return str(infra.code.name)
    return "INTERNAL"


#: Refusals written to the audit chain by the interceptor (when no layer below did it).
AUDITED_REFUSALS = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT})


def _split(method: str) -> tuple[str, str]:
    parts = method.strip("/").split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else (method, "")


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        keys: Authenticator,
        authorize: Callable[[str, Principal], None] | None = None,
        on_refusal: Callable[[str, Principal, DocfactoryError], None] | None = None,
        identity: tls.ServiceIdentity | None = None,
    ) -> None:
        self._keys = keys
        # This server's service identity: which peers may attest a caller (core/tls.py).
        self._identity = identity
        # Role checks by RPC (the governance gate's ``authorize_method``), after authentication.
        self._authorize = authorize
        # Audit of refusals (PERMISSION_DENIED, INVALID_ARGUMENT) of an authenticated caller.
        self._on_refusal = on_refusal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        return self._wrap(handler, method)

    def _begin(self, context: grpc.aio.ServicerContext, method: str) -> Principal:
        remaining = context.time_remaining()
        set_deadline(time.monotonic() + remaining if remaining is not None else None)
        md = context.invocation_metadata() or ()
        subject = tls.peer_subject(context)
        # An internal peer (client certificate or service key) attests the end user.
        attested = self._identity.attested_principal(md, subject) if self._identity else None
        if attested is not None:
            principal = attested
        else:
            principal = self._keys.authenticate(key_from_metadata(md), mtls_subject=subject)
            principal = act_on_behalf(principal, on_behalf_from_metadata(md))
        set_principal(principal)
        tracing.set_attribute("docfactory.tenant", principal.tenant)
        tls.set_identity(self._identity)
        if self._authorize is not None:
            self._authorize(method, principal)
        return principal

    async def _fail(
        self,
        context: grpc.aio.ServicerContext,
        exc: BaseException,
        method: str,
        principal: Principal | None = None,
    ) -> None:
        if isinstance(exc, DocfactoryError):
            err = exc
        elif isinstance(exc, grpc.aio.AioRpcError):
            err = error_from_rpc(exc)
        elif (infra := infrastructure_error(exc)) is not None:  # disk full, database down
            log.warning("%s in %s: %r", infra.reason, method, exc)
            err = infra
        else:
            # Every one of these is a bug to fix: the client gets INTERNAL with a correlation id
            # that finds the traceback in the server's log, never the exception's text.
            correlation = uuid.uuid4().hex
            log.exception("unhandled error in %s (correlation_id=%s)", method, correlation)
            err = error_for_code(
                grpc.StatusCode.INTERNAL,
                f"internal error (correlation id {correlation})",
                "INTERNAL_UNEXPECTED",
            )
            err.metadata["correlation_id"] = correlation
        if (
            principal is not None
            and self._on_refusal is not None
            and err.code in AUDITED_REFUSALS
            and not err.audited
        ):
            try:
                self._on_refusal(method, principal, err)
                err.audited = True
            except Exception:
                log.exception("audit of a refusal failed in %s", method)
                err = error_for_code(
                    grpc.StatusCode.UNAVAILABLE, "audit unavailable", "AUDIT_FAILED"
                )
        status = to_status(err)
        await context.abort(status.code, status.details, status.trailing_metadata)

    @contextlib.asynccontextmanager
    async def _rpc(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        """Around one RPC: in-flight gauge, authentication and role check; on the way out the
        request metrics and, for a failure, the gRPC status with ErrorInfo (``_fail``)."""
        service, name = _split(method)
        started = time.perf_counter()
        tenant, code = "-", "OK"
        principal: Principal | None = None
        gauge = metrics.RPC_IN_FLIGHT.labels(service, name)
        gauge.inc()
        try:
            principal = self._begin(context, method)
            tenant = principal.tenant
            yield
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code = _code_of(exc)
            await self._fail(context, exc, method, principal)
        finally:
            gauge.dec()
            metrics.RPC_REQUESTS.labels(service, name, code, tenant).inc()
            metrics.RPC_LATENCY.labels(service, name).observe(time.perf_counter() - started)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        inner = _behavior_of(handler)
        streaming_in = bool(handler.request_streaming)

        def checked(request: Any) -> Any:
            if streaming_in:
                return _checked(request)
            check_request(request)
            return request

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._rpc(context, method):
                stream: AsyncIterator[Any] = inner(checked(request), context)
                async for item in stream:
                    yield item

        async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._rpc(context, method):
                return await inner(checked(request), context)
            return None  # failed: the status was sent by _fail

        behavior = stream_behavior if handler.response_streaming else unary_behavior
        return rewrap(handler, behavior, _safe_deserializer(handler.request_deserializer))


SERVICE_KEY_HEADER = tls.SERVICE_KEY_HEADER


class ServiceKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Gate of an internal listener: every call (health included) must present the service key
    shared by docfactory's own processes (constant-time comparison). End-user keys alone are
    refused with UNAUTHENTICATED / SERVICE_CREDENTIALS_REQUIRED."""

    def __init__(self, service_key: str) -> None:
        self._key = service_key.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == SERVICE_KEY_HEADER:
                presented = value.encode() if isinstance(value, str) else bytes(value)
        if hmac.compare_digest(presented, self._key):
            return await continuation(handler_call_details)
        err = error_for_code(
            grpc.StatusCode.UNAUTHENTICATED,
            "this listener is internal: it accepts only docfactory's service credentials",
            "SERVICE_CREDENTIALS_REQUIRED",
        )
        status = to_status(err)

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(status.code, status.details, status.trailing_metadata)

        handler = await continuation(handler_call_details)
        return None if handler is None else rewrap(handler, refuse)


def interceptor_chain(
    keys: Authenticator,
    *,
    authorize: Callable[[str, Principal], None] | None = None,
    on_refusal: Callable[[str, Principal, DocfactoryError], None] | None = None,
    identity: tls.ServiceIdentity | None = None,
    service_key: str = "",
    before: Sequence[grpc.aio.ServerInterceptor] = (),
) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors of a docfactory server, in order: ``before`` (e.g. the CLI's), tracing
    (when on: its span covers authentication and errors), the service-key gate (an internal
    listener, when ``service_key`` is given), then ``ServiceInterceptor``."""
    chain: list[grpc.aio.ServerInterceptor] = [*before, *tracing.server_interceptors()]
    if service_key:
        chain.append(ServiceKeyInterceptor(service_key))
    chain.append(ServiceInterceptor(keys, authorize, on_refusal, identity))
    return chain


def status_code_name(code: int) -> str:
    name: str = code_pb2.Code.Name(code)
    return name
