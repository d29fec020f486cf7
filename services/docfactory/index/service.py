"""IndexService domain: this process's vector store offered to split-mode peers, under the
caller's tenant, roles and use case, every call audited.

- writes: the payload's tenant is *forced* to the caller's tenant and each point id must be the
  one docfactory derives from that tenant's document id (uuid5 of tenant, collection, source
  URI -> uuid5 of document, version, index), so no key can address another tenant's points;
- queries (they return text) run under a use case: its classification ceiling and collections
  narrow the requested scope (policy configured);
- counts and id listings return no content and are scoped to the caller's tenant.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from docfactory.core.auth import Principal
from docfactory.core.errors import InvalidArgument, PermissionDenied
from docfactory.core.pagination import next_page, page_request
from docfactory.core.vectorstore import (
    MODES,
    ChunkPoint,
    Hit,
    Scope,
    Sparse,
    VectorStore,
    document_id_for,
    point_id,
)
from docfactory.governance.gate import GovernanceGate

_INT_FIELDS = ("document_version", "classification", "chunk_index", "token_count", "ingested_at")
MAX_DIMENSION = 16_384


def checked_scope(scope: Scope) -> Scope:
    if scope.max_classification < 0 or scope.max_classification > 4:
        raise InvalidArgument(
            "scope.max_classification must be 0 (none) to 4", reason="INVALID_CLASSIFICATION"
        )
    return scope


def checked_sparse(indices: Sequence[int], values: Sequence[float]) -> Sparse | None:
    if len(indices) != len(values):
        raise InvalidArgument(
            "sparse vector: indices and values must have the same length",
            reason="INVALID_SPARSE_VECTOR",
        )
    return Sparse(list(indices), list(values)) if len(indices) else None


def _int(payload: Mapping[str, Any], key: str, i: int) -> int:
    value = payload.get(key)
    if not isinstance(value, int | float) or value != int(value) or not 0 <= value < 2**53:
        raise InvalidArgument(
            f"points[{i}].payload.{key} must be a non-negative integer",
            reason="INVALID_POINT_PAYLOAD",
        )
    return int(value)


def checked_point(tenant: str, p: ChunkPoint, i: int) -> ChunkPoint:
    """The point as stored: tenant forced from the caller, id re-derived and compared."""
    payload = dict(p.payload)
    claimed = payload.get("tenant")
    if claimed not in (None, "", tenant):
        raise PermissionDenied(
            "points must belong to the caller's tenant", reason="TENANT_MISMATCH"
        )
    payload["tenant"] = tenant
    for key in _INT_FIELDS:
        if key in payload:
            payload[key] = _int(payload, key, i)
    pages = payload.get("page_numbers", [])
    if not isinstance(pages, list):
        raise InvalidArgument(
            f"points[{i}].payload.page_numbers must be a list", reason="INVALID_POINT_PAYLOAD"
        )
    payload["page_numbers"] = [int(x) for x in pages if isinstance(x, int | float)]
    collection = payload.get("collection")
    source_uri = payload.get("source_uri")
    document_id = payload.get("document_id")
    if not all(isinstance(v, str) and v for v in (collection, source_uri, document_id)):
        raise InvalidArgument(
            f"points[{i}].payload needs collection, source_uri and document_id",
            reason="INVALID_POINT_PAYLOAD",
        )
    assert isinstance(collection, str) and isinstance(source_uri, str)
    if document_id != document_id_for(tenant, collection, source_uri):
        raise PermissionDenied(
            f"points[{i}]: document_id is not one of the caller's tenant",
            reason="POINT_NOT_OWNED",
        )
    expected = point_id(
        str(document_id),
        _int(payload, "document_version", i),
        _int(payload, "chunk_index", i),
    )
    try:
        given = str(uuid.UUID(p.id))
    except ValueError:
        raise InvalidArgument(f"points[{i}].id is not a UUID", reason="INVALID_POINT_ID") from None
    if given != expected:
        raise PermissionDenied(
            f"points[{i}].id does not derive from its document, version and index",
            reason="POINT_NOT_OWNED",
        )
    return ChunkPoint(id=given, dense=list(p.dense), payload=payload, sparse=p.sparse)


def _document_id(document_id: str) -> str:
    if not document_id or len(document_id) > 64:
        raise InvalidArgument("document_id is required", reason="INVALID_DOCUMENT_ID")
    return document_id


class IndexService:
    def __init__(self, store: VectorStore, gate: GovernanceGate) -> None:
        self._store = store
        self._gate = gate

    async def _audit(self, principal: Principal, rpc: str, **details: Any) -> None:
        # A database commit: off the event loop, like the store's own calls.
        await asyncio.to_thread(
            self._gate.record,
            principal,
            action="INDEX",
            outcome="OK",
            details={"rpc": rpc, **details},
        )

    async def upsert(
        self, principal: Principal, points: Sequence[ChunkPoint], dimension: int
    ) -> int:
        if dimension <= 0 or dimension > MAX_DIMENSION:
            raise InvalidArgument(
                f"dimension must be 1 to {MAX_DIMENSION}", reason="INVALID_DIMENSION"
            )
        checked = [checked_point(principal.tenant, p, i) for i, p in enumerate(points)]
        for i, p in enumerate(checked):
            if len(p.dense) != dimension:
                raise InvalidArgument(
                    f"points[{i}].dense has {len(p.dense)} values, dimension is {dimension}",
                    reason="DIMENSION_MISMATCH",
                )
        n = await asyncio.to_thread(self._store.upsert, checked, dimension)
        docs = sorted({str(p.payload["document_id"]) for p in checked})
        await self._audit(principal, "UpsertPoints", points=n, document_ids=docs[:50])
        return n

    async def delete(self, principal: Principal, document_id: str, keep_version: int) -> int:
        _document_id(document_id)
        if keep_version < 0:
            raise InvalidArgument("keep_version must be >= 0", reason="INVALID_VERSION")
        n = await asyncio.to_thread(
            self._store.delete_document, principal.tenant, document_id, keep_version
        )
        await self._audit(principal, "DeletePoints", points=n, document_ids=[document_id])
        return n

    async def query(
        self,
        principal: Principal,
        scope: Scope,
        *,
        use_case: str,
        dense: Sequence[float] | None,
        sparse: Sparse | None,
        limit: int,
        mode: str,
    ) -> list[Hit]:
        """Search under ``use_case``: its ceiling and collections narrow ``scope``."""
        scope = checked_scope(scope)
        grant = await asyncio.to_thread(
            self._gate.authorize, principal, use_case, list(scope.collections), ""
        )
        ceiling = scope.max_classification
        if grant.max_classification:
            ceiling = min(ceiling or grant.max_classification, grant.max_classification)
        scope = Scope(
            tenant=principal.tenant,
            collections=grant.collections,
            document_ids=scope.document_ids,
            max_classification=ceiling,
            filter=scope.filter,
        )
        mode = mode or "dense"
        if mode not in MODES:
            raise InvalidArgument(
                f"mode must be one of {', '.join(MODES)}", reason="INVALID_SEARCH_MODE"
            )
        if limit < 0 or limit > 1000:
            raise InvalidArgument("limit must be 0 to 1000", reason="INVALID_LIMIT")
        hits = await asyncio.to_thread(
            lambda: self._store.query(
                scope, dense=dense or None, sparse=sparse, limit=limit or 10, mode=mode
            )
        )
        await self._audit(principal, "QueryPoints", use_case=use_case, hits=len(hits))
        return list(hits)

    async def count(self, principal: Principal, scope: Scope) -> int:
        n = await asyncio.to_thread(self._store.count, checked_scope(scope))
        await self._audit(principal, "CountPoints")
        return n

    async def point_ids(
        self, principal: Principal, scope: Scope, page_size: int, page_token: str
    ) -> tuple[list[str], str]:
        """A page of the point ids in ``scope`` (id order) and the next page's token (keyset
        on the point id, bound to the scope)."""
        scope = checked_scope(scope)
        req = page_request(
            page_size,
            page_token,
            fingerprint=hashlib.sha256(repr(scope).encode()).hexdigest()[:32],
            parse=lambda k: str(uuid.UUID(k[0])),
            default=1000,
            maximum=10_000,
        )
        # The store pages from an id on (inclusive): ask for the row after the last one sent.
        ids, _ = await asyncio.to_thread(
            lambda: self._store.point_ids(scope, offset=req.after or "", limit=req.size + 2)
        )
        if req.after is not None and ids and ids[0] == req.after:
            ids = ids[1:]
        page, token = next_page(ids, req, lambda i: [i])
        await self._audit(principal, "ListPointIds", ids=len(page))
        return page, token

    async def set_classification(
        self, principal: Principal, document_id: str, classification: int
    ) -> int:
        _document_id(document_id)
        if not 1 <= classification <= 4:
            raise InvalidArgument(
                "classification must be 1 (PUBLIC) to 4 (RESTRICTED)",
                reason="INVALID_CLASSIFICATION",
            )
        n = await asyncio.to_thread(
            self._store.set_classification, principal.tenant, document_id, classification
        )
        await self._audit(
            principal,
            "SetDocumentClassification",
            points=n,
            document_ids=[document_id],
            classification=classification,
        )
        return n
