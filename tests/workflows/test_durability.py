"""Durability: a worker killed with -9 during extraction, the run completes on another worker
with every finished step executed once (counted); a run waiting for sign-off survives a full
restart (server and workers)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from docfactory.core.db import make_engine
from docfactory.workflows.repo import WorkflowRepository
from docfactory.workflows.v1 import workflows_service_pb2 as pb
from tests.workflows import dossiers
from tests.workflows.conftest import create_dossier, md, stub, wait_state

KEY = "key-acme"


@pytest.mark.slow
async def test_kill_during_extraction_then_full_restart(
    wf_env, cleanup_servers, tmp_path: Path
) -> None:
    env = wf_env(policy=False)
    cleanup_servers.append(env)
    server = await env.start_server()
    # Worker A is slow in extraction, so it is killed with -9 in the middle of it.
    victim = env.start_worker(DOCFACTORY_WORKFLOWS_STEP_DELAY="extract:30")
    engine = make_engine(env.settings.resolved_database_url)
    repo = WorkflowRepository(engine)
    try:
        async with grpc.aio.insecure_channel(server.address) as ch:
            files = dossiers.financement(tmp_path / "d")
            dossier = await create_dossier(ch, files, KEY)
            run = (
                await stub(ch).StartRun(
                    pb.StartRunRequest(dossier=dossier.name, flow="financement@1"),
                    metadata=md(KEY),
                )
            ).run
            deadline = time.monotonic() + 120
            while True:
                counts = repo.step_counts(run.run_id)
                busy = [s for s, (st, fin, _) in counts.items() if s.startswith("extract:")]
                if busy:
                    break
                assert time.monotonic() < deadline, "extraction never started"
                assert victim.poll() is None, "worker A died"
                await asyncio.sleep(0.1)
            killed_step = busy[0]
            assert counts[killed_step][:2] == (1, 0)  # in flight
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            env.start_worker()  # worker B takes over once A's heartbeat is stale
            waiting = await wait_state(
                ch, run.name, KEY, {pb.RUN_STATE_AWAITING_SIGNOFF}, within=120
            )
            assert len(waiting.result.documents) == 5
            counts = repo.step_counts(run.run_id)
            # every step finished exactly once; only the killed one was started twice
            assert all(fin == 1 for _, fin, _ in counts.values()), counts
            restarted = {s for s, (st, _, _) in counts.items() if st != 1}
            assert restarted == {killed_step}, counts
            assert counts[killed_step][0] == 2
            steps = {s.split(":")[0] for s in counts}
            assert steps == {"classify", "required", "extract", "check", "retrieve", "draft"}
            assert sum(1 for s in counts if s.startswith("extract:")) == 5

        # -- full restart while waiting for sign-off ------------------------------------------
        env.stop_workers()
        await env.stop_server()
        server = await env.start_server()
        env.start_worker()
        async with grpc.aio.insecure_channel(server.address) as ch:
            got = (await stub(ch).GetRun(pb.GetRunRequest(name=run.name), metadata=md(KEY))).run
            assert got.state == pb.RUN_STATE_AWAITING_SIGNOFF
            await stub(ch).SubmitDecision(
                pb.SubmitDecisionRequest(
                    name=run.name, kind=pb.DECISION_KIND_APPROVE, comment="après redémarrage"
                ),
                metadata=md(KEY),
            )
            done = await wait_state(
                ch,
                run.name,
                KEY,
                {pb.RUN_STATE_COMPLETED, pb.RUN_STATE_FAILED, pb.RUN_STATE_REJECTED},
                within=120,
            )
            assert done.state == pb.RUN_STATE_COMPLETED
            assert done.result.released
            assert [d.comment for d in done.result.decisions] == ["après redémarrage"]
            # the steps finished before the restart were not run again
            counts = repo.step_counts(run.run_id)
            assert all(fin == 1 for _, fin, _ in counts.values()), counts
            events = [
                e
                async for e in stub(ch).WatchRun(
                    pb.WatchRunRequest(name=run.name), metadata=md(KEY), timeout=30
                )
            ]
            assert events[-1].state == pb.RUN_STATE_COMPLETED
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    finally:
        engine.dispose()
