"""``VectorStore`` on Qdrant Edge (``qdrant-edge-py``): Qdrant's engine embedded in-process.

One :class:`qdrant_edge.EdgeShard` per store, in ``path/collection``. Same point layout and
semantics as :class:`docfactory.core.vectorstore.QdrantStore`: named dense vector ``dense``
(cosine), sparse vector ``bm25`` with the IDF modifier (IDF computed by the engine), payload
partitioning by tenant, every query and count scoped to one tenant.

The shard is created on the first upsert (the dense dimension is only known then) and loaded
by the constructor when it already exists. Payload indexes are created with the shard: the
tenant keyword (``is_tenant``), collection and document id keywords, classification and
document version integers. The engine holds a lock on the shard's write-ahead log: a second
process opening the same folder gets ``Unavailable`` (reason ``VECTOR_STORE_LOCKED``).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from docfactory.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from docfactory.core.vectorstore import (
    DENSE,
    HYBRID_WEIGHTS,
    MODES,
    RRF_K,
    SPARSE,
    ChunkPoint,
    Hit,
    Scope,
    Sparse,
)

__all__ = ["EdgeStore"]

_CONFIG_FILE = "edge_config.json"  # written by qdrant-edge in the shard folder
_BATCH = 256


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "WouldBlock" in text or "Resource temporarily unavailable" in text


class EdgeStore:
    """Qdrant Edge shard in ``path/collection``; thread-safe (one lock around the shard).

    Every update goes to the shard's write-ahead log first; segments are flushed to disk at
    most every ``flush_interval`` seconds (and on close) rather than after every write: the
    engine replays the WAL when the shard is loaded, so a killed process loses nothing
    (tested), and a per-write flush cost ~60 ms of lock time per document in bulk ingestion.
    ``flush_interval=0`` flushes after every write.

    The engine writes its segments through memory maps: on a full disk a write would end the
    whole process with SIGBUS, not with an error. So every write first checks that the disk
    keeps ``min_free_bytes`` free, and is refused with RESOURCE_EXHAUSTED ``DISK_FULL`` (the
    shard untouched) when it does not; the refused write succeeds once space is freed.
    """

    def __init__(
        self,
        *,
        path: Path,
        collection: str = "docfactory_chunks",
        hybrid_weights: tuple[float, float] = HYBRID_WEIGHTS,
        flush_interval: float = 5.0,
        min_free_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._weights = hybrid_weights
        self._min_free = max(0, min_free_bytes)
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        if not collection or "/" in collection or collection in (".", ".."):
            raise InvalidArgument(
                f"invalid vector collection name {collection!r}", reason="INVALID_COLLECTION"
            )
        self._dir = Path(path) / collection
        self._lock = threading.Lock()
        self._shard: qe.EdgeShard | None = None
        self._dimension: int | None = None
        self._closed = False
        Path(path).mkdir(parents=True, exist_ok=True)
        if (self._dir / _CONFIG_FILE).exists():
            self._shard = self._open(lambda: qe.EdgeShard.load(str(self._dir)))
            self._dimension = self._stored_dimension()

    # -- helpers -------------------------------------------------------------------------
    def _open(self, opener: Any) -> qe.EdgeShard:
        try:
            shard: qe.EdgeShard = opener()
        except Exception as exc:
            if _is_lock_error(exc):
                raise Unavailable(
                    f"embedded vector store {self._dir} is in use by another process: {exc}. "
                    "Stop the running server or point the CLI at it (DOCFACTORY_ADDRESS).",
                    reason="VECTOR_STORE_LOCKED",
                ) from exc
            raise Unavailable(
                f"cannot open embedded vector store {self._dir}: {exc}",
                reason="VECTOR_STORE_UNAVAILABLE",
            ) from exc
        return shard

    def _stored_dimension(self) -> int | None:
        try:
            cfg = json.loads((self._dir / _CONFIG_FILE).read_text(encoding="utf-8"))
            return int(cfg["vectors"][DENSE]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _check_space(self) -> None:
        """Refuse a write that could fill the disk under the engine's memory maps."""
        free = shutil.disk_usage(self._dir if self._dir.exists() else self._dir.parent).free
        if free < self._min_free:
            raise ResourceExhausted(
                f"the data disk is full: {free // (1024 * 1024)} MiB free, the vector store keeps "
                f"{self._min_free // (1024 * 1024)} MiB free (DOCFACTORY_VECTOR_MIN_FREE_MB); "
                "nothing was written, retry once space is freed",
                reason="DISK_FULL",
            )

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("vector store is closed", reason="VECTOR_STORE_CLOSED")

    def _ensure(self, dimension: int) -> qe.EdgeShard:
        """The shard, created with ``dimension`` if needed. Caller holds the lock."""
        if self._shard is not None:
            if self._dimension is not None and self._dimension != dimension:
                raise InvalidArgument(
                    f"vector dimension {dimension} does not match the index "
                    f"({self._dimension}); re-index with the same embedding model or use "
                    "another collection",
                    reason="DIMENSION_MISMATCH",
                )
            return self._shard
        if dimension <= 0:
            raise InvalidArgument(
                f"invalid vector dimension {dimension}", reason="DIMENSION_MISMATCH"
            )
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        shard = self._open(lambda: qe.EdgeShard.create(str(self._dir), config))
        indexes: list[tuple[str, Any]] = [
            ("tenant", qe.KeywordIndexParams(is_tenant=True)),
            ("collection", qe.PayloadSchemaType.Keyword),
            ("document_id", qe.PayloadSchemaType.Keyword),
            ("classification", qe.PayloadSchemaType.Integer),
            ("document_version", qe.PayloadSchemaType.Integer),
        ]
        for key, schema in indexes:
            shard.update(qe.UpdateOperation.create_field_index(key, schema))
        shard.flush()
        self._shard = shard
        self._dimension = dimension
        return shard

    @staticmethod
    def _filter(scope: Scope, document_id: str = "", skip_version: int = 0) -> qe.Filter:
        if not scope.tenant:
            raise InvalidArgument("a tenant is required for every query", reason="NO_TENANT")
        must: list[Any] = [qe.FieldCondition(key="tenant", match=qe.MatchValue(scope.tenant))]
        if scope.collections:
            must.append(
                qe.FieldCondition(
                    key="collection", match=qe.MatchAny(any=[str(c) for c in scope.collections])
                )
            )
        ids = [document_id] if document_id else [str(d) for d in scope.document_ids]
        if ids:
            must.append(qe.FieldCondition(key="document_id", match=qe.MatchAny(any=ids)))
        if scope.max_classification:
            must.append(
                qe.FieldCondition(
                    key="classification",
                    range=qe.RangeFloat(lte=float(scope.max_classification)),
                )
            )
        f = scope.filter
        if f:
            if f.file_types:
                must.append(
                    qe.FieldCondition(key="file_type", match=qe.MatchAny(any=list(f.file_types)))
                )
            if f.languages:
                must.append(
                    qe.FieldCondition(key="language", match=qe.MatchAny(any=list(f.languages)))
                )
            if f.has_tables is not None:
                must.append(
                    qe.FieldCondition(key="has_table", match=qe.MatchValue(int(f.has_tables)))
                )
            if f.ocr is not None:
                must.append(qe.FieldCondition(key="ocr", match=qe.MatchValue(int(f.ocr))))
            if f.ingested_after is not None or f.ingested_before is not None:
                must.append(
                    qe.FieldCondition(
                        key="ingested_at",
                        range=qe.RangeFloat(
                            gte=None if f.ingested_after is None else float(f.ingested_after),
                            lt=None if f.ingested_before is None else float(f.ingested_before),
                        ),
                    )
                )
        must_not: list[Any] = []
        if skip_version:
            must_not.append(
                qe.FieldCondition(key="document_version", match=qe.MatchValue(int(skip_version)))
            )
        return qe.Filter(must=must, must_not=must_not or None)

    @staticmethod
    def _sparse(sparse: Sparse | None) -> qe.SparseVector | None:
        if sparse is None or not len(sparse.indices):
            return None
        return qe.SparseVector(
            indices=[int(i) for i in sparse.indices], values=[float(v) for v in sparse.values]
        )

    # -- contract ------------------------------------------------------------------------
    def upsert(self, points: Sequence[ChunkPoint], dimension: int) -> int:
        if not points:
            return 0
        structs: list[qe.Point] = []
        for p in points:
            if len(p.dense) != dimension:
                raise InvalidArgument(
                    f"point {p.id} has a {len(p.dense)}-d vector, expected {dimension}",
                    reason="DIMENSION_MISMATCH",
                )
            vector: dict[str, qe.NamedVector] = {DENSE: [float(x) for x in p.dense]}
            sv = self._sparse(p.sparse)
            if sv is not None:
                vector[SPARSE] = sv
            structs.append(qe.Point(p.id, vector, dict(p.payload)))
        with self._lock:
            self._check_open()
            self._check_space()
            shard = self._ensure(dimension)
            for i in range(0, len(structs), _BATCH):
                shard.update(qe.UpdateOperation.upsert_points(structs[i : i + _BATCH]))
            self._maybe_flush(shard)
        return len(structs)

    def _maybe_flush(self, shard: qe.EdgeShard) -> None:
        """Caller holds the lock."""
        now = time.monotonic()
        if now - self._last_flush >= self._flush_interval:
            shard.flush()
            self._last_flush = now

    def delete_document(self, tenant: str, document_id: str, keep_version: int = 0) -> int:
        flt = self._filter(Scope(tenant=tenant), document_id, skip_version=keep_version)
        with self._lock:
            self._check_open()
            if self._shard is None:
                return 0
            n = int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                self._maybe_flush(self._shard)
            return n

    def set_classification(self, tenant: str, document_id: str, classification: int) -> int:
        flt = self._filter(Scope(tenant=tenant), document_id)
        with self._lock:
            self._check_open()
            if self._shard is None:
                return 0
            n = int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))
            if n:
                self._shard.update(
                    qe.UpdateOperation.set_payload_by_filter(
                        flt, {"classification": int(classification)}
                    )
                )
                self._maybe_flush(self._shard)
            return n

    def query(
        self,
        scope: Scope,
        *,
        dense: Sequence[float] | None,
        sparse: Sparse | None,
        limit: int,
        mode: str = "dense",
    ) -> list[Hit]:
        if mode not in MODES:
            raise InvalidArgument(f"unknown search mode {mode!r}", reason="INVALID_SEARCH_MODE")
        flt = self._filter(scope)
        if limit <= 0:
            return []
        sparse_q = self._sparse(sparse)
        request: qe.QueryRequest
        if mode == "sparse" or (mode == "hybrid" and dense is None):
            if sparse_q is None:
                return []
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(sparse_q, using=SPARSE),
                filter=flt,
                with_payload=True,
            )
        elif mode == "hybrid" and sparse_q is not None:
            assert dense is not None
            cand = max(limit * 4, 20)
            fusion: Any = qe.Fusion.Rrf(k=RRF_K, weights=list(self._weights))
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(
                        limit=cand,
                        query=qe.Query.Nearest([float(x) for x in dense], using=DENSE),
                        filter=flt,
                    ),
                    qe.Prefetch(
                        limit=cand, query=qe.Query.Nearest(sparse_q, using=SPARSE), filter=flt
                    ),
                ],
                query=fusion,
                filter=flt,
                with_payload=True,
            )
        else:
            if dense is None:
                raise InvalidArgument("dense query vector missing", reason="NO_QUERY_VECTOR")
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest([float(x) for x in dense], using=DENSE),
                filter=flt,
                with_payload=True,
            )
        with self._lock:
            self._check_open()
            if self._shard is None:
                return []
            if (
                dense is not None
                and mode != "sparse"
                and self._dimension is not None
                and len(dense) != self._dimension
            ):
                raise InvalidArgument(
                    f"query vector dimension {len(dense)} does not match the index "
                    f"({self._dimension})",
                    reason="DIMENSION_MISMATCH",
                )
            points = self._shard.query(request)
        return [
            Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points
        ]

    def count(self, scope: Scope) -> int:
        flt = self._filter(scope)
        with self._lock:
            self._check_open()
            if self._shard is None:
                return 0
            return int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))

    def point_ids(
        self, scope: Scope, *, offset: str = "", limit: int = 1000
    ) -> tuple[list[str], str]:
        flt = self._filter(scope)
        with self._lock:
            self._check_open()
            if self._shard is None:
                return [], ""
            records, nxt = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset or None,
                    limit=max(1, limit),
                    filter=flt,
                    with_payload=False,
                    with_vector=False,
                )
            )
        return [str(r.id) for r in records], "" if nxt is None else str(nxt)

    def optimize(self) -> bool:
        """Run the engine's segment optimizers now (merge segments, vacuum deleted points,
        build HNSW for large segments). Not part of the ``VectorStore`` contract: Qdrant Edge
        has no background optimizer, so a long-lived store should call this after bulk
        ingestion or deletion. Blocks writers and readers while it runs."""
        with self._lock:
            self._check_open()
            if self._shard is None:
                return False
            changed = bool(self._shard.optimize())
            self._shard.flush()
            return changed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            shard, self._shard = self._shard, None
            if shard is not None:
                shard.flush()
                shard.close()
