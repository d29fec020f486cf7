#!/usr/bin/env python
"""Dossier workflow benchmark (issue 13): time per dossier and per step on the embedded default,
and the share of the time in each step.

The real path: the docfactory server in-process (port 0, temp data dir, SQLite, embedded
embedding model), one ``python -m docfactory.workflows.engine`` worker process (DBOS on the
same SQLite folder), and for each dossier: CreateDossier (ingestion + page texts), StartRun,
the run followed until AWAITING_SIGNOFF (classify, required, extract per document, check,
retrieve, draft), then an APPROVE and the run followed until COMPLETED.

Baseline measured in the same run: the same files uploaded with plain
IngestionService.UploadDocument (what ingesting the documents costs anyway). Printed: per phase
median seconds per dossier, the ratio of the whole dossier to that baseline, and per step its
mean milliseconds and share of the step time.

Dossiers: ``--dossiers N`` synthetic financing applications (invented values, valid check
digits; Markdown files, tests/workflows/dossiers.py), or ``--folder DIR`` whose sub-folders
are dossiers (e.g. a generated evaluation set), run with ``--flow``.

    .venv/bin/python bench/bench_dossier.py                     # 5 synthetic dossiers
    .venv/bin/python bench/bench_dossier.py --dossiers 10 --json-out /tmp/dossier.json
    .venv/bin/python bench/bench_dossier.py --folder /tmp/evalset/financement --flow financement
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

KEY = "bench-key"


def _write_keys(path: Path) -> None:
    import hashlib

    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {
                        "id": "bench",
                        "tenant": "bench",
                        "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                    }
                ]
            }
        )
    )


def _dossier_folders(ns: argparse.Namespace, tmp: Path) -> list[list[Path]]:
    if ns.folder:
        subs = sorted(p for p in Path(ns.folder).iterdir() if p.is_dir())
        out = [sorted(f for f in s.iterdir() if f.is_file()) for s in subs]
        return [files for files in out if files][: ns.dossiers or None]
    from tests.workflows import dossiers

    return [
        dossiers.financement(tmp / f"d{i}", amount=f"{100 + i * 5} 000,00 €")
        for i in range(ns.dossiers)
    ]


async def _upload(ch: Any, path: Path, md: Any) -> float:
    from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
    from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

    data = path.read_bytes()

    async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(
                filename=path.name, collection="baseline", source_uri=f"bench:{path}"
            )
        )
        yield ing_pb.UploadDocumentRequest(data=data)

    t0 = time.perf_counter()
    await ing_grpc.IngestionServiceStub(ch).UploadDocument(reqs(), metadata=md, timeout=600)
    return time.perf_counter() - t0


async def _until(stub: Any, name: str, md: Any, states: set[int], within: float) -> Any:
    from docfactory.workflows.v1 import workflows_service_pb2 as pb

    deadline = time.monotonic() + within
    while True:
        run = (await stub.GetRun(pb.GetRunRequest(name=name), metadata=md)).run
        if run.state in states:
            return run
        if time.monotonic() > deadline:
            raise SystemExit(f"run {name} stuck in {pb.RunState.Name(run.state)}")
        await asyncio.sleep(0.05)


async def main(ns: argparse.Namespace) -> dict[str, Any]:
    import grpc

    from docfactory.app import start_server
    from docfactory.core.config import load_settings
    from docfactory.workflows.v1 import workflows_service_pb2 as pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as pb_grpc

    tmp = Path(tempfile.mkdtemp(prefix="bench-dossier-"))
    data = tmp / "data"
    data.mkdir()
    _write_keys(tmp / "keys.yaml")
    settings = load_settings(
        env={},
        overrides={
            "data_dir": str(data),
            "keys_file": str(tmp / "keys.yaml"),
            "server": {"host": "127.0.0.1", "port": 0},
        },
    )
    folders = _dossier_folders(ns, tmp)
    server = await start_server(settings, port=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")} | {
        "DOCFACTORY_DATA_DIR": str(data),
        "DOCFACTORY_KEYS_FILE": str(tmp / "keys.yaml"),
        "DOCFACTORY_DATABASE_URL": settings.resolved_database_url,
        "DOCFACTORY_WORKER_API_KEY": KEY,
        "DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS": server.address,
    }
    log = open(tmp / "worker.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-m", "docfactory.workflows.engine"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
    )
    md = (("x-api-key", KEY),)
    rows: list[dict[str, Any]] = []
    steps: dict[str, list[float]] = {}
    baseline: list[float] = []
    try:
        async with grpc.aio.insecure_channel(server.address) as ch:
            stub = pb_grpc.WorkflowServiceStub(ch)
            # Warm-up (untimed): models loaded, the worker up, one dossier through.
            warm = await stub.CreateDossier(
                pb.CreateDossierRequest(
                    files=[
                        pb.DossierFile(filename=p.name, content=p.read_bytes()) for p in folders[0]
                    ]
                ),
                metadata=md,
                timeout=600,
            )
            run = (
                await stub.StartRun(
                    pb.StartRunRequest(dossier=warm.dossier.name, flow=ns.flow), metadata=md
                )
            ).run
            await _until(
                stub,
                run.name,
                md,
                {pb.RUN_STATE_AWAITING_SIGNOFF, pb.RUN_STATE_INCOMPLETE, pb.RUN_STATE_FAILED},
                600,
            )
            for i, files in enumerate(folders):
                # baseline: plain ingestion of the same files
                baseline.append(sum([await _upload(ch, p, md) for p in files]))
                t0 = time.perf_counter()
                dossier = (
                    await stub.CreateDossier(
                        pb.CreateDossierRequest(
                            display_name=f"bench {i}",
                            files=[
                                pb.DossierFile(filename=p.name, content=p.read_bytes())
                                for p in files
                            ],
                        ),
                        metadata=md,
                        timeout=600,
                    )
                ).dossier
                t1 = time.perf_counter()
                run = (
                    await stub.StartRun(
                        pb.StartRunRequest(dossier=dossier.name, flow=ns.flow), metadata=md
                    )
                ).run
                run = await _until(
                    stub,
                    run.name,
                    md,
                    {pb.RUN_STATE_AWAITING_SIGNOFF, pb.RUN_STATE_INCOMPLETE, pb.RUN_STATE_FAILED},
                    600,
                )
                t2 = time.perf_counter()
                released = 0.0
                if run.state == pb.RUN_STATE_AWAITING_SIGNOFF:
                    for reviewer in range(run.approvals_required):
                        # one key here: the second approval of a four-eyes run is refused
                        if reviewer:
                            break
                        await stub.SubmitDecision(
                            pb.SubmitDecisionRequest(
                                name=run.name, kind=pb.DECISION_KIND_APPROVE, comment="bench"
                            ),
                            metadata=md,
                        )
                    if run.approvals_required == 1:
                        run = await _until(stub, run.name, md, {pb.RUN_STATE_COMPLETED}, 600)
                        released = time.perf_counter() - t2
                for t in run.timings:
                    steps.setdefault(t.step.split(":")[0], []).append(t.duration_ms)
                rows.append(
                    {
                        "dossier": i,
                        "documents": len(files),
                        "create_s": t1 - t0,
                        "run_to_signoff_s": t2 - t1,
                        "approve_to_release_s": released,
                        "state": pb.RunState.Name(run.state).removeprefix("RUN_STATE_"),
                    }
                )
                print(
                    f"dossier {i}: {len(files)} docs, create {t1 - t0:.2f}s, "
                    f"run {t2 - t1:.2f}s, release {released:.2f}s "
                    f"({rows[-1]['state']}); baseline ingestion {baseline[-1]:.2f}s",
                    flush=True,
                )
    finally:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        log.close()
        await server.stop(0.5)
    total_steps = sum(sum(v) for v in steps.values()) or 1.0
    per_dossier = [r["create_s"] + r["run_to_signoff_s"] + r["approve_to_release_s"] for r in rows]
    report = {
        "flow": ns.flow,
        "dossiers": len(rows),
        "median_create_s": statistics.median(r["create_s"] for r in rows),
        "median_run_to_signoff_s": statistics.median(r["run_to_signoff_s"] for r in rows),
        "median_approve_to_release_s": statistics.median(r["approve_to_release_s"] for r in rows),
        "median_dossier_s": statistics.median(per_dossier),
        "median_baseline_ingestion_s": statistics.median(baseline),
        "ratio_dossier_vs_ingestion": statistics.median(per_dossier) / statistics.median(baseline),
        "steps": {
            k: {
                "mean_ms": statistics.mean(v),
                "share": sum(v) / total_steps,
                "count": len(v),
            }
            for k, v in sorted(steps.items(), key=lambda kv: -sum(kv[1]))
        },
        "rows": rows,
    }
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dossiers", type=int, default=5)
    ap.add_argument("--folder", help="one sub-folder per dossier")
    ap.add_argument("--flow", default="financement")
    ap.add_argument("--json-out")
    ns = ap.parse_args()
    rep = asyncio.run(main(ns))
    print(
        f"\n{rep['dossiers']} dossiers ({rep['flow']}): median per dossier "
        f"{rep['median_dossier_s']:.2f}s = create {rep['median_create_s']:.2f}s + run to "
        f"sign-off {rep['median_run_to_signoff_s']:.2f}s + approve to release "
        f"{rep['median_approve_to_release_s']:.2f}s; baseline ingestion of the same files "
        f"{rep['median_baseline_ingestion_s']:.2f}s -> ratio "
        f"{rep['ratio_dossier_vs_ingestion']:.2f}"
    )
    print(f"{'step':<10} {'mean ms':>9} {'share':>7}")
    for k, v in rep["steps"].items():
        print(f"{k:<10} {v['mean_ms']:>9.1f} {v['share'] * 100:>6.1f}%")
    if ns.json_out:
        Path(ns.json_out).write_text(json.dumps(rep, indent=2))
