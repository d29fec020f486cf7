#!/usr/bin/env python
"""Audit chains per tenant vs one global chain, on PostgreSQL, same run, same machine.

Two measurements, each in "single" mode (every record on one chain: the former global head
lock, reproduced by pointing ``AuditLog.chain_of`` at one chain) and "per-tenant" mode (the
default: one chain per tenant):

1. **appends**: 32 concurrent writers (``--processes`` x threads, like server replicas
   sharing one database) append audit records of 8 tenants for ``--seconds``; records/s.
2. **search**: an in-process ``docfactory serve`` (embedded vector store, PostgreSQL metadata
   database) takes ``Search`` from 32 concurrent gRPC clients of 8 tenants for ``--seconds``;
   requests/s, p50/p95. (One server process appends on its event loop, so its own requests
   never contend on the row lock; the gain shows with several replicas: measurement 1.)

Prints each figure and the ratio per-tenant / single.

    .venv/bin/python bench/bench_audit.py                    # 32 clients, 15 s per phase
    .venv/bin/python bench/bench_audit.py --seconds 30 --skip-search
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    import docfactory  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "DOCFACTORY_BENCH_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TENANTS = [f"entity-{i}" for i in range(8)]
MODES = ("single", "per-tenant")


def _set_mode(mode: str) -> None:
    from docfactory.governance.audit import AuditLog

    if mode == "single":
        AuditLog.chain_of = lambda self, tenant: "single"  # type: ignore[method-assign]


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"bench_audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- 1. appends ---------------------------------------------------------------------------


def _writer_process(url: str, mode: str, threads: int, seconds: float, base: int, out: Any) -> None:
    from docfactory.governance.audit import AuditLog

    _set_mode(mode)
    engine = sa.create_engine(url, pool_size=threads, max_overflow=0)
    log = AuditLog(engine, create_tables=False)
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        tenant = TENANTS[(base + i) % len(TENANTS)]
        while time.monotonic() < deadline:
            log.append(tenant=tenant, key_id="k", use_case="uc", action="SEARCH", latency_ms=i)
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    engine.dispose()
    out.put(sum(counts))


def appends(mode: str, processes: int, threads: int, seconds: float) -> float:
    from docfactory.core import migrate
    from docfactory.governance.audit import AuditLog

    with fresh_database() as url:
        migrate.upgrade(url)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [
            ctx.Process(
                target=_writer_process, args=(url, mode, threads, seconds, p * threads, out)
            )
            for p in range(processes)
        ]
        for p in procs:
            p.start()
        total = sum(out.get(timeout=seconds + 120) for _ in procs)
        for p in procs:
            p.join(30)
        engine = sa.create_engine(url)
        report = AuditLog(engine, create_tables=False).verify()
        engine.dispose()
        assert report.ok and report.checked == total, (report.problems[:5], total)
        return float(total / seconds)


# -- 2. search ----------------------------------------------------------------------------


async def _search_phase(mode: str, clients: int, seconds: float) -> tuple[float, float, float]:
    import grpc
    import yaml

    from docfactory.answering.v1 import answering_service_pb2 as ans_pb
    from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
    from docfactory.app import start_server
    from docfactory.core.config import load_settings
    from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
    from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

    _set_mode(mode)
    with fresh_database() as url, tempfile.TemporaryDirectory() as tmp:
        keys = [f"bench-key-{t}" for t in TENANTS]
        keys_file = Path(tmp) / "keys.yaml"
        keys_file.write_text(
            yaml.safe_dump(
                {
                    "keys": [
                        {
                            "id": f"app-{t}",
                            "tenant": t,
                            "sha256": hashlib.sha256(k.encode()).hexdigest(),
                        }
                        for t, k in zip(TENANTS, keys, strict=True)
                    ]
                }
            )
        )
        settings = load_settings(
            env={},
            overrides={
                "data_dir": tmp,
                "database_url": url,
                "keys_file": str(keys_file),
                "server": {"host": "127.0.0.1", "port": 0},
            },
        )
        running = await start_server(settings, port=0)
        try:
            async with grpc.aio.insecure_channel(running.address) as ch:
                ing = ing_grpc.IngestionServiceStub(ch)
                for t, k in zip(TENANTS, keys, strict=True):
                    text = (
                        f"Note de l'entité {t}. Procédure de remboursement des frais de mission : "
                        "justificatifs sous trente jours, plafond de 150 euros par nuit d'hôtel, "
                        "validation par le responsable hiérarchique puis par la comptabilité."
                    )

                    async def reqs(text: str = text) -> AsyncIterator[ing_pb.UploadDocumentRequest]:
                        yield ing_pb.UploadDocumentRequest(
                            metadata=ing_pb.UploadMetadata(filename="note.txt", collection="c")
                        )
                        yield ing_pb.UploadDocumentRequest(data=text.encode())

                    await ing.UploadDocument(reqs(), metadata=(("x-api-key", k),), timeout=600)
                stub = ans_grpc.AnsweringServiceStub(ch)
                queries = ["plafond hôtel", "justificatifs frais de mission", "qui valide ?"]
                for k in keys:  # warm-up
                    await stub.Search(
                        ans_pb.SearchRequest(query=queries[0]), metadata=(("x-api-key", k),)
                    )
                latencies: list[float] = []
                deadline = time.monotonic() + seconds

                async def client(i: int) -> None:
                    md = (("x-api-key", keys[i % len(keys)]),)
                    n = 0
                    while time.monotonic() < deadline:
                        started = time.perf_counter()
                        await stub.Search(
                            ans_pb.SearchRequest(query=queries[n % len(queries)]),
                            metadata=md,
                            timeout=60,
                        )
                        latencies.append((time.perf_counter() - started) * 1000)
                        n += 1

                started = time.monotonic()
                await asyncio.gather(*(client(i) for i in range(clients)))
                elapsed = time.monotonic() - started
        finally:
            await running.stop(1.0)
    qs = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, qs[49], qs[94]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--processes", type=int, default=4, help="writer processes (replicas)")
    p.add_argument("--skip-search", action="store_true")
    ns = p.parse_args()
    threads = max(1, ns.clients // ns.processes)
    print(f"# {os.cpu_count()} CPUs (shared machine: figures are noisy), PostgreSQL {ADMIN_URL}")
    rates: dict[str, float] = {}
    for mode in MODES:
        rates[mode] = appends(mode, ns.processes, threads, ns.seconds)
        print(
            f"appends  {mode:>10}: {rates[mode]:8.1f} records/s "
            f"({ns.processes} processes x {threads} threads, {len(TENANTS)} tenants)",
            flush=True,
        )
    print(f"appends  ratio per-tenant/single: {rates['per-tenant'] / rates['single']:.2f}x")
    if ns.skip_search:
        return
    search: dict[str, tuple[float, float, float]] = {}
    for mode in MODES:
        # each mode in a fresh interpreter: the "single" patch must not leak into the other
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=_search_child, args=(mode, ns.clients, ns.seconds, out))
        proc.start()
        search[mode] = out.get(timeout=1800)
        proc.join(60)
        rps, p50, p95 = search[mode]
        print(
            f"search   {mode:>10}: {rps:8.1f} req/s, p50 {p50:6.1f} ms, p95 {p95:6.1f} ms "
            f"({ns.clients} clients, 1 server process)",
            flush=True,
        )
    ratio = search["per-tenant"][0] / search["single"][0]
    print(f"search   ratio per-tenant/single: {ratio:.2f}x")


def _search_child(mode: str, clients: int, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_search_phase(mode, clients, seconds)))


if __name__ == "__main__":
    main()
