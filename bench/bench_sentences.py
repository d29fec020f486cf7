#!/usr/bin/env python
"""Where the extractive answer loses the gold answer, on a SQuAD-format set (PIAF by default).

Runs ``docfactory eval --answers`` (hybrid retrieval, the extractive answer with its default
sentence selection) with a generator that records the passages each question was answered
from, then splits the losses into their two causes:

1. retrieval and passage choice: at which rank of the retrieved passages the first one holding
   a gold answer stands (none: no retrieved passage holds it);
2. sentence ranking: the rank of the answering sentence among the sentences of *the passage
   that holds the answer* (as if the passage were known: an upper bound of what sentence
   scoring can do with these passages) and among the sentences of all the retrieved passages
   (what the answer actually ranks).

and prints the selection's own figures beside them (gold answer inside the quotes, quoted
words). A quoted answer of about two sentences (60 words) cannot hold the gold answer more
often than the answering sentence is ranked in the best two::

    .venv/bin/python bench/bench_sentences.py --cache /tmp/piaf-cache     # all 3,833 questions
    .venv/bin/python bench/bench_sentences.py --questions 500 --out sentences.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    import docfactory  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from docfactory.answering.adapters.generators import ExtractiveGenerator
from docfactory.answering.prompt import PromptPassage
from docfactory.answering.sentences import Selection, score_units, split_units
from docfactory.core.config import load_settings
from docfactory.embedding.adapters.models import load_model
from docfactory.evaluation.datasets import load_dataset
from docfactory.evaluation.metrics import normalize_answer
from docfactory.evaluation.runner import EvalOptions, evaluate

ROOT = Path(__file__).resolve().parents[1]
PIAF = ROOT.parent / "shared" / "data" / "piaf" / "piaf-v1.0.json"


@dataclass(frozen=True)
class Answered:
    question: str
    texts: list[str]
    headings: list[list[str]]
    language: str
    selection: Selection


class RecordingGenerator(ExtractiveGenerator):
    """The extractive answer, unchanged, keeping what each question was answered from."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: list[Answered] = []

    def select(self, question: str, passages: Sequence[PromptPassage], language: str) -> Selection:
        selection = super().select(question, passages, language)
        self.answered.append(
            Answered(
                question,
                [p.text for p in passages],
                [list(p.headings) for p in passages],
                language,
                selection,
            )
        )
        return selection


def _padded(text: str, language: str) -> str:
    return f" {normalize_answer(text, language)} "


def _first(hits: Sequence[bool]) -> int:
    """1-based rank of the first hit, 0 when none."""
    return next((i + 1 for i, h in enumerate(hits) if h), 0)


def analyse(answered: Sequence[Answered], golds: dict[str, list[str]]) -> dict[str, Any]:
    passage_rank: Counter[int] = Counter()
    in_passage: Counter[int] = Counter()  # answering sentence rank, passage known
    overall: Counter[int] = Counter()  # answering sentence rank among all retrieved sentences
    for a in answered:
        gold = [_padded(g, a.language) for g in golds.get(a.question, [])]

        def holds(text: str, gold: list[str] = gold, language: str = a.language) -> bool:
            padded = _padded(text, language)
            return any(g in padded for g in gold)

        rank = _first([holds(t) for t in a.texts])
        passage_rank[rank] += 1
        if rank:
            p = rank - 1
            units = split_units(a.texts[p], a.headings[p] if p < len(a.headings) else ())
            scored = score_units(a.question, [units], a.language)
            in_passage[_first([holds(s.unit.text) for s in scored])] += 1
            overall[_first([holds(s.unit.text) for s in a.selection.scored])] += 1
    n = max(1, len(answered))

    def within(c: Counter[int], k: int) -> float:
        return round(sum(v for r, v in c.items() if 1 <= r <= k) / n, 4)

    return {
        "questions": len(answered),
        "gold_in_passage_rank": {str(r): round(passage_rank[r] / n, 4) for r in range(1, 6)},
        "gold_in_some_passage": round(sum(v for r, v in passage_rank.items() if r) / n, 4),
        "sentence_rank_passage_known": {f"top{k}": within(in_passage, k) for k in (1, 2, 3)},
        "sentence_rank_all_passages": {f"top{k}": within(overall, k) for k in (1, 2, 3)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(PIAF), help="SQuAD .json file (default: PIAF)")
    ap.add_argument("--questions", type=int, default=0, help="first N questions (0 = all)")
    ap.add_argument("--cache", help="folder caching the corpus embeddings between runs")
    ap.add_argument("--out", help="write the figures as JSON")
    ns = ap.parse_args(argv)
    path = Path(ns.dataset)
    if not path.exists():
        print(f"no such dataset: {path}", file=sys.stderr)
        return 2
    settings = load_settings()
    dataset = load_dataset(path)
    qids = [q for q in dataset.queries if q in dataset.answers]
    if ns.questions:
        qids = qids[: ns.questions]
    golds: dict[str, list[str]] = defaultdict(list)
    for qid in qids:
        golds[dataset.queries[qid]].extend(dataset.answers[qid])
    opts = EvalOptions(
        modes=["hybrid"],
        cache_dir=Path(ns.cache).expanduser() if ns.cache else None,
        max_queries=ns.questions,
        answers=len(qids),
        answer_mode="hybrid",
    )
    generator = RecordingGenerator()
    report = evaluate(
        dataset, load_model(settings.embedding), settings=settings, opts=opts, generator=generator
    )
    figures = analyse(generator.answered, golds)
    answers = figures["eval_answers"] = report.get("answers", {})
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    known, ranked = figures["sentence_rank_passage_known"], figures["sentence_rank_all_passages"]
    print(
        f"\ngold answer in the first retrieved passage {figures['gold_in_passage_rank']['1']:.3f}, "
        f"in one of them {figures['gold_in_some_passage']:.3f}; answering sentence first / in "
        f"the best two / three: passage known {known['top1']:.3f} / {known['top2']:.3f} / "
        f"{known['top3']:.3f}, all retrieved passages {ranked['top1']:.3f} / {ranked['top2']:.3f}"
        f" / {ranked['top3']:.3f}; the answer's quotes hold the gold answer "
        f"{answers.get('answer_in_any_quote', 0.0):.3f} at a median of "
        f"{answers.get('quote_words_median', 0.0):.0f} words"
    )
    if ns.out:
        Path(ns.out).write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
