"""Grafana dashboards: valid JSON, and every metric name of their PromQL is exported by a live
server after real RPCs (vLLM's own ``vllm:*`` metrics excepted: vLLM serves them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
import yaml

import docfactory.core.pool  # noqa: F401  (registers the pool metrics, as a vLLM-backed server)
from docfactory.app import RunningServer
from docfactory.measurement.v1 import measurement_service_pb2 as pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as pb_grpc
from tests.conftest import ROOT
from tests.helpers import answer, md, search, upload
from tests.measurement.conftest import exported_names, scrape

GRAFANA = ROOT / "deploy" / "grafana"
PROMQL_WORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "vector",
    "or",
    "and",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "avg",
    "max",
    "min",
    "count",
    "le",
    "bool",
    "offset",
    "topk",
    "bottomk",
    "clamp_min",
    "clamp_max",
    "abs",
}


def dashboards() -> dict[str, dict[str, Any]]:
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert {f.name for f in files} == {"operators.json", "use-cases.json"}
    return {f.name: json.loads(f.read_text()) for f in files}


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {w for w in words if w not in PROMQL_WORDS}


def test_dashboards_are_valid_grafana_json() -> None:
    uids = set()
    for name, board in dashboards().items():
        assert board["title"] and board["uid"] not in uids, name
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        assert any(v["type"] == "datasource" for v in board["templating"]["list"])
        for p in board["panels"]:
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["w"] <= 24
            if p["type"] != "row":
                assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
                assert p["datasource"]["uid"] == "${datasource}"
        assert len(exprs(board)) >= 10
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "docfactory.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_metric_names_parser() -> None:
    e = (
        "histogram_quantile(0.95, sum by (le, method) (rate(docfactory_rpc_duration_seconds_bucket"
        '{tenant=~"$tenant", code!="OK"}[5m]))) / 60 or vector(0)'
    )
    assert metric_names(e) == {"docfactory_rpc_duration_seconds_bucket"}


async def test_every_dashboard_metric_is_exported(
    meas_server: RunningServer, tmp_path: Path
) -> None:
    assert meas_server.metrics_port
    f = tmp_path / "note.txt"
    f.write_text("Le comité social et économique est consulté sur la formation.", "utf-8")
    async with grpc.aio.insecure_channel(meas_server.address) as ch:
        await upload(ch, f, key="key-nord")
        await search(ch, "comité social", key="key-nord", use_case="uc-rh")
        await answer(ch, "Qui est consulté sur la formation ?", key="key-nord", use_case="uc-rh")
        await pb_grpc.MeasurementServiceStub(ch).SubmitFeedback(
            pb.SubmitFeedbackRequest(rating=4, verdict=pb.VERDICT_USEFUL, time_saved_minutes=3),
            metadata=md("key-nord"),
        )
    exported = exported_names(scrape(meas_server.metrics_port))
    used: set[str] = set()
    for board in dashboards().values():
        for e in exprs(board):
            used |= metric_names(e)
    external = {n for n in used if n.startswith("vllm:")}
    ours = used - external
    assert ours and all(n.startswith("docfactory_") for n in ours), ours
    missing = sorted(ours - exported)
    assert not missing, f"dashboard metrics not exported: {missing}"
    assert {"docfactory_feedback_total", "docfactory_time_saved_minutes_total"} <= ours
