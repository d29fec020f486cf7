"""Chunking and embedding for ingestion when they run in the same process (the embedded
default, ``docfactory serve`` with every service): the domain objects are called directly
instead of through this process's own gRPC port.

Each gRPC hop cost an encoding, an HTTP/2 round trip through the event loop and a decoding
per document (tens of milliseconds of the one process's GIL per small file); the results are
the same values: the chunker with the options an empty ``ChunkingOptions`` selects, the
embedding service's batcher with its own validation. Part of the composition root: only
``docfactory.app`` builds these (import contracts: chunking's and embedding's internals).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from docfactory.chunking.service import Chunker, Element
from docfactory.embedding.service import EmbeddingService
from docfactory.ingestion.adapters.parser import ParsedElement
from docfactory.ingestion.adapters.remote import (
    EMBED_BATCH,
    EMBED_BATCH_CHARS,
    batches,
    chunk_data,
)
from docfactory.ingestion.service import ChunkData


class InProcessChunker:
    """Ingestion's ``ChunkerClient`` over this process's :class:`Chunker`."""

    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker

    async def chunk(
        self, document_id: str, version: int, elements: Sequence[ParsedElement]
    ) -> list[ChunkData]:
        # What ChunkingServicer.ChunkElements does with a request without options.
        items = [
            Element(e.type or "NarrativeText", e.text, e.page_number, e.category_depth)
            for e in elements
        ]
        chunks = await asyncio.to_thread(
            self._chunker.chunk, document_id, version, items, self._chunker.options()
        )
        return [chunk_data(c) for c in chunks]


class InProcessEmbedder:
    """Ingestion's ``EmbedderClient`` over this process's :class:`EmbeddingService`, in the
    same request groups as the gRPC client (one document never monopolises the batcher)."""

    def __init__(self, service: EmbeddingService) -> None:
        self._service = service

    async def embed_passages(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        vectors: list[list[float]] = []
        for batch in batches(texts, EMBED_BATCH, EMBED_BATCH_CHARS):
            out = await self._service.embed(batch, query=False)
            vectors.extend(v.tolist() for v in out)
        return vectors, self._service.model.dimension
