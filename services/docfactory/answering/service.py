"""Answering domain: tenant-scoped retrieval and grounded, cited answers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from docfactory import pii
from docfactory.answering.adapters.generators import Generator, Usage
from docfactory.answering.adapters.rerank import Reranker, candidate_depth, rerank_order
from docfactory.answering.prompt import (
    DONT_KNOW,
    PromptPassage,
    cited_markers,
    contextual_query,
)
from docfactory.core import metrics, tracing
from docfactory.core.auth import Principal
from docfactory.core.config import Settings
from docfactory.core.errors import DocfactoryError, InvalidArgument
from docfactory.core.lexical import SparseEncoder, detect_language
from docfactory.core.text import normalize_query
from docfactory.core.vectorstore import MODES, Hit, MetadataFilter, Scope, Sparse, VectorStore

if TYPE_CHECKING:
    from docfactory.governance.gate import GovernanceGate, Grant

MAX_QUERY_CHARS = 4000
AUDIT_SEARCH = "SEARCH"
AUDIT_ANSWER = "ANSWER"


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
    review_id: str = ""
    pending_review: bool = False
    model: str = ""
    # Sequence of the ANSWER audit record: what SubmitFeedback.answer_audit_seq quotes.
    answer_id: int = 0


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
    filter: MetadataFilter | None = None
    # Earlier turns of a conversation, oldest first: (role "user" | "assistant", text).
    history: tuple[tuple[str, str], ...] = ()


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


def latest_versions_only(passages: list[Passage]) -> list[Passage]:
    """While a new version of a document is being swapped in (its points are written before the
    previous version's are deleted), both versions can match: keep only the newest version of
    each document among the hits, so a reader never sees two versions at once."""
    newest: dict[str, int] = {}
    for p in passages:
        c = p.citation
        newest[c.document_id] = max(newest.get(c.document_id, 0), c.document_version)
    return [p for p in passages if p.citation.document_version == newest[p.citation.document_id]]


def _as_principal(p: Principal | str) -> Principal:
    return p if isinstance(p, Principal) else Principal(tenant=p, key_id="in-process", api_key="")


def citation_dict(c: Citation) -> dict[str, Any]:
    return {
        "document_id": c.document_id,
        "document_name": c.document_name,
        "source_uri": c.source_uri,
        "chunk_id": c.chunk_id,
        "page_numbers": list(c.page_numbers),
        "section_path": list(c.section_path),
        "quote": c.quote,
        "score": c.score,
        "collection": c.collection,
        "document_version": c.document_version,
        "marker": c.marker,
    }


def citation_from_dict(d: Mapping[str, Any]) -> Citation:
    return Citation(
        document_id=str(d.get("document_id", "")),
        document_name=str(d.get("document_name", "")),
        source_uri=str(d.get("source_uri", "")),
        chunk_id=str(d.get("chunk_id", "")),
        page_numbers=tuple(int(x) for x in d.get("page_numbers") or ()),
        section_path=tuple(str(x) for x in d.get("section_path") or ()),
        quote=str(d.get("quote", "")),
        score=float(d.get("score", 0.0)),
        collection=str(d.get("collection", "")),
        document_version=int(d.get("document_version", 0)),
        marker=int(d.get("marker", 0)),
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
        governance: GovernanceGate | None = None,
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self.generator = generator
        self._sparse = sparse or SparseEncoder()
        self._reranker = reranker
        self._gov = governance

    def _validate(self, params: SearchParams) -> tuple[str, int, str]:
        query = normalize_query(params.query or "")
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

    async def search(
        self, principal: Principal | str, params: SearchParams
    ) -> tuple[list[Passage], float]:
        """Governed search: authorize the use case, retrieve under its ceiling, audit.

        A bare tenant string is accepted for in-process callers (evaluation, benchmarks)."""
        principal = _as_principal(principal)
        started = time.perf_counter()
        grant = await self._authorized(principal, params, model="")
        try:
            with tracing.span("retrieve"):
                passages, took = await self._retrieve(principal.tenant, params, grant)
        except DocfactoryError as err:
            await asyncio.to_thread(
                self._audit, principal, AUDIT_SEARCH, params, grant, err.reason, (), started
            )
            raise
        # The audit append (a database commit) runs off the event loop: other requests of this
        # process go on meanwhile, and appends of different tenants' chains overlap.
        await asyncio.to_thread(
            self._audit,
            principal,
            AUDIT_SEARCH,
            params,
            grant,
            "OK",
            [p.citation.document_id for p in passages],
            started,
        )
        return passages, took

    async def _authorized(
        self, principal: Principal, params: SearchParams, model: str
    ) -> Grant | None:
        """The use case's grant. Its checks touch the database (the quota counters; a
        refusal's audit record), so they run off the event loop like the audit appends."""
        if self._gov is None:
            return None
        return await asyncio.to_thread(self._authorize, principal, params, model)

    def _authorize(self, principal: Principal, params: SearchParams, model: str) -> Grant | None:
        if self._gov is None:
            return None
        try:
            return self._gov.authorize(principal, params.use_case, params.collections, model)
        except DocfactoryError as err:
            self._gov.record(
                principal,
                action="DENIED",
                use_case=params.use_case,
                outcome=err.reason,
                model=model,
            )
            err.audited = True
            raise

    def _audit(
        self,
        principal: Principal,
        action: str,
        params: SearchParams,
        grant: Grant | None,
        outcome: str,
        document_ids: Sequence[str],
        started: float,
        model: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        if self._gov is None:
            return 0
        return self._gov.record(
            principal,
            action=action,
            use_case=params.use_case,
            outcome=outcome,
            document_ids=document_ids,
            model=model,
            latency_ms=(time.perf_counter() - started) * 1000,
            question=params.query,
            grant=grant,
            details=details,
        )

    async def _retrieve(
        self, tenant: str, params: SearchParams, grant: Grant | None
    ) -> tuple[list[Passage], float]:
        started = time.perf_counter()
        query, top_k, mode = self._validate(params)
        collections = tuple(params.collections)
        ceiling = params.max_classification
        if grant is not None:
            collections = grant.collections
            if grant.max_classification:
                ceiling = (
                    min(ceiling, grant.max_classification) if ceiling else grant.max_classification
                )
        dense = await self._embedder.embed_query(query) if mode != "sparse" else None
        sv = self._sparse.encode_query(query)
        scope = Scope(
            tenant=tenant,
            collections=collections,
            document_ids=tuple(params.document_ids),
            max_classification=ceiling,
            filter=params.filter,
        )
        limit = top_k
        if self._reranker is not None:
            limit = max(top_k, self._settings.search.rerank_depth or candidate_depth(top_k))
        hits = await asyncio.to_thread(
            lambda: self._store.query(
                scope, dense=dense, sparse=Sparse(sv.indices, sv.values), limit=limit, mode=mode
            )
        )
        metrics.RETRIEVAL_HITS.labels(mode).observe(len(hits))
        # The use case's `pii` policy: personal data masked before anything reads the text.
        texts = await pii.texts_for(grant, [h.payload for h in hits])
        passages = [Passage(t, h.score, _citation(h)) for t, h in zip(texts, hits, strict=True)]
        # Defence in depth: never return a chunk of another tenant or above the ceiling,
        # whatever the backend did.
        passages = [
            p
            for p, h in zip(passages, hits, strict=True)
            if h.payload.get("tenant") == tenant
            and (not ceiling or int(h.payload.get("classification", 99)) <= ceiling)
        ]
        passages = latest_versions_only(passages)
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

    async def answer(
        self, principal: Principal | str, params: SearchParams
    ) -> AsyncIterator[AnswerEvent]:
        principal = _as_principal(principal)
        started = time.perf_counter()
        model = getattr(self.generator, "model", "") or ""
        grant = await self._authorized(principal, params, model=model)
        held = grant is not None and grant.human_review
        outcome = "ERROR"
        used: list[Citation] = []
        details: dict[str, Any] = {}
        audited = False

        def record(outcome: str) -> int:
            """The ANSWER audit record (a database commit: run in a thread)."""
            ids = [c.document_id for c in used]
            return self._audit(
                principal, AUDIT_ANSWER, params, grant, outcome, ids, started, model, details
            )

        try:
            async for event in self._answer(principal, params, grant, held, started):
                if isinstance(event, CitationsUsed):
                    used = list(event.citations)
                if held and isinstance(event, Delta):
                    continue  # a held draft never leaves as a final answer
                if held and isinstance(event, CitationsUsed):
                    event = CitationsUsed([])
                if isinstance(event, Summary):
                    outcome = "PENDING_REVIEW" if event.pending_review else "OK"
                    details = {
                        "insufficient_context": event.insufficient_context,
                        "generator": event.generator,
                    }
                    if grant is not None and self._gov is not None:
                        await asyncio.to_thread(
                            self._gov.record_tokens,
                            grant,
                            principal,
                            event.prompt_tokens + event.completion_tokens,
                        )
                    # The answer is audited before its summary leaves, so the summary can
                    # carry the record's id (clients quote it when giving feedback).
                    audited = True
                    seq = await asyncio.to_thread(record, outcome)
                    event = dataclasses.replace(event, answer_id=seq)
                yield event
        except DocfactoryError as err:
            outcome = err.reason
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "CANCELLED"  # the caller went away before the summary
            raise
        finally:
            if not audited:
                # Off the event loop like the answer's own record, and shielded: the record
                # is written even when the caller's task is cancelled again meanwhile.
                await asyncio.shield(asyncio.to_thread(record, outcome))

    async def _answer(
        self,
        principal: Principal,
        params: SearchParams,
        grant: Grant | None,
        held: bool,
        started: float,
    ) -> AsyncIterator[AnswerEvent]:
        retrieval = params
        if params.history:  # a follow-up is retrieved in the context of the earlier questions
            retrieval = dataclasses.replace(
                params, query=contextual_query(params.query, params.history)
            )
        with tracing.span("retrieve"):
            passages, retrieval_ms = await self._retrieve(principal.tenant, retrieval, grant)
        language = detect_language(params.query)
        min_score = self._settings.search.min_score
        usable = [p for p in passages if p.score >= min_score] if min_score else passages
        prompt_passages = [
            PromptPassage(i, p.text, p.citation.label(), p.citation.section_path)
            for i, p in enumerate(usable, 1)
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
            question = await pii.question_for(grant, params.query)
            extra: dict[str, Any] = {}
            if params.history:  # masked like the question for the use case's `pii` policy
                extra["history"] = [
                    (role, await pii.question_for(grant, text)) for role, text in params.history
                ]
            async for piece in self.generator.stream(
                question, prompt_passages, language, usage, **extra
            ):
                if not parts:
                    first_token_ms = (time.perf_counter() - started) * 1000
                parts.append(piece)
                yield Delta(piece)
        full = "".join(parts)
        if self.generator.extractive:
            markers = sorted(usage.quotes)
            insufficient = insufficient or not markers  # no passage supports an answer
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
        review_id = ""
        if held and self._gov is not None and self._gov.reviews is not None:
            from docfactory.governance.reviews import review_metadata

            review = await asyncio.to_thread(
                lambda: self._gov.reviews.create_draft(  # type: ignore[union-attr]
                    tenant=principal.tenant,
                    use_case=params.use_case,
                    requester_key_id=principal.key_id,
                    answer_text=full,
                    citations=[citation_dict(c) for c in used],
                    model=getattr(self.generator, "model", "") or "",
                    # the reviewer sees the question only where the use case keeps it
                    metadata=review_metadata(params.query, grant),
                )
            )
            review_id = review.review_id
        yield Summary(
            review_id=review_id,
            pending_review=bool(review_id),
            model=getattr(self.generator, "model", "") or "",
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
