"""The MinIO webhook requires its token: no token, no webhook; a POST without the right bearer
token gets 401 and enqueues nothing; the right token enqueues a real job (SQLite + DBOS)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from docfactory.core.db import make_engine
from docfactory.core.errors import ConfigError
from docfactory.jobs.repo import JobsRepository
from docfactory.jobs.runtime import JobQueue
from docfactory.jobs.service import JobsService
from docfactory.jobs.webhook import WebhookServer

TOKEN = "webhook-token-0123456789"
EVENT = {
    "Records": [
        {
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "rh"}, "object": {"key": "notes/a.txt", "eTag": "e1"}},
        }
    ]
}


def _post(port: int, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/events",
        data=json.dumps(EVENT).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_webhook_requires_its_token(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'docfactory.db'}")
    repo = JobsRepository(engine)
    service = JobsService(repo, JobQueue(f"sqlite:///{tmp_path / 'dbos.sqlite'}"))
    for token in ("", "short"):
        with pytest.raises(ConfigError, match="DOCFACTORY_WEBHOOK_TOKEN"):
            WebhookServer(service, "127.0.0.1", 0, token, "acme", "hooks")
    hook = WebhookServer(service, "127.0.0.1", 0, TOKEN, "acme", "hooks")
    hook.start()
    try:
        assert _post(hook.port, {}) == (401, {"error": "WEBHOOK_TOKEN_MISSING"})
        wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "X"}
        assert _post(hook.port, wrong) == (401, {"error": "WEBHOOK_TOKEN_INVALID"})
        assert _post(hook.port, {"Authorization": TOKEN})[0] == 401  # not a bearer token
        assert repo.list_jobs("acme")[1] == 0
        status, body = _post(hook.port, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and len(body["jobs"]) == 1, body
        jobs, _ = repo.list_jobs("acme")
        assert [j.job_id for j in jobs] == body["jobs"]
    finally:
        hook.close()
        engine.dispose()
