"""Query embeddings through the EmbeddingService stub."""

from __future__ import annotations

from collections.abc import Callable

from docfactory.core.clients import call_options
from docfactory.embedding.v1 import embedding_service_pb2 as emb_pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc


class GrpcQueryEmbedder:
    def __init__(self, stub: Callable[[], emb_grpc.EmbeddingServiceStub]) -> None:
        self._stub = stub

    async def embed_query(self, text: str) -> list[float]:
        resp = await self._stub().Embed(
            emb_pb.EmbedRequest(texts=[text], input_type=emb_pb.INPUT_TYPE_QUERY), **call_options()
        )
        return list(resp.embeddings[0].values)
