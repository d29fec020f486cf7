"""Vector store contract and its Qdrant implementations.

One Qdrant collection holds every tenant's chunks (Qdrant's recommended multitenancy: payload
partitioning with a tenant index). Each point: named dense vector ``dense``, sparse BM25 vector
``bm25`` (IDF modifier, computed server-side) and a payload with tenant, collection, document id,
version, classification rank, pages, section path and text. Every query is scoped to one tenant.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from docfactory.core.errors import InvalidArgument, Unavailable

DENSE = "dense"
SPARSE = "bm25"
MODES = ("dense", "sparse", "hybrid")
# Hybrid fusion: weighted reciprocal rank fusion of the dense and sparse candidate lists.
# Weights (dense, sparse) chosen on SciFact's *train* qrels with `docfactory eval` (the small
# multilingual dense model is much weaker than BM25 on these corpora); k = Qdrant's default.
RRF_K = 2
HYBRID_WEIGHTS = (0.2, 1.0)
_POINT_NS = uuid.UUID("8f7c3c2e-1d7a-4c55-9b4e-6f1f0c2a9d11")


_DOC_NS = uuid.UUID("2b1d7f0e-3c4a-4e8b-8a51-0d6c9e7f4a22")


def document_id_for(tenant: str, collection: str, source_uri: str) -> str:
    """Deterministic document id: one per (tenant, collection, source URI)."""
    return uuid.uuid5(_DOC_NS, f"{tenant}\x00{collection}\x00{source_uri}").hex


def point_id(document_id: str, version: int, index: int) -> str:
    """Deterministic point id: the same document version always writes the same ids."""
    return str(uuid.uuid5(_POINT_NS, f"{document_id}:{version}:{index}"))


@dataclass(frozen=True)
class Sparse:
    indices: Sequence[int]
    values: Sequence[float]


@dataclass(frozen=True)
class ChunkPoint:
    id: str
    dense: Sequence[float]
    payload: Mapping[str, Any]
    sparse: Sparse | None = None


@dataclass(frozen=True)
class MetadataFilter:
    """Conditions on payload fields recorded at ingestion (``DocumentFilter`` in the protos):
    ``file_type``, ``language``, ``has_table`` and ``ocr`` (0/1), ``ingested_at`` (epoch
    seconds)."""

    file_types: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    has_tables: bool | None = None
    ocr: bool | None = None
    ingested_after: int | None = None
    ingested_before: int | None = None

    def __bool__(self) -> bool:
        return bool(
            self.file_types
            or self.languages
            or self.has_tables is not None
            or self.ocr is not None
            or self.ingested_after is not None
            or self.ingested_before is not None
        )


@dataclass(frozen=True)
class Scope:
    """Who may see what. ``tenant`` is mandatory: no query runs without it."""

    tenant: str
    collections: Sequence[str] = ()
    document_ids: Sequence[str] = ()
    max_classification: int = 0  # 0 = no ceiling
    extra: Mapping[str, Any] = field(default_factory=dict)
    filter: MetadataFilter | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: Mapping[str, Any]


class VectorStore(Protocol):
    def upsert(self, points: Sequence[ChunkPoint], dimension: int) -> int: ...
    def delete_document(self, tenant: str, document_id: str, keep_version: int = 0) -> int: ...
    def set_classification(self, tenant: str, document_id: str, classification: int) -> int:
        """Set the classification rank of every point of a document (no re-embedding);
        returns how many points carry it."""
        ...

    def query(
        self,
        scope: Scope,
        *,
        dense: Sequence[float] | None,
        sparse: Sparse | None,
        limit: int,
        mode: str = "dense",
    ) -> list[Hit]: ...
    def count(self, scope: Scope) -> int: ...
    def point_ids(
        self, scope: Scope, *, offset: str = "", limit: int = 1000
    ) -> tuple[list[str], str]:
        """One page of the point ids in ``scope`` (id order) and the offset of the next page
        (``""`` after the last one): for consistency checks, not for search."""
        ...

    def close(self) -> None: ...


class QdrantStore:
    """qdrant-client over a local path (embedded) or a Qdrant server/cluster URL (gRPC)."""

    def __init__(
        self,
        *,
        collection: str,
        path: Path | None = None,
        url: str = "",
        api_key: str = "",
        prefer_grpc: bool = True,
        timeout: float = 30.0,
        location: str = "",
        hybrid_weights: tuple[float, float] = HYBRID_WEIGHTS,
    ) -> None:
        from qdrant_client import QdrantClient

        self._weights = hybrid_weights
        self._collection = collection
        self._remote = bool(url)
        if url:
            self._client = QdrantClient(
                url=url, api_key=api_key or None, prefer_grpc=prefer_grpc, timeout=int(timeout)
            )
        elif location:
            self._client = QdrantClient(location=location)
        else:
            assert path is not None
            path.mkdir(parents=True, exist_ok=True)
            try:
                self._client = QdrantClient(path=str(path))
            except RuntimeError as exc:  # folder locked by another process
                raise Unavailable(
                    f"embedded vector store {path} is in use by another process: {exc}. "
                    "Stop the running server or point the CLI at it (DOCFACTORY_ADDRESS).",
                    reason="VECTOR_STORE_LOCKED",
                ) from exc
        # Local mode is not thread-safe; a server handles its own concurrency.
        self._lock = threading.Lock() if not self._remote else None
        self._ready = False

    # -- helpers -------------------------------------------------------------------------
    def _locked(self) -> Any:
        return self._lock if self._lock is not None else _NullLock()

    def _ensure(self, dimension: int) -> None:
        from qdrant_client import models

        if self._ready:
            return
        if not self._client.collection_exists(self._collection):
            self._client.create_collection(
                self._collection,
                vectors_config={
                    DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                },
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
            )
            if self._remote:
                self._client.create_payload_index(
                    self._collection,
                    "tenant",
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
                for key in ("collection", "document_id"):
                    self._client.create_payload_index(
                        self._collection, key, models.PayloadSchemaType.KEYWORD
                    )
                for key in ("classification", "document_version"):
                    self._client.create_payload_index(
                        self._collection, key, models.PayloadSchemaType.INTEGER
                    )
        else:
            info = self._client.get_collection(self._collection)
            vectors = info.config.params.vectors
            size = vectors[DENSE].size if isinstance(vectors, dict) else None
            if size is not None and size != dimension:
                raise InvalidArgument(
                    f"vector dimension {dimension} does not match the index ({size}); "
                    "re-index with the same embedding model or use another collection",
                    reason="DIMENSION_MISMATCH",
                )
        self._ready = True

    def _exists(self) -> bool:
        return self._ready or bool(self._client.collection_exists(self._collection))

    @staticmethod
    def _filter(scope: Scope, document_id: str = "", skip_version: int = 0) -> Any:
        from qdrant_client import models

        if not scope.tenant:
            raise InvalidArgument("a tenant is required for every query", reason="NO_TENANT")
        must: list[Any] = [
            models.FieldCondition(key="tenant", match=models.MatchValue(value=scope.tenant))
        ]
        if scope.collections:
            must.append(
                models.FieldCondition(
                    key="collection", match=models.MatchAny(any=list(scope.collections))
                )
            )
        ids = [document_id] if document_id else list(scope.document_ids)
        if ids:
            must.append(models.FieldCondition(key="document_id", match=models.MatchAny(any=ids)))
        if scope.max_classification:
            must.append(
                models.FieldCondition(
                    key="classification", range=models.Range(lte=scope.max_classification)
                )
            )
        f = scope.filter
        if f:
            if f.file_types:
                must.append(
                    models.FieldCondition(
                        key="file_type", match=models.MatchAny(any=list(f.file_types))
                    )
                )
            if f.languages:
                must.append(
                    models.FieldCondition(
                        key="language", match=models.MatchAny(any=list(f.languages))
                    )
                )
            if f.has_tables is not None:
                must.append(
                    models.FieldCondition(
                        key="has_table", match=models.MatchValue(value=int(f.has_tables))
                    )
                )
            if f.ocr is not None:
                must.append(
                    models.FieldCondition(key="ocr", match=models.MatchValue(value=int(f.ocr)))
                )
            if f.ingested_after is not None or f.ingested_before is not None:
                must.append(
                    models.FieldCondition(
                        key="ingested_at",
                        range=models.Range(
                            gte=f.ingested_after,
                            lt=f.ingested_before,
                        ),
                    )
                )
        must_not: list[Any] = []
        if skip_version:
            must_not.append(
                models.FieldCondition(
                    key="document_version", match=models.MatchValue(value=skip_version)
                )
            )
        return models.Filter(must=must, must_not=must_not or None)

    # -- contract ------------------------------------------------------------------------
    def upsert(self, points: Sequence[ChunkPoint], dimension: int) -> int:
        from qdrant_client import models

        if not points:
            return 0
        structs = []
        for p in points:
            vector: dict[str, Any] = {DENSE: list(p.dense)}
            if p.sparse is not None and len(p.sparse.indices):
                vector[SPARSE] = models.SparseVector(
                    indices=list(p.sparse.indices), values=list(p.sparse.values)
                )
            structs.append(models.PointStruct(id=p.id, vector=vector, payload=dict(p.payload)))
        with self._locked():
            self._ensure(dimension)
            for i in range(0, len(structs), 256):
                self._client.upsert(self._collection, points=structs[i : i + 256], wait=True)
        return len(structs)

    def delete_document(self, tenant: str, document_id: str, keep_version: int = 0) -> int:
        from qdrant_client import models

        flt = self._filter(Scope(tenant=tenant), document_id, skip_version=keep_version)
        with self._locked():
            if not self._exists():
                return 0
            n = self._client.count(self._collection, count_filter=flt, exact=True).count
            if n:
                self._client.delete(
                    self._collection, points_selector=models.FilterSelector(filter=flt), wait=True
                )
            return int(n)

    def set_classification(self, tenant: str, document_id: str, classification: int) -> int:
        flt = self._filter(Scope(tenant=tenant), document_id)
        with self._locked():
            if not self._exists():
                return 0
            n = self._client.count(self._collection, count_filter=flt, exact=True).count
            if n:
                self._client.set_payload(
                    self._collection,
                    payload={"classification": int(classification)},
                    points=flt,
                    wait=True,
                )
            return int(n)

    def query(
        self,
        scope: Scope,
        *,
        dense: Sequence[float] | None,
        sparse: Sparse | None,
        limit: int,
        mode: str = "dense",
    ) -> list[Hit]:
        from qdrant_client import models

        if mode not in MODES:
            raise InvalidArgument(f"unknown search mode {mode!r}", reason="INVALID_SEARCH_MODE")
        flt = self._filter(scope)
        sparse_q = (
            models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
            if sparse is not None and len(sparse.indices)
            else None
        )
        with self._locked():
            if not self._exists():
                return []
            if mode == "sparse" or (mode == "hybrid" and dense is None):
                if sparse_q is None:
                    return []
                res = self._client.query_points(
                    self._collection,
                    query=sparse_q,
                    using=SPARSE,
                    query_filter=flt,
                    limit=limit,
                    with_payload=True,
                )
            elif mode == "hybrid" and sparse_q is not None:
                assert dense is not None
                cand = max(limit * 4, 20)
                res = self._client.query_points(
                    self._collection,
                    prefetch=[
                        models.Prefetch(query=list(dense), using=DENSE, filter=flt, limit=cand),
                        models.Prefetch(query=sparse_q, using=SPARSE, filter=flt, limit=cand),
                    ],
                    query=models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=list(self._weights))),
                    query_filter=flt,
                    limit=limit,
                    with_payload=True,
                )
            else:
                if dense is None:
                    raise InvalidArgument("dense query vector missing", reason="NO_QUERY_VECTOR")
                res = self._client.query_points(
                    self._collection,
                    query=list(dense),
                    using=DENSE,
                    query_filter=flt,
                    limit=limit,
                    with_payload=True,
                )
        return [
            Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in res.points
        ]

    def count(self, scope: Scope) -> int:
        flt = self._filter(scope)
        with self._locked():
            if not self._exists():
                return 0
            return int(self._client.count(self._collection, count_filter=flt, exact=True).count)

    def point_ids(
        self, scope: Scope, *, offset: str = "", limit: int = 1000
    ) -> tuple[list[str], str]:
        flt = self._filter(scope)
        with self._locked():
            if not self._exists():
                return [], ""
            records, nxt = self._client.scroll(
                self._collection,
                scroll_filter=flt,
                limit=max(1, limit),
                offset=offset or None,
                with_payload=False,
                with_vectors=False,
            )
        return [str(r.id) for r in records], "" if nxt is None else str(nxt)

    def close(self) -> None:
        self._client.close()


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
