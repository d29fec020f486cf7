"""ChunkingService transport: proto <-> domain only."""

from __future__ import annotations

import asyncio

import grpc

from docfactory.chunking.service import Chunk, Chunker, ChunkOptions, Element
from docfactory.chunking.v1 import chunking_service_pb2 as pb
from docfactory.chunking.v1 import chunking_service_pb2_grpc as pb_grpc

_STRATEGY = {pb.STRATEGY_BY_TITLE: "by_title", pb.STRATEGY_BASIC: "basic"}


def _options(chunker: Chunker, o: pb.ChunkingOptions) -> ChunkOptions:
    return chunker.options(
        strategy=_STRATEGY.get(o.strategy, ""),
        max_tokens=o.max_tokens,
        overlap_tokens=o.overlap_tokens,
        combine_under_tokens=o.combine_under_tokens,
    )


def chunk_to_proto(c: Chunk) -> pb.Chunk:
    return pb.Chunk(
        id=c.id,
        document_id=c.document_id,
        document_version=c.document_version,
        index=c.index,
        text=c.text,
        page_numbers=list(c.page_numbers),
        section_path=list(c.section_path),
        element_types=list(c.element_types),
        token_count=c.token_count,
    )


class ChunkingServicer(pb_grpc.ChunkingServiceServicer):
    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker

    async def ChunkElements(
        self, request: pb.ChunkElementsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChunkElementsResponse:
        opts = _options(self._chunker, request.options)
        elements = [
            Element(e.type or "NarrativeText", e.text, e.page_number, e.category_depth)
            for e in request.elements
        ]
        chunks = await asyncio.to_thread(
            self._chunker.chunk, request.document_id, request.document_version, elements, opts
        )
        return pb.ChunkElementsResponse(chunks=[chunk_to_proto(c) for c in chunks])

    async def ChunkText(
        self, request: pb.ChunkTextRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChunkTextResponse:
        opts = _options(self._chunker, request.options)
        chunks = await asyncio.to_thread(
            self._chunker.chunk_text,
            request.document_id,
            request.document_version,
            request.text,
            opts,
        )
        return pb.ChunkTextResponse(chunks=[chunk_to_proto(c) for c in chunks])


def register(server: grpc.aio.Server, chunker: Chunker) -> str:
    pb_grpc.add_ChunkingServiceServicer_to_server(ChunkingServicer(chunker), server)
    return str(pb.DESCRIPTOR.services_by_name["ChunkingService"].full_name)
