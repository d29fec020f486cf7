"""The deployed shape: ``docfactory serve`` (a real process, as an operator starts it) runs the
dossier workers itself, so a run started over gRPC progresses without any other command; with
its workers turned off, GetRun and ``docfactory dossier run`` say plainly that no worker is
there instead of a bare DEADLINE_EXCEEDED."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docfactory.workflows.v1 import workflows_service_pb2 as pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as pb_grpc
from tests.conftest import ROOT, WORKER_KEY
from tests.workflows import dossiers
from tests.workflows.conftest import create_dossier_blocking, write_policy

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
        "DOCFACTORY_DATA_DIR": str(tmp_path / "data"),
        "DOCFACTORY_POLICY_FILE": str(write_policy(tmp_path / "policy.yaml")),
        "DOCFACTORY_WORKER_API_KEY": WORKER_KEY,
        "PYTHONPATH": str(ROOT / "services"),
        **extra,
    }


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str], dict[str, str]]]:
    procs: list[subprocess.Popen[str]] = []
    holder: dict[str, object] = {}

    def start(*args: str, **env: str) -> tuple[str, subprocess.Popen[str], dict[str, str]]:
        port = _free_port()
        environ = _env(tmp_path, **env)
        log = open(tmp_path / "serve.log", "a")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", "serve", "--port", str(port), *args],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        procs.append(proc)
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            try:
                with grpc.insecure_channel(address) as ch:
                    r = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        break
            except grpc.RpcError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "docfactory serve did not start"
            time.sleep(0.5)
        return address, proc, environ

    holder["start"] = start
    try:
        yield holder  # type: ignore[misc]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _create_and_start(address: str, files: list[Path]) -> pb.Run:
    with grpc.insecure_channel(address) as ch:
        dossier = create_dossier_blocking(ch, files, "key-analyst")
        return (
            pb_grpc.WorkflowServiceStub(ch)
            .StartRun(
                pb.StartRunRequest(dossier=dossier.name, flow="financement"),
                metadata=(("x-api-key", "key-analyst"),),
            )
            .run
        )


def _get(address: str, name: str) -> pb.Run:
    with grpc.insecure_channel(address) as ch:
        return (
            pb_grpc.WorkflowServiceStub(ch)
            .GetRun(pb.GetRunRequest(name=name), metadata=(("x-api-key", "key-rev1"),))
            .run
        )


def test_serve_runs_dossiers_without_any_other_command(served: dict, tmp_path: Path) -> None:
    address, proc, _ = served["start"]()
    deadline = time.monotonic() + 60  # the workers start once the server is SERVING
    while not (workers := _children(proc.pid)):
        assert time.monotonic() < deadline, "docfactory serve started no worker process"
        time.sleep(0.3)
    run = _create_and_start(address, dossiers.financement(tmp_path / "files"))
    deadline = time.monotonic() + 180
    while True:
        got = _get(address, run.name)
        if got.state == pb.RUN_STATE_AWAITING_SIGNOFF:
            break
        assert got.state in (pb.RUN_STATE_QUEUED, pb.RUN_STATE_RUNNING), got
        assert time.monotonic() < deadline, f"served run stuck in {pb.RunState.Name(got.state)}"
        time.sleep(0.5)
    assert not got.notice.reason
    assert "dossier worker" in (tmp_path / "serve.log").read_text()
    # SIGTERM stops the server and its workers: no process left behind
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)]


def test_no_worker_is_said_plainly(served: dict, tmp_path: Path) -> None:
    address, _, environ = served["start"](
        "--dossier-workers", "0", DOCFACTORY_WORKFLOWS_QUEUED_NOTICE_SECONDS="2"
    )
    started = time.monotonic()
    run = _create_and_start(address, dossiers.financement(tmp_path / "files"))
    while True:
        got = _get(address, run.name)
        if got.notice.reason:
            break
        assert time.monotonic() - started < 30, "no NO_WORKER notice within 30 s"
        time.sleep(0.5)
    assert got.state == pb.RUN_STATE_QUEUED and got.notice.reason == "NO_WORKER"
    assert "docfactory dossier worker" in got.notice.message
    # the CLI says it too, and stops, instead of a bare DEADLINE_EXCEEDED
    files = dossiers.financement(tmp_path / "cli")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "docfactory.cli",
            "--address",
            address,
            "--api-key",
            "key-analyst",
            "dossier",
            "run",
            "financement",
            *map(str, files),
            "--use-case",
            "credit-pro",
            "--timeout",
            "120",
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert cli.returncode != 0
    assert "NO_WORKER" in cli.stderr and "QUEUED" in cli.stderr, cli.stderr[-2000:]
