"""Shared parts of the fault tests: real processes on loopback, each stopped by the test.

* :class:`Serve`: ``python -m docfactory.cli serve`` in its own process group;
* :class:`Worker`: a jobs worker (``python -m docfactory.jobs.runtime``);
* :func:`start_chat_standin`: the OpenAI-compatible chat stand-in (``chat_standin.py``);
* :class:`PrivatePostgres`: a PostgreSQL cluster of the test's own (``initdb`` in a temp dir, a
  free port, its unix socket in the temp dir), so that it can be stopped and restarted without
  touching the shared server on 5432.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def start_chat_standin(port: int, markers: Path) -> subprocess.Popen[bytes]:
    """``python -m tests.fault.chat_standin`` on ``port`` in its own process group, once its
    ``/health`` answers (the caller kills the group)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fault.chat_standin", str(port), str(markers)],
        cwd=str(ROOT),
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    raise AssertionError(f"chat stand-in on {port} not ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
        "PYTHONPATH": str(ROOT / "services"),
        **extra,
    }


class Serve:
    """``docfactory serve`` on a loopback port; ``env`` adds DOCFACTORY_* settings."""

    def __init__(self, data: Path, port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.address = f"127.0.0.1:{port}"
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", "serve"],
            env=clean_env(
                **{"DOCFACTORY_DATA_DIR": str(data), "DOCFACTORY_PORT": str(port), **(env or {})}
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def ready(self, limit_s: float = 240) -> None:
        deadline = time.monotonic() + limit_s
        async with grpc.aio.insecure_channel(self.address) as ch:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"server exited: {self.proc.returncode}"
                if await serving(ch):
                    return
                await asyncio.sleep(0.3)
        raise AssertionError("server not ready in time")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # children left by a killed server
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


async def serving(ch: grpc.aio.Channel) -> bool:
    try:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.aio.AioRpcError:
        return False
    return bool(r.status == health_pb2.HealthCheckResponse.SERVING)


class Worker:
    """One jobs worker process (a DBOS executor)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("a")
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.jobs.runtime"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            start_new_session=True,
        )

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


class PrivatePostgres:
    """A throw-away PostgreSQL cluster owned by user ``postgres`` (the tests run as root)."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
            pytest.skip(f"PostgreSQL server binaries absent ({PG_BIN})")
        if os.geteuid() != 0:
            pytest.skip("a private PostgreSQL cluster needs root (runuser -u postgres)")
        # Not under pytest's tmp_path: user postgres must reach it (pytest-of-root is 0700).
        root = Path(tempfile.mkdtemp(prefix="docfactory-pg-"))
        self.root = root
        shutil.chown(root, "postgres")
        self.data = root / "pgdata"
        self.port = free_port()
        self._as_postgres(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E",
            "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        self.start()
        self._psql("CREATE DATABASE docfactory")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/docfactory"

    def _as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _ctl(self, *args: str) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._ctl("-l", str(self.root / "postgres.log"), "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
