"""Fixtures of the measurement tests: a governed in-process server with /metrics, and the
SQLite + PostgreSQL database targets of the governance tests."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from docfactory.app import RunningServer, start_server
from docfactory.core.config import Settings
from tests.governance.conftest import db  # noqa: F401  (SQLite + PostgreSQL targets)

KEYS = {
    "key-nord": ("app-nord", "nord", []),
    "key-nord2": ("app2-nord", "nord", []),
    "key-sud": ("app-sud", "sud", []),
    "rev-nord": ("reviewer-nord", "nord", ["reviewer"]),
    # GetUsage needs owner/operator/admin under a policy (as the console's usage page)
    "own-nord": ("owner-nord", "nord", ["owner"]),
    "own-sud": ("owner-sud", "sud", ["owner"]),
}


def write_policy(path: Path) -> Path:
    keys = [
        {"id": kid, "tenant": t, "sha256": hashlib.sha256(k.encode()).hexdigest(), "roles": r}
        for k, (kid, t, r) in KEYS.items()
    ]
    common = {
        "owner": "metier@groupe.example",
        "allowed_collections": "*",
        "max_classification": "CONFIDENTIAL",
        "allowed_models": "*",
        "retention": "30d",
    }
    use_cases = [
        {"id": "uc-rh", "tenants": ["nord", "sud"], "purpose": "RH", "human_review": "optional"},
        {"id": "uc-juridique", "tenants": ["nord"], "purpose": "avis", "human_review": "required"},
    ]
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "tenants": [{"id": "nord", "name": "Nord"}, {"id": "sud", "name": "Sud"}],
                "api_keys": keys,
                "use_cases": [{**common, **uc} for uc in use_cases],
            },
            sort_keys=False,
        )
    )
    return path


@pytest.fixture
async def meas_server(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[RunningServer]:
    policy = write_policy(tmp_path / "policy.yaml")
    settings = make_settings(policy_file=str(policy), server={"metrics_port": 0})
    running = await start_server(settings, port=0)
    try:
        yield running
    finally:
        await running.stop(0.5)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> str:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    resp.raise_for_status()
    return resp.text


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(text: str, name: str, **labels: Any) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    want = {k: str(v) for k, v in labels.items()}
    return sum(
        v
        for n, lab, v in samples(text)
        if n == name and all(lab.get(k) == x for k, x in want.items())
    )


def exported_names(text: str) -> set[str]:
    """Every metric name a PromQL query may use: sample names and HELP/TYPE family names,
    with the _total / _bucket / _sum / _count / _created suffixes of their types."""
    names = {n for n, _, _ in samples(text)}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            if kind == "counter":
                names.add(family if family.endswith("_total") else f"{family}_total")
            if kind == "histogram":
                names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return names
