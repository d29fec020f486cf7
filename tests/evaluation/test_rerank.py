"""Rerank client against a stand-in server speaking vLLM's rerank protocol over a real socket,
and the optional rerank stage of AnsweringService.search.

No cross-encoder model ships in a PyPI package (checked in the package index), so the local
``CrossEncoderReranker`` is only checked for its configuration error here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from docfactory.answering.adapters.generators import ExtractiveGenerator
from docfactory.answering.adapters.rerank import (
    CrossEncoderReranker,
    OpenAIRerankClient,
    candidate_depth,
    rerank_order,
    reranker_from_env,
)
from docfactory.answering.service import AnsweringService, SearchParams
from docfactory.core.config import Settings
from docfactory.core.errors import ConfigError, Unavailable
from docfactory.core.lexical import SparseEncoder
from docfactory.core.vectorstore import ChunkPoint, Hit, Scope, Sparse, point_id
from docfactory.core.vectorstore_edge import EdgeStore


class _RerankServer:
    """vLLM ``POST /v1/rerank``: score = number of query words found in the document; results
    sorted by score (as vLLM returns them), each with its ``index``."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.paths.append(self.path)
                if status != 200 or self.path != "/v1/rerank":
                    self.send_response(status if status != 200 else 404)
                    self.end_headers()
                    return
                words = set(body["query"].lower().split())
                results: list[dict[str, Any]] = [
                    {
                        "index": i,
                        "document": {"text": doc},
                        "relevance_score": float(len(words & set(doc.lower().split()))),
                    }
                    for i, doc in enumerate(body["documents"])
                ]
                results.sort(key=lambda r: -float(r["relevance_score"]))
                payload = json.dumps(
                    {"id": "rerank-1", "model": body["model"], "results": results}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rerank_server() -> Iterator[_RerankServer]:
    srv = _RerankServer()
    yield srv
    srv.close()


def test_client_speaks_vllm_rerank_protocol(rerank_server: _RerankServer) -> None:
    client = OpenAIRerankClient([rerank_server.url], "bge-reranker-v2-m3")
    texts = ["nothing here", "the cat sat on the mat", "a cat"]
    scores = client.rerank("cat mat", texts)
    assert scores == [0.0, 2.0, 1.0]  # mapped back by index although results came sorted
    assert rerank_server.paths == ["/v1/rerank"]
    assert rerank_server.requests[0] == {
        "model": "bge-reranker-v2-m3",
        "query": "cat mat",
        "documents": texts,
    }
    assert rerank_order(client, "cat mat", texts, 2) == [(1, 2.0), (2, 1.0)]
    assert client.rerank("cat", []) == []
    client.close()


def test_client_fails_over_then_raises(rerank_server: _RerankServer) -> None:
    broken = _RerankServer(status=500)
    try:
        client = OpenAIRerankClient([broken.url, rerank_server.url], "m")
        assert client.rerank("cat", ["cat", "dog"]) == [1.0, 0.0]
        assert len(broken.requests) == 1
        only_broken = OpenAIRerankClient([broken.url], "m")
        with pytest.raises(Unavailable) as err:
            only_broken.rerank("cat", ["cat"])
        assert err.value.reason == "RERANKER_UNAVAILABLE"
    finally:
        broken.close()


def test_configuration() -> None:
    assert reranker_from_env({}) is None
    client = reranker_from_env(
        {"DOCFACTORY_RERANK_URLS": "http://a/v1", "DOCFACTORY_RERANK_MODEL": "m"}
    )
    assert isinstance(client, OpenAIRerankClient)
    with pytest.raises(ConfigError):
        OpenAIRerankClient(["http://a/v1"], "")
    with pytest.raises(ConfigError):
        CrossEncoderReranker("/nonexistent/cross-encoder")
    assert candidate_depth(5) == 20
    assert candidate_depth(10) == 40


class _Embedder:
    async def embed_query(self, text: str) -> list[float]:
        return [1.0, 0.0, 0.0, 0.0]


class _RecordingStore:
    def __init__(self, inner: EdgeStore) -> None:
        self.inner = inner
        self.limits: list[int] = []

    def upsert(self, points: Sequence[ChunkPoint], dimension: int) -> int:
        return self.inner.upsert(points, dimension)

    def delete_document(self, tenant: str, document_id: str, keep_version: int = 0) -> int:
        return self.inner.delete_document(tenant, document_id, keep_version)

    def query(self, scope: Scope, **kw: Any) -> list[Hit]:
        self.limits.append(int(kw["limit"]))
        return self.inner.query(scope, **kw)

    def count(self, scope: Scope) -> int:
        return self.inner.count(scope)

    def close(self) -> None:
        self.inner.close()


TEXTS = {
    # dense similarity to the query vector decreases d0 > d1 > d2 > d3
    "d0": ("le chat dort", [1.0, 0.0, 0.0, 0.0]),
    "d1": ("le chien aboie", [0.9, 0.1, 0.0, 0.0]),
    "d2": ("le chat et le tapis", [0.7, 0.3, 0.0, 0.0]),
    "d3": ("un oiseau", [0.5, 0.5, 0.0, 0.0]),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[_RecordingStore]:
    inner = EdgeStore(path=tmp_path / "vs", collection="t")
    points = [
        ChunkPoint(
            id=point_id(doc, 1, 0),
            dense=vec,
            sparse=Sparse([], []),
            payload={"tenant": "acme", "document_id": doc, "text": text, "collection": "c"},
        )
        for doc, (text, vec) in TEXTS.items()
    ]
    inner.upsert(points, 4)
    rec = _RecordingStore(inner)
    yield rec
    rec.close()


def _service(store: _RecordingStore, reranker: Any = None) -> AnsweringService:
    return AnsweringService(
        settings=Settings(),
        embedder=_Embedder(),
        store=store,
        generator=ExtractiveGenerator(),
        sparse=SparseEncoder(),
        reranker=reranker,
    )


async def test_search_without_reranker_is_unchanged(store: _RecordingStore) -> None:
    passages, _ = await _service(store).search(
        "acme", SearchParams("chat tapis", top_k=2, mode="dense")
    )
    assert [p.citation.document_id for p in passages] == ["d0", "d1"]
    assert store.limits == [2]


async def test_reranker_reorders_top_candidates_and_cuts_to_top_k(
    store: _RecordingStore, rerank_server: _RerankServer
) -> None:
    client = OpenAIRerankClient([rerank_server.url], "m")
    passages, _ = await _service(store, client).search(
        "acme", SearchParams("chat tapis", top_k=2, mode="dense")
    )
    # "le chat et le tapis" matches both words, "le chat dort" one; the rest none.
    assert [p.citation.document_id for p in passages] == ["d2", "d0"]
    assert [p.score for p in passages] == [2.0, 1.0]
    assert [p.citation.score for p in passages] == [2.0, 1.0]
    assert store.limits == [20]  # max(top_k * 4, 20) candidates
    assert len(rerank_server.requests[0]["documents"]) == 4  # every candidate of the tenant
    # Another tenant sees nothing, and the reranker is not called for nothing.
    none, _ = await _service(store, client).search(
        "globex", SearchParams("chat", top_k=2, mode="dense")
    )
    assert none == []
    assert len(rerank_server.requests) == 1
    client.close()
