"""Optional second-stage reranking of retrieved passages (off by default).

- :class:`Reranker`: ``rerank(query, texts) -> scores`` (one score per text, higher = more
  relevant; blocking, called from a worker thread).
- :class:`OpenAIRerankClient`: the rerank API of vLLM (also Jina/Cohere-compatible servers):
  ``POST {url}/rerank`` with ``{"model", "query", "documents"}``, answered with
  ``{"results": [{"index", "relevance_score"}, ...]}`` (results may come sorted by score; they
  are mapped back by ``index``). ``url`` is the OpenAI base URL, e.g. ``http://vllm:8000/v1``.
  Several URLs are tried in turn.
- :class:`CrossEncoderReranker`: a local ``sentence-transformers`` ``CrossEncoder`` from a model
  folder (offline; no cross-encoder model ships in a PyPI package, so none is the default).

:func:`reranker_from_env` builds one from ``DOCFACTORY_RERANK_URLS`` (comma-separated) +
``DOCFACTORY_RERANK_MODEL`` (+ ``DOCFACTORY_RERANK_API_KEY``), or
``DOCFACTORY_RERANK_MODEL_PATH``; ``None`` when neither is set.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from docfactory.core.errors import ConfigError, Unavailable

__all__ = [
    "CrossEncoderReranker",
    "OpenAIRerankClient",
    "Reranker",
    "candidate_depth",
    "rerank_order",
    "reranker_from_env",
]


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, texts: Sequence[str]) -> list[float]: ...


def candidate_depth(top_k: int) -> int:
    """How many first-stage candidates a reranker sees for ``top_k`` results."""
    return max(top_k * 4, 20)


def rerank_order(
    reranker: Reranker, query: str, texts: Sequence[str], top_k: int
) -> list[tuple[int, float]]:
    """``(index into texts, reranker score)`` of the best ``top_k`` texts, best first; ties keep
    the first-stage order."""
    if not texts:
        return []
    scores = reranker.rerank(query, texts)
    if len(scores) != len(texts):
        raise Unavailable(
            f"reranker {reranker.name} returned {len(scores)} scores for {len(texts)} texts",
            reason="RERANKER_ERROR",
        )
    order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
    return [(i, float(scores[i])) for i in order[:top_k]]


class OpenAIRerankClient:
    """vLLM's rerank API (blocking httpx)."""

    def __init__(
        self,
        urls: Sequence[str],
        model: str,
        *,
        api_key: str = "",
        timeout: float = 30.0,
    ) -> None:
        import httpx

        if not urls or not model:
            raise ConfigError("rerank client needs DOCFACTORY_RERANK_URLS and _MODEL")
        self._urls = [u.rstrip("/") for u in urls]
        self._next = 0
        self._lock = threading.Lock()
        self.model = model
        self.name = f"rerank:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), headers=headers)

    @staticmethod
    def _scores(body: Mapping[str, Any], n: int) -> list[float]:
        scores: list[float | None] = [None] * n
        for item in body["results"]:
            index = int(item["index"])
            if not 0 <= index < n:
                raise ValueError(f"result index {index} out of range")
            scores[index] = float(item["relevance_score"])
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing:
            raise ValueError(f"no score for documents {missing[:5]}")
        return [float(s) for s in scores if s is not None]

    def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        import httpx

        if not texts:
            return []
        body = {"model": self.model, "query": query, "documents": list(texts)}
        last: Exception | None = None
        for _ in range(len(self._urls)):
            with self._lock:
                url = self._urls[self._next % len(self._urls)]
                self._next += 1
            try:
                r = self._http.post(f"{url}/rerank", json=body)
                r.raise_for_status()
                return self._scores(r.json(), len(texts))
            except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                last = exc
        raise Unavailable(f"no rerank endpoint answered: {last}", reason="RERANKER_UNAVAILABLE")

    def close(self) -> None:
        self._http.close()


class CrossEncoderReranker:
    """A local ``sentence_transformers.CrossEncoder`` (model folder, CPU)."""

    def __init__(
        self, model_path: str, *, name: str = "", threads: int = 2, batch_size: int = 32
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if not model_path or not os.path.isdir(model_path):
            raise ConfigError(f"cross-encoder model folder not found: {model_path!r}")
        try:
            import torch
            from sentence_transformers import CrossEncoder
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise ConfigError("cross-encoder reranking needs sentence-transformers") from exc
        torch.set_num_threads(max(1, threads))
        self._model = CrossEncoder(model_path, device="cpu")
        self._batch = batch_size
        self._lock = threading.Lock()
        self.name = f"cross-encoder:{name or os.path.basename(model_path.rstrip('/'))}"

    def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        with self._lock:
            out = self._model.predict(
                [(query, t) for t in texts], batch_size=self._batch, show_progress_bar=False
            )
        return [float(x) for x in out]


def reranker_from_env(env: Mapping[str, str] | None = None) -> Reranker | None:
    env = os.environ if env is None else env
    urls = [u.strip() for u in env.get("DOCFACTORY_RERANK_URLS", "").split(",") if u.strip()]
    if urls:
        return OpenAIRerankClient(
            urls,
            env.get("DOCFACTORY_RERANK_MODEL", ""),
            api_key=env.get("DOCFACTORY_RERANK_API_KEY", ""),
        )
    path = env.get("DOCFACTORY_RERANK_MODEL_PATH", "")
    if path:
        return CrossEncoderReranker(path)
    return None
