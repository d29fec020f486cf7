"""Processing of one object: fetch -> expand when an archive -> upload each document to
IngestionService through its gRPC stub -> outcomes. Also deletion of an object's documents.

Effects are idempotent (document id from tenant/collection/source URI, point ids from document
id/version/index, unchanged bytes are a no-op), so a retried or recovered object rewrites nothing.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, cast

import grpc

from docfactory.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveMember,
    MemberError,
    is_archive,
    iter_archive,
    member_source_uri,
)
from docfactory.core.auth import API_KEY_HEADER, ON_BEHALF_HEADER
from docfactory.core.interceptors import error_from_rpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.repo import DELETED, FAILED, INDEXED, UNCHANGED, DocOutcome
from docfactory.jobs.storage import ObjectStore

CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
# Codes worth retrying the whole object for (transient); others are a document's own failure.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


class TransientError(Exception):
    """A failure worth retrying the object for (storage or a service unavailable)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)  # both in args: picklable (DBOS records step errors)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


@dataclass(frozen=True)
class Target:
    tenant: str
    collection: str
    bucket: str
    classification: int
    etag: str = ""  # of the object being processed: kept in each document's metadata


def _object_metadata(target: Target) -> dict[str, str]:
    meta = {"bucket": target.bucket}
    if target.etag:
        meta["etag"] = target.etag
    return meta


class Uploader:
    """Streams files to IngestionService.UploadDocument (sync stub, the worker's API key).

    Every call names the job's tenant in ``x-docfactory-on-behalf-of``: the server accepts it
    from a key with the ``worker`` role (or a key of that very tenant) and refuses it otherwise,
    so a worker pool shared by subsidiaries writes each document into its job's tenant.
    """

    def __init__(self, stub: ing_grpc.IngestionServiceStub, api_key: str, timeout: float) -> None:
        self._stub = stub
        self._api_key = api_key
        self._timeout = timeout

    def _md(self, tenant: str) -> tuple[tuple[str, str], ...]:
        return ((API_KEY_HEADER, self._api_key), (ON_BEHALF_HEADER, tenant))

    def upload(
        self,
        target: Target,
        source_uri: str,
        filename: str,
        stream: IO[bytes],
        metadata: Mapping[str, str] | None = None,
    ) -> DocOutcome:
        def requests() -> Iterator[ing_pb.UploadDocumentRequest]:
            yield ing_pb.UploadDocumentRequest(
                metadata=ing_pb.UploadMetadata(
                    filename=filename,
                    collection=target.collection,
                    classification=target.classification,  # type: ignore[arg-type]
                    source_uri=source_uri,
                    metadata=_object_metadata(target) if metadata is None else dict(metadata),
                )
            )
            while chunk := stream.read(CHUNK):
                yield ing_pb.UploadDocumentRequest(data=chunk)

        try:
            resp = self._stub.UploadDocument(
                requests(), metadata=self._md(target.tenant), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            err = error_from_rpc(exc)  # type: ignore[arg-type]
            if exc.code() in RETRYABLE:  # type: ignore[attr-defined]
                raise TransientError(err.reason, err.message) from exc
            return DocOutcome(source_uri, "", FAILED, err.reason, err.message)
        doc = resp.document
        if doc.state == ing_pb.DOCUMENT_STATE_FAILED:
            return DocOutcome(
                source_uri, doc.document_id, FAILED, doc.error_reason, doc.error_message
            )
        return DocOutcome(
            source_uri,
            doc.document_id,
            UNCHANGED if resp.unchanged else INDEXED,
            chunk_count=doc.chunk_count,
        )

    def delete(self, tenant: str, document_id: str) -> None:
        try:
            self._stub.DeleteDocument(
                ing_pb.DeleteDocumentRequest(name=f"documents/{document_id}"),
                metadata=self._md(tenant),
                timeout=self._timeout,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return
            err = error_from_rpc(exc)  # type: ignore[arg-type]
            raise TransientError(err.reason, err.message) from exc


class _Peeked:
    """Non-seekable stream with already-read head bytes put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data = self._head + self._rest.read()
                self._head = b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read() if size is None or size < 0 else self._rest.read(size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def process_object(
    store: ObjectStore,
    uploader: Uploader,
    target: Target,
    key: str,
    limits: ArchiveLimits,
    upload_concurrency: int,
    on_outcome: Callable[[DocOutcome], None] | None = None,
) -> list[DocOutcome]:
    """Ingest one object (a file, or every member of an archive); return the outcomes."""
    uri = s3_uri(target.bucket, key)
    name = PurePosixPath(key).name or key
    outcomes: list[DocOutcome] = []
    lock = threading.Lock()

    def add(o: DocOutcome) -> None:
        with lock:
            outcomes.append(o)
        if on_outcome is not None:
            on_outcome(o)

    try:
        ctx = store.open(target.bucket, key)
        stream = ctx.__enter__()
    except Exception as exc:
        raise TransientError("OBJECT_UNREADABLE", f"{uri}: {exc}") from exc
    try:
        head = stream.read(512)
        body = cast(IO[bytes], _Peeked(head, stream))
        if not is_archive(name, head):
            add(uploader.upload(target, uri, name, body))
            return outcomes
        _expand(body, name, uri, uploader, target, limits, upload_concurrency, add)
        return outcomes
    finally:
        with contextlib.suppress(Exception):
            ctx.__exit__(None, None, None)


def _expand(
    body: IO[bytes],
    name: str,
    uri: str,
    uploader: Uploader,
    target: Target,
    limits: ArchiveLimits,
    upload_concurrency: int,
    add: Callable[[DocOutcome], None],
) -> None:
    pending: set[cf.Future[DocOutcome]] = set()

    def drain(max_pending: int) -> None:
        while len(pending) > max_pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                pending.discard(fut)
                add(fut.result())  # TransientError propagates: the object is retried

    def upload_spooled(member_uri: str, filename: str, spool: Any) -> DocOutcome:
        try:
            spool.seek(0)
            return uploader.upload(target, member_uri, filename, spool)
        finally:
            spool.close()

    with cf.ThreadPoolExecutor(max_workers=max(1, upload_concurrency)) as pool:
        try:
            for item in iter_archive(body, name, limits):
                if isinstance(item, MemberError):
                    member_uri = member_source_uri(uri, item.path)
                    add(DocOutcome(member_uri, "", FAILED, item.reason, item.message))
                    continue
                assert isinstance(item, ArchiveMember)
                member_uri = member_source_uri(uri, item.path)
                filename = PurePosixPath(item.path.split("!/")[-1]).name or name  # "": a mail body
                # Consume the member now (sequential contract), upload it concurrently.
                spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
                try:
                    with item.open() as src:
                        while chunk := src.read(CHUNK):
                            spool.write(chunk)
                except ArchiveError as exc:
                    spool.close()
                    add(DocOutcome(member_uri, "", FAILED, exc.reason, exc.message))
                    continue
                pending.add(pool.submit(upload_spooled, member_uri, filename, spool))
                drain(upload_concurrency * 2)
            drain(0)
        finally:
            for fut in pending:
                fut.cancel()


def process_upload(
    store: ObjectStore,
    uploader: Uploader,
    target: Target,
    key: str,
    source_uri: str,
    filename: str,
    metadata: Mapping[str, str],
) -> DocOutcome:
    """Ingest one staged background upload as the document the caller described."""
    try:
        ctx = store.open(target.bucket, key)
        stream = ctx.__enter__()
    except Exception as exc:
        raise TransientError("OBJECT_UNREADABLE", f"{s3_uri(target.bucket, key)}: {exc}") from exc
    try:
        return uploader.upload(target, source_uri, filename, stream, metadata)
    finally:
        with contextlib.suppress(Exception):
            ctx.__exit__(None, None, None)


def delete_documents(uploader: Uploader, tenant: str, docs: dict[str, str]) -> list[DocOutcome]:
    out = []
    for uri, doc_id in sorted(docs.items()):
        uploader.delete(tenant, doc_id)
        out.append(DocOutcome(uri, doc_id, DELETED))
    return out
