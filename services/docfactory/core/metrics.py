"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_REQUESTS = Counter(
    "docfactory_rpc_requests_total",
    "gRPC requests handled, by method, status code and tenant.",
    ["service", "method", "code", "tenant"],
)
RPC_LATENCY = Histogram(
    "docfactory_rpc_duration_seconds",
    "gRPC handling time (whole stream for streaming RPCs).",
    ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
RPC_IN_FLIGHT = Gauge(
    "docfactory_rpc_in_flight", "gRPC requests being handled.", ["service", "method"]
)
DOCUMENTS_INGESTED = Counter(
    "docfactory_documents_ingested_total",
    "Documents processed by ingestion, by outcome (indexed, unchanged, failed) and tenant.",
    ["outcome", "tenant"],
)
PAGES_INGESTED = Counter("docfactory_pages_ingested_total", "Pages parsed.", ["tenant"])
CHUNKS_INDEXED = Counter("docfactory_chunks_indexed_total", "Chunks written.", ["tenant"])
INGEST_STAGE_SECONDS = Histogram(
    "docfactory_ingest_stage_seconds",
    "Time per ingestion stage.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
EMBED_BATCH_SIZE = Histogram(
    "docfactory_embedding_batch_size",
    "Texts per model call after request batching.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
EMBED_TEXTS = Counter("docfactory_embedding_texts_total", "Texts embedded.", ["input_type"])
RETRIEVAL_HITS = Histogram(
    "docfactory_retrieval_hits",
    "Passages returned per search.",
    ["mode"],
    buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100),
)
GENERATION_TOKENS = Counter(
    "docfactory_generation_tokens_total",
    "Tokens in prompts and completions, by generator and direction (in, out).",
    ["generator", "direction"],
)


# Measurement (feedback on answers): use-case owners' dashboard.
FEEDBACK = Counter(
    "docfactory_feedback_total",
    "Feedback received on answers, by tenant, use case and rating (1-5, or none).",
    ["tenant", "use_case", "rating"],
)
FEEDBACK_VERDICTS = Counter(
    "docfactory_feedback_verdicts_total",
    "Feedback verdicts (useful, not_useful, none), by tenant and use case.",
    ["tenant", "use_case", "verdict"],
)
ANSWER_USAGE = Counter(
    "docfactory_answer_usage_total",
    "What users did with answers (used_as_is, edited, discarded, unknown), from feedback.",
    ["tenant", "use_case", "usage"],
)
TIME_SAVED_MINUTES = Counter(
    "docfactory_time_saved_minutes_total",
    "Minutes saved as estimated by users in their feedback.",
    ["tenant", "use_case"],
)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> int:
    """Serve /metrics over HTTP; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
