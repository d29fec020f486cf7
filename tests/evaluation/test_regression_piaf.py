"""Retrieval regression on a fixed slice of PIAF (the first 40 articles: 159 paragraphs,
795 questions), with the real embedding model, BM25 encoder and embedded store.

Measured when written (use-multilingual-v3, BM25 k1=1.2 b=0.75 avg_doc_len=256, RRF k=2):
recall@10 bm25 0.912, dense 0.901, hybrid 0.942; extractive answers on the first 100
questions: citation accuracy 0.89. The floors below leave a margin.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from docfactory.core.config import Settings
from docfactory.embedding.adapters.models import Usem3Model
from docfactory.evaluation.datasets import load_dataset
from docfactory.evaluation.runner import EvalOptions, evaluate, format_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PIAF = SHARED / "piaf" / "piaf-v1.0.json"

HYBRID_RECALL10_FLOOR = 0.90
# The extractive answer quotes 1-3 answer-bearing sentences (issue 19) instead of the top
# passages whole: it cites fewer passages, so the gold paragraph is among its citations less
# often (0.79 on this slice, 0.715 on all of PIAF, against 0.82 before); the gold *answer*
# inside the quote is what improved. This floor guards against a further fall.
CITATION_ACCURACY_FLOOR = 0.75


@pytest.fixture(scope="module")
def model() -> Usem3Model:
    return Usem3Model(threads=2)


def test_piaf_slice_hybrid_recall_floor(model: Usem3Model, tmp_path: Path) -> None:
    if not PIAF.exists():
        pytest.skip(f"../shared/data absent ({PIAF} not found): PIAF regression skipped")
    dataset = load_dataset(PIAF, max_articles=40)
    assert dataset.stats()["documents"] == 159
    assert dataset.stats()["queries"] == 795
    report = evaluate(
        dataset,
        model,
        settings=Settings(data_dir=tmp_path),
        opts=EvalOptions(answers=100, cache_dir=tmp_path / "cache"),
        out=io.StringIO(),
    )
    by_mode = {m["mode"]: m for m in report["modes"]}
    assert set(by_mode) == {"bm25", "dense", "hybrid"}
    hybrid, dense, bm25 = by_mode["hybrid"], by_mode["dense"], by_mode["bm25"]
    assert hybrid["recall@10"] >= HYBRID_RECALL10_FLOOR, format_table(report)
    assert hybrid["recall@10"] >= dense["recall@10"], format_table(report)
    assert hybrid["recall@10"] >= bm25["recall@10"], format_table(report)
    for m in by_mode.values():
        assert m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1.0
        assert 0.0 < m["mrr@10"] <= 1.0
        assert m["latency_p50_ms"] > 0
    assert report["answers"]["citation_accuracy"] >= CITATION_ACCURACY_FLOOR
    assert report["index"]["embed_cached"] == 0.0
    json.dumps(report)  # JSON-ready
    # A second run reuses the cached corpus embeddings and gives the same figures.
    again = evaluate(
        dataset,
        model,
        settings=Settings(data_dir=tmp_path),
        opts=EvalOptions(modes=("hybrid",), cache_dir=tmp_path / "cache", max_queries=200),
        out=io.StringIO(),
    )
    assert again["index"]["embed_cached"] == 1.0
    assert again["modes"][0]["queries"] == 200


def test_the_given_generator_answers_the_questions(model: Usem3Model, tmp_path: Path) -> None:
    """``evaluate(generator=...)`` answers with the generator it is given (what
    ``bench/bench_sentences.py`` uses to record the passages of each answer)."""
    if not PIAF.exists():
        pytest.skip(f"../shared/data absent ({PIAF} not found): PIAF regression skipped")
    from docfactory.answering.adapters.generators import ExtractiveGenerator
    from docfactory.answering.prompt import PromptPassage
    from docfactory.answering.sentences import Selection, SelectionConfig

    class Counting(ExtractiveGenerator):
        def __init__(self) -> None:
            # one sentence at most, so its answers differ from the default's
            super().__init__(SelectionConfig(max_units=1))
            self.questions: list[str] = []

        def select(
            self, question: str, passages: Sequence[PromptPassage], language: str
        ) -> Selection:
            self.questions.append(question)
            return super().select(question, passages, language)

    dataset = load_dataset(PIAF, max_articles=3)
    generator = Counting()
    report = evaluate(
        dataset,
        model,
        settings=Settings(data_dir=tmp_path),
        opts=EvalOptions(modes=("hybrid",), answers=12, max_queries=12),
        out=io.StringIO(),
        generator=generator,
    )
    asked = [dataset.queries[q] for q in list(dataset.queries)[:12]]
    assert generator.questions == asked
    assert report["answers"]["questions"] == 12
    # one sentence per answer: far fewer words than the default's two or more
    assert report["answers"]["quote_words_p90"] <= 80
