"""IndexService: exposes this process's embedded vector store to split-mode peers.

Internal only: registered on its own listener (``DOCFACTORY_INDEX_LISTEN``) behind the service
key, never on the public port. The caller's end-user key still travels with each call, and every
method enforces it:

- writes (UpsertPoints, DeletePoints) need a write role when the policy asks for one (the
  interceptor's ``authorize_method``); the payload's tenant is *forced* to the caller's tenant and
  each point id must be the one docfactory derives from that tenant's document id (uuid5 of
  tenant, collection, source URI -> uuid5 of document, version, index), so no key can address
  another tenant's points;
- QueryPoints (returns text) runs under the use case named in ``x-docfactory-use-case``: its
  classification ceiling and collections narrow the requested scope (policy configured);
- CountPoints and ListPointIds return no content and are scoped to the caller's tenant;
- every call is audited.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from docfactory.core.auth import Principal, current_principal
from docfactory.core.errors import InvalidArgument, PermissionDenied
from docfactory.core.filters import filter_from_proto
from docfactory.core.vectorstore import (
    MODES,
    ChunkPoint,
    Scope,
    Sparse,
    VectorStore,
    document_id_for,
    point_id,
)
from docfactory.governance.gate import GovernanceGate
from docfactory.index.v1 import index_service_pb2 as pb
from docfactory.index.v1 import index_service_pb2_grpc as pb_grpc

USE_CASE_HEADER = "x-docfactory-use-case"
_INT_FIELDS = ("document_version", "classification", "chunk_index", "token_count", "ingested_at")


def _sparse(s: pb.SparseVector) -> Sparse | None:
    if len(s.indices) != len(s.values):
        raise InvalidArgument(
            "sparse vector: indices and values must have the same length",
            reason="INVALID_SPARSE_VECTOR",
        )
    return Sparse(list(s.indices), list(s.values)) if len(s.indices) else None


def _scope(tenant: str, s: pb.Scope) -> Scope:
    if s.max_classification < 0 or s.max_classification > 4:
        raise InvalidArgument(
            "scope.max_classification must be 0 (none) to 4", reason="INVALID_CLASSIFICATION"
        )
    return Scope(
        tenant=tenant,
        collections=tuple(s.collections),
        document_ids=tuple(s.document_ids),
        max_classification=s.max_classification,
        filter=filter_from_proto(s.filter if s.HasField("filter") else None),
    )


def _int(payload: Mapping[str, Any], key: str, i: int) -> int:
    value = payload.get(key)
    if not isinstance(value, int | float) or value != int(value) or not 0 <= value < 2**53:
        raise InvalidArgument(
            f"points[{i}].payload.{key} must be a non-negative integer",
            reason="INVALID_POINT_PAYLOAD",
        )
    return int(value)


def checked_point(tenant: str, p: pb.Point, i: int) -> ChunkPoint:
    """The point as stored: tenant forced from the caller, id re-derived and compared."""
    payload = json_format.MessageToDict(p.payload)
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
    return ChunkPoint(id=given, dense=list(p.dense), payload=payload, sparse=_sparse(p.sparse))


class IndexServicer(pb_grpc.IndexServiceServicer):
    def __init__(self, store: VectorStore, gate: GovernanceGate) -> None:
        self._store = store
        self._gate = gate

    def _audit(self, principal: Principal, rpc: str, **details: Any) -> None:
        self._gate.record(principal, action="INDEX", outcome="OK", details={"rpc": rpc, **details})

    async def UpsertPoints(
        self, request: pb.UpsertPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertPointsResponse:
        principal = current_principal()
        if request.dimension <= 0 or request.dimension > 16_384:
            raise InvalidArgument("dimension must be 1 to 16384", reason="INVALID_DIMENSION")
        points = [checked_point(principal.tenant, p, i) for i, p in enumerate(request.points)]
        for i, p in enumerate(points):
            if len(p.dense) != request.dimension:
                raise InvalidArgument(
                    f"points[{i}].dense has {len(p.dense)} values, dimension is "
                    f"{request.dimension}",
                    reason="DIMENSION_MISMATCH",
                )
        n = await asyncio.to_thread(self._store.upsert, points, request.dimension)
        docs = sorted({str(p.payload["document_id"]) for p in points})
        self._audit(principal, "UpsertPoints", points=n, document_ids=docs[:50])
        return pb.UpsertPointsResponse(upserted=n)

    async def DeletePoints(
        self, request: pb.DeletePointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePointsResponse:
        principal = current_principal()
        if not request.document_id or len(request.document_id) > 64:
            raise InvalidArgument("document_id is required", reason="INVALID_DOCUMENT_ID")
        if request.keep_version < 0:
            raise InvalidArgument("keep_version must be >= 0", reason="INVALID_VERSION")
        n = await asyncio.to_thread(
            self._store.delete_document,
            principal.tenant,
            request.document_id,
            request.keep_version,
        )
        self._audit(principal, "DeletePoints", points=n, document_ids=[request.document_id])
        return pb.DeletePointsResponse(deleted=n)

    async def QueryPoints(
        self, request: pb.QueryPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueryPointsResponse:
        principal = current_principal()
        scope = _scope(principal.tenant, request.scope)
        use_case = ""
        for key, value in context.invocation_metadata() or ():
            if key == USE_CASE_HEADER and isinstance(value, str):
                use_case = value[:128]
        grant = self._gate.authorize(principal, use_case, list(scope.collections), "")
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
        mode = request.mode or "dense"
        if mode not in MODES:
            raise InvalidArgument(
                f"mode must be one of {', '.join(MODES)}", reason="INVALID_SEARCH_MODE"
            )
        if request.limit < 0 or request.limit > 1000:
            raise InvalidArgument("limit must be 0 to 1000", reason="INVALID_LIMIT")
        dense = list(request.dense) or None
        sparse = _sparse(request.sparse)
        hits = await asyncio.to_thread(
            lambda: self._store.query(
                scope, dense=dense, sparse=sparse, limit=request.limit or 10, mode=mode
            )
        )
        out = []
        for h in hits:
            st = struct_pb2.Struct()
            st.update(dict(h.payload))
            out.append(pb.ScoredPoint(id=h.id, score=h.score, payload=st))
        self._audit(principal, "QueryPoints", use_case=use_case, hits=len(out))
        return pb.QueryPointsResponse(points=out)

    async def CountPoints(
        self, request: pb.CountPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountPointsResponse:
        principal = current_principal()
        scope = _scope(principal.tenant, request.scope)
        n = await asyncio.to_thread(self._store.count, scope)
        self._audit(principal, "CountPoints")
        return pb.CountPointsResponse(count=n)

    async def ListPointIds(
        self, request: pb.ListPointIdsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPointIdsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="INVALID_PAGE_SIZE")
        if request.page_token:
            try:
                uuid.UUID(request.page_token)
            except ValueError:
                raise InvalidArgument(
                    "invalid page_token (it must come from a previous response)",
                    reason="INVALID_PAGE_TOKEN",
                ) from None
        principal = current_principal()
        scope = _scope(principal.tenant, request.scope)
        size = min(request.page_size or 1000, 10_000)
        ids, nxt = await asyncio.to_thread(
            self._store.point_ids, scope, offset=request.page_token, limit=size
        )
        self._audit(principal, "ListPointIds", ids=len(ids))
        return pb.ListPointIdsResponse(ids=ids, next_page_token=nxt)


    async def SetDocumentClassification(
        self, request: pb.SetDocumentClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetDocumentClassificationResponse:
        principal = current_principal()
        if not request.document_id or len(request.document_id) > 64:
            raise InvalidArgument("document_id is required", reason="INVALID_DOCUMENT_ID")
        if not 1 <= request.classification <= 4:
            raise InvalidArgument(
                "classification must be 1 (PUBLIC) to 4 (RESTRICTED)",
                reason="INVALID_CLASSIFICATION",
            )
        n = await asyncio.to_thread(
            self._store.set_classification,
            principal.tenant,
            request.document_id,
            request.classification,
        )
        self._audit(
            principal,
            "SetDocumentClassification",
            points=n,
            document_ids=[request.document_id],
            classification=request.classification,
        )
        return pb.SetDocumentClassificationResponse(updated=n)


def register(server: grpc.aio.Server, store: VectorStore, gate: GovernanceGate) -> str:
    pb_grpc.add_IndexServiceServicer_to_server(IndexServicer(store, gate), server)
    return str(pb.DESCRIPTOR.services_by_name["IndexService"].full_name)
