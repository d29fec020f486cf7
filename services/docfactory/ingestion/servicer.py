"""IngestionService transport: proto <-> domain only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from docfactory.core.auth import current_principal
from docfactory.core.errors import InvalidArgument
from docfactory.core.validation import shorten
from docfactory.ingestion.adapters.documents import DocumentRecord
from docfactory.ingestion.contracts import BackgroundSubmitter
from docfactory.ingestion.service import IngestionService
from docfactory.ingestion.staging import staged_prefix
from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc

_STATE = {
    "PROCESSING": pb.DOCUMENT_STATE_PROCESSING,
    "INDEXED": pb.DOCUMENT_STATE_INDEXED,
    "FAILED": pb.DOCUMENT_STATE_FAILED,
}
_STATE_NAME = {v: k for k, v in _STATE.items()}


def document_to_proto(r: DocumentRecord) -> pb.Document:
    created, updated = Timestamp(), Timestamp()
    created.FromDatetime(r.created_at)
    updated.FromDatetime(r.updated_at)
    return pb.Document(
        name=f"documents/{r.document_id}" if r.document_id else "",
        document_id=r.document_id,
        collection=r.collection,
        filename=r.filename,
        source_uri=r.source_uri,
        sha256=r.sha256,
        version=r.version,
        classification=r.classification,  # type: ignore[arg-type]
        state=_STATE.get(r.state, pb.DOCUMENT_STATE_UNSPECIFIED),
        mime_type=r.mime_type,
        page_count=r.page_count,
        chunk_count=r.chunk_count,
        error_reason=r.error_reason,
        error_message=r.error_message,
        metadata=r.metadata,
        create_time=created,
        update_time=updated,
        size_bytes=r.size_bytes,
    )


def parse_name(name: str) -> str:
    doc_id = name.removeprefix("documents/")
    if not doc_id or "/" in doc_id or len(doc_id) > 64:
        raise InvalidArgument(
            f"invalid document name {shorten(name)}: expected 'documents/{{document_id}}'",
            reason="INVALID_DOCUMENT_NAME",
        )
    return doc_id


class IngestionServicer(pb_grpc.IngestionServiceServicer):
    def __init__(
        self,
        service: IngestionService,
        max_file_bytes: int,
        background: BackgroundSubmitter | None = None,
        staging_dir: Path | None = None,
    ) -> None:
        self._svc = service
        self._max = max_file_bytes
        self._staging = staging_dir
        # Set after construction when the jobs service is attached to the same server.
        self.background = background

    async def UploadDocument(
        self,
        request_iterator: AsyncIterator[pb.UploadDocumentRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.UploadDocumentResponse:
        tenant = current_principal().tenant
        meta: pb.UploadMetadata | None = None
        fd, tmp = tempfile.mkstemp(prefix=staged_prefix(), dir=self._staging)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for msg in request_iterator:
                    kind = msg.WhichOneof("content")
                    if kind == "metadata":
                        if meta is not None:
                            raise InvalidArgument(
                                "metadata must be sent once, in the first message",
                                reason="DUPLICATE_METADATA",
                            )
                        meta = msg.metadata
                    elif kind == "data":
                        if meta is None:
                            raise InvalidArgument(
                                "the first message must carry the metadata", reason="METADATA_FIRST"
                            )
                        size += len(msg.data)
                        if size > self._max:
                            raise InvalidArgument(
                                f"upload exceeds the limit of {self._max} bytes",
                                reason="FILE_TOO_LARGE",
                            )
                        out.write(msg.data)
            if meta is None:
                raise InvalidArgument("empty upload: no metadata received", reason="METADATA_FIRST")
            if meta.background:
                record, job_id = await self._svc.submit_background(
                    self.background,
                    tenant=tenant,
                    path=Path(tmp),
                    filename=meta.filename,
                    collection=meta.collection,
                    classification=int(meta.classification),
                    metadata=dict(meta.metadata),
                    source_uri=meta.source_uri,
                )
                return pb.UploadDocumentResponse(
                    document=document_to_proto(record), job=f"jobs/{job_id}"
                )
            result = await self._svc.ingest_file(
                tenant=tenant,
                path=Path(tmp),
                filename=meta.filename,
                collection=meta.collection,
                classification=int(meta.classification),
                metadata=dict(meta.metadata),
                source_uri=meta.source_uri,
            )
            if result.error is not None:
                raise result.error
            return pb.UploadDocumentResponse(
                document=document_to_proto(result.record), unchanged=result.unchanged
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    async def IngestPath(
        self, request: pb.IngestPathRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IngestPathResponse]:
        if not request.paths:
            raise InvalidArgument("paths must not be empty", reason="PATHS_REQUIRED")
        tenant = current_principal().tenant
        async for path, result, i, total in self._svc.ingest_paths(
            tenant=tenant,
            paths=list(request.paths),
            collection=request.collection,
            classification=int(request.classification),
        ):
            yield pb.IngestPathResponse(
                path=str(path),
                document=document_to_proto(result.record),
                unchanged=result.unchanged,
                processed=i,
                total=total,
            )

    async def GetDocument(
        self, request: pb.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDocumentResponse:
        rec = await self._svc.get(current_principal().tenant, parse_name(request.name))
        return pb.GetDocumentResponse(document=document_to_proto(rec))

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDocumentsResponse:
        records, token, total = await self._svc.list(
            current_principal().tenant,
            collection=request.collection,
            state=_STATE_NAME.get(request.state, ""),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListDocumentsResponse(
            documents=[document_to_proto(r) for r in records],
            next_page_token=token,
            total_size=total,
        )

    async def UpdateDocument(
        self, request: pb.UpdateDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateDocumentResponse:
        rec = await self._svc.update(
            current_principal().tenant,
            parse_name(request.document.name),
            list(request.update_mask.paths),
            classification=int(request.document.classification),
            metadata=dict(request.document.metadata),
        )
        return pb.UpdateDocumentResponse(document=document_to_proto(rec))

    async def DeleteDocument(
        self, request: pb.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteDocumentResponse:
        n = await self._svc.delete(current_principal().tenant, parse_name(request.name))
        return pb.DeleteDocumentResponse(deleted_chunks=n)


def register(
    server: grpc.aio.Server,
    service: IngestionService,
    max_file_bytes: int,
    background: BackgroundSubmitter | None = None,
    staging_dir: Path | None = None,
) -> str:
    pb_grpc.add_IngestionServiceServicer_to_server(
        IngestionServicer(service, max_file_bytes, background, staging_dir), server
    )
    return str(pb.DESCRIPTOR.services_by_name["IngestionService"].full_name)
