"""IndexService client: the VectorStore of a process whose index is owned (embedded) by another.

Blocking gRPC (the contract is synchronous and runs in worker threads); the caller's API key
is forwarded so the owner scopes everything to the caller's tenant.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import json_format, struct_pb2

from docfactory.core import tls
from docfactory.core.auth import current_principal, remaining_seconds
from docfactory.core.clients import channel_options
from docfactory.core.config import TlsConfig
from docfactory.core.errors import error_for_code
from docfactory.core.filters import filter_to_proto
from docfactory.core.vectorstore import ChunkPoint, Hit, Scope, Sparse
from docfactory.index.v1 import index_service_pb2 as pb
from docfactory.index.v1 import index_service_pb2_grpc as pb_grpc


def _sparse(s: Sparse | None) -> pb.SparseVector | None:
    if s is None:
        return None
    return pb.SparseVector(indices=list(s.indices), values=list(s.values))


class GrpcIndexStore:
    def __init__(
        self,
        address: str,
        max_message_bytes: int = 64 * 1024 * 1024,
        *,
        service_key: str = "",
        tls_config: TlsConfig | None = None,
    ) -> None:
        options = channel_options(max_message_bytes)
        self._channel = (
            tls.sync_channel(address, tls_config, options)
            if tls_config is not None
            else grpc.insecure_channel(address, options=options)
        )
        self._stub = pb_grpc.IndexServiceStub(self._channel)
        # The internal listener admits only docfactory's own processes (DOCFACTORY_SERVICE_KEY).
        self._service_key = service_key

    def _opts(self) -> dict[str, object]:
        # The caller as this process attests it (core/tls.py), or its key when no identity.
        md = tls.outgoing_metadata(current_principal())
        if self._service_key and not any(k == tls.SERVICE_KEY_HEADER for k, _ in md):
            md = (*md, (tls.SERVICE_KEY_HEADER, self._service_key))
        return {"metadata": md, "timeout": remaining_seconds(60.0)}

    def _call(self, fn: object, request: object) -> object:
        try:
            return fn(request, **self._opts())  # type: ignore[operator]
        except grpc.RpcError as exc:
            raise error_for_code(exc.code(), exc.details() or "index call failed") from exc

    def upsert(self, points: Sequence[ChunkPoint], dimension: int) -> int:
        msgs = []
        for p in points:
            st = struct_pb2.Struct()
            st.update(dict(p.payload))
            msgs.append(
                pb.Point(id=p.id, dense=list(p.dense), sparse=_sparse(p.sparse), payload=st)
            )
        total = 0
        for i in range(0, len(msgs), 256):
            resp = self._call(
                self._stub.UpsertPoints,
                pb.UpsertPointsRequest(points=msgs[i : i + 256], dimension=dimension),
            )
            total += resp.upserted  # type: ignore[attr-defined]
        return total

    def delete_document(self, tenant: str, document_id: str, keep_version: int = 0) -> int:
        resp = self._call(
            self._stub.DeletePoints,
            pb.DeletePointsRequest(document_id=document_id, keep_version=keep_version),
        )
        return int(resp.deleted)  # type: ignore[attr-defined]

    def query(
        self,
        scope: Scope,
        *,
        dense: Sequence[float] | None,
        sparse: Sparse | None,
        limit: int,
        mode: str = "dense",
    ) -> list[Hit]:
        req = pb.QueryPointsRequest(
            dense=list(dense or []),
            sparse=_sparse(sparse),
            scope=pb.Scope(
                collections=list(scope.collections),
                document_ids=list(scope.document_ids),
                max_classification=scope.max_classification,
                filter=filter_to_proto(scope.filter),
            ),
            limit=limit,
            mode=mode,
        )
        resp = self._call(self._stub.QueryPoints, req)
        hits = []
        for p in resp.points:  # type: ignore[attr-defined]
            payload = json_format.MessageToDict(p.payload)
            for key in ("document_version", "classification", "chunk_index", "token_count"):
                if key in payload:
                    payload[key] = int(payload[key])
            payload["page_numbers"] = [int(x) for x in payload.get("page_numbers", [])]
            hits.append(Hit(id=p.id, score=p.score, payload=payload))
        return hits

    def count(self, scope: Scope) -> int:
        resp = self._call(
            self._stub.CountPoints,
            pb.CountPointsRequest(
                scope=pb.Scope(
                    collections=list(scope.collections),
                    document_ids=list(scope.document_ids),
                    max_classification=scope.max_classification,
                    filter=filter_to_proto(scope.filter),
                )
            ),
        )
        return int(resp.count)  # type: ignore[attr-defined]

    def set_classification(self, tenant: str, document_id: str, classification: int) -> int:
        # The owner scopes the call to the caller's tenant (``tenant`` is the same one).
        resp = self._call(
            self._stub.SetDocumentClassification,
            pb.SetDocumentClassificationRequest(
                document_id=document_id, classification=classification
            ),
        )
        return int(resp.updated)  # type: ignore[attr-defined]

    def point_ids(
        self, scope: Scope, *, offset: str = "", limit: int = 1000
    ) -> tuple[list[str], str]:
        resp = self._call(
            self._stub.ListPointIds,
            pb.ListPointIdsRequest(
                scope=pb.Scope(
                    collections=list(scope.collections),
                    document_ids=list(scope.document_ids),
                    max_classification=scope.max_classification,
                    filter=filter_to_proto(scope.filter),
                ),
                page_size=limit,
                page_token=offset,
            ),
        )
        return list(resp.ids), str(resp.next_page_token)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._channel.close()
