"""Fault: a jobs worker receives SIGTERM during a bulk job (``docfactory serve`` on the embedded
default, objects on an S3-protocol server, workers as their own processes):

* a worker whose in-flight objects outlast its grace period exits within it and hands them back
  (its log says so); nothing is FAILED;
* a worker given a long enough grace period finishes its in-flight objects, takes no new one,
  and exits "drained" well before the period ends;
* a restarted worker completes the job: every object ingested exactly once (one document per
  object, exactly its points, no duplicate point id).

(SIGKILL of a worker mid-job: tests/jobs/test_bulk.py and tests/jobs/test_background_upload.py.)
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.core.vectorstore import point_id
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.jobs.v1 import jobs_service_pb2 as pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as pb_grpc
from tests.conftest import WORKER_KEY, write_keys
from tests.fault.support import Serve, Worker, clean_env, free_port, serving
from tests.jobs.conftest import SERVICE_KEY
from tests.jobs.test_bulk import (
    all_point_ids,
    assert_every_member_accounted,
    indexed_documents,
    job_documents,
    point_count,
    wait_job,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MD = (("x-api-key", "key-acme"),)
N_OBJECTS = 10


def _note(i: int) -> bytes:
    body = " ".join(
        f"Article {i}.{j} : le mandataire rend compte de sa gestion et restitue les fonds reçus."
        for j in range(1200)  # a second or two per object: a worker's slots stay busy
    )
    return f"Mandat {i}\n\n{body}\n".encode()


async def _progress(stub: pb_grpc.JobsServiceStub, name: str) -> pb.Job:
    resp: pb.GetJobResponse = await stub.GetJob(pb.GetJobRequest(name=name), metadata=MD)
    return resp.job


async def _until(stub: pb_grpc.JobsServiceStub, name: str, indexed: int) -> pb.Job:
    job = await _progress(stub, name)
    for _ in range(1800):
        if job.documents_indexed >= indexed:
            break
        await asyncio.sleep(0.1)
        job = await _progress(stub, name)
    return job


async def _busy(worker: Worker, data_dir: Path) -> int:
    """Wait until the worker runs at least one object's workflow; how many it runs."""
    from docfactory.core.config import load_settings
    from docfactory.core.durable import pending_of, system_database_url
    from docfactory.jobs.runtime import APP_VERSION

    url = system_database_url(load_settings(env={"DOCFACTORY_DATA_DIR": str(data_dir)}))
    executor = ""
    for _ in range(600):
        if not executor:
            m = re.search(r"docfactory worker (\S+) ready", worker.log_path.read_text())
            executor = m.group(1) if m else ""
        n = pending_of(url, executor, APP_VERSION) if executor else 0
        if n:
            return n
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never ran an object")


def _terminate(worker: Worker, limit_s: float) -> float:
    """SIGTERM, then the seconds the worker took to exit (it must within ``limit_s``)."""
    t0 = time.monotonic()
    worker.terminate()
    worker.proc.wait(limit_s)
    return time.monotonic() - t0


async def test_worker_sigterm_drains_or_hands_back(
    tmp_path: Path, procs: list[Any], s3: dict[str, str]
) -> None:
    from minio import Minio

    client = Minio(s3["endpoint"], s3["access_key"], s3["secret_key"], secure=False)
    bucket = f"fault-term-{int(time.time() * 1000) % 10**9}"
    client.make_bucket(bucket)
    for i in range(N_OBJECTS):
        data = _note(i)
        client.put_object(bucket, f"mandats/m-{i:02d}.txt", io.BytesIO(data), len(data))

    keys = write_keys(tmp_path / "keys.yaml")
    data_dir = tmp_path / "data"
    common = {
        "DOCFACTORY_DATA_DIR": str(data_dir),
        "DOCFACTORY_KEYS_FILE": str(keys),
        "DOCFACTORY_S3_ENDPOINT": s3["endpoint"],
        "DOCFACTORY_S3_ACCESS_KEY": s3["access_key"],
        "DOCFACTORY_S3_SECRET_KEY": s3["secret_key"],
        "DOCFACTORY_S3_SECURE": "false",
    }
    index_port = free_port()
    server = Serve(
        data_dir,
        free_port(),
        tmp_path / "serve.log",
        {
            **common,
            "DOCFACTORY_INDEX_LISTEN": f"127.0.0.1:{index_port}",
            "DOCFACTORY_SERVICE_KEY": SERVICE_KEY,
        },
    )
    procs.append(server)
    await server.ready()

    def worker(name: str, grace_s: float) -> Worker:
        env = clean_env(
            **common,
            DOCFACTORY_INGESTION_ADDRESS=server.address,
            DOCFACTORY_WORKER_API_KEY=WORKER_KEY,
            DOCFACTORY_WORKER_HEARTBEAT_SECONDS="0.5",
            DOCFACTORY_WORKER_TIMEOUT_SECONDS="60",  # only a handed-back row is reaped at once
            DOCFACTORY_WORKER_CONCURRENCY="2",
            DOCFACTORY_WORKER_GRACE_SECONDS=str(grace_s),
        )
        w = Worker(env, tmp_path / f"{name}.log")
        procs.append(w)
        return w

    async with (
        grpc.aio.insecure_channel(server.address) as ch,
        grpc.aio.insecure_channel(f"127.0.0.1:{index_port}") as index,
    ):
        stub = pb_grpc.JobsServiceStub(ch)
        job = (
            await stub.IngestPrefix(
                pb.IngestPrefixRequest(bucket=bucket, prefix="mandats/", collection="bulk"),
                metadata=MD,
                timeout=60,
            )
        ).job

        # 1. No grace period: the in-flight objects are handed back, the worker exits at once.
        first = worker("w1", grace_s=0)
        cur = await _until(stub, job.name, 1)
        assert 1 <= cur.documents_indexed < N_OBJECTS, cur
        await _busy(first, data_dir)  # objects in flight (not between two queue polls)
        took = _terminate(first, limit_s=10)
        log1 = first.log_path.read_text()
        print(f"w1 exited {took:.1f} s after SIGTERM, rc {first.proc.returncode}")
        assert first.proc.returncode == 0 and took < 5
        assert "handed back" in log1, log1[-2000:]
        assert "Traceback" not in log1, log1[-2000:]  # the abandoned steps fail nothing
        after1 = await _progress(stub, job.name)
        assert after1.state != pb.JOB_STATE_SUCCEEDED and after1.documents_failed == 0, after1

        # 2. A long grace period: the in-flight objects finish, nothing new starts.
        second = worker("w2", grace_s=120)
        cur = await _until(stub, job.name, after1.documents_indexed + 1)
        assert cur.documents_indexed < N_OBJECTS, cur
        took = _terminate(second, limit_s=120)
        log2 = second.log_path.read_text()
        print(f"w2 exited {took:.1f} s after SIGTERM (drained)")
        assert second.proc.returncode == 0
        assert "drained" in log2 and "recovered" in log2, log2[-2000:]  # it took w1's back
        assert took < 60
        after2 = await _progress(stub, job.name)
        assert after2.documents_failed == 0 and after2.state != pb.JOB_STATE_SUCCEEDED, after2
        print(
            f"w2 finished {after2.documents_indexed - cur.documents_indexed} in-flight on SIGTERM"
        )

        # 3. A restarted worker completes the job: every object exactly once.
        worker("w3", grace_s=20)
        done = await wait_job(stub, job.name, limit_s=300, md=MD)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done
        assert done.objects_total == N_OBJECTS and done.objects_done == N_OBJECTS, done
        docs = await job_documents(stub, job.name)
        assert_every_member_accounted(docs)
        assert not [d for d in docs if d.outcome == pb.DOCUMENT_OUTCOME_FAILED], docs
        uris = [d.source_uri for d in docs]
        assert len(uris) == len(set(uris)) == N_OBJECTS

        indexed = await indexed_documents(ch)
        assert set(indexed) == set(uris)
        assert all(d.state == ing_pb.DOCUMENT_STATE_INDEXED for d in indexed.values())
        expected = {
            point_id(d.document_id, d.version, i)
            for d in indexed.values()
            for i in range(d.chunk_count)
        }
        ids = await all_point_ids(index)
        assert len(ids) == len(set(ids)) == len(expected) == await point_count(index)
        assert set(ids) == expected
        assert await serving(ch)
