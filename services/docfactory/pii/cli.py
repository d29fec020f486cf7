"""``docfactory eval-pii``: per-type precision / recall of the PII detector on the labelled
French set (real documents of ../shared/data with planted synthetic identifiers)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from docfactory.core.config import Settings
from docfactory.core.errors import InvalidArgument

#: Targets of the identifiers with check digits (precision and recall).
TARGET = 0.95


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "eval-pii",
        help="precision / recall of French personal-data detection (labelled set)",
        description="Builds the labelled set (real texts of the data folder with planted, "
        "synthetic identifiers), runs the detector, prints precision and recall per type. "
        f"Exit 1 when an identifier with check digits is under {TARGET} precision or recall.",
    )
    e.add_argument("--data", default="../shared/data", help="the shared data folder")
    e.add_argument("--labels", help="committed labels (JSONL) the generated set must match exactly")
    e.add_argument("--write-labels", help="write the generated labels (JSONL) here")
    e.add_argument("--out", help="write the figures as JSON")


def run(ns: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from docfactory.pii import evalset
    from docfactory.pii.detector import default_detector

    data = Path(ns.data)
    if not data.is_dir():
        raise InvalidArgument(f"data folder not found: {data}", reason="DATA_NOT_FOUND")
    samples = evalset.build(data)
    if ns.labels:
        problems = evalset.check_against(samples, Path(ns.labels).read_text(encoding="utf-8"))
        if problems:
            raise InvalidArgument(
                "the generated set differs from the committed labels: " + "; ".join(problems[:5]),
                reason="LABELS_MISMATCH",
            )
    if ns.write_labels:
        Path(ns.write_labels).write_text(evalset.labels_jsonl(samples), encoding="utf-8")
    t0 = time.perf_counter()
    detector = default_detector()
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    found = detector.analyze_many([s.text for s in samples])
    analyse_s = time.perf_counter() - t1
    preds = [[(f.type, f.start, f.end) for f in fs] for fs in found]
    scores = evalset.score(samples, preds)
    chars = sum(len(s.text) for s in samples)
    figures: dict[str, Any] = {
        "samples": len(samples),
        "entities": sum(len(s.labels) for s in samples),
        "characters": chars,
        "spacy_model": detector.model,
        "load_s": round(load_s, 2),
        "analyse_s": round(analyse_s, 2),
        "per_type": {
            t: {
                "gold": s.tp + s.fn,
                "tp": s.tp,
                "fp": s.fp,
                "fn": s.fn,
                "precision": round(s.precision, 4),
                "recall": round(s.recall, 4),
            }
            for t, s in scores.items()
        },
    }
    figures["check_digit_targets_met"] = all(
        scores[t].precision >= TARGET and scores[t].recall >= TARGET
        for t in evalset.CHECK_DIGIT_TYPES
    )
    text = (
        f"{figures['samples']} samples, {figures['entities']} planted entities (synthetic "
        f"values) in real documents, {chars} characters; spaCy {detector.model}, "
        f"load {load_s:.1f} s, analysis {analyse_s:.1f} s\n" + evalset.report(scores)
    )
    return figures, text


async def cmd_eval_pii(ns: argparse.Namespace, settings: Settings) -> int:
    figures, text = await asyncio.to_thread(run, ns)
    print(text)
    met = figures["check_digit_targets_met"]
    print(
        f"identifiers with check digits >= {TARGET} precision and recall: {'yes' if met else 'NO'}"
    )
    if ns.out:
        await asyncio.to_thread(
            Path(ns.out).write_text, json.dumps(figures, indent=2), encoding="utf-8"
        )
    return 0 if met else 1
