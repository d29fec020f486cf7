"""Offline replay of the extractive answer selection on a SQuAD-layout dataset (PIAF).

``docfactory eval --answers N`` retrieves, then selects sentences, for every question: minutes
per run. This script splits the two so the selection can be iterated on in seconds:

* ``dump``: runs the real ``docfactory eval`` (same arguments) once, with a recording
  extractive generator, and writes, per answered question, the passages the generator got
  (text, headings, retrieval rank), the gold answers and the article the question belongs to,
  to a pickle (PIAF text: keep it outside the repository, e.g. under ``/tmp``).
* ``replay``: re-runs only :func:`docfactory.answering.sentences.select` on the dump and
  prints the same figures as ``docfactory eval --answers`` (gold answer inside the first
  quote / any quote, F1, quoted words, insufficient context), for all questions and for the
  held-out articles (``heldout``: a stable hash of the article title, see
  :func:`heldout_article`) separately.
* ``features``: writes the per-sentence feature matrix of
  :mod:`docfactory.answering.sentence_ranker` with its label (the sentence holds a gold
  answer) and the split, for fitting the ranker (``bench/fit_sentence_ranker.py``).

Usage::

    nice -n 10 .venv/bin/python bench/answer_replay.py dump --out /tmp/h19dump.pkl -- \\
        --data-dir /tmp/h19evaldata eval --dataset ../shared/data/piaf/piaf-v1.0.json \\
        --modes hybrid --answers 3833 --cache /tmp/h19cache
    .venv/bin/python bench/answer_replay.py replay --dump /tmp/h19dump.pkl
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELDOUT_BUCKETS = 4  # one article in four (by title hash) is held out of the ranker's fit


def heldout_article(title: str) -> bool:
    """Whether an article is held out of the sentence ranker's fit: the first byte of the
    SHA-256 of its title, modulo 4, is 0 (about a quarter of the articles)."""
    return hashlib.sha256(title.encode("utf-8")).digest()[0] % HELDOUT_BUCKETS == 0


@dataclass
class Record:
    qid: str
    question: str
    golds: list[str]
    title: str  # the article's title (the split)
    gold_doc: str
    passages: list[tuple[str, tuple[str, ...]]]  # (text, headings), retrieval order
    language: str


def _dump(ns: argparse.Namespace) -> int:
    import docfactory.evaluation.runner as runner
    from docfactory.answering.adapters.generators import ExtractiveGenerator
    from docfactory.answering.prompt import PromptPassage
    from docfactory.cli import main as cli_main
    from docfactory.core.lexical import detect_language
    from docfactory.evaluation.datasets import load_dataset

    seen: list[tuple[str, list[tuple[str, tuple[str, ...]]], str]] = []

    class Recording(ExtractiveGenerator):
        async def stream(
            self,
            question: str,
            passages: Sequence[PromptPassage],
            language: str,
            usage: Any,
            history: Sequence[tuple[str, str]] = (),
        ) -> AsyncIterator[str]:
            seen.append((question, [(p.text, tuple(p.headings)) for p in passages], language))
            async for piece in super().stream(question, passages, language, usage, history):
                yield piece

    runner.ExtractiveGenerator = Recording  # type: ignore[misc]
    args = list(ns.eval_args)
    if args and args[0] == "--":
        args = args[1:]
    rc = cli_main(args)

    def arg(name: str, default: str = "0") -> str:
        return args[args.index(name) + 1] if name in args else default

    path = Path(arg("--dataset"))
    dataset = load_dataset(path, max_articles=int(arg("--max-articles")))
    titles = [str(a.get("title") or "") for a in json.loads(path.read_text("utf-8"))["data"]]
    qids = list(dataset.queries)
    if int(arg("--max-queries")) > 0:
        qids = qids[: int(arg("--max-queries"))]
    qids = [q for q in qids if q in dataset.answers][: int(arg("--answers"))]
    records: list[Record] = []
    j = 0
    for qid in qids:
        question = dataset.queries[qid]
        gold_doc = next(iter(dataset.qrels[qid]))
        passages: list[tuple[str, tuple[str, ...]]] = []
        language = detect_language(question)
        if j < len(seen) and seen[j][0] == question:
            passages, language = seen[j][1], seen[j][2]
            j += 1
        records.append(
            Record(
                qid,
                question,
                list(dataset.answers[qid]),
                titles[int(gold_doc.split("-")[0])],
                gold_doc,
                passages,
                language,
            )
        )
    assert j == len(seen), f"{len(seen) - j} recorded questions not matched"
    with open(ns.out, "wb") as f:
        pickle.dump([dataclasses.asdict(r) for r in records], f)  # plain data
    print(f"{len(records)} questions ({j} with passages) -> {ns.out}", file=sys.stderr)
    return rc


def load(path: str) -> list[Record]:
    with open(path, "rb") as f:
        rows: list[dict[str, Any]] = pickle.load(f)
    return [Record(**row) for row in rows]


def figures(records: Sequence[Record], quotes: Sequence[list[str]]) -> dict[str, float]:
    """The answer figures of ``docfactory eval --answers`` for ``quotes`` (per record)."""
    from docfactory.evaluation.metrics import f1_score, normalize_answer
    from docfactory.evaluation.runner import percentile

    first = anyq = f1 = f1_all = refused = 0.0
    words: list[float] = []
    for r, qs in zip(records, quotes, strict=True):
        lang = r.language
        quote = qs[0] if qs else ""
        quoted = " ".join(qs)
        golds = [f" {normalize_answer(g, lang)} " for g in r.golds]
        first += float(any(g in f" {normalize_answer(quote, lang)} " for g in golds))
        anyq += float(any(g in f" {normalize_answer(quoted, lang)} " for g in golds))
        f1 += f1_score(quote, r.golds, lang)
        f1_all += f1_score(quoted, r.golds, lang)
        if qs:
            words.append(float(len(quoted.split())))
        else:
            refused += 1
    n = max(1, len(records))
    return {
        "questions": float(len(records)),
        "answer_in_quote": round(first / n, 4),
        "answer_in_any_quote": round(anyq / n, 4),
        "f1": round(f1 / n, 4),
        "f1_all_quotes": round(f1_all / n, 4),
        "quote_words_median": round(percentile(words, 50), 1) if words else 0.0,
        "quote_words_mean": round(statistics.fmean(words), 1) if words else 0.0,
        "quote_words_p90": round(percentile(words, 90), 1) if words else 0.0,
        "insufficient_context": round(refused / n, 4),
    }


def _replay(ns: argparse.Namespace) -> int:
    from docfactory.answering.sentences import select

    records = load(ns.dump)
    if ns.limit:
        records = records[: ns.limit]
    t = time.perf_counter()
    quotes: list[list[str]] = []
    for r in records:
        if not r.passages:
            quotes.append([])
            continue
        sel = select(
            r.question,
            [p[0] for p in r.passages],
            r.language,
            headings=[p[1] for p in r.passages],
        )
        quotes.append([q for _, q in sorted(sel.quotes)])  # the service cites by marker
    elapsed = time.perf_counter() - t
    held = [i for i, r in enumerate(records) if heldout_article(r.title)]
    report = {
        "all": figures(records, quotes),
        "heldout": figures([records[i] for i in held], [quotes[i] for i in held]),
        "ms_per_question": round(elapsed * 1000 / max(1, len(records)), 2),
    }
    print(json.dumps(report, indent=1))
    return 0


def _tune(ns: argparse.Namespace) -> int:
    """Grid over the selection's quoting settings on the scored units (scored once)."""
    import itertools

    from docfactory.answering.sentences import SelectionConfig, pick, score_units, split_units

    records = load(ns.dump)
    cached = []
    for r in records:
        passages = [split_units(t, h) for t, h in r.passages]
        cached.append((passages, score_units(r.question, passages, r.language) if passages else []))
    held = [heldout_article(r.title) for r in records]
    grid = {
        k: [type(getattr(SelectionConfig(), k))(v) for v in vs.split(",")]
        for k, vs in (a.split("=") for a in ns.grid)
    }
    for values in itertools.product(*grid.values()):
        cfg = SelectionConfig(**dict(zip(grid, values, strict=True)))
        quotes = [
            [q for _, q in sorted(pick(r.question, ps, sc, r.language, cfg).quotes)]
            for r, (ps, sc) in zip(records, cached, strict=True)
        ]
        train = [i for i, h in enumerate(held) if not h]
        test = [i for i, h in enumerate(held) if h]
        tr = figures([records[i] for i in train], [quotes[i] for i in train])
        he = figures([records[i] for i in test], [quotes[i] for i in test])
        al = figures(records, quotes)
        print(
            dict(zip(grid, values, strict=True)),
            f"train {tr['answer_in_any_quote']:.4f}/{tr['quote_words_median']:.0f}",
            f"held {he['answer_in_any_quote']:.4f}/{he['quote_words_median']:.0f}",
            f"all {al['answer_in_any_quote']:.4f}/{al['quote_words_median']:.0f}"
            f" f1 {al['f1']:.4f} insufficient {al['insufficient_context']:.4f}",
            flush=True,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="run docfactory eval once, recording the passages")
    d.add_argument("--out", required=True)
    d.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then docfactory's arguments")
    r = sub.add_parser("replay", help="re-run the selection on a dump")
    r.add_argument("--dump", required=True)
    r.add_argument("--limit", type=int, default=0)
    t = sub.add_parser("tune", help="grid over SelectionConfig fields: name=v1,v2 ...")
    t.add_argument("--dump", required=True)
    t.add_argument("grid", nargs="*")
    ns = p.parse_args(argv)
    return {"dump": _dump, "replay": _replay, "tune": _tune}[ns.command](ns)


if __name__ == "__main__":
    raise SystemExit(main())
