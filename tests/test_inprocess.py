"""Ingestion's in-process chunking and embedding give the same chunks and vectors as the same
services reached over gRPC (the path of a split deployment)."""

from __future__ import annotations

from pathlib import Path

import grpc

from docfactory.chunking import servicer as chunk_servicer
from docfactory.chunking.service import Chunker
from docfactory.chunking.v1 import chunking_service_pb2_grpc as chunk_grpc
from docfactory.core.auth import Principal, set_principal
from docfactory.core.config import ChunkingConfig, EmbeddingConfig
from docfactory.embedding import servicer as emb_servicer
from docfactory.embedding.adapters.models import load_model, load_token_counter
from docfactory.embedding.service import EmbeddingService
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
from docfactory.ingestion.adapters.parser import UnstructuredParser
from docfactory.ingestion.adapters.remote import GrpcChunker, GrpcEmbedder
from docfactory.inprocess import InProcessChunker, InProcessEmbedder

REPO = Path(__file__).resolve().parents[1]
GUIDES = [
    REPO / "docs" / "en" / "operator-guide.md",
    REPO / "docs" / "fr" / "guide-exploitation.md",
]


async def test_same_chunks_and_vectors_as_over_grpc() -> None:
    cfg = EmbeddingConfig()
    chunker = Chunker(load_token_counter(cfg), ChunkingConfig())
    embedding = EmbeddingService(load_model(cfg), cfg)
    server = grpc.aio.server()
    chunk_servicer.register(server, chunker)
    emb_servicer.register(server, embedding)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # The gRPC clients forward the current caller's credentials (no interceptor here checks).
    token = set_principal(Principal(tenant="acme", key_id="k1", api_key="key-acme"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            remote_chunker = GrpcChunker(lambda: chunk_grpc.ChunkingServiceStub(ch))
            remote_embedder = GrpcEmbedder(lambda: emb_grpc.EmbeddingServiceStub(ch))
            local_chunker, local_embedder = InProcessChunker(chunker), InProcessEmbedder(embedding)
            parser = UnstructuredParser()
            for path in GUIDES:
                elements = parser.parse(path, path.name).elements
                want = await remote_chunker.chunk("doc-1", 3, elements)
                got = await local_chunker.chunk("doc-1", 3, elements)
                assert len(want) > 10
                assert got == want  # ids, text, pages, sections, types, token counts
                texts = [c.text for c in want]
                want_v, want_dim = await remote_embedder.embed_passages(texts)
                got_v, got_dim = await local_embedder.embed_passages(texts)
                assert got_dim == want_dim == len(got_v[0])
                assert got_v == want_v  # the same float32 values, bit for bit
    finally:
        set_principal(None)
        del token
        await server.stop(None)
        await embedding.close()
