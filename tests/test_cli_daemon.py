"""The embedded default's background server (docfactory/cli/daemon.py): started by the first
command, reused by the next ones (same pid), replaced when killed, one for two commands started
at once, stopped by ``docfactory stop`` and when idle; ``--no-daemon`` runs in-process; no
process is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from docfactory.cli import daemon
from docfactory.core.config import load_settings
from tests.conftest import ROOT


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
        "DOCFACTORY_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT / "services"),
        **extra,
    }


def _run(data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docfactory.cli", *args],
        env=_env(data, **extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _pid(data: Path) -> int:
    return int(json.loads((data / "daemon" / "state.json").read_text())["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie of ours is not alive
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _wait_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.1)


def _wait_released(data: Path, timeout: float = 10.0) -> None:
    """The server's lock is free: its leader thread shows as a zombie a moment before the
    process's last thread has exited and released its files."""
    deadline = time.monotonic() + timeout
    while daemon.running_pid(data) is not None and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose background servers are all gone at the end, whatever happened."""
    folder = tmp_path / "data"
    seen: set[int] = set()

    def remember() -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            seen.add(_pid(folder))

    yield folder
    remember()
    daemon.stop(folder, timeout=10)
    for pid in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    alive = daemon.running_pid(folder)
    assert alive is None, f"background server {alive} left behind"


@pytest.mark.slow
def test_reused_replaced_when_killed_stopped_and_idle(data: Path, tmp_path: Path) -> None:
    note = tmp_path / "cantine.txt"
    note.write_text("La cantine ouvre à midi et ferme à quatorze heures.")
    r = _run(data, "ingest", str(note), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "indexed"
    first = _pid(data)
    assert _alive(first) and daemon.running_pid(data) == first
    folder, sock = data / "daemon", data / "daemon" / "server.sock"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600

    # the next command reuses it
    r = _run(data, "search", "cantine", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["citation"]["document_name"] == "cantine.txt"
    assert _pid(data) == first and _alive(first)

    # killed -9: its socket and state are left behind, the next command replaces it
    os.kill(first, signal.SIGKILL)
    _wait_gone(first)
    assert sock.exists()
    r = _run(data, "search", "cantine", "--json", DOCFACTORY_DAEMON_IDLE_S="8")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["citation"]["document_name"] == "cantine.txt"
    second = _pid(data)
    assert second != first and _alive(second)

    # it stops by itself once idle (8 s), and removes its socket
    _wait_gone(second, timeout=90)
    _wait_released(data)
    assert daemon.running_pid(data) is None and not sock.exists()
    assert "idle for 8 s" in (folder / "server.log").read_text()

    # two commands at once start one server between them
    log = folder / "server.log"
    starts = log.read_text().count(" on unix:")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", *args],
            env=_env(data),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (["ask", "Quand ouvre la cantine ?"], ["search", "cantine"])
    ]
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    assert "cantine" in outs[0][0] and "cantine.txt" in outs[1][0]
    assert log.read_text().count(" on unix:") == starts + 1
    third = _pid(data)

    # `docfactory stop`
    assert third not in (first, second)
    r = _run(data, "stop")
    assert r.returncode == 0 and f"stopped the background server {third}" in r.stdout
    _wait_gone(third, timeout=10)
    assert not sock.exists() and not (folder / "state.json").exists()
    assert "no background server" in _run(data, "stop").stdout

    # --no-daemon: in-process, as before; no server is started
    r = _run(data, "--no-daemon", "search", "cantine", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["citation"]["document_name"] == "cantine.txt"
    _wait_released(data)
    assert daemon.running_pid(data) is None and not (folder / "state.json").exists()


async def test_activity_counts_calls_in_flight() -> None:
    """Idle means no call in flight: a long server stream keeps the server busy."""
    activity = daemon.Activity()
    server = grpc.aio.server(interceptors=[activity])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
            assert activity.in_flight == 0 and activity.idle_for() < 5
            watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=30)
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            assert activity.in_flight == 1 and activity.idle_for() == 0.0
            watch.cancel()
            deadline = time.monotonic() + 10
            while activity.in_flight:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert activity.idle_for() >= 0.0
    finally:
        await server.stop(0)


def test_only_the_embedded_default_goes_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(daemon.NO_DAEMON_ENV, raising=False)
    base = {"DOCFACTORY_DATA_DIR": str(tmp_path)}
    assert daemon.wanted(None, load_settings(base), no_daemon=False)
    assert not daemon.wanted(None, load_settings(base), no_daemon=True)
    assert not daemon.wanted("127.0.0.1:50051", load_settings(base), no_daemon=False)
    split = {**base, "DOCFACTORY_EMBEDDING_ADDRESS": "127.0.0.1:50052"}
    assert not daemon.wanted(None, load_settings(split), no_daemon=False)
    monkeypatch.setenv(daemon.NO_DAEMON_ENV, "1")
    assert not daemon.wanted(None, load_settings(base), no_daemon=False)
    # settings that change what the server does change its fingerprint; the key does not
    fp = daemon.fingerprint(base)
    assert daemon.fingerprint({**base, "DOCFACTORY_API_KEY": "k"}) == fp
    assert daemon.fingerprint({**base, "DOCFACTORY_SEARCH_TOP_K": "3"}) != fp


def test_socket_path_fits_and_stays_private(tmp_path: Path) -> None:
    short = daemon.paths(tmp_path / "d")
    assert short.socket == (tmp_path / "d" / "daemon" / "server.sock").resolve()
    deep = tmp_path / ("x" * 60) / ("y" * 60) / "data"
    p = daemon.paths(deep)
    assert len(str(p.socket)) <= 100 and p.socket.parent.name == f"docfactory-{os.getuid()}"
    assert p.state.parent == deep.resolve() / "daemon"
    assert daemon.paths(deep).socket == p.socket  # the same for every CLI
    assert daemon.paths(deep.parent / "other").socket != p.socket
