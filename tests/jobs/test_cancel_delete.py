"""CancelJob / DeleteJob over a real server, real DBOS queue on SQLite, a real worker process
and moto's S3 server: a cancelled job indexes nothing more, a finished job cannot be cancelled,
a running job cannot be deleted, a deleted job is gone while its documents stay."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as pb_grpc
from tests.helpers import error_reason
from tests.jobs.conftest import Workers
from tests.jobs.test_bulk import MD, put, wait_job


async def _refused(coro: Any, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert (err.value.code(), error_reason(err.value)) == (code, reason)


@pytest.mark.slow
async def test_cancel_then_delete(
    jobs_env: Any,
    jobs_server: Any,
    workers: Workers,
    minio_client: Any,
    bucket: str,
    tmp_path: Path,
) -> None:
    for i in range(4):
        put(minio_client, bucket, f"lot/note-{i}.txt", f"Note {i} sur le bail commercial.".encode())
    put(minio_client, bucket, "seul/a.txt", b"Compte rendu du comite de direction.")
    settings, env = jobs_env()
    server = await jobs_server(settings)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.JobsServiceStub(channel)
        ing = ing_grpc.IngestionServiceStub(channel)
        # No worker yet: the job waits in the queue; cancel it.
        job = (
            await stub.IngestPrefix(
                pb.IngestPrefixRequest(bucket=bucket, prefix="lot/"), metadata=MD
            )
        ).job
        await _refused(
            stub.DeleteJob(pb.DeleteJobRequest(name=job.name), metadata=MD),
            grpc.StatusCode.FAILED_PRECONDITION,
            "JOB_NOT_FINISHED",
        )
        cancelled = (await stub.CancelJob(pb.CancelJobRequest(name=job.name), metadata=MD)).job
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        again = (await stub.CancelJob(pb.CancelJobRequest(name=job.name), metadata=MD)).job
        assert again.state == pb.JOB_STATE_CANCELLED  # idempotent
        # Another tenant cannot see, cancel or delete it.
        other = (("x-api-key", "key-globex"),)
        await _refused(
            stub.CancelJob(pb.CancelJobRequest(name=job.name), metadata=other),
            grpc.StatusCode.NOT_FOUND,
            "JOB_NOT_FOUND",
        )
        # A worker starts and a second job runs to completion; the cancelled one stays empty.
        workers.start(env, server.address, tmp_path / "w.log")
        job2 = (
            await stub.IngestPrefix(
                pb.IngestPrefixRequest(bucket=bucket, prefix="seul/"), metadata=MD
            )
        ).job
        done = await wait_job(stub, job2.name, limit_s=240)
        assert done.state == pb.JOB_STATE_SUCCEEDED and done.documents_indexed == 1
        await asyncio.sleep(2)  # room for a wrongly resumed workflow of the cancelled job
        still = (await stub.GetJob(pb.GetJobRequest(name=job.name), metadata=MD)).job
        assert still.state == pb.JOB_STATE_CANCELLED and still.documents_indexed == 0
        docs = await ing.ListDocuments(ing_pb.ListDocumentsRequest(page_size=100), metadata=MD)
        assert [d.source_uri for d in docs.documents] == [f"s3://{bucket}/seul/a.txt"]
        await _refused(
            stub.CancelJob(pb.CancelJobRequest(name=job2.name), metadata=MD),
            grpc.StatusCode.FAILED_PRECONDITION,
            "JOB_ALREADY_FINISHED",
        )
        # Delete both: gone from Get/List, the indexed document stays.
        for name in (job.name, job2.name):
            await stub.DeleteJob(pb.DeleteJobRequest(name=name), metadata=MD)
            await _refused(
                stub.GetJob(pb.GetJobRequest(name=name), metadata=MD),
                grpc.StatusCode.NOT_FOUND,
                "JOB_NOT_FOUND",
            )
        listed = await stub.ListJobs(pb.ListJobsRequest(), metadata=MD)
        assert list(listed.jobs) == []
        docs = await ing.ListDocuments(ing_pb.ListDocumentsRequest(page_size=100), metadata=MD)
        assert len(docs.documents) == 1


async def test_list_jobs_keyset_pages(jobs_env: Any, jobs_server: Any, bucket: str) -> None:
    settings, _ = jobs_env()
    server = await jobs_server(settings)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.JobsServiceStub(channel)
        names = []
        for p in ("a/", "b/", "c/"):
            req = pb.IngestPrefixRequest(bucket=bucket, prefix=p)
            names.append((await stub.IngestPrefix(req, metadata=MD)).job.name)
        first = await stub.ListJobs(pb.ListJobsRequest(page_size=2), metadata=MD)
        assert [j.name for j in first.jobs] == names[::-1][:2] and first.next_page_token
        await stub.IngestPrefix(pb.IngestPrefixRequest(bucket=bucket, prefix="d/"), metadata=MD)
        rest = await stub.ListJobs(
            pb.ListJobsRequest(page_size=2, page_token=first.next_page_token), metadata=MD
        )
        assert [j.name for j in rest.jobs] == [names[0]] and not rest.next_page_token
        await _refused(
            stub.ListJobs(pb.ListJobsRequest(page_token="garbage"), metadata=MD),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
        # Job documents page by keyset too; a token of another job, a forged one, a negative
        # size are refused.
        other = await stub.ListJobDocuments(
            pb.ListJobDocumentsRequest(name=names[1], page_token=""), metadata=MD
        )
        assert not other.next_page_token
        foreign = first.next_page_token  # a ListJobs token is not a job-documents token
        for req, reason in (
            (pb.ListJobDocumentsRequest(name=names[0], page_token=foreign), "INVALID_PAGE_TOKEN"),
            (pb.ListJobDocumentsRequest(name=names[0], page_token="%%%"), "INVALID_PAGE_TOKEN"),
            (pb.ListJobDocumentsRequest(name=names[0], page_size=-1), "INVALID_PAGE_SIZE"),
        ):
            await _refused(
                stub.ListJobDocuments(req, metadata=MD), grpc.StatusCode.INVALID_ARGUMENT, reason
            )
