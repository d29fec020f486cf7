"""``docfactory ingest``: files, folders and archives uploaded to IngestionService; an
``s3://`` prefix as a durable bulk job on a server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from docfactory.cli.session import (
    CHUNK_BYTES,
    CLASSIFICATIONS,
    INGEST_SERVICES,
    Session,
    local_uri,
    rpc_error,
)
from docfactory.core.config import Settings


async def _upload(session: Session, path: Path, collection: str, classification: int) -> Any:
    source_uri = local_uri(await asyncio.to_thread(path.resolve))
    with path.open("rb") as f:
        return await _upload_stream(session, f, path.name, source_uri, collection, classification)


async def _upload_stream(
    session: Session,
    stream: Any,
    filename: str,
    source_uri: str,
    collection: str,
    classification: int,
) -> Any:
    from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
    from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc

    stub = pb_grpc.IngestionServiceStub(session.channel)

    async def requests() -> AsyncIterator[pb.UploadDocumentRequest]:
        yield pb.UploadDocumentRequest(
            metadata=pb.UploadMetadata(
                filename=filename,
                collection=collection,
                classification=classification,  # type: ignore[arg-type]
                source_uri=source_uri,
            )
        )
        while block := stream.read(CHUNK_BYTES):
            yield pb.UploadDocumentRequest(data=block)

    return await stub.UploadDocument(requests(), metadata=session.metadata, timeout=1800)


def _is_archive(path: Path) -> bool:
    from docfactory.archives import is_archive

    with path.open("rb") as f:
        head = f.read(4096)
    return is_archive(path.name, head)


async def _ingest_archive(
    session: Session, path: Path, collection: str, classification: int
) -> list[dict[str, Any]]:
    """Expand an archive as a stream: each member is uploaded as its own document, with a
    source URI naming archive and member; a bad member fails alone."""
    import tempfile

    from docfactory.archives import (
        ArchiveError,
        MemberError,
        iter_archive,
        member_source_uri,
    )

    archive_uri = local_uri(await asyncio.to_thread(path.resolve))
    rows: list[dict[str, Any]] = []
    for item in iter_archive(path, path.name):
        where = f"{path}!/{item.path}" if item.path else str(path)
        if isinstance(item, MemberError):
            rows.append(
                {"path": where, "status": "failed", "error": f"{item.reason}: {item.message}"}
            )
            continue
        try:
            with item.open() as member, tempfile.SpooledTemporaryFile(8 * 1024 * 1024) as tmp:
                while block := member.read(CHUNK_BYTES):
                    tmp.write(block)
                tmp.seek(0)
                resp = await _upload_stream(
                    session,
                    tmp,
                    Path(item.path).name or path.name,  # "": a mail body
                    member_source_uri(archive_uri, item.path),
                    collection,
                    classification,
                )
            d = resp.document
            rows.append(
                {
                    "path": where,
                    "status": "unchanged" if resp.unchanged else "indexed",
                    "document": d.name,
                    "chunks": d.chunk_count,
                    "pages": d.page_count,
                    "version": d.version,
                }
            )
        except ArchiveError as exc:
            rows.append(
                {"path": where, "status": "failed", "error": f"{exc.reason}: {exc.message}"}
            )
        except grpc.aio.AioRpcError as exc:
            rows.append({"path": where, "status": "failed", "error": rpc_error(exc)})
    return rows


async def _ingest_prefix(ns: argparse.Namespace, settings: Settings, uri: str) -> int:
    """s3://bucket/prefix: a durable bulk job on the server, watched until it ends."""
    from tqdm import tqdm

    from docfactory.jobs.v1 import jobs_service_pb2 as jpb
    from docfactory.jobs.v1 import jobs_service_pb2_grpc as jgrpc

    if not ns.address:
        raise SystemExit(
            "docfactory: s3:// ingestion runs as a durable job on a server with workers: "
            "start `docfactory serve` and `docfactory worker`, then set DOCFACTORY_ADDRESS"
        )
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    async with Session(settings, ns.address, ns.api_key) as session:
        stub = jgrpc.JobsServiceStub(session.channel)
        job = (
            await stub.IngestPrefix(
                jpb.IngestPrefixRequest(bucket=bucket, prefix=prefix, collection=ns.collection),
                metadata=session.metadata,
                timeout=60,
            )
        ).job
        bar = tqdm(unit="object", disable=ns.json or not sys.stderr.isatty())
        async for update in stub.WatchJob(
            jpb.WatchJobRequest(name=job.name), metadata=session.metadata, timeout=24 * 3600
        ):
            job = update.job
            bar.total = job.objects_total or None
            bar.n = job.objects_done
            bar.set_postfix(
                indexed=job.documents_indexed,
                unchanged=job.documents_unchanged,
                failed=job.documents_failed,
                deleted=job.documents_deleted,
                skipped=job.objects_skipped,
            )
            bar.refresh()
            if ns.json:
                print(
                    json.dumps(
                        {
                            "job": job.name,
                            "state": jpb.JobState.Name(job.state).removeprefix("JOB_STATE_"),
                            "objects_total": job.objects_total,
                            "objects_done": job.objects_done,
                            "objects_skipped": job.objects_skipped,
                            "indexed": job.documents_indexed,
                            "unchanged": job.documents_unchanged,
                            "failed": job.documents_failed,
                            "deleted": job.documents_deleted,
                        }
                    ),
                    flush=True,
                )
        bar.close()
    if not ns.json:
        state = jpb.JobState.Name(job.state).removeprefix("JOB_STATE_")
        print(
            f"job {job.name} {state}: {job.objects_done}/{job.objects_total} objects "
            f"({job.objects_skipped} unchanged objects skipped); "
            f"indexed {job.documents_indexed}, unchanged {job.documents_unchanged}, "
            f"failed {job.documents_failed}, deleted {job.documents_deleted}"
            + (f"; job error {job.error_reason}: {job.error_message}" if job.error_reason else "")
        )
    return 1 if job.documents_failed or job.error_reason else 0


def _files(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            )
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"docfactory: no such file or folder: {raw}")
    return out


async def cmd_ingest(ns: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    remote = [p for p in ns.paths if p.startswith("s3://")]
    if remote:
        if len(remote) != len(ns.paths) or len(remote) > 1:
            raise SystemExit("docfactory: give one s3://bucket/prefix alone")
        return await _ingest_prefix(ns, settings, remote[0])
    files = _files(ns.paths)
    archives = [f for f in files if _is_archive(f)]
    files = [f for f in files if f not in archives]
    failed = 0
    async with Session(
        settings, ns.address, ns.api_key, INGEST_SERVICES, daemon=ns.daemon
    ) as session:
        bar = tqdm(
            total=len(files) + len(archives),
            unit="file",
            disable=ns.json or not sys.stderr.isatty(),
        )
        sem = asyncio.Semaphore(max(1, ns.concurrency))

        async def one(path: Path) -> dict[str, Any]:
            async with sem:
                try:
                    resp = await _upload(
                        session, path, ns.collection, CLASSIFICATIONS[ns.classification]
                    )
                    d = resp.document
                    row = {
                        "path": str(path),
                        "status": "unchanged" if resp.unchanged else "indexed",
                        "document": d.name,
                        "chunks": d.chunk_count,
                        "pages": d.page_count,
                        "version": d.version,
                    }
                except grpc.aio.AioRpcError as exc:
                    row = {"path": str(path), "status": "failed", "error": rpc_error(exc)}
                bar.update(1)
                return row

        results = []

        async def archive_rows(path: Path) -> list[dict[str, Any]]:
            rows = await _ingest_archive(
                session, path, ns.collection, CLASSIFICATIONS[ns.classification]
            )
            bar.update(1)
            return rows

        async def as_rows() -> AsyncIterator[dict[str, Any]]:
            for archive in archives:
                for r in await archive_rows(archive):
                    yield r
            for coro in asyncio.as_completed([one(f) for f in files]):
                yield await coro

        async for row in as_rows():
            results.append(row)
            if ns.json:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                detail = (
                    f"{row['chunks']} chunks, {row['pages']} pages"
                    if row["status"] != "failed"
                    else row["error"]
                )
                tqdm.write(f"{row['status']:>9}  {row['path']}  ({detail})")
        bar.close()
    failed = sum(1 for r in results if r["status"] == "failed")
    if not ns.json:
        done = sum(1 for r in results if r["status"] == "indexed")
        same = sum(1 for r in results if r["status"] == "unchanged")
        print(f"ingested {done}, unchanged {same}, failed {failed} of {len(results)} documents")
    return 1 if failed else 0
