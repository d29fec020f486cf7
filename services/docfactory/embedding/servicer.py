"""EmbeddingService transport: proto <-> domain only."""

from __future__ import annotations

import grpc

from docfactory.core.errors import InvalidArgument
from docfactory.embedding.service import EmbeddingService
from docfactory.embedding.v1 import embedding_service_pb2 as pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as pb_grpc


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(self, service: EmbeddingService) -> None:
        self._svc = service

    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        if request.input_type == pb.INPUT_TYPE_UNSPECIFIED:
            raise InvalidArgument(
                "input_type is required (INPUT_TYPE_QUERY or INPUT_TYPE_PASSAGE)",
                reason="INPUT_TYPE_REQUIRED",
            )
        vectors = await self._svc.embed(
            list(request.texts), query=request.input_type == pb.INPUT_TYPE_QUERY
        )
        model = self._svc.model
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=v.tolist()) for v in vectors],
            model=model.name,
            dimension=model.dimension,
        )

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        model = self._svc.model
        return pb.GetModelInfoResponse(
            model=model.name,
            dimension=model.dimension,
            max_input_tokens=model.max_input_tokens,
            tokenizer=model.tokenizer().name,
        )

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountTokensResponse:
        return pb.CountTokensResponse(token_counts=self._svc.count_tokens(list(request.texts)))


def register(server: grpc.aio.Server, service: EmbeddingService) -> str:
    pb_grpc.add_EmbeddingServiceServicer_to_server(EmbeddingServicer(service), server)
    return str(pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name)
