"""JobsService transport: proto <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from docfactory.core.auth import current_principal
from docfactory.core.errors import InvalidArgument
from docfactory.core.validation import shorten
from docfactory.jobs.repo import DELETED, FAILED, INDEXED, UNCHANGED, DocOutcome, JobRow
from docfactory.jobs.service import JobsService
from docfactory.jobs.v1 import jobs_service_pb2 as pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as pb_grpc

_STATE = {
    "QUEUED": pb.JOB_STATE_QUEUED,
    "RUNNING": pb.JOB_STATE_RUNNING,
    "SUCCEEDED": pb.JOB_STATE_SUCCEEDED,
    "FAILED": pb.JOB_STATE_FAILED,
    "CANCELLED": pb.JOB_STATE_CANCELLED,
}
_STATE_NAME = {v: k for k, v in _STATE.items()}
_OUTCOME = {
    INDEXED: pb.DOCUMENT_OUTCOME_INDEXED,
    UNCHANGED: pb.DOCUMENT_OUTCOME_UNCHANGED,
    FAILED: pb.DOCUMENT_OUTCOME_FAILED,
    DELETED: pb.DOCUMENT_OUTCOME_DELETED,
}
_OUTCOME_NAME = {v: k for k, v in _OUTCOME.items()}


def job_to_proto(r: JobRow) -> pb.Job:
    created, updated = Timestamp(), Timestamp()
    created.FromDatetime(r.created_at)
    updated.FromDatetime(r.updated_at)
    return pb.Job(
        name=f"jobs/{r.job_id}",
        job_id=r.job_id,
        kind=r.kind,
        state=_STATE.get(r.state, pb.JOB_STATE_UNSPECIFIED),
        bucket=r.bucket,
        prefix=r.prefix,
        collection=r.collection,
        objects_total=r.objects_total,
        objects_done=r.objects_done,
        objects_skipped=r.objects_skipped,
        documents_indexed=r.documents.get(INDEXED, 0),
        documents_unchanged=r.documents.get(UNCHANGED, 0),
        documents_failed=r.documents.get(FAILED, 0),
        documents_deleted=r.documents.get(DELETED, 0),
        error_reason=r.error_reason,
        error_message=r.error_message,
        create_time=created,
        update_time=updated,
        scan_complete=r.scan_complete,
    )


def doc_to_proto(d: DocOutcome) -> pb.JobDocument:
    return pb.JobDocument(
        source_uri=d.source_uri,
        document_id=d.document_id,
        outcome=_OUTCOME.get(d.outcome, pb.DOCUMENT_OUTCOME_UNSPECIFIED),
        reason=d.reason,
        message=d.message,
        chunk_count=d.chunk_count,
    )


def _job_id(name: str) -> str:
    job_id = name.removeprefix("jobs/")
    if not job_id or "/" in job_id or len(job_id) > 64:
        raise InvalidArgument(
            f"invalid job name {shorten(name)}: expected 'jobs/{{job_id}}'",
            reason="INVALID_JOB_NAME",
        )
    return job_id


class JobsServicer(pb_grpc.JobsServiceServicer):
    def __init__(self, service: JobsService) -> None:
        self._svc = service

    async def IngestPrefix(
        self, request: pb.IngestPrefixRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestPrefixResponse:
        row = await self._svc.ingest_prefix(
            current_principal().tenant, request.bucket, request.prefix, request.collection
        )
        return pb.IngestPrefixResponse(job=job_to_proto(row))

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelJobResponse:
        row = await self._svc.cancel(current_principal().tenant, _job_id(request.name))
        return pb.CancelJobResponse(job=job_to_proto(row))

    async def DeleteJob(
        self, request: pb.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteJobResponse:
        await self._svc.delete(current_principal().tenant, _job_id(request.name))
        return pb.DeleteJobResponse()

    async def GetJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJobResponse:
        row = await self._svc.get(current_principal().tenant, _job_id(request.name))
        return pb.GetJobResponse(job=job_to_proto(row))

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        rows, token, total = await self._svc.list(
            current_principal().tenant,
            _STATE_NAME.get(request.state, ""),
            request.page_size,
            request.page_token,
        )
        return pb.ListJobsResponse(
            jobs=[job_to_proto(r) for r in rows], next_page_token=token, total_size=total
        )

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchJobResponse]:
        async for row in self._svc.watch(current_principal().tenant, _job_id(request.name)):
            yield pb.WatchJobResponse(job=job_to_proto(row))

    async def ListJobDocuments(
        self, request: pb.ListJobDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobDocumentsResponse:
        docs, token, total = await self._svc.list_documents(
            current_principal().tenant,
            _job_id(request.name),
            _OUTCOME_NAME.get(request.outcome, ""),
            request.page_size,
            request.page_token,
        )
        return pb.ListJobDocumentsResponse(
            documents=[doc_to_proto(d) for d in docs], next_page_token=token, total_size=total
        )


def register(server: grpc.aio.Server, service: JobsService) -> str:
    pb_grpc.add_JobsServiceServicer_to_server(JobsServicer(service), server)
    name: str = pb.DESCRIPTOR.services_by_name["JobsService"].full_name
    return name
