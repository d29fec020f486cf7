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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from docfactory.core import metrics, tls, tracing
from docfactory.core.auth import (
    Authenticator,
    KeyRefused,
    Principal,
    act_on_behalf,
    audited_in_scope,
    begin_audit_scope,
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


#: Trailing metadata of a failure already written to the audit chain: a service calling
#: another (the same caller, forwarded) does not write it a second time.
AUDITED_TRAILER = "x-docfactory-audited"

#: Audit callback: (method, principal, error, context) -> whether the failure was recorded
#: (the governance gate's ``audit_refusal`` decides which codes are audited).
OnRefusal = Callable[[str, Principal, DocfactoryError, Mapping[str, str]], bool]


def _split(method: str) -> tuple[str, str]:
    parts = method.strip("/").split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else (method, "")


_ID_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
    }
)


def requested_ids(request: Any) -> dict[str, str]:
    """The identifiers a request names (top-level ``name``, ``*_id``, ``*_seq`` scalars), for
    the audit record of a refusal: a cross-tenant read is NOT_FOUND, and its record says what
    was asked for. Printable characters only, 128 at most."""
    if not isinstance(request, Message):
        return {}
    out: dict[str, str] = {}
    for fd in request.DESCRIPTOR.fields:
        if fd.type not in _ID_TYPES or fd.is_repeated:
            continue
        if not (fd.name == "name" or fd.name.endswith(("_id", "_seq"))):
            continue
        value = getattr(request, fd.name)
        if value:
            out[fd.name] = "".join(c for c in str(value)[:128] if c.isprintable())
    return out


@dataclass
class _Call:
    """What the interceptor learns of one RPC's caller, for the audit record of a failure."""

    caller: Principal | None = None  # the key that authenticated (before acting on behalf)
    principal: Principal | None = None  # who the RPC runs as
    context: dict[str, str] = field(default_factory=dict)  # ids requested, on-behalf tenant

    @property
    def who(self) -> Principal | None:
        return self.principal or self.caller


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        keys: Authenticator,
        authorize: Callable[[str, Principal], None] | None = None,
        on_refusal: OnRefusal | None = None,
        identity: tls.ServiceIdentity | None = None,
    ) -> None:
        self._keys = keys
        # This server's service identity: which peers may attest a caller (core/tls.py).
        self._identity = identity
        # Role checks by RPC (the governance gate's ``authorize_method``), after authentication.
        self._authorize = authorize
        # Audit of the failures (refusals, INTERNAL) of an identified caller.
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

    def _begin(self, context: grpc.aio.ServicerContext, method: str, call: _Call) -> Principal:
        """Authenticate and authorize; ``call`` learns the caller as soon as it is known, so a
        refusal after that point (on-behalf, attestation, role) is audited under its key."""
        remaining = context.time_remaining()
        set_deadline(time.monotonic() + remaining if remaining is not None else None)
        begin_audit_scope()
        md = context.invocation_metadata() or ()
        subject = tls.peer_subject(context)
        # An internal peer (client certificate or service key) attests the end user.
        try:
            attested = self._identity.attested_principal(md, subject) if self._identity else None
        except DocfactoryError:
            # A forged attestation: audited under the API key the call carries, if it has one.
            with contextlib.suppress(DocfactoryError):
                call.caller = self._keys.authenticate(key_from_metadata(md), mtls_subject=subject)
            raise
        if attested is not None:
            principal = call.caller = attested
        else:
            try:
                call.caller = self._keys.authenticate(key_from_metadata(md), mtls_subject=subject)
            except KeyRefused as refused:  # a known key (expired...): audited under it
                call.caller = refused.principal
                raise
            on_behalf = on_behalf_from_metadata(md)
            if on_behalf and on_behalf != call.caller.tenant:
                call.context["on_behalf_of"] = on_behalf[:128]
            principal = act_on_behalf(call.caller, on_behalf, self._keys.knows_tenant)
        call.principal = principal
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
        call: _Call | None = None,
    ) -> None:
        if isinstance(exc, DocfactoryError):
            err = exc
        elif isinstance(exc, grpc.aio.AioRpcError):
            err = error_from_rpc(exc)
            # Already in the chain when the service called wrote it (same caller, forwarded).
            if any(k == AUDITED_TRAILER for k, _ in exc.trailing_metadata() or ()):
                err.audited = True
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
        err = self._audit(context, method, err, call or _Call())
        status = to_status(err)
        trailers = tuple(status.trailing_metadata or ())
        if err.audited:
            trailers += ((AUDITED_TRAILER, "1"),)
        await context.abort(status.code, status.details, trailers)

    def _audit(
        self, context: grpc.aio.ServicerContext, method: str, err: DocfactoryError, call: _Call
    ) -> DocfactoryError:
        """Write a failure to the audit chain once: not when a layer below did (``audited``,
        or a record of the same outcome during this RPC). Without an identified caller (no
        key, an unknown key) there is no tenant's chain to write to: logged only."""
        if err.audited or self._on_refusal is None or audited_in_scope(err.reason):
            return err
        who = call.who
        if who is None:
            if err.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                log.info(
                    "%s refused for an unidentified caller (%s): %s",
                    method,
                    _peer(context),
                    err.reason,
                )
            return err
        try:
            err.audited = self._on_refusal(method, who, err, call.context)
        except Exception:
            log.exception("audit of a refusal failed in %s", method)
            return error_for_code(grpc.StatusCode.UNAVAILABLE, "audit unavailable", "AUDIT_FAILED")
        return err

    @contextlib.asynccontextmanager
    async def _rpc(
        self, context: grpc.aio.ServicerContext, method: str, request: Any = None
    ) -> AsyncIterator[None]:
        """Around one RPC: in-flight gauge, authentication and role check; on the way out the
        request metrics and, for a failure, the gRPC status with ErrorInfo and its audit
        record (``_fail``)."""
        service, name = _split(method)
        started = time.perf_counter()
        tenant, code = "-", "OK"
        call = _Call()
        gauge = metrics.RPC_IN_FLIGHT.labels(service, name)
        gauge.inc()
        try:
            call.context.update(requested_ids(request))
            principal = self._begin(context, method, call)
            tenant = principal.tenant
            yield
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code = _code_of(exc)
            await self._fail(context, exc, method, call)
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
            async with self._rpc(context, method, None if streaming_in else request):
                stream: AsyncIterator[Any] = inner(checked(request), context)
                async for item in stream:
                    yield item

        async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._rpc(context, method, request):
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
    on_refusal: OnRefusal | None = None,
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


def _peer(context: grpc.aio.ServicerContext) -> str:
    try:
        return str(context.peer())[:128]
    except Exception:  # a closed call
        return "-"


def status_code_name(code: int) -> str:
    name: str = code_pb2.Code.Name(code)
    return name
