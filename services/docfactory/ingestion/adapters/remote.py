"""Chunking and embedding reached through their gRPC stubs (in-process or remote)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from docfactory.chunking.v1 import chunking_service_pb2 as chunk_pb
from docfactory.chunking.v1 import chunking_service_pb2_grpc as chunk_grpc
from docfactory.core.clients import call_options
from docfactory.embedding.v1 import embedding_service_pb2 as emb_pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
from docfactory.ingestion.adapters.parser import ParsedElement
from docfactory.ingestion.service import ChunkData

EMBED_BATCH = 128
# Characters per Embed request: under the service's per-request cap
# (docfactory.core.validation: 131,072), so one document never monopolises the model.
EMBED_BATCH_CHARS = 96_000


class GrpcChunker:
    def __init__(self, stub: Callable[[], chunk_grpc.ChunkingServiceStub]) -> None:
        self._stub = stub

    async def chunk(
        self, document_id: str, version: int, elements: Sequence[ParsedElement]
    ) -> list[ChunkData]:
        req = chunk_pb.ChunkElementsRequest(
            document_id=document_id,
            document_version=version,
            elements=[
                chunk_pb.Element(
                    type=e.type,
                    text=e.text,
                    page_number=e.page_number,
                    category_depth=e.category_depth,
                )
                for e in elements
            ],
        )
        resp = await self._stub().ChunkElements(req, **call_options())
        return [chunk_data(c) for c in resp.chunks]


class ChunkLike(Protocol):
    """A chunk as the chunking service gives it: its proto message or its domain object."""

    @property
    def id(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def page_numbers(self) -> Sequence[int]: ...
    @property
    def section_path(self) -> Sequence[str]: ...
    @property
    def element_types(self) -> Sequence[str]: ...
    @property
    def token_count(self) -> int: ...


def chunk_data(c: ChunkLike) -> ChunkData:
    return ChunkData(
        id=c.id,
        index=c.index,
        text=c.text,
        page_numbers=tuple(c.page_numbers),
        section_path=tuple(c.section_path),
        element_types=tuple(c.element_types),
        token_count=c.token_count,
    )


def batches(texts: Sequence[str], max_items: int, max_chars: int) -> list[list[str]]:
    """Consecutive groups of at most ``max_items`` texts and ``max_chars`` characters (a
    longer text goes alone)."""
    out: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for t in texts:
        if cur and (len(cur) >= max_items or size + len(t) > max_chars):
            out.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += len(t)
    if cur:
        out.append(cur)
    return out


class GrpcEmbedder:
    def __init__(self, stub: Callable[[], emb_grpc.EmbeddingServiceStub]) -> None:
        self._stub = stub

    async def embed_passages(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        vectors: list[list[float]] = []
        dim = 0
        for batch in batches(texts, EMBED_BATCH, EMBED_BATCH_CHARS):
            resp = await self._stub().Embed(
                emb_pb.EmbedRequest(texts=batch, input_type=emb_pb.INPUT_TYPE_PASSAGE),
                **call_options(),
            )
            dim = resp.dimension
            vectors.extend(list(e.values) for e in resp.embeddings)
        return vectors, dim

    async def embed_query(self, text: str) -> list[float]:
        resp = await self._stub().Embed(
            emb_pb.EmbedRequest(texts=[text], input_type=emb_pb.INPUT_TYPE_QUERY), **call_options()
        )
        return list(resp.embeddings[0].values)
