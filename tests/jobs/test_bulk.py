"""Bulk ingestion from an S3-protocol server (moto) through DBOS workers, end to end."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import tarfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.core.vectorstore import point_id
from docfactory.index.v1 import index_service_pb2 as idx_pb
from docfactory.index.v1 import index_service_pb2_grpc as idx_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as pb_grpc
from tests.jobs.conftest import API_KEY, SERVICE_KEY, Workers, data_file

MD = (("x-api-key", API_KEY),)
# By default: the whole Code civil archive (2,802 articles) and every file of formats/ (193,
# with the 400- to 1,225-page books and multi-page TIFF scans; parsing runs in two child
# processes of the ingestion server). Bound the formats with DOCFACTORY_TEST_FORMATS_MAX_BYTES.
# Quicker local run: DOCFACTORY_TEST_CIVIL_MEMBERS=120 DOCFACTORY_TEST_FORMATS_MAX_BYTES=120000.
CIVIL_MEMBERS = int(os.environ.get("DOCFACTORY_TEST_CIVIL_MEMBERS", "0"))  # 0 = all
FORMATS_MAX_BYTES = int(os.environ.get("DOCFACTORY_TEST_FORMATS_MAX_BYTES", "0"))  # 0 = all


def civil_archive(n: int) -> tuple[bytes, int]:
    """The real Code civil archive (or its first ``n`` articles, re-packed) and its file count."""
    src = data_file("code-civil", "code-civil-2015.tar.gz")
    with tarfile.open(src) as tin:
        files = sum(1 for m in tin if m.isfile())
    if not n or n >= files:
        return src.read_bytes(), files
    buf = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=buf, mode="w:gz") as tout:
        count = 0
        for m in tin:
            if not m.isfile():
                continue
            f = tin.extractfile(m)
            assert f is not None
            tout.addfile(m, f)
            count += 1
            if count >= n:
                break
    return buf.getvalue(), n


def formats_zip() -> tuple[bytes, int]:
    """A zip of ../shared/data/formats (every file unless FORMATS_MAX_BYTES bounds it)."""
    root = data_file("formats")
    buf = io.BytesIO()
    n = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file() and (
                not FORMATS_MAX_BYTES or path.stat().st_size <= FORMATS_MAX_BYTES
            ):
                zf.write(path, path.relative_to(root).as_posix())
                n += 1
    return buf.getvalue(), n


def put(client: Any, bucket: str, key: str, data: bytes) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


async def wait_job(
    stub: pb_grpc.JobsServiceStub,
    name: str,
    limit_s: float,
    md: tuple[tuple[str, str], ...] = MD,
) -> pb.Job:
    last: pb.Job | None = None

    async def watch() -> None:
        nonlocal last
        async for resp in stub.WatchJob(pb.WatchJobRequest(name=name), metadata=md):
            last = resp.job

    await asyncio.wait_for(watch(), limit_s)
    assert last is not None
    return last


async def job_documents(stub: pb_grpc.JobsServiceStub, name: str) -> list[pb.JobDocument]:
    out: list[pb.JobDocument] = []
    token = ""
    for _ in range(1000):
        resp = await stub.ListJobDocuments(
            pb.ListJobDocumentsRequest(name=name, page_size=500, page_token=token), metadata=MD
        )
        out.extend(resp.documents)
        token = resp.next_page_token
        if not token:
            break
    return out


async def indexed_documents(channel: grpc.aio.Channel) -> dict[str, ing_pb.Document]:
    stub = ing_grpc.IngestionServiceStub(channel)
    docs: dict[str, ing_pb.Document] = {}
    token = ""
    for _ in range(1000):
        resp = await stub.ListDocuments(
            ing_pb.ListDocumentsRequest(page_size=1000, page_token=token), metadata=MD
        )
        docs.update({d.source_uri: d for d in resp.documents})
        token = resp.next_page_token
        if not token:
            break
    return docs


INDEX_MD = (*MD, ("x-docfactory-service-key", SERVICE_KEY))


async def all_point_ids(channel: grpc.aio.Channel) -> list[str]:
    stub = idx_grpc.IndexServiceStub(channel)
    ids: list[str] = []
    token = ""
    while True:
        resp = await stub.ListPointIds(
            idx_pb.ListPointIdsRequest(page_size=5000, page_token=token), metadata=INDEX_MD
        )
        ids.extend(resp.ids)
        token = resp.next_page_token
        if not token:
            return ids


async def point_count(channel: grpc.aio.Channel, doc_ids: list[str] | None = None) -> int:
    stub = idx_grpc.IndexServiceStub(channel)
    resp = await stub.CountPoints(
        idx_pb.CountPointsRequest(scope=idx_pb.Scope(document_ids=doc_ids or [])),
        metadata=INDEX_MD,
    )
    return int(resp.count)


def assert_every_member_accounted(docs: list[pb.JobDocument]) -> None:
    for d in docs:
        assert d.outcome in (
            pb.DOCUMENT_OUTCOME_INDEXED,
            pb.DOCUMENT_OUTCOME_UNCHANGED,
            pb.DOCUMENT_OUTCOME_FAILED,
        ), d
        if d.outcome == pb.DOCUMENT_OUTCOME_FAILED:
            assert d.reason and d.message, d
        else:
            assert d.document_id and d.chunk_count > 0, d


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(3600)  # the whole Code civil and formats corpus: ~10 min on 2 cores
async def test_ingest_prefix_incremental_and_worker_death(
    jobs_env: Any,
    jobs_server: Any,
    workers: Workers,
    minio_client: Any,
    bucket: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    civil, n_civil = civil_archive(CIVIL_MEMBERS)
    fmt, n_formats = formats_zip()
    put(minio_client, bucket, "archives/code-civil.tar.gz", civil)
    put(minio_client, bucket, "archives/formats.zip", fmt)
    for i in range(6):  # loose files too, so two workers share the batch
        put(minio_client, bucket, f"notes/note-{i}.txt", f"Note {i}: le contrat de bail.".encode())
    put(minio_client, bucket, "notes/old.txt", b"Ce document sera supprime plus tard.")

    # Parse in two child processes: book-length PDFs must not hold the server's GIL.
    settings, env = jobs_env(pg_url, parsing={"parse_processes": 2})
    server = await jobs_server(settings)
    victim = workers.start(env, server.address, tmp_path / "w1.log")
    survivor = workers.start(env, server.address, tmp_path / "w2.log")
    assert server.index_address is not None
    async with (
        grpc.aio.insecure_channel(server.address) as channel,
        grpc.aio.insecure_channel(server.index_address) as index,
    ):
        stub = pb_grpc.JobsServiceStub(channel)
        job = (
            await stub.IngestPrefix(
                pb.IngestPrefixRequest(bucket=bucket, collection="bulk"), metadata=MD
            )
        ).job
        # Kill one worker mid-batch (once documents are flowing), never restart it.
        for _ in range(600):
            cur = (await stub.GetJob(pb.GetJobRequest(name=job.name), metadata=MD)).job
            if cur.documents_indexed >= 10:
                break
            await asyncio.sleep(0.2)
        assert cur.documents_indexed >= 10, cur
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        done = await wait_job(stub, job.name, limit_s=1500)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done
        assert done.objects_total == 9 and done.objects_done == 9, done
        docs = await job_documents(stub, job.name)
        assert_every_member_accounted(docs)
        civil_uris = [d for d in docs if "code-civil.tar.gz!/" in d.source_uri]
        fmt_uris = [d for d in docs if "formats.zip!/" in d.source_uri]
        assert len(civil_uris) == n_civil
        # nested archives in the corpus expand into their own members
        tops = {d.source_uri.split("formats.zip!/")[1].split("!/")[0] for d in fmt_uris}
        assert len(tops) == n_formats
        failed = [d for d in docs if d.outcome == pb.DOCUMENT_OUTCOME_FAILED]
        print(f"\n{len(docs)} documents, {len(failed)} failed:", sorted({d.reason for d in failed}))
        # No lost document, no duplicate point: the index holds exactly the chunks of the
        # indexed documents (deterministic point ids: re-processing rewrites the same points).
        indexed = await indexed_documents(channel)
        ok = {d.source_uri: d for d in docs if d.outcome != pb.DOCUMENT_OUTCOME_FAILED}
        for uri, d in ok.items():
            assert indexed[uri].state == ing_pb.DOCUMENT_STATE_INDEXED
            assert indexed[uri].chunk_count == d.chunk_count
        expected_points = sum(indexed[u].chunk_count for u in ok)
        assert await point_count(index) == expected_points
        # ...and exactly their ids: one point per (document, version, chunk index), no other
        # version's point left behind, nothing written twice under another id.
        ids = await all_point_ids(index)
        assert len(ids) == len(set(ids)) == expected_points
        expected_ids = {
            point_id(indexed[u].document_id, indexed[u].version, i)
            for u in ok
            for i in range(indexed[u].chunk_count)
        }
        assert set(ids) == expected_ids
        print(f"{len(ok)} documents indexed, {expected_points} points, ids checked")
        log = (tmp_path / "w2.log").read_text()
        assert "recovered" in log or survivor.poll() is None

        # Incremental: change one object, delete another, re-run: only those two change.
        put(minio_client, bucket, "notes/note-0.txt", b"Note 0 revue: la caution solidaire.")
        minio_client.remove_object(bucket, "notes/old.txt")
        job2 = (
            await stub.IngestPrefix(
                pb.IngestPrefixRequest(bucket=bucket, collection="bulk"), metadata=MD
            )
        ).job
        done2 = await wait_job(stub, job2.name, limit_s=120)
        assert done2.state == pb.JOB_STATE_SUCCEEDED, done2
        assert (done2.objects_total, done2.objects_skipped) == (2, 7), done2
        docs2 = {d.source_uri: d for d in await job_documents(stub, job2.name)}
        assert set(docs2) == {f"s3://{bucket}/notes/note-0.txt", f"s3://{bucket}/notes/old.txt"}
        assert docs2[f"s3://{bucket}/notes/note-0.txt"].outcome == pb.DOCUMENT_OUTCOME_INDEXED
        assert docs2[f"s3://{bucket}/notes/old.txt"].outcome == pb.DOCUMENT_OUTCOME_DELETED
        after = await indexed_documents(channel)
        assert f"s3://{bucket}/notes/old.txt" not in after
        note0 = after[f"s3://{bucket}/notes/note-0.txt"]
        assert note0.version == 2
        # The document keeps its source: URI, bucket and the ETag of the object version.
        etag = minio_client.stat_object(bucket, "notes/note-0.txt").etag.strip('"')
        assert (note0.metadata["bucket"], note0.metadata["etag"]) == (bucket, etag)
        assert await point_count(index) == sum(
            d.chunk_count for u, d in after.items() if d.state == ing_pb.DOCUMENT_STATE_INDEXED
        )


def hostile_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", "Article premier: tout fait quelconque de l'homme.")
        zf.writestr("../evil.txt", "traversal")
        zf.writestr("/abs.txt", "absolute")
        zf.writestr("bomb.txt", b"\0" * (40 * 1024 * 1024))
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as z2:
            z3 = io.BytesIO()
            with zipfile.ZipFile(z3, "w") as z3f:
                z4 = io.BytesIO()
                with zipfile.ZipFile(z4, "w") as z4f:
                    z4f.writestr("deep.txt", "too deep")
                z3f.writestr("l3.zip", z4.getvalue())
            z2.writestr("l2.zip", z3.getvalue())
        zf.writestr("nested.zip", inner.getvalue())
    return buf.getvalue()


async def test_hostile_archives_and_webhook_sqlite(
    jobs_env: Any,
    jobs_server: Any,
    workers: Workers,
    minio_client: Any,
    bucket: str,
    tmp_path: Path,
) -> None:
    """SQLite (embedded default): hostile archives fail per member, the worker survives; a
    MinIO webhook event enqueues a job."""
    put(minio_client, bucket, "hostile.zip", hostile_zip())
    put(minio_client, bucket, "corrupt.zip", b"PK\x03\x04" + b"garbage" * 100)
    put(minio_client, bucket, "empty.tar", b"")
    settings, env = jobs_env(
        webhook_port=0,
        webhook_tenant="acme",
        webhook_collection="hooks",
        webhook_token="minio-webhook-token-0123",
    )
    server = await jobs_server(settings)
    worker = workers.start(env, server.address, tmp_path / "w.log")
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.JobsServiceStub(channel)
        job = (await stub.IngestPrefix(pb.IngestPrefixRequest(bucket=bucket), metadata=MD)).job
        done = await wait_job(stub, job.name, limit_s=180)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done
        docs = {d.source_uri: d for d in await job_documents(stub, job.name)}
        reasons = {u.split("hostile.zip")[-1]: d.reason for u, d in docs.items()}
        print("\n", json.dumps(reasons, indent=1))
        ok = docs[f"s3://{bucket}/hostile.zip!/ok.txt"]
        assert ok.outcome == pb.DOCUMENT_OUTCOME_INDEXED
        failed = [d for d in docs.values() if d.outcome == pb.DOCUMENT_OUTCOME_FAILED]
        assert all(d.reason for d in failed)
        assert len(failed) >= 5, reasons
        assert worker.poll() is None  # the worker is still alive

        # Webhook: a MinIO ObjectCreated event for a new object (URL-encoded key).
        put(minio_client, bucket, "incoming/rapport annuel.txt", b"Rapport annuel: le bail.")
        port = next(int(line.rsplit(":", 1)[1]) for line in [f"x:{_webhook_port(server)}"])
        event = {
            "EventName": "s3:ObjectCreated:Put",
            "Key": f"{bucket}/incoming/rapport annuel.txt",
            "Records": [
                {
                    "eventVersion": "2.0",
                    "eventSource": "minio:s3",
                    "eventName": "s3:ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": bucket},
                        "object": {"key": "incoming/rapport+annuel.txt", "eTag": "abc", "size": 24},
                    },
                }
            ],
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/events",
            data=json.dumps(event).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer minio-webhook-token-0123",
            },
            method="POST",
        )
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).read())
        (job_id,) = json.loads(body)["jobs"]
        done = await wait_job(stub, f"jobs/{job_id}", limit_s=120)
        assert done.kind == "NOTIFICATION" and done.state == pb.JOB_STATE_SUCCEEDED, done
        (doc,) = await job_documents(stub, f"jobs/{job_id}")
        assert doc.source_uri == f"s3://{bucket}/incoming/rapport annuel.txt"
        assert doc.outcome == pb.DOCUMENT_OUTCOME_INDEXED


def _webhook_port(server: Any) -> int:
    from docfactory.jobs.webhook import WebhookServer

    for close in server.closers:
        owner = getattr(close, "__self__", None)
        if isinstance(owner, WebhookServer):
            return owner.port
    raise AssertionError("webhook not started")
