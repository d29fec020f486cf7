#!/usr/bin/env python
"""Search latency through gRPC vs a direct query on the same store engine, same queries, same run.

1. Starts the embedded server in-process (all services on one port, like ``docfactory`` without
   ``--address``) in a temp data dir and ingests a slice of PIAF (one .txt file per article,
   through ``UploadDocument``: parse -> chunk -> embed -> index).
2. Times ``AnsweringService/Search`` over gRPC for the PIAF questions of that slice (client ->
   answering -> embedding service -> model, then the store).
3. Stops the server, opens the same Qdrant Edge shard directly (``EdgeStore``) with the same
   embedding model and BM25 encoder, and times the same queries: query embedding + sparse
   encoding + ``store.query`` ("direct"), and ``store.query`` alone with the query vectors
   computed beforehand ("store only").

Prints p50/p99 per mode and the ratio gRPC/direct (what the RPC stack, the service layers and
the internal embedding RPC add).

    .venv/bin/python bench/bench_search.py                      # 20 articles, 300 queries
    .venv/bin/python bench/bench_search.py --articles 40 --queries 500 --modes hybrid,dense
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    import docfactory  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

import grpc
import yaml

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.app import start_server
from docfactory.core.config import load_settings
from docfactory.core.lexical import SparseEncoder, detect_language
from docfactory.core.vectorstore import Scope, Sparse
from docfactory.core.vectorstore_edge import EdgeStore
from docfactory.embedding.adapters.models import load_model
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

ROOT = Path(__file__).resolve().parents[1]
PIAF = ROOT.parent / "shared" / "data" / "piaf" / "piaf-v1.0.json"
PB_MODES = {"dense": 1, "sparse": 2, "hybrid": 3}


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def load_slice(articles: int, max_queries: int) -> tuple[list[tuple[str, str]], list[str]]:
    data = json.loads(PIAF.read_text(encoding="utf-8"))["data"][:articles]
    files = []
    queries: list[str] = []
    for i, art in enumerate(data):
        title = str(art.get("title") or f"article {i}")
        body = "\n\n".join(str(p["context"]) for p in art["paragraphs"])
        files.append((f"{i:03d}-{title[:40].replace('/', '-')}.txt", f"{title}\n\n{body}\n"))
        queries.extend(str(qa["question"]) for p in art["paragraphs"] for qa in p["qas"])
    return files, queries[:max_queries]


async def ingest(channel: grpc.aio.Channel, md: Any, files: list[tuple[str, str]]) -> int:
    stub = ing_grpc.IngestionServiceStub(channel)
    chunks = 0
    for name, text in files:

        async def reqs(
            name: str = name, text: str = text
        ) -> AsyncIterator[ing_pb.UploadDocumentRequest]:
            yield ing_pb.UploadDocumentRequest(
                metadata=ing_pb.UploadMetadata(filename=name, collection="bench")
            )
            yield ing_pb.UploadDocumentRequest(data=text.encode("utf-8"))

        resp = await stub.UploadDocument(reqs(), metadata=md, timeout=600)
        chunks += resp.document.chunk_count
    return chunks


async def grpc_phase(
    settings: Any, files: list[tuple[str, str]], queries: list[str], modes: list[str], top_k: int
) -> tuple[dict[str, list[float]], str, int, float]:
    running = await start_server(settings, port=0)
    try:
        key = (settings.data_dir / "api-key").read_text().strip()
        md = (("x-api-key", key),)
        async with grpc.aio.insecure_channel(running.address) as channel:
            t = time.perf_counter()
            chunks = await ingest(channel, md, files)
            ingest_s = time.perf_counter() - t
            stub = ans_grpc.AnsweringServiceStub(channel)
            out: dict[str, list[float]] = {}
            for mode in modes:
                for q in queries[:10]:  # warm-up
                    await stub.Search(
                        ans_pb.SearchRequest(query=q, top_k=top_k, mode=PB_MODES[mode]),  # type: ignore[arg-type]
                        metadata=md,
                    )
                lat = []
                for q in queries:
                    t = time.perf_counter()
                    await stub.Search(
                        ans_pb.SearchRequest(query=q, top_k=top_k, mode=PB_MODES[mode]),  # type: ignore[arg-type]
                        metadata=md,
                        timeout=60,
                    )
                    lat.append((time.perf_counter() - t) * 1000)
                out[mode] = lat
    finally:
        await running.stop(1.0)
    keys = yaml.safe_load(Path(settings.keys_file or settings.data_dir / "keys.yaml").read_text())
    digest = hashlib.sha256(key.encode()).hexdigest()
    tenant = next(str(e["tenant"]) for e in keys["keys"] if e.get("sha256") == digest)
    return out, tenant, chunks, ingest_s


def direct_phase(
    settings: Any, tenant: str, queries: list[str], modes: list[str], top_k: int
) -> dict[str, tuple[list[float], list[float]]]:
    store = EdgeStore(
        path=settings.resolved_qdrant_path.with_name("qdrant-edge"),
        collection=settings.vector_store.collection,
    )
    model = load_model(settings.embedding)
    encoder = SparseEncoder()
    scope = Scope(tenant=tenant)
    out: dict[str, tuple[list[float], list[float]]] = {}
    try:
        vectors = {}
        for q in queries:
            vectors[q] = [float(x) for x in model.embed([q], query=True)[0]]
        for mode in modes:
            full, store_only = [], []
            for q in queries[:10]:  # warm-up
                sv = encoder.encode_query(q, detect_language(q))
                store.query(scope, dense=vectors[q], sparse=Sparse(sv.indices, sv.values),
                            limit=top_k, mode=mode)  # fmt: skip
            for q in queries:
                t = time.perf_counter()
                dense = (
                    [float(x) for x in model.embed([q], query=True)[0]]
                    if mode != "sparse"
                    else None
                )
                sv = encoder.encode_query(q, detect_language(q))
                store.query(scope, dense=dense, sparse=Sparse(sv.indices, sv.values),
                            limit=top_k, mode=mode)  # fmt: skip
                full.append((time.perf_counter() - t) * 1000)
                sv = encoder.encode_query(q, detect_language(q))
                t = time.perf_counter()
                store.query(scope, dense=vectors[q], sparse=Sparse(sv.indices, sv.values),
                            limit=top_k, mode=mode)  # fmt: skip
                store_only.append((time.perf_counter() - t) * 1000)
            out[mode] = (full, store_only)
    finally:
        store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=20, help="PIAF articles to ingest")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--modes", default="hybrid,dense,sparse")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--json-out", help="write the figures as JSON")
    args = ap.parse_args()
    if not PIAF.exists():
        print(f"bench_search: {PIAF} not found (../shared/data absent)", file=sys.stderr)
        return 2
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    files, queries = load_slice(args.articles, args.queries)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        settings = load_settings(
            env={}, overrides={"data_dir": tmp, "server": {"host": "127.0.0.1", "port": 0}}
        )
        grpc_lat, tenant, chunks, ingest_s = asyncio.run(
            grpc_phase(settings, files, queries, modes, args.top_k)
        )
        direct = direct_phase(settings, tenant, queries, modes, args.top_k)
    print(
        f"PIAF slice: {len(files)} articles -> {chunks} chunks (ingested in {ingest_s:.1f} s), "
        f"{len(queries)} queries, top_k {args.top_k}; latency in ms"
    )
    head = (
        f"{'mode':<8}{'gRPC p50':>10}{'gRPC p99':>10}{'direct p50':>12}{'direct p99':>12}"
        f"{'store p50':>11}{'store p99':>11}{'gRPC/direct p50':>17}{'p99':>7}"
    )
    print(head)
    print("-" * len(head))
    report: dict[str, Any] = {"articles": len(files), "chunks": chunks, "queries": len(queries)}
    for mode in modes:
        g = grpc_lat[mode]
        full, store_only = direct[mode]
        row = {
            "grpc_p50": pct(g, 50),
            "grpc_p99": pct(g, 99),
            "direct_p50": pct(full, 50),
            "direct_p99": pct(full, 99),
            "store_p50": pct(store_only, 50),
            "store_p99": pct(store_only, 99),
        }
        row["ratio_p50"] = row["grpc_p50"] / max(row["direct_p50"], 1e-9)
        row["ratio_p99"] = row["grpc_p99"] / max(row["direct_p99"], 1e-9)
        row["grpc_mean"] = statistics.fmean(g)
        report[mode] = row
        print(
            f"{mode:<8}{row['grpc_p50']:>10.2f}{row['grpc_p99']:>10.2f}{row['direct_p50']:>12.2f}"
            f"{row['direct_p99']:>12.2f}{row['store_p50']:>11.2f}{row['store_p99']:>11.2f}"
            f"{row['ratio_p50']:>16.2f}x{row['ratio_p99']:>6.2f}x"
        )
    print("direct = query embedding + BM25 encoding + store.query in-process; store = store.query")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
