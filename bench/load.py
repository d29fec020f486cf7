#!/usr/bin/env python
"""Load and soak test against a real ``docfactory serve`` (embedded default, its own process).

Starts ``python -m docfactory.cli serve`` on a free loopback port with a temp data directory,
ingests a small corpus through the API, then drives ``Search`` and ``Answer`` (extractive
generator) at rising concurrency (1, 8, 32, 128 clients by default) for ``--seconds`` each and
prints, per level: throughput, latency p50/p95/p99, errors by gRPC code, and the server's RSS.

Past capacity the server is expected to shed load quickly with RESOURCE_EXHAUSTED (its bounded
number of concurrent RPCs, ``DOCFACTORY_MAX_CONCURRENT_RPCS``, lowered here with
``--max-concurrent-rpcs`` so the 128 level goes past it) rather than letting calls time out.

    .venv/bin/python bench/load.py                                  # 1/8/32/128, 10 s each
    .venv/bin/python bench/load.py --levels 1,8 --seconds 5
    .venv/bin/python bench/load.py --soak 30m --soak-clients 8      # RSS and errors over time
    .venv/bin/python bench/load.py --split --postgres               # split services on PostgreSQL

``--split`` runs one process per service (ingestion, chunking, embedding, answering), wired by
address as in Kubernetes; the answering process owns the embedded vector index and serves it to
ingestion over IndexService (internal listener, service key). ``--postgres`` gives every process
a fresh PostgreSQL database (127.0.0.1:5432 by default, ``--pg``) for its records and audit
chains instead of SQLite. RSS is then the sum over the processes.

The client runs on the same machine as the server: on a shared 2-CPU machine every figure is
noisy and the client's own CPU use caps throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

ROOT = Path(__file__).resolve().parents[1]
CORPUS = [
    (
        "frais.txt",
        "Remboursement des frais de mission. Les justificatifs sont remis sous trente jours. "
        "Le plafond d'une nuit d'hôtel est de 150 euros en province et 200 euros à Paris. "
        "Le responsable hiérarchique valide, puis la comptabilité rembourse sous quinze jours.",
    ),
    (
        "conges.txt",
        "Congés payés. Chaque salarié acquiert deux jours et demi ouvrables par mois de travail "
        "effectif. La période de référence court du 1er juin au 31 mai. Les congés sont posés "
        "au moins un mois à l'avance dans l'outil de gestion des temps.",
    ),
    (
        "securite.txt",
        "Sécurité des données. Les documents classés confidentiels ne quittent pas le réseau "
        "interne. Un incident est signalé au RSSI dans l'heure. Les mots de passe comptent au "
        "moins douze caractères et changent tous les ans.",
    ),
]
QUESTIONS = [
    "Quel est le plafond d'une nuit d'hôtel à Paris ?",
    "Sous quel délai remettre les justificatifs ?",
    "Combien de jours de congés par mois ?",
    "À qui signaler un incident de sécurité ?",
    "Quelle longueur pour un mot de passe ?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(*roots: int) -> float:
    """Resident memory of processes and their children (parse processes), MiB."""
    total = 0
    pids = list(roots)
    for pid in roots:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            pass
    for p in pids:
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        if m:
            total += int(m.group(1))
    return total / 1024


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


async def wait_serving(
    address: str, proc: subprocess.Popen[bytes], log: Path, limit_s: float
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + limit_s
    async with grpc.aio.insecure_channel(address) as ch:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited ({proc.returncode}); see {log}")
            try:
                r = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit(f"server at {address} not ready in time; see {log}")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Server:
    """``docfactory serve``: every service in one process."""

    label = "docfactory serve (embedded default)"

    def __init__(self, data_dir: Path, max_concurrent: int, database_url: str = "") -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DOCFACTORY_DATA_DIR": str(data_dir),
            "DOCFACTORY_PORT": str(self.port),
            "DOCFACTORY_MAX_CONCURRENT_RPCS": str(max_concurrent),
            "PYTHONPATH": str(ROOT / "services"),
        }
        if database_url:
            env["DOCFACTORY_DATABASE_URL"] = database_url
            self.label = "docfactory serve (one process, PostgreSQL)"
        self.log_path = data_dir / "server.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", "serve"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.address = self.ingest_address = f"127.0.0.1:{self.port}"
        self.key_file = data_dir / "api-key"

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    async def ready(self, limit_s: float = 600) -> str:
        await wait_serving(self.address, self.proc, self.log_path, limit_s)
        return self.key_file.read_text().strip()

    def stop(self) -> None:
        stop_all([self.proc])
        self.log.close()


class Split:
    """One process per service (``python -m docfactory.<service>``), wired by address."""

    KEY = "load-bench-key-0123456789"

    def __init__(self, data_dir: Path, max_concurrent: int, database_url: str = "") -> None:
        import hashlib

        keys = data_dir / "keys.yaml"
        digest = hashlib.sha256(self.KEY.encode()).hexdigest()
        keys.write_text(
            f"keys:\n- id: load\n  tenant: load\n  sha256: {digest}\n", encoding="utf-8"
        )
        services = ("embedding", "chunking", "answering", "ingestion")
        addr = {s: f"127.0.0.1:{free_port()}" for s in services}
        index_addr = f"127.0.0.1:{free_port()}"
        base = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "services"),
            "DOCFACTORY_DATA_DIR": str(data_dir),
            "DOCFACTORY_KEYS_FILE": str(keys),
            "DOCFACTORY_HOST": "127.0.0.1",
            "DOCFACTORY_MAX_CONCURRENT_RPCS": str(max_concurrent),
            "DOCFACTORY_SERVICE_KEY": "load-bench-service-key-0123456789",
            **{f"DOCFACTORY_{s.upper()}_ADDRESS": a for s, a in addr.items()},
        }
        if database_url:
            base["DOCFACTORY_DATABASE_URL"] = database_url
        self.label = "split services (4 processes" + (", PostgreSQL)" if database_url else ")")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        for svc in services:
            env = {**base, "DOCFACTORY_PORT": addr[svc].rsplit(":", 1)[1]}
            if svc == "answering":  # owns the embedded index, serves it to ingestion
                env["DOCFACTORY_INDEX_LISTEN"] = index_addr
            if svc == "ingestion":
                env["DOCFACTORY_INDEX_ADDRESS"] = index_addr
            self.logs[svc] = data_dir / f"{svc}.log"
            with self.logs[svc].open("wb") as log:
                self.procs[svc] = subprocess.Popen(
                    [sys.executable, "-m", f"docfactory.{svc}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.addr = addr
        self.address = addr["answering"]
        self.ingest_address = addr["ingestion"]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    async def ready(self, limit_s: float = 600) -> str:
        for svc, proc in self.procs.items():
            await wait_serving(self.addr[svc], proc, self.logs[svc], limit_s)
        return self.KEY

    def stop(self) -> None:
        stop_all(list(self.procs.values()))


class FreshDatabase:
    """A new PostgreSQL database for one run (dropped at the end)."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.name = f"docfactory_load_{os.getpid()}_{int(time.time())}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = admin_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}".replace("postgresql://", "postgresql+psycopg://", 1)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


async def ingest(ch: grpc.aio.Channel, md: Any) -> None:
    stub = ing_grpc.IngestionServiceStub(ch)
    for name, text in CORPUS:

        async def reqs(
            name: str = name, text: str = text
        ) -> AsyncIterator[ing_pb.UploadDocumentRequest]:
            yield ing_pb.UploadDocumentRequest(
                metadata=ing_pb.UploadMetadata(filename=name, collection="load")
            )
            yield ing_pb.UploadDocumentRequest(data=text.encode("utf-8"))

        await stub.UploadDocument(reqs(), metadata=md, timeout=600)


Call = Callable[[ans_grpc.AnsweringServiceStub, str, Any], Awaitable[None]]


async def do_search(stub: ans_grpc.AnsweringServiceStub, q: str, md: Any) -> None:
    await stub.Search(ans_pb.SearchRequest(query=q, top_k=5), metadata=md, timeout=30)


async def do_answer(stub: ans_grpc.AnsweringServiceStub, q: str, md: Any) -> None:
    async for _ in stub.Answer(ans_pb.AnswerRequest(question=q), metadata=md, timeout=30):
        pass


async def run_level(
    channels: list[grpc.aio.Channel], md: Any, call: Call, clients: int, seconds: float
) -> tuple[list[float], collections.Counter[str], float]:
    stubs = [ans_grpc.AnsweringServiceStub(ch) for ch in channels]
    latencies: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        stub = stubs[i % len(stubs)]
        n = i
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                await call(stub, QUESTIONS[n % len(QUESTIONS)], md)
                latencies.append((time.perf_counter() - started) * 1000)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(0.05)  # a shed call: back off a little, as clients should
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, codes, time.monotonic() - started


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"duration like 90s, 30m or 2h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


async def main_async(ns: argparse.Namespace) -> None:
    levels = [int(x) for x in ns.levels.split(",") if x]
    db = FreshDatabase(ns.pg) if ns.postgres else None
    with tempfile.TemporaryDirectory() as tmp:
        kind = Split if ns.split else Server
        server = kind(Path(tmp), ns.max_concurrent_rpcs, db.url if db else "")
        try:
            key = await server.ready()
            md = (("x-api-key", key),)
            channels = [grpc.aio.insecure_channel(server.address) for _ in range(8)]
            async with grpc.aio.insecure_channel(server.ingest_address) as ing_ch:
                await ingest(ing_ch, md)
            for q in QUESTIONS:  # warm-up
                await do_search(ans_grpc.AnsweringServiceStub(channels[0]), q, md)
                await do_answer(ans_grpc.AnsweringServiceStub(channels[0]), q, md)
            print(
                f"# {server.label}, {os.cpu_count()} CPUs shared, "
                f"max concurrent RPCs {ns.max_concurrent_rpcs}, {ns.seconds:.0f} s per level, "
                f"RSS at start {rss_mib(*server.pids):.0f} MiB"
            )
            print(
                "| RPC | clients | req/s | p50 ms | p95 ms | p99 ms | errors | error codes "
                "| RSS MiB |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
            for name, call in (("Search", do_search), ("Answer", do_answer)):
                for clients in levels:
                    lat, codes, elapsed = await run_level(channels, md, call, clients, ns.seconds)
                    total = sum(codes.values())
                    errors = total - codes["OK"]
                    by_code = ", ".join(f"{c} {n}" for c, n in sorted(codes.items()) if c != "OK")
                    print(
                        f"| {name} | {clients} | {codes['OK'] / elapsed:.1f} | {pct(lat, 50):.1f} "
                        f"| {pct(lat, 95):.1f} | {pct(lat, 99):.1f} "
                        f"| {100 * errors / max(1, total):.1f}% | {by_code or '-'} "
                        f"| {rss_mib(*server.pids):.0f} |",
                        flush=True,
                    )
            if ns.soak:
                await soak(channels, md, server, ns.soak, ns.soak_clients)
            for ch in channels:
                await ch.close()
        finally:
            server.stop()
            if db is not None:
                db.drop()


async def soak(
    channels: list[grpc.aio.Channel],
    md: Any,
    server: Server | Split,
    duration: float,
    clients: int,
) -> None:
    """Search and Answer alternately for ``duration``; RSS and errors every minute."""
    print(f"\n# soak: {clients} clients, Search+Answer, {duration / 60:.0f} min")
    print("| minute | req/s | p95 ms | errors | RSS MiB |")
    print("|---:|---:|---:|---:|---:|")
    rss: list[float] = []
    all_codes: collections.Counter[str] = collections.Counter()
    start = time.monotonic()
    minute = 0
    while time.monotonic() - start < duration:
        window = min(60.0, duration - (time.monotonic() - start))
        half = max(1, clients // 2)
        (lat_s, codes_s, el), (lat_a, codes_a, _) = await asyncio.gather(
            run_level(channels, md, do_search, half, window),
            run_level(channels, md, do_answer, max(1, clients - half), window),
        )
        codes = codes_s + codes_a
        all_codes += codes
        rss.append(rss_mib(*server.pids))
        minute += 1
        errors = sum(codes.values()) - codes["OK"]
        print(
            f"| {minute} | {codes['OK'] / el:.1f} | {pct(lat_s + lat_a, 95):.1f} | {errors} "
            f"| {rss[-1]:.0f} |",
            flush=True,
        )
    errors = sum(all_codes.values()) - all_codes["OK"]
    slope = 0.0
    if len(rss) >= 2:
        xs = list(range(len(rss)))
        slope = statistics.linear_regression(xs, rss).slope
    print(
        f"\nsoak: {all_codes['OK']} calls OK, {errors} errors "
        f"({dict((c, n) for c, n in all_codes.items() if c != 'OK') or 'none'}); RSS first "
        f"{rss[0]:.0f} MiB, last {rss[-1]:.0f} MiB, max {max(rss):.0f} MiB, "
        f"slope {slope:+.2f} MiB/min"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--levels", default="1,8,32,128")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-concurrent-rpcs", type=int, default=64)
    p.add_argument("--soak", type=parse_duration, default=0.0, help="e.g. 30m")
    p.add_argument("--soak-clients", type=int, default=8)
    p.add_argument("--split", action="store_true", help="one process per service")
    p.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
