"""A two-tenant docfactory for the security suites: policy with roles and ceilings, the
internal IndexService listener, IngestPath roots, a staged-upload folder; helpers to call any
RPC with raw bytes and to read error details."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from docfactory.core.config import Settings, load_settings

TENANTS = ("nord", "sud")
SERVICE_KEY = "security-service-key-0123456789"
SERVICE_MD = (("x-docfactory-service-key", SERVICE_KEY),)
# key -> (key id, tenant, roles)
KEYS: dict[str, tuple[str, str, list[str]]] = {
    "read-nord": ("reader-nord", "nord", []),
    "ing-nord": ("ingester-nord", "nord", ["ingester"]),
    "read-sud": ("reader-sud", "sud", []),
    "ing-sud": ("ingester-sud", "sud", ["ingester"]),
}


def md(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


def write_policy(path: Path) -> Path:
    def h(k: str) -> str:
        return hashlib.sha256(k.encode()).hexdigest()

    policy = {
        "version": 12,
        "ingestion_requires_role": True,
        "tenants": [
            {"id": "nord", "name": "Nord", "sources": [{"bucket": "nord-docs", "prefix": ""}]},
            {"id": "sud", "name": "Sud", "sources": [{"bucket": "sud-docs", "prefix": "in/"}]},
        ],
        "api_keys": [
            {"id": kid, "tenant": t, "sha256": h(k), **({"roles": r} if r else {})}
            for k, (kid, t, r) in KEYS.items()
        ],
        "use_cases": [
            {
                "id": "uc-public",
                "tenants": list(TENANTS),
                "owner": "dpo@groupe.example",
                "purpose": "public answers",
                "allowed_collections": "*",
                "max_classification": "PUBLIC",
                "allowed_models": "*",
                "human_review": "optional",
                "retention": "none",
            },
            {
                "id": "uc-conf",
                "tenants": list(TENANTS),
                "owner": "dpo@groupe.example",
                "purpose": "internal work",
                "allowed_collections": "*",
                "max_classification": "CONFIDENTIAL",
                "allowed_models": "*",
                "human_review": "optional",
                "retention": "none",
            },
        ],
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@dataclass
class Env:
    root: Path
    allowed: Path  # the only folder IngestPath may read
    settings: Settings


def make_env(root: Path, **server: Any) -> Env:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    allowed = root / "allowed"
    allowed.mkdir(exist_ok=True)
    policy = write_policy(root / "policy.yaml")
    settings = load_settings(
        env={},
        overrides={
            "data_dir": str(data),
            "policy_file": str(policy),
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "index_listen": "127.0.0.1:0",
                "service_key": SERVICE_KEY,
                "metrics_port": 0,
                **server,
            },
            "parsing": {"ingest_path_roots": [str(allowed)], "ocr_fallback": False},
            "jobs": {"queue_polling_seconds": 0.2},
        },
    )
    return Env(root=root, allowed=allowed, settings=settings)


def details(exc: grpc.aio.AioRpcError) -> tuple[str, list[tuple[str, str]]]:
    """(ErrorInfo reason, BadRequest field violations) of a failed call."""
    reason = ""
    violations: list[tuple[str, str]] = []
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    for d in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if d.Unpack(info):
            reason = info.reason
        elif d.Unpack(bad):
            violations += [(v.field, v.description) for v in bad.field_violations]
    return reason, violations


async def raw_unary(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    metadata: Sequence[tuple[str, str]],
    deadline: float = 30,
) -> bytes:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    out: bytes = await call(payload, metadata=tuple(metadata), timeout=deadline)
    return out
