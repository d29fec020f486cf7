"""Fixtures of the dossier workflow tests: a real grpc.aio server on port 0 over real SQLite,
workflow workers as real processes (``python -m docfactory.workflows.engine``), DBOS on the
same SQLite data folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from docfactory.app import RunningServer, start_server
from docfactory.core.config import Settings, load_settings
from docfactory.workflows.v1 import workflows_service_pb2 as pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as pb_grpc
from tests.conftest import ROOT, WORKER_KEY, write_keys

# Policy keys: two reviewers, an analyst without role, another tenant's key, the worker.
POLICY_KEYS = {
    "key-analyst": ("analyst", "acme", []),
    "key-rev1": ("reviewer-1", "acme", ["reviewer"]),
    "key-rev2": ("reviewer-2", "acme", ["reviewer"]),
    "key-globex": ("globex-app", "globex", ["reviewer"]),
    WORKER_KEY: ("bulk-worker", "platform", ["worker"]),
}


def write_policy(
    path: Path,
    flows: list[str] | None = None,
    *,
    keys: dict[str, tuple[str, str, list[str]]] | None = None,
    ingestion_requires_role: bool = False,
) -> Path:
    """The workflow suites' policy: ``keys`` (default POLICY_KEYS) as key -> (id, tenant,
    roles)."""
    policy: dict[str, Any] = {
        "version": 1,
        "tenants": [{"id": "acme"}, {"id": "globex"}, {"id": "platform"}],
        "api_keys": [
            {"id": kid, "tenant": t, "sha256": hashlib.sha256(k.encode()).hexdigest(), "roles": r}
            for k, (kid, t, r) in (POLICY_KEYS if keys is None else keys).items()
        ],
        "use_cases": [
            {
                "id": "credit-pro",
                "tenants": ["acme", "globex"],
                "owner": "credit@acme.fr",
                "purpose": "Instruction des demandes de financement",
                "allowed_collections": "*",
                "max_classification": "CONFIDENTIAL",
                "allowed_models": "*",
                "human_review": "optional",
                "retention": "none",
                "flows": flows if flows is not None else ["financement"],
            },
            {
                "id": "faq",
                "tenants": ["acme"],
                "owner": "faq@acme.fr",
                "purpose": "Questions",
                "allowed_collections": "*",
                "max_classification": "INTERNAL",
                "allowed_models": "*",
                "human_review": "optional",
                "retention": "none",
            },
        ],
    }
    if ingestion_requires_role:
        policy["ingestion_requires_role"] = True
    path.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    return path


class Env:
    def __init__(self, tmp: Path, policy: bool) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.data.mkdir(exist_ok=True)
        overrides: dict[str, Any] = {
            "data_dir": str(self.data),
            "server": {"host": "127.0.0.1", "port": 0},
        }
        if policy:
            overrides["policy_file"] = str(write_policy(tmp / "policy.yaml"))
        else:
            overrides["keys_file"] = str(write_keys(tmp / "keys.yaml"))
        self.settings: Settings = load_settings(env={}, overrides=overrides)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.server: RunningServer | None = None
        self.logs = tmp / "worker.log"

    def worker_env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
        env = base | {
            "DOCFACTORY_DATA_DIR": str(self.data),
            "DOCFACTORY_DATABASE_URL": self.settings.resolved_database_url,
            "DOCFACTORY_WORKER_API_KEY": WORKER_KEY,
            "DOCFACTORY_WORKFLOWS_HEARTBEAT_SECONDS": "0.5",
            "DOCFACTORY_WORKFLOWS_EXECUTOR_TIMEOUT_SECONDS": "3",
        }
        if self.settings.policy_file:
            env["DOCFACTORY_POLICY_FILE"] = self.settings.policy_file
        else:
            env["DOCFACTORY_KEYS_FILE"] = self.settings.keys_file
        if self.server is not None:
            env["DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS"] = self.server.address
        return env | extra

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        out = open(self.logs, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.workflows.engine"],
            env=self.worker_env(**extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )
        out.close()
        self.procs.append(proc)
        return proc

    def stop_workers(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = []

    async def start_server(self) -> RunningServer:
        self.server = await start_server(self.settings, port=0)
        return self.server

    async def stop_server(self) -> None:
        if self.server is not None:
            await self.server.stop(0.5)
            self.server = None


@pytest.fixture
def wf_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    envs: list[Env] = []

    def make(policy: bool = False) -> Env:
        e = Env(tmp_path, policy)
        envs.append(e)
        return e

    try:
        yield make
    finally:
        for e in envs:
            e.stop_workers()


@pytest.fixture
async def cleanup_servers() -> AsyncIterator[list[Env]]:
    envs: list[Env] = []
    try:
        yield envs
    finally:
        for e in envs:
            await e.stop_server()


def md(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


def stub(channel: grpc.aio.Channel) -> pb_grpc.WorkflowServiceStub:
    return pb_grpc.WorkflowServiceStub(channel)


async def create_dossier(
    channel: grpc.aio.Channel, files: list[Path], key: str, use_case: str = ""
) -> pb.Dossier:
    resp = await stub(channel).CreateDossier(
        pb.CreateDossierRequest(
            display_name="Atelier Dupont",
            use_case=use_case,
            files=[pb.DossierFile(filename=p.name, content=p.read_bytes()) for p in files],
        ),
        metadata=md(key),
        timeout=300,
    )
    return resp.dossier


async def wait_state(
    channel: grpc.aio.Channel, run_name: str, key: str, states: set[int], within: float = 90
) -> pb.Run:
    import asyncio

    deadline = time.monotonic() + within
    while True:
        run = (await stub(channel).GetRun(pb.GetRunRequest(name=run_name), metadata=md(key))).run
        if run.state in states:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run stuck in {pb.RunState.Name(run.state)} ({run.step})")
        await asyncio.sleep(0.3)


async def start_run(channel: grpc.aio.Channel, dossier: pb.Dossier, key: str) -> pb.Run:
    """StartRun of the financing flow on ``dossier`` as ``key``."""
    resp = await stub(channel).StartRun(
        pb.StartRunRequest(dossier=dossier.name, flow="financement"), metadata=md(key)
    )
    return resp.run


async def decide(
    channel: grpc.aio.Channel, run: pb.Run, key: str, kind: int, comment: str = "", **amend: str
) -> pb.SubmitDecisionResponse:
    """SubmitDecision on ``run`` as ``key`` (amendments as ``type.field=value`` keywords)."""
    resp: pb.SubmitDecisionResponse = await stub(channel).SubmitDecision(
        pb.SubmitDecisionRequest(name=run.name, kind=kind, comment=comment, amendments=amend),
        metadata=md(key),
    )
    return resp


def create_dossier_blocking(
    channel: grpc.Channel, files: list[Path], key: str, use_case: str = "credit-pro"
) -> pb.Dossier:
    """CreateDossier over a blocking channel (console and ``docfactory serve`` suites)."""
    resp = pb_grpc.WorkflowServiceStub(channel).CreateDossier(
        pb.CreateDossierRequest(
            display_name="Atelier Dupont",
            use_case=use_case,
            files=[pb.DossierFile(filename=p.name, content=p.read_bytes()) for p in files],
        ),
        metadata=md(key),
        timeout=300,
    )
    return resp.dossier
