"""One exception root for the whole package, mapped to gRPC status in one interceptor.

Each error carries a canonical gRPC code and an ``ErrorInfo`` reason (UPPER_SNAKE) in the
``docfactory`` domain, following AIP-193.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "docfactory"


class DocfactoryError(Exception):
    """Root of every error docfactory raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason: str = "INTERNAL"
    #: Set once the refusal has been written to the audit chain (so it is written once).
    audited: bool = False

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_seconds: float | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after_seconds = retry_after_seconds
        # (field path, description) pairs, sent as a google.rpc.BadRequest detail.
        self.field_violations: list[tuple[str, str]] = list(field_violations)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidArgument(DocfactoryError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class FailedPrecondition(DocfactoryError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class NotFound(DocfactoryError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DocfactoryError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class Unauthenticated(DocfactoryError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DocfactoryError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(DocfactoryError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(DocfactoryError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(DocfactoryError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Internal(DocfactoryError):
    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"


class ConfigError(DocfactoryError):
    """Invalid configuration; raised at start, never on the request path."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "INVALID_CONFIGURATION"


_BY_CODE: dict[grpc.StatusCode, type[DocfactoryError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        NotFound,
        AlreadyExists,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}


def error_for_code(
    code: grpc.StatusCode, message: str, reason: str | None = None
) -> DocfactoryError:
    """The docfactory error class for a gRPC code (used to re-raise downstream failures)."""
    cls = _BY_CODE.get(code, Internal)
    return cls(message, reason=reason)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 16:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def infrastructure_error(exc: BaseException) -> DocfactoryError | None:
    """The clear error for an infrastructure failure that reached a handler, or None.

    * the data disk is full (``ENOSPC``/``EDQUOT``, or SQLite's "database or disk is full"):
      RESOURCE_EXHAUSTED, reason ``DISK_FULL`` (nothing was half-written: retry once space
      is back);
    * the database is unreachable (connection refused or dropped, server restarting):
      UNAVAILABLE, reason ``DATABASE_UNAVAILABLE`` (retry with backoff).
    """
    import errno
    import sqlite3

    from sqlalchemy import exc as sa_exc

    chain = _chain(exc)
    for e in chain:
        full = (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or (
            isinstance(e, sqlite3.OperationalError | sa_exc.OperationalError)
            and "disk is full" in str(e)
        )
        if full:
            return ResourceExhausted(
                "the data disk is full: nothing was stored, retry once space is freed",
                reason="DISK_FULL",
            )
    for e in chain:
        if not isinstance(e, sa_exc.DBAPIError):
            continue
        text = str(e.orig if e.orig is not None else e)
        if "database is locked" in text:
            return Unavailable("the database is busy, retry", reason="DATABASE_BUSY")
        # SQLite's OperationalError also means "no such table" and the like: bugs, left to
        # INTERNAL; a server database's OperationalError/InterfaceError is its connection.
        embedded = isinstance(e.orig, sqlite3.Error) and "unable to open" not in text
        if e.connection_invalidated or (
            isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError) and not embedded
        ):
            return Unavailable(
                "the database is unavailable, retry with backoff", reason="DATABASE_UNAVAILABLE"
            )
    return None


def error_from_rpc(exc: grpc.RpcError) -> DocfactoryError:
    """Turn a downstream gRPC failure back into a docfactory error, keeping its code and its
    ErrorInfo reason (read from the rich status by ``grpc_status``)."""
    call: grpc.Call = exc  # type: ignore[assignment]  # an RpcError from a call is a Call
    reason = None
    try:
        status = rpc_status.from_call(call)
    except (ValueError, DecodeError):  # malformed or inconsistent details: keep the code
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
                break
    return error_for_code(call.code(), call.details() or call.code().name, reason)
