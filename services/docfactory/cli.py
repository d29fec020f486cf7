"""``docfactory`` command line: serve, ingest, search, ask, documents.

The CLI talks to a running server when ``--address``/``DOCFACTORY_ADDRESS`` is set; otherwise it
starts the embedded default in-process (same gRPC code path, on a private port) and persists
under the data directory, so ``ingest`` then ``ask`` work as two separate commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from docfactory.core.auth import API_KEY_HEADER
from docfactory.core.config import Settings, load_settings
from docfactory.core.errors import DocfactoryError

CHUNK_BYTES = 1024 * 1024
_CLASS = {"public": 1, "internal": 2, "confidential": 3, "restricted": 4}
_MODES = {"dense": 1, "sparse": 2, "hybrid": 3}
_QUERY_SERVICES = ("embedding", "answering")
_INGEST_SERVICES = ("ingestion", "chunking", "embedding")


class Session:
    """A channel to a server (remote, or an embedded one started here) plus the API key."""

    def __init__(
        self,
        settings: Settings,
        address: str | None,
        api_key: str | None,
        services: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        # Services the embedded server runs: search and ask need no ingestion (nor its bulk
        # jobs runtime), which keeps a cold command short.
        self.services = services
        self.address = address
        self.api_key = api_key
        self._running: Any = None
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Session:
        if not self.address:
            from docfactory.app import SERVICES, start_server

            self._running = await start_server(self.settings, self.services or SERVICES, port=0)
            self.address = self._running.address
            if not self.api_key:
                key_file = self.settings.data_dir / "api-key"
                self.api_key = (await asyncio.to_thread(key_file.read_text)).strip()
        if not self.api_key:
            raise SystemExit(
                "docfactory: set DOCFACTORY_API_KEY (or --api-key) for a remote server"
            )
        from docfactory.core.tls import aio_channel

        mb = self.settings.server.max_message_bytes
        self.channel = aio_channel(  # TLS when DOCFACTORY_TLS_CA (or a certificate) is set
            self.address,
            self.settings.tls,
            [("grpc.max_receive_message_length", mb), ("grpc.max_send_message_length", mb)],
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self._running is not None:
            await self._running.stop(2.0)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((API_KEY_HEADER, self.api_key or ""),)


def _err(exc: grpc.aio.AioRpcError) -> str:
    from docfactory.core.interceptors import error_from_rpc

    e = error_from_rpc(exc)
    return f"{exc.code().name} [{e.reason}]: {exc.details()}"  # type: ignore[no-any-return]


def local_uri(path: Path) -> str:
    """The source URI of a file of the client's own disk: ``local:///abs/path``. (``file:``
    names the server's disk and is reserved to IngestPath.)"""
    return "local:" + path.as_uri().removeprefix("file:")


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
            rows.append({"path": where, "status": "failed", "error": _err(exc)})
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
    async with Session(settings, ns.address, ns.api_key, _INGEST_SERVICES) as session:
        bar = tqdm(
            total=len(files) + len(archives),
            unit="file",
            disable=ns.json or not sys.stderr.isatty(),
        )
        sem = asyncio.Semaphore(max(1, ns.concurrency))

        async def one(path: Path) -> dict[str, Any]:
            async with sem:
                try:
                    resp = await _upload(session, path, ns.collection, _CLASS[ns.classification])
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
                    row = {"path": str(path), "status": "failed", "error": _err(exc)}
                bar.update(1)
                return row

        results = []

        async def archive_rows(path: Path) -> list[dict[str, Any]]:
            rows = await _ingest_archive(session, path, ns.collection, _CLASS[ns.classification])
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


def _citation_label(c: Any) -> str:
    label = str(c.document_name or c.document_id)
    if len(c.page_numbers):
        pages = list(c.page_numbers)
        label += f", p. {pages[0]}" if len(pages) == 1 else f", p. {pages[0]}-{pages[-1]}"
    if len(c.section_path):
        label += " — " + " > ".join(list(c.section_path)[-2:])
    return label


def _citation_dict(c: Any) -> dict[str, Any]:
    return {
        "marker": c.marker,
        "document_id": c.document_id,
        "document_name": c.document_name,
        "source_uri": c.source_uri,
        "pages": list(c.page_numbers),
        "section_path": list(c.section_path),
        "quote": c.quote,
        "score": round(c.score, 4),
        "chunk_id": c.chunk_id,
    }


async def cmd_search(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.answering.v1 import answering_service_pb2 as pb
    from docfactory.answering.v1 import answering_service_pb2_grpc as pb_grpc

    async with Session(settings, ns.address, ns.api_key, _QUERY_SERVICES) as session:
        stub = pb_grpc.AnsweringServiceStub(session.channel)
        resp = await stub.Search(
            pb.SearchRequest(
                query=ns.query,
                collections=ns.collection or [],
                top_k=ns.top_k,
                use_case=ns.use_case,
                mode=_MODES.get(ns.mode or "", 0),  # type: ignore[arg-type]
            ),
            metadata=session.metadata,
            timeout=120,
        )
    if ns.json:
        print(
            json.dumps(
                {
                    "took_ms": round(resp.took_ms, 1),
                    "results": [
                        {
                            "score": round(r.score, 4),
                            "text": r.text,
                            "citation": _citation_dict(r.citation),
                        }
                        for r in resp.results
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    for i, r in enumerate(resp.results, 1):
        snippet = " ".join(r.text.split())[:240]
        print(f"{i}. [{r.score:.3f}] {_citation_label(r.citation)}\n   {snippet}")
    if not resp.results:
        print("no result")
    return 0


async def cmd_ask(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.answering.v1 import answering_service_pb2 as pb
    from docfactory.answering.v1 import answering_service_pb2_grpc as pb_grpc

    async with Session(settings, ns.address, ns.api_key, _QUERY_SERVICES) as session:
        stub = pb_grpc.AnsweringServiceStub(session.channel)
        call = stub.Answer(
            pb.AnswerRequest(
                question=ns.question,
                collections=ns.collection or [],
                top_k=ns.top_k,
                use_case=ns.use_case,
                mode=_MODES.get(ns.mode or "", 0),  # type: ignore[arg-type]
            ),
            metadata=session.metadata,
            timeout=600,
        )
        citations: list[Any] = []
        async for msg in call:
            kind = msg.WhichOneof("content")
            if kind == "delta":
                if ns.json:
                    print(json.dumps({"delta": msg.delta.text}, ensure_ascii=False), flush=True)
                else:
                    print(msg.delta.text, end="", flush=True)
            elif kind == "citations":
                citations = list(msg.citations.citations)
                if ns.json:
                    print(
                        json.dumps(
                            {"citations": [_citation_dict(c) for c in citations]},
                            ensure_ascii=False,
                        ),
                        flush=True,
                    )
            elif kind == "summary":
                s = msg.summary
                if ns.json:
                    print(
                        json.dumps(
                            {
                                "summary": {
                                    "generator": s.generator,
                                    "extractive": s.extractive,
                                    "insufficient_context": s.insufficient_context,
                                    "retrieval_ms": round(s.retrieval_ms, 1),
                                    "first_token_ms": round(s.first_token_ms, 1),
                                    "total_ms": round(s.total_ms, 1),
                                    "language": s.language,
                                    "pending_review": s.pending_review,
                                    "review_id": s.review_id,
                                }
                            },
                            ensure_ascii=False,
                        ),
                        flush=True,
                    )
                elif s.pending_review:
                    print(
                        f"Réponse retenue pour relecture humaine (review {s.review_id}) : "
                        "GovernanceService.GetReviewedAnswer la délivrera une fois approuvée."
                        if s.language == "fr"
                        else f"Answer held for human review (review {s.review_id}): "
                        "GovernanceService.GetReviewedAnswer returns it once approved."
                    )
                else:
                    print("\n\nSources :" if s.language == "fr" else "\n\nSources:")
                    for c in citations:
                        print(f"  [{c.marker}] {_citation_label(c)}")
                    if not citations:
                        print("  (none)")
                    print(
                        f"\n({s.generator}; retrieval {s.retrieval_ms:.0f} ms, "
                        f"total {s.total_ms:.0f} ms)"
                    )
    return 0


async def cmd_documents(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
    from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc

    async with Session(settings, ns.address, ns.api_key, ("ingestion",)) as session:
        stub = pb_grpc.IngestionServiceStub(session.channel)
        if ns.action == "delete":
            for name in ns.names:
                r = await stub.DeleteDocument(
                    pb.DeleteDocumentRequest(name=name), metadata=session.metadata, timeout=60
                )
                print(json.dumps({"deleted": name, "chunks": r.deleted_chunks}))
            return 0
        token = ""
        while True:
            resp = await stub.ListDocuments(
                pb.ListDocumentsRequest(
                    page_size=200, page_token=token, collection=ns.collection or ""
                ),
                metadata=session.metadata,
                timeout=60,
            )
            for d in resp.documents:
                state = pb.DocumentState.Name(d.state).removeprefix("DOCUMENT_STATE_")
                if ns.json:
                    print(
                        json.dumps(
                            {
                                "name": d.name,
                                "filename": d.filename,
                                "collection": d.collection,
                                "state": state,
                                "version": d.version,
                                "chunks": d.chunk_count,
                                "error_reason": d.error_reason,
                            },
                            ensure_ascii=False,
                        )
                    )
                else:
                    print(
                        f"{d.name}  {state:<10} v{d.version} {d.chunk_count:>4} chunks  "
                        f"{d.collection}/{d.filename}"
                    )
            token = resp.next_page_token
            if not token:
                break
    return 0


def cmd_worker(ns: argparse.Namespace, settings: Settings) -> int:
    """Runs in the main thread (the worker handles SIGTERM itself); N processes if asked."""
    import multiprocessing

    from docfactory.jobs.runtime import run_worker

    count = ns.processes if ns.processes is not None else settings.jobs.workers
    if count <= 1:
        run_worker(settings)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(settings,)) for _ in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


async def cmd_serve(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.app import SERVICES, serve_forever

    services = [s.strip() for s in ns.services.split(",")] if ns.services else list(SERVICES)
    if ns.console_port is not None:
        from docfactory.console.app import serve_beside

        await serve_beside(
            serve_forever(settings, services), settings, host=ns.console_host, port=ns.console_port
        )
        return 0
    await serve_forever(settings, services)
    return 0


async def cmd_console(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.console.app import run_console

    await run_console(
        settings,
        address=ns.address,
        host=ns.host,
        port=ns.port,
        auth_header=ns.auth_header,
        certfile=ns.tls_cert,
        keyfile=ns.tls_key,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="docfactory", description=__doc__.split("\n")[0])
    p.add_argument(
        "--address",
        default=os.environ.get("DOCFACTORY_ADDRESS"),
        help="host:port of a running server (default: embedded, in-process)",
    )
    p.add_argument("--api-key", default=os.environ.get("DOCFACTORY_API_KEY"))
    p.add_argument("--data-dir", help="data directory of the embedded default")
    # dest grpc_tls_*: `console` has its own --tls-cert/--tls-key (its HTTPS listener)
    p.add_argument("--tls-cert", dest="grpc_tls_cert", help="PEM chain (DOCFACTORY_TLS_CERT)")
    p.add_argument("--tls-key", dest="grpc_tls_key", help="PEM private key (DOCFACTORY_TLS_KEY)")
    p.add_argument("--tls-ca", dest="grpc_tls_ca", help="CA bundle (DOCFACTORY_TLS_CA)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC services (all four by default)")
    s.add_argument(
        "--services", help="comma-separated subset: ingestion,chunking,embedding,answering"
    )
    s.add_argument("--port", type=int)
    s.add_argument("--host")
    s.add_argument("--metrics-port", type=int)
    s.add_argument(
        "--metrics-host",
        help="address /metrics listens on (default 127.0.0.1; 0.0.0.0 for Prometheus in a "
        "cluster, behind a NetworkPolicy)",
    )
    s.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS (DOCFACTORY_INSECURE)",
    )
    s.add_argument(
        "--workers",
        type=int,
        help="bulk-ingestion worker processes to run beside the server "
        "(default DOCFACTORY_SERVE_WORKERS, 0)",
    )

    s.add_argument("--console-port", type=int, help="also serve the web console on this port")
    s.add_argument("--console-host", default="127.0.0.1")

    c = sub.add_parser("console", help="web console (reviewers, documents, jobs, usage, audit)")
    c.add_argument("--port", type=int, default=8080)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--auth-header", help="header of an authenticating proxy carrying the key")
    c.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    c.add_argument("--tls-key", help="private key of --tls-cert (PEM)")

    i = sub.add_parser("ingest", help="ingest files or folders")
    i.add_argument("paths", nargs="+")
    i.add_argument("--collection", default="default")
    i.add_argument("--classification", choices=list(_CLASS), default="internal")
    i.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="files in flight: parsing of the next ones overlaps embedding and indexing",
    )
    i.add_argument("--json", action="store_true", help="one JSON line per file")

    for name, helptext, arg in (
        ("search", "top passages for a query", "query"),
        ("ask", "stream a cited answer", "question"),
    ):
        q = sub.add_parser(name, help=helptext)
        q.add_argument(arg)
        q.add_argument("--collection", action="append", help="repeatable")
        q.add_argument("--top-k", type=int, default=0)
        q.add_argument("--mode", choices=list(_MODES))
        q.add_argument("--use-case", default="")
        q.add_argument("--json", action="store_true")

    w = sub.add_parser(
        "worker", help="run bulk-ingestion workers (durable jobs; DOCFACTORY_INGESTION_ADDRESS)"
    )
    w.add_argument(
        "--processes", type=int, help="worker processes to run (default DOCFACTORY_WORKERS, 2)"
    )

    d = sub.add_parser("documents", help="list or delete documents")
    d.add_argument("action", choices=["list", "delete"])
    d.add_argument("names", nargs="*")
    d.add_argument("--collection")
    d.add_argument("--json", action="store_true")

    a = sub.add_parser("audit", help="verify or export the hash-chained audit log")
    a.add_argument("action", choices=["verify", "export"])
    a.add_argument("--out", default="-", help="export: JSONL file (default stdout)")
    a.add_argument("--tenant")
    a.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="schema of the metadata database (Alembic migrations)")
    db.add_argument("action", choices=["upgrade", "current"])

    from docfactory.pii.cli import add_parser as add_pii_parser

    add_pii_parser(sub)
    from docfactory.evaluation.cli import add_parser as add_eval_parser

    add_eval_parser(sub)
    from docfactory.measurement.cli import add_parser as add_report_parser

    add_report_parser(sub)
    from docfactory.workflows.evalset.cli import add_parser as add_eval_flow_parser

    add_eval_flow_parser(sub)
    from docfactory.workflows.cli import add_parser as add_dossier_parser

    add_dossier_parser(sub)
    return p


async def cmd_eval_pii(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.pii.cli import cmd_eval_pii as run_eval_pii

    return await run_eval_pii(ns, settings)


async def cmd_audit(ns: argparse.Namespace, settings: Settings) -> int:
    """Operator command: reads the metadata database directly (no server needed)."""
    from docfactory.core.db import make_engine
    from docfactory.governance.audit import AuditLog

    log = AuditLog(make_engine(settings.resolved_database_url))
    if ns.action == "export":
        if ns.out == "-":
            n = await asyncio.to_thread(log.export_jsonl, sys.stdout, tenant=ns.tenant)
        else:
            n = await asyncio.to_thread(log.export_jsonl, Path(ns.out), tenant=ns.tenant)
        print(f"exported {n} audit records", file=sys.stderr)
        return 0
    report = await asyncio.to_thread(log.verify)
    if ns.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "chains": len(log.chains()),
                    "problems": [
                        {"seq": p.seq, "kind": p.kind, "chain": p.chain} for p in report.problems
                    ],
                }
            )
        )
    else:
        state = "intact" if report.ok else "TAMPERED"
        chains = len(log.chains())
        print(f"audit chains {state}: {report.checked} records in {chains} chain(s) checked")
        for p in report.problems:
            print(f"  seq {p.seq}: {p.kind}" + (f" (chain {p.chain!r})" if p.chain else ""))
        for note in report.notes:
            print(f"  note: {note}")
    return 0 if report.ok else 1


async def cmd_db(ns: argparse.Namespace, settings: Settings) -> int:
    """Operator command: migrate (``upgrade``) or show (``current``) the database schema."""
    from docfactory.core import migrate

    url = settings.resolved_database_url
    if ns.action == "upgrade":
        revision: str | None = await asyncio.to_thread(migrate.upgrade, url)
    else:
        revision = await asyncio.to_thread(migrate.current_revision, url)
    head = migrate.head_revision()
    print(f"{revision} (head)" if revision == head else f"{revision or 'none'} (head is {head})")
    return 0


async def cmd_report(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.measurement.cli import cmd_report as run_report

    return await run_report(ns, settings)


async def cmd_eval(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.evaluation.cli import cmd_eval as run_eval

    return await run_eval(ns, settings)


async def cmd_eval_flow(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.workflows.evalset.cli import cmd_eval_flow as run_eval_flow

    return await run_eval_flow(ns, settings)


async def cmd_dossier(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.workflows.cli import cmd_dossier as run_dossier

    return await run_dossier(ns, settings)


def default_parse_processes(ns: argparse.Namespace) -> int:
    """Parse child processes when DOCFACTORY_PARSE_PROCESSES is not set: with 4 cores or more,
    a server, or the embedded default ingesting a folder or several files, parses in
    ``cores / 2`` children (at most 4) while this process chunks, embeds and indexes. One file
    is parsed in-process (spawning a child would cost more than it saves), and so is everything
    on fewer than 4 cores: there the embedding (2 BLAS threads) already takes both cores, and
    a child measured slower (bench/README.md, bench_peers.py)."""
    if "DOCFACTORY_PARSE_PROCESSES" in os.environ or getattr(ns, "address", None):
        return 0
    if ns.command == "ingest":
        paths = [Path(p) for p in ns.paths if not p.startswith("s3://")]
        if len(paths) < 2 and not any(p.is_dir() for p in paths):
            return 0
    elif ns.command != "serve":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if (cores or 1) < 4 else min(4, (cores or 1) // 2)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    from docfactory.core.logging import setup_logging

    setup_logging("INFO" if ns.verbose else None)
    overrides: dict[str, Any] = {}
    if ns.data_dir:
        overrides["data_dir"] = ns.data_dir
    tls_flags = {"cert": ns.grpc_tls_cert, "key": ns.grpc_tls_key, "ca": ns.grpc_tls_ca}
    overrides["tls"] = {k: v for k, v in tls_flags.items() if v}
    if getattr(ns, "insecure", False):
        overrides["tls"]["insecure"] = True
    if ns.command == "serve":
        server: dict[str, Any] = {}
        if ns.port is not None:
            server["port"] = ns.port
        if ns.host:
            server["host"] = ns.host
        if ns.metrics_port is not None:
            server["metrics_port"] = ns.metrics_port
        if getattr(ns, "metrics_host", None):
            server["metrics_host"] = ns.metrics_host
        if server:
            overrides["server"] = server
        if ns.workers is not None:
            overrides["jobs"] = {"serve_workers": ns.workers}
    processes = default_parse_processes(ns)
    if processes:
        overrides["parsing"] = {"parse_processes": processes}
    try:
        settings = load_settings(overrides=overrides)
        if ns.command == "worker":
            return cmd_worker(ns, settings)
        handler = {
            "serve": cmd_serve,
            "console": cmd_console,
            "ingest": cmd_ingest,
            "search": cmd_search,
            "eval-pii": cmd_eval_pii,
            "ask": cmd_ask,
            "documents": cmd_documents,
            "eval": cmd_eval,
            "audit": cmd_audit,
            "db": cmd_db,
            "report": cmd_report,
            "eval-flow": cmd_eval_flow,
            "dossier": cmd_dossier,
        }[ns.command]
        return asyncio.run(handler(ns, settings))
    except DocfactoryError as exc:
        print(f"docfactory: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"docfactory: {_err(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        logging.shutdown()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
