# ruff: noqa: E501
"""Writes the Grafana dashboards of deploy/grafana/dashboards/ (the JSON files are committed).

Usage: python deploy/grafana/build_dashboards.py

Two dashboards over docfactory's Prometheus metrics (core/metrics.py, core/pool.py):
operators (RPC rate / errors / latency, vLLM pools, ingestion, retrieval, tokens) and use-case
owners (adoption, satisfaction, time saved). tests/measurement/test_dashboards.py checks that
every metric name they query is exported by a live server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, panel: dict[str, Any], w: int = 12, h: int = 8) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, w=24, h=1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


def panel(
    kind: str,
    title: str,
    targets: list[tuple[str, str]],
    unit: str = "short",
    description: str = "",
    **options: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
    }
    return out


def variable(name: str, query: str, label: str, include_all: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "includeAll": include_all,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"} if include_all else {},
        "sort": 1,
    }


def dashboard(
    uid: str,
    title: str,
    variables: list[dict[str, Any]],
    layout: Layout,
    time_from: str,
    description: str,
) -> dict[str, Any]:
    ds_var = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"},
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["docfactory"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": [ds_var, *variables]},
        "annotations": {"list": []},
        "panels": layout.panels,
    }


T = 'tenant=~"$tenant"'


def operators() -> dict[str, Any]:
    lay = Layout()
    lay.row("gRPC services")
    lay.add(
        panel(
            "timeseries",
            "Requests per second by method",
            [
                (
                    f"sum by (service, method) (rate(docfactory_rpc_requests_total{{{T}}}[5m]))",
                    "{{service}}/{{method}}",
                )
            ],
            unit="reqps",
        ),
        w=12,
    )
    lay.add(
        panel(
            "timeseries",
            "Error ratio by method (codes other than OK)",
            [
                (
                    f'sum by (method) (rate(docfactory_rpc_requests_total{{code!="OK", {T}}}[5m]))'
                    f" / sum by (method) (rate(docfactory_rpc_requests_total{{{T}}}[5m]))",
                    "{{method}}",
                )
            ],
            unit="percentunit",
        ),
        w=12,
    )
    lay.add(
        panel(
            "timeseries",
            "Errors per second by code",
            [
                (
                    f'sum by (code) (rate(docfactory_rpc_requests_total{{code!="OK", {T}}}[5m]))',
                    "{{code}}",
                )
            ],
            unit="reqps",
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Latency p95 by method",
            [
                (
                    "histogram_quantile(0.95, sum by (le, method) "
                    "(rate(docfactory_rpc_duration_seconds_bucket[5m])))",
                    "p95 {{method}}",
                )
            ],
            unit="s",
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Latency p50 by method",
            [
                (
                    "histogram_quantile(0.5, sum by (le, method) "
                    "(rate(docfactory_rpc_duration_seconds_bucket[5m])))",
                    "p50 {{method}}",
                )
            ],
            unit="s",
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Requests in flight",
            [("sum by (method) (docfactory_rpc_in_flight)", "{{method}}")],
        ),
        w=12,
    )
    lay.add(
        panel(
            "timeseries",
            "Mean handling time by method",
            [
                (
                    "sum by (method) (rate(docfactory_rpc_duration_seconds_sum[5m])) / "
                    "sum by (method) (rate(docfactory_rpc_duration_seconds_count[5m]))",
                    "{{method}}",
                )
            ],
            unit="s",
        ),
        w=12,
    )
    lay.row("Model pools (vLLM replicas seen by docfactory)")
    lay.add(
        panel(
            "timeseries",
            "Replicas up / down by pool",
            [
                ('sum by (pool) (docfactory_pool_replicas{state="up"})', "{{pool}} up"),
                ('sum by (pool) (docfactory_pool_replicas{state="down"})', "{{pool}} down"),
            ],
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Requests in flight to the pools",
            [("sum by (pool) (docfactory_pool_outstanding)", "{{pool}}")],
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Upstream attempts by outcome",
            [
                (
                    "sum by (pool, outcome) (rate(docfactory_pool_requests_total[5m]))",
                    "{{pool}} {{outcome}}",
                ),
                (
                    "sum by (pool, reason) (rate(docfactory_pool_failfast_total[5m]))",
                    "{{pool}} refused: {{reason}}",
                ),
            ],
            unit="reqps",
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "vLLM queue (waiting / running)",
            [
                ("sum by (pool) (vllm:num_requests_waiting)", "{{pool}} waiting"),
                ("sum by (pool) (vllm:num_requests_running)", "{{pool}} running"),
            ],
            description="Served by vLLM itself (job vllm).",
        ),
        w=12,
    )
    lay.add(
        panel(
            "timeseries",
            "vLLM time to first token p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le, pool) "
                    "(rate(vllm:time_to_first_token_seconds_bucket[5m])))",
                    "{{pool}}",
                )
            ],
            unit="s",
            description="Served by vLLM itself (job vllm).",
        ),
        w=12,
    )
    lay.row("Ingestion")
    lay.add(
        panel(
            "timeseries",
            "Documents per second by outcome",
            [
                (
                    f"sum by (outcome) (rate(docfactory_documents_ingested_total{{{T}}}[5m]))",
                    "{{outcome}}",
                )
            ],
            unit="reqps",
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Pages and chunks per second",
            [
                (f"sum(rate(docfactory_pages_ingested_total{{{T}}}[5m]))", "pages/s"),
                (f"sum(rate(docfactory_chunks_indexed_total{{{T}}}[5m]))", "chunks/s"),
            ],
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Stage time p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le, stage) "
                    "(rate(docfactory_ingest_stage_seconds_bucket[5m])))",
                    "{{stage}}",
                )
            ],
            unit="s",
        ),
        w=8,
    )
    lay.add(
        panel(
            "stat",
            "Documents ingested (range)",
            [
                (
                    f"sum by (outcome) (increase(docfactory_documents_ingested_total{{{T}}}[$__range]))",
                    "{{outcome}}",
                )
            ],
        ),
        w=8,
        h=5,
    )
    lay.row("Embedding, retrieval, generation")
    lay.add(
        panel(
            "timeseries",
            "Texts embedded per second",
            [
                (
                    "sum by (input_type) (rate(docfactory_embedding_texts_total[5m]))",
                    "{{input_type}}",
                )
            ],
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Embedding batch size (mean)",
            [
                (
                    "sum(rate(docfactory_embedding_batch_size_sum[5m])) / "
                    "sum(rate(docfactory_embedding_batch_size_count[5m]))",
                    "texts per model call",
                )
            ],
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Passages returned per search (mean)",
            [
                (
                    "sum by (mode) (rate(docfactory_retrieval_hits_sum[5m])) / "
                    "sum by (mode) (rate(docfactory_retrieval_hits_count[5m]))",
                    "{{mode}}",
                )
            ],
        ),
        w=8,
    )
    lay.add(
        panel(
            "timeseries",
            "Generation tokens per second",
            [
                (
                    "sum by (generator, direction) (rate(docfactory_generation_tokens_total[5m]))",
                    "{{generator}} {{direction}}",
                )
            ],
        ),
        w=24,
    )
    tenant = variable("tenant", "label_values(docfactory_rpc_requests_total, tenant)", "Tenant")
    return dashboard(
        "docfactory-operators",
        "docfactory — operators",
        [tenant],
        lay,
        "now-6h",
        "RPC rate, errors and latency per service; model pools; ingestion.",
    )


F = 'tenant=~"$tenant", use_case=~"$use_case"'


def _mean_rating() -> str:
    num = " + ".join(
        f'{i} * (sum(increase(docfactory_feedback_total{{rating="{i}", {F}}}[$__range])) '
        "or vector(0))"
        for i in range(1, 6)
    )
    den = f'sum(increase(docfactory_feedback_total{{rating=~"[1-5]", {F}}}[$__range]))'
    return f"({num}) / {den}"


def use_cases() -> dict[str, Any]:
    lay = Layout()
    lay.row("Adoption")
    lay.add(
        panel(
            "stat",
            "Answers delivered (range)",
            [
                (
                    'sum(increase(docfactory_rpc_requests_total{method="Answer", code="OK", '
                    'tenant=~"$tenant"}[$__range]))',
                    "answers",
                )
            ],
            description="Per tenant only: the RPC metrics carry no use-case label.",
        ),
        w=6,
        h=5,
    )
    lay.add(
        panel(
            "stat",
            "Searches (range)",
            [
                (
                    'sum(increase(docfactory_rpc_requests_total{method="Search", code="OK", '
                    'tenant=~"$tenant"}[$__range]))',
                    "searches",
                )
            ],
        ),
        w=6,
        h=5,
    )
    lay.add(
        panel(
            "stat",
            "Feedback received (range)",
            [(f"sum(increase(docfactory_feedback_total{{{F}}}[$__range]))", "feedback")],
        ),
        w=6,
        h=5,
    )
    lay.add(
        panel(
            "stat",
            "Feedback per answer",
            [
                (
                    f"sum(increase(docfactory_feedback_total{{{F}}}[$__range])) / "
                    f'sum(increase(docfactory_rpc_requests_total{{method="Answer", code="OK", '
                    f'tenant=~"$tenant"}}[$__range]))',
                    "ratio",
                )
            ],
            unit="percentunit",
        ),
        w=6,
        h=5,
    )
    lay.add(
        panel(
            "timeseries",
            "Answers per day by tenant",
            [
                (
                    'sum by (tenant) (increase(docfactory_rpc_requests_total{method="Answer", '
                    'code="OK", tenant=~"$tenant"}[1d]))',
                    "{{tenant}}",
                )
            ],
        ),
        w=12,
    )
    lay.add(
        panel(
            "timeseries",
            "Refused requests per day by tenant",
            [
                (
                    'sum by (tenant, code) (increase(docfactory_rpc_requests_total{method=~"Answer|Search", '
                    'code=~"PERMISSION_DENIED|RESOURCE_EXHAUSTED", tenant=~"$tenant"}[1d]))',
                    "{{tenant}} {{code}}",
                )
            ],
        ),
        w=12,
    )
    lay.row("Satisfaction")
    lay.add(
        panel(
            "stat", "Mean rating (1-5)", [(_mean_rating(), "mean rating")], unit="none", decimals=1
        ),
        w=6,
        h=6,
    )
    lay.add(
        panel(
            "stat",
            "Answers judged useful",
            [
                (
                    f'sum(increase(docfactory_feedback_verdicts_total{{verdict="useful", {F}}}[$__range]))'
                    f' / sum(increase(docfactory_feedback_verdicts_total{{verdict=~"useful|not_useful", '
                    f"{F}}}[$__range]))",
                    "useful",
                )
            ],
            unit="percentunit",
        ),
        w=6,
        h=6,
    )
    lay.add(
        panel(
            "bargauge",
            "Ratings given",
            [
                (
                    f'sum by (rating) (increase(docfactory_feedback_total{{rating=~"[1-5]", {F}}}'
                    "[$__range]))",
                    "{{rating}}",
                )
            ],
        ),
        w=6,
        h=6,
    )
    lay.add(
        panel(
            "piechart",
            "What users do with answers",
            [
                (
                    f"sum by (usage) (increase(docfactory_answer_usage_total{{{F}}}[$__range]))",
                    "{{usage}}",
                )
            ],
        ),
        w=6,
        h=6,
    )
    lay.add(
        panel(
            "timeseries",
            "Feedback per day by use case",
            [
                (
                    f"sum by (use_case) (increase(docfactory_feedback_total{{{F}}}[1d]))",
                    "{{use_case}}",
                )
            ],
        ),
        w=24,
    )
    lay.row("Time saved")
    lay.add(
        panel(
            "stat",
            "Hours saved (range)",
            [
                (
                    f"sum(increase(docfactory_time_saved_minutes_total{{{F}}}[$__range])) / 60",
                    "hours",
                )
            ],
            unit="h",
        ),
        w=6,
        h=6,
    )
    lay.add(
        panel(
            "timeseries",
            "Hours saved per day by use case",
            [
                (
                    f"sum by (use_case) (increase(docfactory_time_saved_minutes_total{{{F}}}[1d])) / 60",
                    "{{use_case}}",
                )
            ],
            unit="h",
        ),
        w=18,
        h=6,
    )
    lay.add(
        panel(
            "table",
            "By tenant and use case (range)",
            [
                (
                    f"sum by (tenant, use_case) (increase(docfactory_feedback_total{{{F}}}[$__range]))",
                    "feedback",
                ),
                (
                    f"sum by (tenant, use_case) (increase(docfactory_time_saved_minutes_total{{{F}}}"
                    "[$__range])) / 60",
                    "hours saved",
                ),
            ],
        ),
        w=24,
    )
    tenant = variable("tenant", "label_values(docfactory_rpc_requests_total, tenant)", "Tenant")
    uc = variable("use_case", "label_values(docfactory_feedback_total, use_case)", "Use case")
    return dashboard(
        "docfactory-use-cases",
        "docfactory — use-case owners",
        [tenant, uc],
        lay,
        "now-30d",
        "Adoption, satisfaction and time saved per tenant and use case (from users' feedback). "
        "Active users and citation/refusal rates: `docfactory report`.",
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, board in (("operators.json", operators()), ("use-cases.json", use_cases())):
        (OUT / name).write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")
        print(OUT / name)


if __name__ == "__main__":
    main()
