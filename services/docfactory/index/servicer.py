"""IndexService transport: proto <-> domain only (the domain is in ``index.service``).

Internal only: registered on its own listener (``DOCFACTORY_INDEX_LISTEN``) behind the service
key, never on the public port. The caller's end-user key still travels with each call; writes
need a write role when the policy asks for one (the interceptor's ``authorize_method``).
"""

from __future__ import annotations

import grpc
from google.protobuf import json_format, struct_pb2

from docfactory.core.auth import current_principal
from docfactory.core.filters import filter_from_proto
from docfactory.core.vectorstore import ChunkPoint, Scope, Sparse, VectorStore
from docfactory.governance.gate import GovernanceGate
from docfactory.index.service import IndexService, checked_sparse
from docfactory.index.v1 import index_service_pb2 as pb
from docfactory.index.v1 import index_service_pb2_grpc as pb_grpc

USE_CASE_HEADER = "x-docfactory-use-case"


def _sparse(s: pb.SparseVector) -> Sparse | None:
    return checked_sparse(list(s.indices), list(s.values))


def _scope(tenant: str, s: pb.Scope) -> Scope:
    return Scope(
        tenant=tenant,
        collections=tuple(s.collections),
        document_ids=tuple(s.document_ids),
        max_classification=s.max_classification,
        filter=filter_from_proto(s.filter if s.HasField("filter") else None),
    )


def _point(p: pb.Point) -> ChunkPoint:
    return ChunkPoint(
        id=p.id,
        dense=list(p.dense),
        payload=json_format.MessageToDict(p.payload),
        sparse=_sparse(p.sparse),
    )


class IndexServicer(pb_grpc.IndexServiceServicer):
    def __init__(self, service: IndexService) -> None:
        self._svc = service

    async def UpsertPoints(
        self, request: pb.UpsertPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertPointsResponse:
        n = await self._svc.upsert(
            current_principal(), [_point(p) for p in request.points], request.dimension
        )
        return pb.UpsertPointsResponse(upserted=n)

    async def DeletePoints(
        self, request: pb.DeletePointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePointsResponse:
        n = await self._svc.delete(current_principal(), request.document_id, request.keep_version)
        return pb.DeletePointsResponse(deleted=n)

    async def QueryPoints(
        self, request: pb.QueryPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueryPointsResponse:
        principal = current_principal()
        use_case = ""
        for key, value in context.invocation_metadata() or ():
            if key == USE_CASE_HEADER and isinstance(value, str):
                use_case = value[:128]
        hits = await self._svc.query(
            principal,
            _scope(principal.tenant, request.scope),
            use_case=use_case,
            dense=list(request.dense),
            sparse=_sparse(request.sparse),
            limit=request.limit,
            mode=request.mode,
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
        principal = current_principal()
        n = await self._svc.count(principal, _scope(principal.tenant, request.scope))
        return pb.CountPointsResponse(count=n)

    async def ListPointIds(
        self, request: pb.ListPointIdsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPointIdsResponse:
        principal = current_principal()
        ids, token = await self._svc.point_ids(
            principal,
            _scope(principal.tenant, request.scope),
            request.page_size,
            request.page_token,
        )
        return pb.ListPointIdsResponse(ids=ids, next_page_token=token)

    async def SetDocumentClassification(
        self, request: pb.SetDocumentClassificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetDocumentClassificationResponse:
        n = await self._svc.set_classification(
            current_principal(), request.document_id, request.classification
        )
        return pb.SetDocumentClassificationResponse(updated=n)


def register(server: grpc.aio.Server, store: VectorStore, gate: GovernanceGate) -> str:
    pb_grpc.add_IndexServiceServicer_to_server(IndexServicer(IndexService(store, gate)), server)
    return str(pb.DESCRIPTOR.services_by_name["IndexService"].full_name)
