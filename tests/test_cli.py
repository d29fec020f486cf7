"""The CLI on the embedded default: `ingest` then `ask`/`search` as separate processes that
persist under one data directory; --json output for scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from docfactory.cli import daemon
from tests.conftest import ROOT, shared_data

# Data directories the commands ran on: their background servers are stopped after each test.
_DATA_DIRS: set[Path] = set()


@pytest.fixture(autouse=True)
def _no_server_left() -> Iterator[None]:
    yield
    for data_dir in _DATA_DIRS:
        daemon.stop(data_dir, timeout=10)
        assert daemon.running_pid(data_dir) is None
    _DATA_DIRS.clear()


def _run(args: list[str], data_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """The command in a new process; search/ask/ingest/documents go through the data
    directory's background server (started by the first of them, reused by the next ones)."""
    _DATA_DIRS.add(data_dir)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
        "DOCFACTORY_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT / "services"),
        "DOCFACTORY_DAEMON_IDLE_S": "120",  # should the fixture not run
    }
    return subprocess.run(
        [sys.executable, "-m", "docfactory.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_ingest_then_ask_in_separate_processes(tmp_path: Path) -> None:
    pdf = shared_data("travail-docs", "pdf", "reunion-cse-synthese.pdf")
    docx = shared_data("travail-docs", "docx", "certificat_de_travail.docx")
    data = tmp_path / "data"
    r = _run(["ingest", str(pdf), str(docx), "--collection", "cli", "--json"], data)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {row["status"] for row in rows} == {"indexed"} and len(rows) == 2
    # the same files again: nothing changes
    r = _run(["ingest", str(pdf), "--collection", "cli", "--json"], data)
    assert json.loads(r.stdout)["status"] == "unchanged"

    r = _run(["search", "réunion du CSE en visioconférence", "--json", "--collection", "cli"], data)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["results"][0]["citation"]["document_name"] == pdf.name

    r = _run(["ask", "Comment réunir le CSE pendant l'état d'urgence sanitaire ?", "--json"], data)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert "delta" in events[0]
    cits = next(e["citations"] for e in events if "citations" in e)
    assert cits and cits[0]["document_name"] == pdf.name and cits[0]["pages"] == [1]
    assert events[-1]["summary"]["language"] == "fr"

    # human output prints the answer then the sources with page numbers
    r = _run(["ask", "Comment réunir le CSE pendant l'état d'urgence sanitaire ?"], data)
    assert "Sources :" in r.stdout and f"{pdf.name}, p. 1" in r.stdout

    r = _run(["documents", "list", "--json"], data)
    assert len(r.stdout.splitlines()) == 2


def test_ingest_reports_failures_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "blob.bin"
    bad.write_bytes(os.urandom(4096))
    good = tmp_path / "note.txt"
    good.write_text("La réunion mensuelle a lieu le premier lundi du mois.")
    r = _run(["ingest", str(bad), str(good), "--json"], tmp_path / "data")
    assert r.returncode == 1  # some files failed
    rows = {Path(row["path"]).name: row for row in map(json.loads, r.stdout.splitlines())}
    assert rows["note.txt"]["status"] == "indexed"
    assert rows["blob.bin"]["status"] == "failed"
    assert "INVALID_ARGUMENT [UNSUPPORTED_FORMAT]" in rows["blob.bin"]["error"]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    r = _run(["ingest", str(tmp_path / "nope")], tmp_path / "data")
    assert r.returncode != 0 and "no such file or folder" in r.stderr


@pytest.mark.slow
def test_audit_verify_and_export_detect_tampering(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "data"
    note = tmp_path / "note.txt"
    note.write_text("Le comité d'audit se réunit chaque trimestre.")
    assert _run(["ingest", str(note)], data).returncode == 0
    assert _run(["search", "comité d'audit"], data).returncode == 0
    r = _run(["audit", "verify", "--json"], data)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"] and report["checked"] >= 2
    r = _run(["audit", "export"], data)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert {x["action"] for x in lines} >= {"INGEST", "SEARCH"}
    with sqlite3.connect(data / "docfactory.db") as db:
        db.execute("UPDATE audit_records SET outcome = 'FORGED' WHERE seq = 1")
    r = _run(["audit", "verify", "--json"], data)
    report = json.loads(r.stdout)
    assert r.returncode == 1 and not report["ok"]
    # (each problem also names its chain: one per tenant since issue 15)
    assert any(p["seq"] == 1 and p["kind"] == "ALTERED" for p in report["problems"])


@pytest.mark.slow
def test_serve_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    import signal
    import socket
    import time

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
        "DOCFACTORY_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT / "services"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "docfactory.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    r = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "docfactory:" in (proc.stdout.read() if proc.stdout else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ingest_archive_expands_members(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "dossier.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("notes/cantine.md", "# Cantine\n\nLa cantine ouvre à midi.")
        zf.writestr("notes/parking.txt", "Le parking est au sous-sol.")
        zf.writestr("../evil.txt", "hors de l'archive")
    r = _run(["ingest", str(archive), "--json"], tmp_path / "data")
    rows = {row["path"].split("!/")[-1]: row for row in map(json.loads, r.stdout.splitlines())}
    assert rows["notes/cantine.md"]["status"] == "indexed"
    assert rows["notes/parking.txt"]["status"] == "indexed"
    assert rows["../evil.txt"]["status"] == "failed"
    assert "PATH_TRAVERSAL" in rows["../evil.txt"]["error"]
    assert r.returncode == 1
    r = _run(["search", "cantine", "--json"], tmp_path / "data")
    top = json.loads(r.stdout)["results"][0]["citation"]
    assert top["document_name"] == "cantine.md"
    assert top["source_uri"].endswith("dossier.zip!/notes/cantine.md")


def test_ingest_s3_prefix_needs_a_server(tmp_path: Path) -> None:
    r = _run(["ingest", "s3://bucket/prefix/"], tmp_path / "data")
    assert r.returncode != 0 and "docfactory worker" in r.stderr
