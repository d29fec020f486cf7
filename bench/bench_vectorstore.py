#!/usr/bin/env python
"""Embedded vector store benchmark: QdrantStore local on-disk mode vs EdgeStore (Qdrant Edge).

Same random data for both backends, in the same run: upsert throughput (points/s, in batches
as an ingestion would write them, flushed each batch) and filtered query latency (tenant filter
+ classification ceiling) p50/p95 for dense and hybrid (dense + BM25 sparse, RRF) queries.

    PYTHONPATH=services .venv/bin/python bench/bench_vectorstore.py --points 20000 --dim 512
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    import docfactory  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from docfactory.core.vectorstore import (
    ChunkPoint,
    QdrantStore,
    Scope,
    Sparse,
    VectorStore,
    point_id,
)
from docfactory.core.vectorstore_edge import EdgeStore

COLLECTION = "bench_chunks"
VOCAB = 30_000  # sparse term-id space
TERMS_PER_CHUNK = 40
TERMS_PER_QUERY = 6


def make_points(args: argparse.Namespace, rng: np.random.Generator) -> list[ChunkPoint]:
    vecs = rng.standard_normal((args.points, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    # Zipf-like term ids so that IDF is meaningful.
    terms = np.minimum(rng.zipf(1.3, (args.points, TERMS_PER_CHUNK)), VOCAB) - 1
    classes = rng.integers(0, 4, args.points)
    points = []
    for i in range(args.points):
        tenant = f"tenant-{i % args.tenants:02d}"
        doc = f"{tenant}/doc-{i // 20}"
        sparse = None
        if args.sparse:
            ids, counts = np.unique(terms[i], return_counts=True)
            sparse = Sparse(indices=ids.tolist(), values=counts.astype(float).tolist())
        points.append(
            ChunkPoint(
                id=point_id(doc, 1, i % 20),
                dense=vecs[i].tolist(),
                sparse=sparse,
                payload={
                    "tenant": tenant,
                    "collection": f"coll-{i % 3}",
                    "document_id": doc,
                    "document_version": 1,
                    "classification": int(classes[i]),
                    "pages": [i % 50 + 1],
                    "section_path": ["Chapter", f"Section {i % 7}"],
                    "text": f"chunk {i} " + "lorem ipsum " * 40,
                },
            )
        )
    return points


def make_queries(
    args: argparse.Namespace, rng: np.random.Generator
) -> list[tuple[Scope, list[float], Sparse]]:
    out = []
    for _ in range(args.queries):
        vec = rng.standard_normal(args.dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        ids = np.unique(np.minimum(rng.zipf(1.3, TERMS_PER_QUERY), VOCAB) - 1)
        scope = Scope(
            tenant=f"tenant-{int(rng.integers(0, args.tenants)):02d}",
            max_classification=int(rng.integers(1, 4)),
        )
        out.append((scope, vec.tolist(), Sparse(ids.tolist(), [1.0] * len(ids))))
    return out


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_blocks * 512  # allocated, not apparent (sparse mmap files)
    return total


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def bench_one(
    name: str,
    factory: Callable[[], VectorStore],
    root: Path,
    points: list[ChunkPoint],
    queries: list[tuple[Scope, list[float], Sparse]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    res: dict[str, Any] = {"backend": name}
    t0 = time.perf_counter()
    store = factory()
    res["open_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        for i in range(0, len(points), args.batch):
            store.upsert(points[i : i + args.batch], args.dim)
        dt = time.perf_counter() - t0
        res["upsert_s"] = dt
        res["upsert_pps"] = len(points) / dt
        assert store.count(Scope(tenant="tenant-00")) == len(
            [p for p in points if p.payload["tenant"] == "tenant-00"]
        )
        modes = ["dense", "hybrid"] if args.sparse else ["dense"]
        for mode in modes:
            for scope, dense, sparse in queries[: min(10, len(queries))]:  # warm-up
                store.query(scope, dense=dense, sparse=sparse, limit=args.limit, mode=mode)
            lat = []
            for scope, dense, sparse in queries:
                t0 = time.perf_counter()
                hits = store.query(scope, dense=dense, sparse=sparse, limit=args.limit, mode=mode)
                lat.append((time.perf_counter() - t0) * 1000.0)
                assert all(h.payload["tenant"] == scope.tenant for h in hits)
                assert all(
                    int(h.payload["classification"]) <= scope.max_classification for h in hits
                )
            res[f"{mode}_p50_ms"] = pct(lat, 50)
            res[f"{mode}_p95_ms"] = pct(lat, 95)
            res[f"{mode}_mean_ms"] = statistics.fmean(lat)
        t0 = time.perf_counter()
        for scope, _d, _s in queries[:50]:
            store.count(scope)
        res["count_ms"] = (time.perf_counter() - t0) * 1000.0 / min(50, len(queries))
    finally:
        store.close()
    res["disk_mb"] = dir_size(root) / 1e6
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--tenants", type=int, default=19)
    ap.add_argument("--batch", type=int, default=256, help="points per upsert call")
    ap.add_argument("--limit", type=int, default=10, help="hits per query")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--no-sparse",
        dest="sparse",
        action="store_false",
        help="dense vectors only (no BM25 sparse vectors, no hybrid queries)",
    )
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--backends", default="local,edge", help="comma list: local,edge")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    points = make_points(args, rng)
    queries = make_queries(args, rng)
    print(
        f"data: {args.points} points x {args.dim}-d, {args.tenants} tenants, "
        f"sparse={'on' if args.sparse else 'off'}, batch {args.batch}, {args.queries} queries "
        f"(tenant + classification ceiling, limit {args.limit}); generated in "
        f"{time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_vectorstore_"))
    work.mkdir(parents=True, exist_ok=True)
    factories: dict[str, tuple[Path, Callable[[], VectorStore]]] = {}
    lp, ep = work / "qdrant-local", work / "edge"
    factories["local"] = (lp, lambda: QdrantStore(collection=COLLECTION, path=lp))
    factories["edge"] = (ep, lambda: EdgeStore(path=ep, collection=COLLECTION))
    results = []
    try:
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            root, factory = factories[name]
            shutil.rmtree(root, ignore_errors=True)
            print(f"running {name} ...", flush=True)
            results.append(bench_one(name, factory, root, points, queries, args))
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("upsert points/s", "upsert_pps", "{:,.0f}"),
        ("upsert total s", "upsert_s", "{:.2f}"),
        ("dense p50 ms", "dense_p50_ms", "{:.2f}"),
        ("dense p95 ms", "dense_p95_ms", "{:.2f}"),
        ("dense mean ms", "dense_mean_ms", "{:.2f}"),
        ("hybrid p50 ms", "hybrid_p50_ms", "{:.2f}"),
        ("hybrid p95 ms", "hybrid_p95_ms", "{:.2f}"),
        ("count ms", "count_ms", "{:.2f}"),
        ("open s", "open_s", "{:.3f}"),
        ("disk MB", "disk_mb", "{:.1f}"),
    ]
    names = [r["backend"] for r in results]
    by = {r["backend"]: r for r in results}
    header = f"{'metric':<18}" + "".join(f"{n:>14}" for n in names)
    if {"local", "edge"} <= set(names):
        header += f"{'edge/local':>12}"
    print()
    print(header)
    print("-" * len(header))
    for label, key, fmt in rows:
        if not all(key in r for r in results):
            continue
        line = f"{label:<18}" + "".join(f"{fmt.format(by[n][key]):>14}" for n in names)
        if {"local", "edge"} <= set(names) and by["local"][key]:
            line += f"{by['edge'][key] / by['local'][key]:>11.3g}x"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
