"""Fixtures for the jobs tests: an S3-protocol server (moto, real `minio` SDK against it), a
fresh PostgreSQL database per run, a docfactory server, and worker processes (killed on exit)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docfactory.app import RunningServer, start_server
from docfactory.core.config import Settings, load_settings
from tests.conftest import WORKER_KEY, write_keys

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
API_KEY = "key-acme"


def data_file(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data absent ({path} not found): real-data test skipped")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"endpoint": f"127.0.0.1:{port}", "access_key": "test", "secret_key": "testtest"}
    finally:
        server.stop()


@pytest.fixture
def minio_client(s3: dict[str, str]) -> Any:
    from minio import Minio

    return Minio(s3["endpoint"], s3["access_key"], s3["secret_key"], secure=False)


@pytest.fixture
def bucket(minio_client: Any) -> str:
    name = f"bulk-{uuid.uuid4().hex[:10]}"
    minio_client.make_bucket(name)
    return name


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # pragma: no cover - environment without PostgreSQL
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unavailable: {exc}")
    name = f"docfactory_jobs_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def jobs_env(tmp_path: Path, s3: dict[str, str]) -> Callable[..., tuple[Settings, dict[str, str]]]:
    """Settings for the server and the matching environment for worker processes."""

    def make(
        database_url: str = "", parsing: dict[str, Any] | None = None, **jobs: Any
    ) -> tuple[Settings, dict[str, str]]:
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        keys = write_keys(tmp_path / "keys.yaml")
        jobs_cfg = {
            "heartbeat_seconds": 0.5,
            "executor_timeout_seconds": 4.0,
            "retry_interval_seconds": 0.2,
            "queue_polling_seconds": 0.2,
            "worker_concurrency": 2,
            **jobs,
        }
        overrides: dict[str, Any] = {
            "data_dir": str(data),
            "keys_file": str(keys),
            # IndexService only on its internal listener (the tests check the exact point ids).
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "index_listen": "127.0.0.1:0",
                "service_key": SERVICE_KEY,
            },
            "s3": {
                "endpoint": s3["endpoint"],
                "access_key": s3["access_key"],
                "secret_key": s3["secret_key"],
                "secure": False,
            },
            "jobs": jobs_cfg,
        }
        if parsing:
            overrides["parsing"] = parsing
        if database_url:
            overrides["database_url"] = database_url
        settings = load_settings(env={}, overrides=overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")} | {
            "DOCFACTORY_DATA_DIR": str(data),
            "DOCFACTORY_KEYS_FILE": str(keys),
            "DOCFACTORY_DATABASE_URL": settings.resolved_database_url,
            "DOCFACTORY_S3_ENDPOINT": s3["endpoint"],
            "DOCFACTORY_S3_ACCESS_KEY": s3["access_key"],
            "DOCFACTORY_S3_SECRET_KEY": s3["secret_key"],
            "DOCFACTORY_S3_SECURE": "false",
            "DOCFACTORY_WORKER_API_KEY": WORKER_KEY,
            "DOCFACTORY_WORKER_HEARTBEAT_SECONDS": "0.5",
            "DOCFACTORY_WORKER_TIMEOUT_SECONDS": "4",
            "DOCFACTORY_WORKER_CONCURRENCY": str(jobs_cfg["worker_concurrency"]),
        }
        return settings, env

    return make


#: Shared by docfactory's own processes to reach the internal IndexService listener.
SERVICE_KEY = "test-service-key-0123456789"


@pytest.fixture
async def jobs_server() -> AsyncIterator[Callable[[Settings], Any]]:
    servers: list[RunningServer] = []

    async def start(settings: Settings) -> RunningServer:
        running = await start_server(settings, port=0)
        servers.append(running)
        return running

    try:
        yield start
    finally:
        for s in servers:
            await s.stop(0.5)


class Workers:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], address: str, log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.jobs.runtime"],
            env={**env, "DOCFACTORY_INGESTION_ADDRESS": address},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    try:
        yield w
    finally:
        w.stop()
