"""IndexService: exposes this process's embedded vector store to split-mode peers.

The tenant always comes from the caller's API key: payloads of another tenant are rejected and
queries are scoped to the caller's tenant.
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import json_format, struct_pb2

from docfactory.core.auth import current_principal
from docfactory.core.errors import InvalidArgument, PermissionDenied
from docfactory.core.vectorstore import ChunkPoint, Scope, Sparse, VectorStore
from docfactory.index.v1 import index_service_pb2 as pb
from docfactory.index.v1 import index_service_pb2_grpc as pb_grpc


def _sparse(s: pb.SparseVector) -> Sparse | None:
    return Sparse(list(s.indices), list(s.values)) if len(s.indices) else None


def _scope(tenant: str, s: pb.Scope) -> Scope:
    return Scope(
        tenant=tenant,
        collections=tuple(s.collections),
        document_ids=tuple(s.document_ids),
        max_classification=s.max_classification,
    )


class IndexServicer(pb_grpc.IndexServiceServicer):
    def __init__(self, store: VectorStore) -> None:
        self._store = store

    async def UpsertPoints(
        self, request: pb.UpsertPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertPointsResponse:
        tenant = current_principal().tenant
        points = []
        for p in request.points:
            payload = json_format.MessageToDict(p.payload)
            if payload.get("tenant") != tenant:
                raise PermissionDenied(
                    "points must belong to the caller's tenant", reason="TENANT_MISMATCH"
                )
            for key in ("document_version", "classification", "chunk_index", "token_count"):
                if key in payload:
                    payload[key] = int(payload[key])
            payload["page_numbers"] = [int(x) for x in payload.get("page_numbers", [])]
            points.append(
                ChunkPoint(id=p.id, dense=list(p.dense), payload=payload, sparse=_sparse(p.sparse))
            )
        n = await asyncio.to_thread(self._store.upsert, points, request.dimension)
        return pb.UpsertPointsResponse(upserted=n)

    async def DeletePoints(
        self, request: pb.DeletePointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePointsResponse:
        tenant = current_principal().tenant
        n = await asyncio.to_thread(
            self._store.delete_document, tenant, request.document_id, request.keep_version
        )
        return pb.DeletePointsResponse(deleted=n)

    async def QueryPoints(
        self, request: pb.QueryPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueryPointsResponse:
        scope = _scope(current_principal().tenant, request.scope)
        dense = list(request.dense) or None
        hits = await asyncio.to_thread(
            lambda: self._store.query(
                scope,
                dense=dense,
                sparse=_sparse(request.sparse),
                limit=request.limit or 10,
                mode=request.mode or "dense",
            )
        )
        out = []
        for h in hits:
            st = struct_pb2.Struct()
            st.update(dict(h.payload))
            out.append(pb.ScoredPoint(id=h.id, score=h.score, payload=st))
        return pb.QueryPointsResponse(points=out)

    async def CountPoints(
        self, request: pb.CountPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountPointsResponse:
        scope = _scope(current_principal().tenant, request.scope)
        return pb.CountPointsResponse(count=await asyncio.to_thread(self._store.count, scope))

    async def ListPointIds(
        self, request: pb.ListPointIdsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPointIdsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="INVALID_PAGE_SIZE")
        scope = _scope(current_principal().tenant, request.scope)
        size = min(request.page_size or 1000, 10_000)
        ids, nxt = await asyncio.to_thread(
            self._store.point_ids, scope, offset=request.page_token, limit=size
        )
        return pb.ListPointIdsResponse(ids=ids, next_page_token=nxt)


def register(server: grpc.aio.Server, store: VectorStore) -> str:
    pb_grpc.add_IndexServiceServicer_to_server(IndexServicer(store), server)
    return str(pb.DESCRIPTOR.services_by_name["IndexService"].full_name)
