"""UploadDocument with background=true: the call returns a job at once; a worker indexes it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as pb_grpc
from tests.helpers import error_reason
from tests.jobs.conftest import ROOT, Workers, data_file
from tests.jobs.test_bulk import wait_job

MD = (("x-api-key", "key-acme"),)
CONFIDENTIAL = 3


def _requests(data: bytes, **meta: Any) -> Iterator[ing_pb.UploadDocumentRequest]:
    yield ing_pb.UploadDocumentRequest(metadata=ing_pb.UploadMetadata(background=True, **meta))
    for i in range(0, len(data), 64 * 1024):
        yield ing_pb.UploadDocumentRequest(data=data[i : i + 64 * 1024])


async def test_background_upload_returns_a_job_and_a_worker_indexes_it(
    jobs_env: Any, jobs_server: Any, workers: Workers, minio_client: Any, tmp_path: Path
) -> None:
    docx = data_file("travail-docs", "docx")
    sample = sorted(docx.glob("*.docx"))[0]
    settings, env = jobs_env()  # SQLite + DBOS on SQLite, staging in the S3 server
    server = await jobs_server(settings)
    async with grpc.aio.insecure_channel(server.address) as channel:
        ing = ing_grpc.IngestionServiceStub(channel)
        jobs = pb_grpc.JobsServiceStub(channel)
        # Bad input is refused before anything is staged or queued.
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ing.UploadDocument(_requests(b"abc", collection="rh"), metadata=MD)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(exc.value) == "FILENAME_REQUIRED"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ing.UploadDocument(
                _requests(b"abc", filename="a.txt", collection="Bad Name!"), metadata=MD
            )
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await jobs.ListJobs(pb.ListJobsRequest(), metadata=MD)).jobs == []

        # No worker yet: the call still returns at once, with a queued job.
        started = time.monotonic()
        resp = await ing.UploadDocument(
            _requests(
                sample.read_bytes(),
                filename=sample.name,
                collection="rh",
                classification=CONFIDENTIAL,
                source_uri="ged://rh/modeles/" + sample.name,
                metadata={"owner": "drh"},
            ),
            metadata=MD,
        )
        assert time.monotonic() - started < 10
        assert resp.job.startswith("jobs/")
        assert resp.document.state == ing_pb.DOCUMENT_STATE_PROCESSING
        assert resp.document.source_uri == "ged://rh/modeles/" + sample.name
        job = (await jobs.GetJob(pb.GetJobRequest(name=resp.job), metadata=MD)).job
        assert job.kind == "UPLOAD" and job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
        staged = list(minio_client.list_objects(settings.jobs.upload_bucket, recursive=True))
        assert len(staged) == 1 and staged[0].object_name.startswith("acme/")
        # Another tenant cannot see the job.
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await jobs.GetJob(
                pb.GetJobRequest(name=resp.job), metadata=(("x-api-key", "key-globex"),)
            )
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND

        workers.start(env, server.address, tmp_path / "w.log")
        done = await wait_job(jobs, resp.job, limit_s=240)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done
        assert (done.documents_indexed, done.documents_failed) == (1, 0), done
        doc = (
            await ing.GetDocument(ing_pb.GetDocumentRequest(name=resp.document.name), metadata=MD)
        ).document
        assert doc.state == ing_pb.DOCUMENT_STATE_INDEXED and doc.chunk_count > 0
        assert doc.classification == CONFIDENTIAL
        assert doc.source_uri == "ged://rh/modeles/" + sample.name
        assert doc.collection == "rh" and doc.metadata["owner"] == "drh"
        # The staged copy is removed once indexed; the worker wrote into the caller's tenant.
        assert list(minio_client.list_objects(settings.jobs.upload_bucket, recursive=True)) == []
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ing.GetDocument(
                ing_pb.GetDocumentRequest(name=resp.document.name),
                metadata=(("x-api-key", "key-worker"),),
            )
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND

        # Same bytes again in the background: a job whose document is UNCHANGED.
        again = await ing.UploadDocument(
            _requests(
                sample.read_bytes(),
                filename=sample.name,
                collection="rh",
                classification=CONFIDENTIAL,
                source_uri="ged://rh/modeles/" + sample.name,
                metadata={"owner": "drh"},
            ),
            metadata=MD,
        )
        assert again.document.document_id == resp.document.document_id
        done2 = await wait_job(jobs, again.job, limit_s=120)
        assert (done2.documents_unchanged, done2.documents_indexed) == (1, 0), done2


async def test_background_upload_failed_for_good_keeps_the_reason_and_drops_the_copy(
    jobs_env: Any, jobs_server: Any, workers: Workers, minio_client: Any, tmp_path: Path
) -> None:
    settings, env = jobs_env()
    server = await jobs_server(settings)
    async with grpc.aio.insecure_channel(server.address) as channel:
        ing = ing_grpc.IngestionServiceStub(channel)
        jobs = pb_grpc.JobsServiceStub(channel)
        resp = await ing.UploadDocument(
            _requests(b"Le bail est renouvele.", filename="bail.txt", collection="rh"),
            metadata=MD,
        )
        assert len(list(minio_client.list_objects(settings.jobs.upload_bucket, recursive=True)))
        # A worker that cannot reach IngestionService: every attempt is UNAVAILABLE.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
        env = env | {"DOCFACTORY_JOBS_MAX_ATTEMPTS": "2"}
        workers.start(env, dead, tmp_path / "w.log")
        done = await wait_job(jobs, resp.job, limit_s=120)
        # The upload is the job: FAILED, with the reason of its last attempt.
        assert done.state == pb.JOB_STATE_FAILED, done
        assert done.error_reason == "UNAVAILABLE", done
        assert "after 2 attempt(s)" in done.error_message, done
        # The staged copy does not outlive the job.
        for _ in range(50):
            left = list(minio_client.list_objects(settings.jobs.upload_bucket, recursive=True))
            if not left:
                break
            await asyncio.sleep(0.2)
        assert left == []


def _read_address(proc: subprocess.Popen[str], limit_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        m = re.search(r" on (127\.0\.0\.1:\d+)", line)
        if m:
            return m.group(1)
    raise AssertionError("docfactory serve did not print its address")


def _workers_of(pid: int) -> list[psutil.Process]:
    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE and "docfactory.jobs.runtime" in " ".join(
                c.cmdline()
            ):
                out.append(c)
        except psutil.Error:  # exited meanwhile
            continue
    return out


@pytest.mark.slow
async def test_serve_with_workers_on_the_embedded_default(tmp_path: Path) -> None:
    """`docfactory serve --workers 1` (SQLite, local staging folder): a background upload is
    indexed; a worker killed with -9 is replaced; SIGTERM stops the workers with the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")} | {
        "DOCFACTORY_WORKER_HEARTBEAT_SECONDS": "0.5",
        "DOCFACTORY_WORKER_TIMEOUT_SECONDS": "4",
    }
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "docfactory.cli", "--data-dir", str(data), "serve",
         "--host", "127.0.0.1", "--port", "0", "--workers", "1"],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        address = _read_address(proc, 180)
        key = (data / "api-key").read_text().strip()
        md = (("x-api-key", key),)
        async with grpc.aio.insecure_channel(address) as channel:
            ing = ing_grpc.IngestionServiceStub(channel)
            jobs = pb_grpc.JobsServiceStub(channel)

            async def upload(name: str, text: str) -> pb.Job:
                resp = await ing.UploadDocument(
                    _requests(text.encode(), filename=name), metadata=md
                )
                return await wait_job(jobs, resp.job, limit_s=240, md=md)

            first = await upload("a.txt", "Le comite social et economique se reunit chaque mois.")
            assert first.state == pb.JOB_STATE_SUCCEEDED and first.documents_indexed == 1
            (worker,) = _workers_of(proc.pid)
            worker.kill()
            for _ in range(100):
                alive = [w for w in _workers_of(proc.pid) if w.pid != worker.pid]
                if alive:
                    break
                await asyncio.sleep(0.2)
            assert alive, "the supervisor did not restart the killed worker"
            second = await upload("b.txt", "La visioconference est possible pour le CSE.")
            assert second.state == pb.JOB_STATE_SUCCEEDED and second.documents_indexed == 1
            assert not any((data / "objects" / "docfactory-uploads").rglob("*.txt"))
        children = _workers_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
