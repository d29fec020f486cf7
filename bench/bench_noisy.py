#!/usr/bin/env python
"""Noisy neighbour: tenant B's hybrid Search latency while tenant A embeds at the Embed cap.

Starts ``python -m docfactory.cli serve`` (embedded default, its own process) with a keys file
of two tenants, uploads a few documents for tenant B, then measures B's hybrid ``Search``
(sequential calls, p50/p95):

1. solo (the baseline of the run),
2. while tenant A runs 1, then 2, concurrent ``Embed`` loops at the documented cap (512 texts of
   256 characters, input type PASSAGE), each loop in its own client process, back to back.

Prints B's p50/p95 per phase and its ratio to the solo p50 (issue 24's target: within 3x),
and what tenant A got meanwhile (texts embedded per second, refusals by code).

``--baseline-ref REF`` runs the same phases first against the code of a git commit (``git
archive REF services``, e.g. ``HEAD`` before a change), with ``--baseline-searches`` searches
per phase since each may take seconds there.

    .venv/bin/python bench/bench_noisy.py                         # 40 searches per phase
    .venv/bin/python bench/bench_noisy.py --loops 1,2 --searches 60
    .venv/bin/python bench/bench_noisy.py --baseline-ref HEAD     # before/after in one run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
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

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.embedding.v1 import embedding_service_pb2 as emb_pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"a": "noisy-bench-tenant-a-0123456789", "b": "noisy-bench-tenant-b-0123456789"}
CAP_TEXTS, CAP_CHARS = 512, 256
HYBRID = 3
CORPUS = {
    "frais.txt": "Remboursement des frais de mission. Les justificatifs sont remis sous trente "
    "jours. Le plafond d'une nuit d'hôtel est de 150 euros en province et 200 euros à Paris. "
    "Le responsable hiérarchique valide, puis la comptabilité rembourse sous quinze jours.",
    "conges.txt": "Congés payés. Chaque salarié acquiert deux jours et demi ouvrables par mois "
    "de travail effectif. La période de référence court du 1er juin au 31 mai. Les congés sont "
    "posés au moins un mois à l'avance dans l'outil de gestion des temps.",
    "securite.txt": "Sécurité des données. Les documents classés confidentiels ne quittent pas "
    "le réseau interne. Un incident est signalé au RSSI dans l'heure. Les mots de passe "
    "comptent au moins douze caractères et changent tous les ans.",
}
QUESTIONS = [
    "Quel est le plafond d'une nuit d'hôtel à Paris ?",
    "Sous quel délai remettre les justificatifs ?",
    "Combien de jours de congés par mois ?",
    "À qui signaler un incident de sécurité ?",
    "Quelle longueur pour un mot de passe ?",
]


def md(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", KEYS[tenant]),)


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- tenant A: one Embed loop per process -------------------------------------------------


def cap_request(seed: int) -> emb_pb.EmbedRequest:
    filler = " le taux du prêt immobilier dépend de la durée et de l'apport du client" * 5
    texts = [(f"{seed}-{i:03d}" + filler)[:CAP_CHARS] for i in range(CAP_TEXTS)]
    return emb_pb.EmbedRequest(texts=texts, input_type=emb_pb.INPUT_TYPE_PASSAGE)


async def embed_loop(address: str) -> None:
    """Embed at the cap back to back until SIGTERM; prints one JSON line of counts."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    texts, errors, started = 0, Counter[str](), time.monotonic()
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as ch:
        stub = emb_grpc.EmbeddingServiceStub(ch)

        async def run() -> None:
            nonlocal texts
            seed = 0
            while True:
                seed += 1
                try:
                    resp = await stub.Embed(cap_request(seed), metadata=md("a"), timeout=120)
                    texts += len(resp.embeddings)
                    print("ok", flush=True)  # the parent waits for the first one
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1
                    await asyncio.sleep(0.5)

        task = asyncio.create_task(run())
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elapsed = time.monotonic() - started
    print(json.dumps({"texts": texts, "seconds": elapsed, "errors": dict(errors)}), flush=True)


class Loops:
    def __init__(self, address: str, n: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
        self.procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--embed-loop", address],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]

    async def warm(self) -> None:
        """Until each loop has had one Embed answered (A's load is on the model)."""
        for p in self.procs:
            assert p.stdout is not None
            line = await asyncio.to_thread(p.stdout.readline)
            if line.strip() != "ok":
                raise SystemExit(f"embed loop failed: {line!r}")

    def stop(self) -> dict[str, Any]:
        texts, seconds, errors = 0, 0.0, Counter[str]()
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            out, _ = p.communicate(timeout=120)
            last = [ln for ln in out.splitlines() if ln.startswith("{")]
            if last:
                stats = json.loads(last[-1])
                texts += stats["texts"]
                seconds = max(seconds, stats["seconds"])
                errors.update(stats["errors"])
        return {"texts_per_s": texts / seconds if seconds else 0.0, "errors": dict(errors)}


# ---- the server and tenant B -------------------------------------------------------------


class Server:
    def __init__(self, data: Path, services: Path) -> None:
        keys = data / "keys.yaml"
        keys.write_text(
            "keys:\n"
            + "".join(
                f"- id: noisy-{t}\n  tenant: tenant-{t}\n"
                f"  sha256: {hashlib.sha256(k.encode()).hexdigest()}\n"
                for t, k in KEYS.items()
            ),
            encoding="utf-8",
        )
        self.address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "PYTHONPATH": str(services),
            "DOCFACTORY_DATA_DIR": str(data),
            "DOCFACTORY_KEYS_FILE": str(keys),
            "DOCFACTORY_HOST": "127.0.0.1",
            "DOCFACTORY_PORT": self.address.rsplit(":", 1)[1],
        }
        self.log = (data / "server.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", "serve"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, limit_s: float = 600) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + limit_s
        async with grpc.aio.insecure_channel(self.address) as ch:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited ({self.proc.returncode}): {self.log.name}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    r = await health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.5)
        raise SystemExit(f"server not ready in time: {self.log.name}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


async def upload_b(channel: grpc.aio.Channel) -> None:
    stub = ing_grpc.IngestionServiceStub(channel)
    for name, text in CORPUS.items():

        async def reqs(
            name: str = name, text: str = text
        ) -> AsyncIterator[ing_pb.UploadDocumentRequest]:
            yield ing_pb.UploadDocumentRequest(metadata=ing_pb.UploadMetadata(filename=name))
            yield ing_pb.UploadDocumentRequest(data=text.encode("utf-8"))

        await stub.UploadDocument(reqs(), metadata=md("b"), timeout=600)


async def searches(channel: grpc.aio.Channel, n: int) -> list[float]:
    stub = ans_grpc.AnsweringServiceStub(channel)
    out = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)]
        t = time.perf_counter()
        resp = await stub.Search(
            ans_pb.SearchRequest(query=q, top_k=5, mode=HYBRID),  # type: ignore[arg-type]
            metadata=md("b"),
            timeout=300,
        )
        out.append((time.perf_counter() - t) * 1000)
        if not resp.results:
            raise SystemExit("tenant B's Search found nothing")
    return out


async def run_code(label: str, services: Path, loops: list[int], n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-noisy-") as tmp:
        server = Server(Path(tmp), services)
        try:
            await server.ready()
            async with grpc.aio.insecure_channel(server.address) as ch:
                await upload_b(ch)
                await searches(ch, 5)  # warm-up
                solo = await searches(ch, n)
                rows.append({"code": label, "phase": "solo", "lat": solo, "a": None})
                print(f"# {label}: solo p50 {pct(solo, 50):.0f} ms", file=sys.stderr)
                for k in loops:
                    load = Loops(server.address, k)
                    try:
                        await load.warm()
                        lat = await searches(ch, n)
                    finally:
                        a = load.stop()
                    rows.append(
                        {"code": label, "phase": f"A: {k} Embed loop(s)", "lat": lat, "a": a}
                    )
                    print(f"# {label}: {k} loop(s) p50 {pct(lat, 50):.0f} ms", file=sys.stderr)
        finally:
            server.stop()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    solo = {r["code"]: pct(r["lat"], 50) for r in rows if r["phase"] == "solo"}
    out = [
        "| code | tenant A load | B searches | B p50 ms | B p95 ms | p50 / solo p50 "
        "| A texts/s | A refusals |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p50 = pct(r["lat"], 50)
        a = r["a"]
        out.append(
            f"| {r['code']} | {r['phase']} | {len(r['lat'])} | {p50:.0f} | {pct(r['lat'], 95):.0f} "
            f"| {p50 / solo[r['code']]:.2f} | {a['texts_per_s']:.0f} | "
            f"{', '.join(f'{c} {m}' for c, m in a['errors'].items()) or '-'} |"
            if a
            else f"| {r['code']} | {r['phase']} | {len(r['lat'])} | {p50:.0f} "
            f"| {pct(r['lat'], 95):.0f} | 1.00 | - | - |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--searches", type=int, default=40, help="B's searches per phase")
    ap.add_argument("--loops", default="1,2", help="tenant A's concurrent Embed loops per phase")
    ap.add_argument("--baseline-ref", help="also run the code of this git commit first")
    ap.add_argument("--baseline-searches", type=int, default=5)
    ap.add_argument(
        "--services", default=str(ROOT / "services"), help="the code tree to serve (PYTHONPATH)"
    )
    ap.add_argument("--embed-loop", help=argparse.SUPPRESS)  # internal: tenant A's client
    args = ap.parse_args()
    if args.embed_loop:
        asyncio.run(embed_loop(args.embed_loop))
        return 0
    loops = [int(x) for x in args.loops.split(",") if x.strip()]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-noisy-ref-") as ref_dir:
        if args.baseline_ref:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.baseline_ref, "services"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", ref_dir], input=archive, check=True)
            rows += asyncio.run(
                run_code(
                    args.baseline_ref, Path(ref_dir) / "services", loops, args.baseline_searches
                )
            )
        rows += asyncio.run(run_code("working tree", Path(args.services), loops, args.searches))
    print(
        f"# tenant B: hybrid Search, sequential; tenant A: Embed {CAP_TEXTS} x {CAP_CHARS} chars "
        f"(PASSAGE) back to back per loop, each loop its own process; {os.cpu_count()} CPUs"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
