"""`docfactory ingest s3://bucket/prefix` against a server with a worker: live progress lines,
final counts, exit status; a second run skips the unchanged objects."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.jobs.conftest import API_KEY, ROOT, Workers
from tests.jobs.test_bulk import put


def _run(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
    return subprocess.run(
        [sys.executable, "-m", "docfactory.cli", "--address", address, "--api-key", API_KEY,
         "ingest", *args],
        env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _cli(address: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = _run(address, *args)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stderr


async def test_cli_ingest_s3_prefix_with_a_worker(
    jobs_env: Any,
    jobs_server: Any,
    workers: Workers,
    minio_client: Any,
    bucket: str,
    tmp_path: Path,
) -> None:
    put(minio_client, bucket, "dossier/a.txt", b"Le contrat de bail est conclu pour trois ans.")
    put(minio_client, bucket, "dossier/b.md", b"# Caution\n\nLa caution solidaire s'engage.")
    put(minio_client, bucket, "dossier/c.bin", os.urandom(2048))  # not a document
    put(minio_client, bucket, "ailleurs/d.txt", b"Hors du prefixe.")
    settings, env = jobs_env()
    server = await jobs_server(settings)
    workers.start(env, server.address, tmp_path / "w.log")

    rc, lines, err = await asyncio.to_thread(
        _cli, server.address, f"s3://{bucket}/dossier/", "--collection", "baux", "--json"
    )
    assert lines, err
    last = lines[-1]
    assert last["state"] == "SUCCEEDED", (last, err)
    assert (last["objects_total"], last["objects_done"], last["objects_skipped"]) == (3, 3, 0)
    assert (last["indexed"], last["failed"]) == (2, 1)
    assert rc == 1  # a failed document makes the command fail, for scripts
    assert len(lines) >= 2  # progress came while the job ran, not only at the end

    rc2, lines2, err2 = await asyncio.to_thread(
        _cli, server.address, f"s3://{bucket}/dossier/", "--collection", "baux", "--json"
    )
    last2 = lines2[-1]
    # Unchanged objects (same ETag) are skipped; the failed one is not retried either.
    assert last2["state"] == "SUCCEEDED", (last2, err2)
    assert (last2["objects_total"], last2["objects_skipped"], last2["indexed"]) == (0, 3, 0)
    assert rc2 == 0

    # Human-readable summary without --json.
    rc3 = await asyncio.to_thread(
        _run, server.address, f"s3://{bucket}/dossier/", "--collection", "baux"
    )
    assert rc3.returncode == 0, rc3.stderr
    assert "SUCCEEDED: 0/0 objects (3 unchanged objects skipped)" in rc3.stdout, rc3.stdout
