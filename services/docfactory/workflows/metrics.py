"""Prometheus metrics of dossier workflows (the process default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

STEP_SECONDS = Histogram(
    "docfactory_dossier_step_seconds",
    "Time per dossier run step (classify, required, extract, check, retrieve, draft).",
    ["flow", "step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DOSSIER_SECONDS = Histogram(
    "docfactory_dossier_seconds",
    "Time from the start of a run to its release (sign-off wait included).",
    ["flow"],
    buckets=(1, 10, 60, 600, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400),
)
RUNS_FINISHED = Counter(
    "docfactory_dossier_runs_total", "Dossier runs ended, by flow and state.", ["flow", "state"]
)
DECISIONS = Counter(
    "docfactory_dossier_decisions_total",
    "Sign-off decisions, by flow and kind (APPROVE, AMEND, REJECT).",
    ["flow", "kind"],
)
FIELDS_AMENDED = Counter(
    "docfactory_dossier_fields_amended_total",
    "Extracted fields corrected by reviewers (extraction accuracy as reviewers see it).",
    ["flow"],
)
FIELDS_EXTRACTED = Counter(
    "docfactory_dossier_fields_extracted_total", "Fields extracted.", ["flow"]
)
ESCALATIONS = Counter(
    "docfactory_dossier_escalations_total", "Sign-off deadlines passed.", ["flow"]
)
