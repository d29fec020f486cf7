"""Fault: PostgreSQL (a private cluster of the test, never the shared server on 5432) is
restarted under ``docfactory serve``:

* during Answer traffic: the calls made while it is down fail with UNAVAILABLE
  (``DATABASE_UNAVAILABLE``), never INTERNAL; the server stays SERVING; once PostgreSQL is back
  the next calls succeed (stale pooled connections are pinged and replaced);
* during a bulk job (two DBOS workers, objects on an S3-protocol server): the job finishes,
  every object is ingested exactly once (one document per object, exactly its points, no
  duplicate point id), nothing FAILED.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.core.vectorstore import point_id
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.jobs.v1 import jobs_service_pb2 as pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as pb_grpc
from tests.conftest import WORKER_KEY, write_keys
from tests.fault.support import PrivatePostgres, Serve, Worker, clean_env, free_port, serving
from tests.helpers import answer, error_reason, upload
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


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        yield cluster
    finally:
        cluster.close()


async def _answer_outcome(ch: grpc.aio.Channel) -> str:
    try:
        text, cits, _ = await answer(ch, "Quand ouvre la cantine ?")
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}:{error_reason(exc)}"
    assert cits and "midi" in text, text
    return "OK"


async def test_postgres_restart_during_answer_traffic(
    tmp_path: Path, pg: PrivatePostgres, procs: list[Any]
) -> None:
    keys = write_keys(tmp_path / "keys.yaml")
    server = Serve(
        tmp_path / "data",
        free_port(),
        tmp_path / "serve.log",
        {"DOCFACTORY_DATABASE_URL": pg.url, "DOCFACTORY_KEYS_FILE": str(keys)},
    )
    procs.append(server)
    await server.ready()
    async with grpc.aio.insecure_channel(server.address) as ch:
        doc = tmp_path / "reglement.md"
        doc.write_text("# Cantine\n\nLa cantine ouvre à midi et ferme à quatorze heures.\n")
        await upload(ch, doc)
        assert await _answer_outcome(ch) == "OK"

        outcomes: list[tuple[str, str]] = []  # (phase, outcome) of the calls within one phase
        phase = "before"
        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set():
                started = phase
                outcome = await _answer_outcome(ch)
                outcomes.append((started if started == phase else "across", outcome))
                await asyncio.sleep(0.05)

        runners = [asyncio.create_task(traffic()) for _ in range(3)]
        await asyncio.sleep(1.5)
        phase = "down"
        await asyncio.to_thread(pg.stop, "fast")
        await asyncio.sleep(3.0)
        assert await serving(ch)  # the server itself never stops serving
        down_seen = [o for p, o in outcomes if p == "down"]
        assert down_seen and "OK" not in down_seen, down_seen
        phase = "restarting"
        await asyncio.to_thread(pg.start)
        phase = "after"
        back_at = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*runners), 120)

        by_phase: dict[str, list[str]] = {}
        for p, o in outcomes:
            by_phase.setdefault(p, []).append(o)
        print({p: {o: v.count(o) for o in set(v)} for p, v in by_phase.items()})
        assert set(by_phase["before"]) == {"OK"}
        # While PostgreSQL is down (and for calls across a stop or start): a clear, retryable
        # refusal, never INTERNAL.
        failures = [o for _, o in outcomes if o != "OK"]
        assert set(failures) <= {"UNAVAILABLE:DATABASE_UNAVAILABLE"}, set(failures)
        # Back: every call made after the restart succeeds, and a fresh call does.
        after = by_phase.get("after", [])
        assert after and set(after) == {"OK"}, after
        assert await _answer_outcome(ch) == "OK"
        assert await serving(ch)
        print(f"service back {time.monotonic() - back_at:.1f} s after the restart")
    assert server.proc.poll() is None


N_OBJECTS = 24


def _note(i: int) -> bytes:
    body = " ".join(
        f"Article {i}.{j} : le bailleur entretient les locaux et le preneur paie le loyer."
        for j in range(80)
    )
    return f"Note {i}\n\n{body}\n".encode()


async def test_postgres_restart_during_bulk_job(
    tmp_path: Path, pg: PrivatePostgres, procs: list[Any], s3: dict[str, str]
) -> None:
    from minio import Minio

    client = Minio(s3["endpoint"], s3["access_key"], s3["secret_key"], secure=False)
    bucket = f"fault-pg-{int(time.time() * 1000) % 10**9}"
    client.make_bucket(bucket)
    for i in range(N_OBJECTS):
        data = _note(i)
        client.put_object(bucket, f"notes/note-{i:02d}.txt", io.BytesIO(data), len(data))

    keys = write_keys(tmp_path / "keys.yaml")
    data_dir = tmp_path / "data"
    common = {
        "DOCFACTORY_DATA_DIR": str(data_dir),
        "DOCFACTORY_DATABASE_URL": pg.url,
        "DOCFACTORY_KEYS_FILE": str(keys),
        "DOCFACTORY_S3_ENDPOINT": s3["endpoint"],
        "DOCFACTORY_S3_ACCESS_KEY": s3["access_key"],
        "DOCFACTORY_S3_SECRET_KEY": s3["secret_key"],
        "DOCFACTORY_S3_SECURE": "false",
        # Enough attempts to outlast the outage: 1 s doubling, about 30 s in all.
        "DOCFACTORY_JOBS_MAX_ATTEMPTS": "6",
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
    worker_env = clean_env(
        **common,
        DOCFACTORY_INGESTION_ADDRESS=server.address,
        DOCFACTORY_WORKER_API_KEY=WORKER_KEY,
        DOCFACTORY_WORKER_HEARTBEAT_SECONDS="0.5",
        DOCFACTORY_WORKER_TIMEOUT_SECONDS="30",  # a DB outage is no worker death
        DOCFACTORY_WORKER_CONCURRENCY="2",
    )
    for i in range(2):
        procs.append(Worker(worker_env, tmp_path / f"worker{i}.log"))

    async with (
        grpc.aio.insecure_channel(server.address) as ch,
        grpc.aio.insecure_channel(f"127.0.0.1:{index_port}") as index,
    ):
        stub = pb_grpc.JobsServiceStub(ch)
        job = (
            await stub.IngestPrefix(
                pb.IngestPrefixRequest(bucket=bucket, prefix="notes/", collection="bulk"),
                metadata=MD,
                timeout=60,
            )
        ).job
        cur = job
        for _ in range(1200):
            cur = (await stub.GetJob(pb.GetJobRequest(name=job.name), metadata=MD)).job
            if cur.documents_indexed >= 4:
                break
            await asyncio.sleep(0.1)
        assert 4 <= cur.documents_indexed < N_OBJECTS, cur  # mid-job
        await asyncio.to_thread(pg.stop, "fast")
        await asyncio.sleep(3.0)
        assert await serving(ch)
        await asyncio.to_thread(pg.start)
        after_restart = (await stub.GetJob(pb.GetJobRequest(name=job.name), metadata=MD)).job
        print(f"PostgreSQL restarted at {cur.documents_indexed}/{N_OBJECTS} documents indexed")
        assert after_restart.documents_indexed < N_OBJECTS, after_restart  # still mid-job

        done = await wait_job(stub, job.name, limit_s=300, md=MD)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done
        assert done.objects_total == N_OBJECTS and done.objects_done == N_OBJECTS, done
        docs = await job_documents(stub, job.name)
        assert_every_member_accounted(docs)
        assert not [d for d in docs if d.outcome == pb.DOCUMENT_OUTCOME_FAILED], docs
        uris = [d.source_uri for d in docs]
        assert len(uris) == len(set(uris)) == N_OBJECTS

        # Exactly once: one document per object, exactly its points, no duplicate point id.
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
        print(f"{len(indexed)} documents, {len(ids)} points")
        # The outage reached the workers mid-job: a step in flight was retried by DBOS (as
        # declared on it), or, when none was in flight at that instant, their queue polling saw
        # the database go away. Either way nothing was lost or duplicated (above).
        logs = "".join(p.read_text() for p in tmp_path.glob("worker*.log"))
        markers = ("Step being automatically retried", "terminating connection", "refused")
        assert any(m in logs for m in markers), logs[-2000:]
        assert await serving(ch)
