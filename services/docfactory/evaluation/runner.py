"""``docfactory eval``: index a dataset once, run every search mode, report metrics.

The corpus goes into a fresh embedded store (:class:`EdgeStore` in a temp dir) with the same
embedding model, BM25 sparse encoder and payload layout as ingestion (tenant ``eval``, one
point per passage). Passage embeddings are computed in batches (shortest texts first, so each
batch pads little) and, with ``--cache DIR``, stored in ``DIR/<fingerprint>.npz`` (the
fingerprint covers the model name and every passage text) so that a second run embeds nothing.

Queries go through :class:`AnsweringService.search` (the code path of the ``Search`` RPC), with
query embeddings computed up front in batches: the reported per-query latency is retrieval
(sparse encoding, the store query, the optional reranker), and the cost of embedding one query
alone is reported beside it (``query_embed_ms``, measured on a sample).

Modes: ``bm25`` (sparse only), ``dense``, ``hybrid`` (RRF of both, the default of the service)
and ``hybrid+rerank`` when a reranker is configured (its latency includes the reranker, e.g. the
passage embeddings of :class:`EmbeddingReranker` not yet in its cache).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from docfactory.answering.adapters.generators import ExtractiveGenerator
from docfactory.answering.adapters.rerank import Reranker, candidate_depth
from docfactory.answering.sentences import split_units
from docfactory.answering.service import (
    AnsweringService,
    CitationsUsed,
    SearchParams,
    Summary,
)
from docfactory.core.config import Settings
from docfactory.core.lexical import Bm25Params, SparseEncoder, detect_language, get_analyzer
from docfactory.core.text import normalize_query
from docfactory.core.vectorstore import ChunkPoint, Sparse, point_id
from docfactory.core.vectorstore_edge import EdgeStore
from docfactory.embedding.adapters.models import EmbeddingModel
from docfactory.evaluation.datasets import Dataset
from docfactory.evaluation.metrics import (
    exact_match,
    f1_score,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
)

__all__ = ["EvalOptions", "ModeResult", "evaluate", "format_table"]

TENANT = "eval"
MODE_TO_STORE = {"bm25": "sparse", "dense": "dense", "hybrid": "hybrid", "hybrid+rerank": "hybrid"}
KS = (1, 5, 10)
DEPTH = 10


@dataclass(frozen=True)
class EvalOptions:
    modes: Sequence[str] = ("bm25", "dense", "hybrid")
    batch_size: int = 32
    cache_dir: Path | None = None
    max_queries: int = 0  # 0 = all
    answers: int = 0  # answer evaluation on the first N queries (SQuAD layout)
    answer_mode: str = "hybrid"
    answer_top_k: int = 5
    query_language: str = ""  # "" = detected per query, like the service
    bm25: Bm25Params = field(default_factory=Bm25Params)
    bm25_avg_from_corpus: bool = False
    embed_sample: int = 20


@dataclass
class ModeResult:
    mode: str
    metrics: dict[str, float]
    latency_ms: dict[str, float]
    queries: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "queries": self.queries,
            **self.metrics,
            **{f"latency_{k}_ms": v for k, v in self.latency_ms.items()},
        }


class _ForcedLanguageEncoder(SparseEncoder):
    """Query side only: analyse every query in one language instead of detecting it."""

    def __init__(self, params: Bm25Params, language: str) -> None:
        super().__init__(params)
        self._forced = language

    def encode_query(self, text: str, language: str | None = None) -> Any:
        return super().encode_query(text, self._forced)


class _PrecomputedEmbedder:
    """``QueryEmbedder`` over vectors computed in batches before timing starts."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self._vectors = vectors

    async def embed_query(self, text: str) -> list[float]:
        # Keyed by the normalised text: the service normalises queries the same way.
        return self._vectors[normalize_query(text)]


def _log(out: TextIO, msg: str) -> None:
    print(msg, file=out, flush=True)


def embed_corpus(
    model: EmbeddingModel,
    texts: Sequence[str],
    *,
    batch_size: int,
    cache_dir: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, bool]:
    """Passage vectors in input order; ``(vectors, from_cache)``."""
    digest = hashlib.sha256(model.name.encode())
    for t in texts:
        digest.update(b"\x00" + t.encode("utf-8"))
    cache = cache_dir / f"{digest.hexdigest()[:24]}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            vectors = np.asarray(data["vectors"], dtype=np.float32)
        if vectors.shape[0] == len(texts):
            return vectors, True
    out = np.zeros((len(texts), model.dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = model.embed([texts[i] for i in idx], query=False)
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=out)
    return out, False


def corpus_avg_len(dataset: Dataset) -> float:
    """Mean analysed length (terms after stop words) of the passages, per detected language."""
    lengths = [
        len(get_analyzer(detect_language(d.passage)).tokens(d.passage))
        for d in dataset.corpus.values()
    ]
    return max(1.0, statistics.fmean(lengths)) if lengths else 1.0


def build_index(
    dataset: Dataset,
    model: EmbeddingModel,
    encoder: SparseEncoder,
    store: EdgeStore,
    opts: EvalOptions,
    out: TextIO,
) -> dict[str, float]:
    docs = list(dataset.corpus.values())
    texts = [d.passage for d in docs]
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or done == total:
            last[0] = now
            _log(out, f"  embedded {done}/{total} passages ({now - t0:.0f} s)")

    vectors, cached = embed_corpus(
        model, texts, batch_size=opts.batch_size, cache_dir=opts.cache_dir, progress=progress
    )
    t1 = time.perf_counter()
    points = []
    for doc, text, vec in zip(docs, texts, vectors, strict=True):
        sv = encoder.encode_document(text, detect_language(text))
        points.append(
            ChunkPoint(
                id=point_id(doc.id, 1, 0),
                dense=vec.tolist(),
                sparse=Sparse(sv.indices, sv.values),
                payload={
                    "tenant": TENANT,
                    "collection": dataset.name,
                    "document_id": doc.id,
                    "document_version": 1,
                    "classification": 0,
                    "filename": doc.title or doc.id,
                    "source_uri": f"eval:{dataset.name}/{doc.id}",
                    "chunk_index": 0,
                    "page_numbers": [],
                    "section_path": [doc.title] if doc.title else [],
                    "element_types": ["NarrativeText"],
                    "token_count": 0,
                    "text": text,
                },
            )
        )
    store.upsert(points, model.dimension)
    store.optimize()
    t2 = time.perf_counter()
    return {
        "embed_s": round(t1 - t0, 2),
        "embed_cached": float(cached),
        "embed_ms_per_passage": round((t1 - t0) * 1000 / max(1, len(texts)), 2),
        "index_s": round(t2 - t1, 2),
    }


def _ranked_ids(passages: Sequence[Any]) -> list[str]:
    return [p.citation.document_id for p in passages]


@dataclass(frozen=True)
class FusionSpec:
    """Diagnostic client-side weighted RRF (mode ``rrf:<dense weight>:<sparse weight>:<k>``):
    the dense and the sparse candidate lists (``max(depth * 4, 20)`` each, as the engine's
    prefetches) fused as ``sum(w / (k + rank))`` with 0-based ranks, ties kept in
    dense-then-sparse order. ``rrf:1:1:2`` approximates the engine's hybrid mode; with k=2
    exact ties are frequent and the engine breaks them in its own (run-dependent) order, so
    the two differ by about a point at recall@1 and agree at recall@5/10. Qdrant's
    ``Fusion.Rrf`` takes ``k`` and ``weights`` natively: a chosen setting belongs in the
    store's query, this mode only measures it."""

    dense_weight: float
    sparse_weight: float
    k: float

    @classmethod
    def parse(cls, mode: str) -> FusionSpec:
        try:
            _, wd, ws, k = mode.split(":")
            return cls(float(wd), float(ws), float(k))
        except ValueError:
            raise ValueError(
                f"fusion mode {mode!r}: expected rrf:<dense w>:<sparse w>:<k>"
            ) from None


def _fuse(spec: FusionSpec, dense_ids: Sequence[str], sparse_ids: Sequence[str]) -> list[str]:
    scores: dict[str, float] = {}
    for weight, ids in ((spec.dense_weight, dense_ids), (spec.sparse_weight, sparse_ids)):
        for rank, doc in enumerate(ids):
            scores[doc] = scores.get(doc, 0.0) + weight / (spec.k + rank)
    return sorted(scores, key=lambda d: -scores[d])


async def _fused_ranking(service: AnsweringService, spec: FusionSpec, query: str) -> list[str]:
    cand = max(DEPTH * 4, 20)
    dense, _ = await service.search(TENANT, SearchParams(query=query, top_k=cand, mode="dense"))
    sparse, _ = await service.search(TENANT, SearchParams(query=query, top_k=cand, mode="sparse"))
    return _fuse(spec, _ranked_ids(dense), _ranked_ids(sparse))[:DEPTH]


async def _run_mode(
    service: AnsweringService,
    mode: str,
    dataset: Dataset,
    qids: Sequence[str],
    out: TextIO | None = None,
) -> ModeResult:
    spec = FusionSpec.parse(mode) if mode.startswith("rrf:") else None
    store_mode = MODE_TO_STORE.get(mode, "hybrid")
    sums: dict[str, float] = {f"recall@{k}": 0.0 for k in KS}
    sums["mrr@10"] = 0.0
    sums["ndcg@10"] = 0.0
    latencies: list[float] = []
    t0 = last = time.perf_counter()
    for done, qid in enumerate(qids):
        if out is not None and time.perf_counter() - last > 60:
            last = time.perf_counter()
            _log(out, f"  {mode}: {done}/{len(qids)} queries ({last - t0:.0f} s)")
        params = SearchParams(query=dataset.queries[qid], top_k=DEPTH, mode=store_mode)
        t = time.perf_counter()
        if spec is not None:
            ranked = await _fused_ranking(service, spec, params.query)
        else:
            passages, _ = await service.search(TENANT, params)
            ranked = _ranked_ids(passages)
        latencies.append((time.perf_counter() - t) * 1000)
        qrels = dataset.qrels[qid]
        for k in KS:
            sums[f"recall@{k}"] += recall_at_k(ranked, qrels, k)
        sums["mrr@10"] += mrr_at_k(ranked, qrels, 10)
        sums["ndcg@10"] += ndcg_at_k(ranked, qrels, 10)
    n = max(1, len(qids))
    return ModeResult(
        mode=mode,
        metrics={k: round(v / n, 4) for k, v in sums.items()},
        latency_ms={
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
        },
        queries=len(qids),
    )


def _words(text: str) -> str:
    """`` w1 w2 ... `` (letters, digits, apostrophes and hyphens; spaces around)."""
    kept = "".join(c if c.isalnum() or c in "'’-" else " " for c in text)
    return f" {' '.join(kept.split())} "


def quotes_heading(quote: str, passage: str, section_path: Sequence[str] = ()) -> bool:
    """Whether ``quote`` quotes one of the headings or titles of ``passage`` (the lines that
    :func:`split_units` classifies as heading or question): what is left of the quote once
    the passage's sentences are taken out of it still holds a heading, as whole words."""
    units = split_units(passage, section_path)
    rest = " ".join(quote.split())
    for unit in sorted((u for u in units if u.answer), key=lambda u: -len(u.text)):
        rest = rest.replace(unit.text, " ")
    left = _words(rest)
    return any(
        not unit.answer and _words(unit.text).strip() and _words(unit.text) in left
        for unit in units
    )


async def _run_answers(
    service: AnsweringService, dataset: Dataset, qids: Sequence[str], opts: EvalOptions
) -> dict[str, float]:
    """Answer figures over ``qids``: the gold paragraph cited; EM/F1 and gold-in-quote of the
    first quote (comparable with earlier runs) and of all the quotes of the answer together;
    the quoted words per answer; the share of answers quoting a heading; the share answered
    "insufficient context"."""
    cited = em = f1 = f1_all = contains = contains_any = headings = refused = 0.0
    words: list[float] = []
    for qid in qids:
        question = dataset.queries[qid]
        golds = dataset.answers[qid]
        gold_doc = next(iter(dataset.qrels[qid]))
        params = SearchParams(
            query=question, top_k=opts.answer_top_k, mode=MODE_TO_STORE[opts.answer_mode]
        )
        citations: list[Any] = []
        async for event in service.answer(TENANT, params):
            if isinstance(event, CitationsUsed):
                citations = list(event.citations)
            elif isinstance(event, Summary):
                refused += float(event.insufficient_context)
        cited += float(any(c.document_id == gold_doc for c in citations))
        quote = citations[0].quote if citations else ""
        quoted = " ".join(c.quote for c in citations)
        lang = detect_language(question)
        em += exact_match(quote, golds, lang)
        f1 += f1_score(quote, golds, lang)
        f1_all += f1_score(quoted, golds, lang)
        norm_golds = [f" {normalize_answer(g, lang)} " for g in golds]
        norm_quote = f" {normalize_answer(quote, lang)} "
        contains += float(any(g in norm_quote for g in norm_golds))
        norm_quoted = f" {normalize_answer(quoted, lang)} "
        contains_any += float(any(g in norm_quoted for g in norm_golds))
        if citations:
            words.append(float(len(quoted.split())))
            headings += float(
                any(
                    c.document_id in dataset.corpus
                    and quotes_heading(
                        c.quote, dataset.corpus[c.document_id].passage, c.section_path
                    )
                    for c in citations
                )
            )
    n = max(1, len(qids))
    answered = max(1, len(words))
    return {
        "questions": float(len(qids)),
        "citation_accuracy": round(cited / n, 4),
        "exact_match": round(em / n, 4),
        "f1": round(f1 / n, 4),
        "answer_in_quote": round(contains / n, 4),
        "f1_all_quotes": round(f1_all / n, 4),
        "answer_in_any_quote": round(contains_any / n, 4),
        "quote_words_median": round(percentile(words, 50), 1),
        "quote_words_mean": round(sum(words) / answered, 1),
        "quote_words_p90": round(percentile(words, 90), 1),
        "heading_quoted": round(headings / answered, 4),
        "insufficient_context": round(refused / n, 4),
    }


def _embed_queries(
    model: EmbeddingModel, texts: Sequence[str], batch_size: int
) -> dict[str, list[float]]:
    unique = sorted({normalize_query(t) for t in texts}, key=len)
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(unique), max(batch_size, 64)):
        batch = unique[start : start + max(batch_size, 64)]
        for text, vec in zip(batch, model.embed(batch, query=True), strict=True):
            vectors[text] = [float(x) for x in vec]
    return vectors


def evaluate(
    dataset: Dataset,
    model: EmbeddingModel,
    *,
    settings: Settings,
    opts: EvalOptions,
    reranker: Reranker | None = None,
    out: TextIO | None = None,
    generator: ExtractiveGenerator | None = None,
) -> dict[str, Any]:
    """Index ``dataset`` once, run every mode; the JSON-ready report (progress to ``out``,
    default stderr). ``generator`` answers the ``--answers`` questions (default: the
    extractive answer with its default selection; ``bench/bench_sentences.py`` passes one that
    records what it was given)."""
    out = sys.stderr if out is None else out
    modes = list(opts.modes)
    if reranker is not None and "hybrid+rerank" not in modes:
        modes.append("hybrid+rerank")
    if reranker is None:
        modes = [m for m in modes if m != "hybrid+rerank"]
    for m in modes:
        if m.startswith("rrf:"):
            FusionSpec.parse(m)
        elif m not in MODE_TO_STORE:
            raise ValueError(f"unknown mode {m!r}; expected one of {sorted(MODE_TO_STORE)}")
    params = opts.bm25
    if opts.bm25_avg_from_corpus:
        params = Bm25Params(k1=params.k1, b=params.b, avg_doc_len=corpus_avg_len(dataset))
    doc_encoder = SparseEncoder(params)
    query_encoder = (
        _ForcedLanguageEncoder(params, opts.query_language)
        if opts.query_language
        else SparseEncoder(params)
    )
    qids = list(dataset.queries)
    if opts.max_queries > 0:
        qids = qids[: opts.max_queries]
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "format": dataset.format,
        **dict(dataset.stats()),
        "evaluated_queries": len(qids),
        "embedding_model": model.name,
        "bm25": {"k1": params.k1, "b": params.b, "avg_doc_len": round(params.avg_doc_len, 2)},
        "query_language": opts.query_language or "detected",
        "depth": DEPTH,
    }
    if reranker is not None:
        report["reranker"] = reranker.name
        report["rerank_depth"] = settings.search.rerank_depth or candidate_depth(DEPTH)
    _log(out, f"{dataset.name}: {dict(dataset.stats())}, evaluating {len(qids)} queries")
    with tempfile.TemporaryDirectory(prefix="docfactory-eval-") as tmp:
        store = EdgeStore(
            path=Path(tmp),
            collection="eval",
            hybrid_weights=(
                settings.search.hybrid_dense_weight,
                settings.search.hybrid_sparse_weight,
            ),
        )
        try:
            report["index"] = build_index(dataset, model, doc_encoder, store, opts, out)
            _log(out, f"  indexed: {report['index']}")
            t = time.perf_counter()
            vectors = _embed_queries(model, [dataset.queries[q] for q in qids], opts.batch_size)
            batch_s = time.perf_counter() - t
            sample = [dataset.queries[q] for q in qids[: opts.embed_sample]]
            single = []
            for text in sample:
                t = time.perf_counter()
                model.embed([text], query=True)
                single.append((time.perf_counter() - t) * 1000)
            report["query_embedding"] = {
                "batched_ms_per_query": round(batch_s * 1000 / max(1, len(vectors)), 2),
                "single_p50_ms": round(percentile(single, 50), 2),
            }
            embedder = _PrecomputedEmbedder(vectors)
            answerer = generator if generator is not None else ExtractiveGenerator()

            def service(with_reranker: Reranker | None) -> AnsweringService:
                return AnsweringService(
                    settings=settings,
                    embedder=embedder,
                    store=store,
                    generator=answerer,
                    sparse=query_encoder,
                    reranker=with_reranker,
                )

            async def run_all() -> tuple[list[ModeResult], dict[str, Any] | None]:
                results = []
                for mode in modes:
                    svc = service(reranker if mode == "hybrid+rerank" else None)
                    res = await _run_mode(svc, mode, dataset, qids, out)
                    _log(out, f"  {mode}: {res.as_dict()}")
                    results.append(res)
                answers: dict[str, Any] | None = None
                if opts.answers > 0 and dataset.answers:
                    aq = [q for q in qids if q in dataset.answers][: opts.answers]
                    rr = reranker if opts.answer_mode == "hybrid+rerank" else None
                    answers = {
                        "mode": opts.answer_mode,
                        **await _run_answers(service(rr), dataset, aq, opts),
                    }
                return results, answers

            results, answers = asyncio.run(run_all())
        finally:
            store.close()
    report["modes"] = [r.as_dict() for r in results]
    embedded = getattr(reranker, "embedded_passages", None)
    if isinstance(embedded, int):
        # EmbeddingReranker: passages embedded by the rerank stage (its cache misses).
        report["reranker_embedded_passages"] = embedded
    if answers is not None:
        report["answers"] = answers
    return report


def format_table(report: dict[str, Any]) -> str:
    cols = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]
    head = f"{'mode':<14}" + "".join(f"{c:>10}" for c in cols) + f"{'p50 ms':>9}{'p95 ms':>9}"
    lines = [
        f"{report['dataset']} ({report['format']}): {report['documents']} documents, "
        f"{report['evaluated_queries']} queries, model {report['embedding_model']}, "
        f"BM25 {report['bm25']}, query language {report['query_language']}",
        head,
        "-" * len(head),
    ]
    for m in report["modes"]:
        lines.append(
            f"{m['mode']:<14}"
            + "".join(f"{m[c]:>10.4f}" for c in cols)
            + f"{m['latency_p50_ms']:>9.2f}{m['latency_p95_ms']:>9.2f}"
        )
    idx = report["index"]
    qe = report["query_embedding"]
    lines.append(
        f"corpus embedding {idx['embed_s']} s ({idx['embed_ms_per_passage']} ms/passage"
        f"{', from cache' if idx['embed_cached'] else ''}), indexing {idx['index_s']} s; "
        f"query embedding {qe['batched_ms_per_query']} ms/query batched, "
        f"{qe['single_p50_ms']} ms alone (p50)"
    )
    if "reranker" in report:
        embedded = report.get("reranker_embedded_passages")
        lines.append(
            f"reranker {report['reranker']}, top {report.get('rerank_depth', '?')} hybrid "
            "candidates re-scored"
            + (f" ({embedded} passages embedded, cached)" if embedded is not None else "")
        )
    if "answers" in report:
        a = report["answers"]
        lines.append(
            f"answers ({a['mode']}, extractive, {int(a['questions'])} questions): citation "
            f"accuracy {a['citation_accuracy']:.4f}, EM {a['exact_match']:.4f}, "
            f"F1 {a['f1']:.4f}, gold answer in quote {a['answer_in_quote']:.4f}"
        )
        if "answer_in_any_quote" in a:
            lines.append(
                f"  all quotes of an answer: gold answer inside {a['answer_in_any_quote']:.4f}, "
                f"F1 {a['f1_all_quotes']:.4f}; quoted words per answer median "
                f"{a['quote_words_median']:.0f} (mean {a['quote_words_mean']:.0f}, p90 "
                f"{a['quote_words_p90']:.0f}); answers quoting a heading "
                f"{a['heading_quoted']:.4f}; insufficient context {a['insufficient_context']:.4f}"
            )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
