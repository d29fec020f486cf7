"""Answering domain: tenant-scoped retrieval and grounded, cited answers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from docfactory.answering.adapters.generators import Generator, Usage
from docfactory.answering.adapters.rerank import Reranker, candidate_depth, rerank_order
from docfactory.answering.prompt import DONT_KNOW, PromptPassage, cited_markers
from docfactory.core import metrics
from docfactory.core.config import Settings
from docfactory.core.errors import InvalidArgument
from docfactory.core.lexical import SparseEncoder, detect_language
from docfactory.core.vectorstore import MODES, Hit, Scope, Sparse, VectorStore

MAX_QUERY_CHARS = 4000


class QueryEmbedder(Protocol):
    async def embed_query(self, text: str) -> list[float]: ...


@dataclass(frozen=True)
class Citation:
    document_id: str
    document_name: str
    source_uri: str
    chunk_id: str
    page_numbers: tuple[int, ...]
    section_path: tuple[str, ...]
    quote: str
    score: float
    collection: str
    document_version: int
    marker: int = 0

    def label(self) -> str:
        where = self.document_name
        if self.page_numbers:
            pages = self.page_numbers
            where += f", p. {pages[0]}" if len(pages) == 1 else f", p. {pages[0]}-{pages[-1]}"
        if self.section_path:
            where += " — " + " > ".join(self.section_path[-2:])
        return where


@dataclass(frozen=True)
class Passage:
    text: str
    score: float
    citation: Citation


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class CitationsUsed:
    citations: Sequence[Citation]


@dataclass(frozen=True)
class Summary:
    generator: str
    extractive: bool
    insufficient_context: bool
    retrieval_ms: float
    first_token_ms: float
    generation_ms: float
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    language: str


AnswerEvent = Delta | CitationsUsed | Summary


@dataclass(frozen=True)
class SearchParams:
    query: str
    collections: Sequence[str] = ()
    top_k: int = 0
    document_ids: Sequence[str] = ()
    mode: str = ""
    use_case: str = ""
    max_classification: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


def _citation(hit: Hit, quote: str = "") -> Citation:
    p = hit.payload
    return Citation(
        document_id=str(p.get("document_id", "")),
        document_name=str(p.get("filename", "")),
        source_uri=str(p.get("source_uri", "")),
        chunk_id=hit.id,
        page_numbers=tuple(int(x) for x in p.get("page_numbers") or ()),
        section_path=tuple(str(x) for x in p.get("section_path") or ()),
        quote=quote,
        score=hit.score,
        collection=str(p.get("collection", "")),
        document_version=int(p.get("document_version", 0) or 0),
    )


class AnsweringService:
    def __init__(
        self,
        *,
        settings: Settings,
        embedder: QueryEmbedder,
        store: VectorStore,
        generator: Generator,
        sparse: SparseEncoder | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self.generator = generator
        self._sparse = sparse or SparseEncoder()
        self._reranker = reranker

    def _validate(self, params: SearchParams) -> tuple[str, int, str]:
        query = (params.query or "").strip()
        if not query:
            raise InvalidArgument("the query must not be empty", reason="EMPTY_QUERY")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgument(
                f"the query exceeds {MAX_QUERY_CHARS} characters", reason="QUERY_TOO_LONG"
            )
        cfg = self._settings.search
        top_k = params.top_k or cfg.top_k
        if not 1 <= top_k <= cfg.max_top_k:
            raise InvalidArgument(
                f"top_k must be within [1, {cfg.max_top_k}], got {top_k}", reason="INVALID_TOP_K"
            )
        mode = params.mode or cfg.mode
        if mode not in MODES:
            raise InvalidArgument(f"unknown search mode {mode!r}", reason="INVALID_SEARCH_MODE")
        return query, top_k, mode

    async def search(self, tenant: str, params: SearchParams) -> tuple[list[Passage], float]:
        started = time.perf_counter()
        query, top_k, mode = self._validate(params)
        dense = await self._embedder.embed_query(query) if mode != "sparse" else None
        sv = self._sparse.encode_query(query, detect_language(query))
        scope = Scope(
            tenant=tenant,
            collections=tuple(params.collections),
            document_ids=tuple(params.document_ids),
            max_classification=params.max_classification,
        )
        limit = candidate_depth(top_k) if self._reranker is not None else top_k
        hits = await asyncio.to_thread(
            lambda: self._store.query(
                scope, dense=dense, sparse=Sparse(sv.indices, sv.values), limit=limit, mode=mode
            )
        )
        metrics.RETRIEVAL_HITS.labels(mode).observe(len(hits))
        passages = [Passage(str(h.payload.get("text", "")), h.score, _citation(h)) for h in hits]
        # Defence in depth: never return a chunk of another tenant, whatever the backend did.
        passages = [
            p for p, h in zip(passages, hits, strict=True) if h.payload.get("tenant") == tenant
        ]
        if self._reranker is not None and passages:
            reranker, texts = self._reranker, [p.text for p in passages]
            order = await asyncio.to_thread(rerank_order, reranker, query, texts, top_k)
            passages = [
                dataclasses.replace(
                    passages[i],
                    score=score,
                    citation=dataclasses.replace(passages[i].citation, score=score),
                )
                for i, score in order
            ]
        return passages, (time.perf_counter() - started) * 1000

    async def answer(self, tenant: str, params: SearchParams) -> AsyncIterator[AnswerEvent]:
        started = time.perf_counter()
        passages, retrieval_ms = await self.search(tenant, params)
        language = detect_language(params.query)
        min_score = self._settings.search.min_score
        usable = [p for p in passages if p.score >= min_score] if min_score else passages
        prompt_passages = [
            PromptPassage(i, p.text, p.citation.label()) for i, p in enumerate(usable, 1)
        ]
        usage = Usage()
        gen_start = time.perf_counter()
        first_token_ms = 0.0
        parts: list[str] = []
        insufficient = not usable
        if insufficient:
            text = DONT_KNOW.get(language, DONT_KNOW["en"])
            first_token_ms = (time.perf_counter() - started) * 1000
            parts.append(text)
            yield Delta(text)
        else:
            async for piece in self.generator.stream(
                params.query, prompt_passages, language, usage
            ):
                if not parts:
                    first_token_ms = (time.perf_counter() - started) * 1000
                parts.append(piece)
                yield Delta(piece)
        full = "".join(parts)
        if self.generator.extractive:
            markers = sorted(usage.quotes)
        else:
            markers = cited_markers(full, len(usable))
            if (
                not insufficient
                and not markers
                and any(s in full for s in (DONT_KNOW["fr"][:12], DONT_KNOW["en"][:12]))
            ):
                insufficient = True
        used = []
        for m in markers:
            p = usable[m - 1]
            quote = usage.quotes.get(m) or p.text[:300]
            c = p.citation
            used.append(Citation(**{**c.__dict__, "quote": quote, "marker": m}))
        yield CitationsUsed(used)
        gen_ms = (time.perf_counter() - gen_start) * 1000
        metrics.GENERATION_TOKENS.labels(self.generator.name, "in").inc(usage.prompt_tokens)
        metrics.GENERATION_TOKENS.labels(self.generator.name, "out").inc(usage.completion_tokens)
        yield Summary(
            generator=self.generator.name,
            extractive=self.generator.extractive,
            insufficient_context=insufficient,
            retrieval_ms=retrieval_ms,
            first_token_ms=first_token_ms,
            generation_ms=gen_ms,
            total_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            language=language,
        )
