#!/usr/bin/env python
"""PII stage cost at ingestion, against work ingestion already does per chunk, same run.

On the labelled French set (real texts of ../shared/data with planted synthetic identifiers,
docfactory.pii.evalset) cut into ~1,000-character chunks:

- baseline: the BM25 sparse encoding every chunk gets at ingestion (lexical analysis);
- detect: Presidio + the French spaCy model + docfactory's recognizers (mask_in_answers);
- redact: detect + Presidio's anonymizer (redact_at_ingest).

Prints characters/s and the ratio to the baseline, the detector's one-time load, and the
per-type precision / recall (as ``docfactory eval-pii``).

    PYTHONPATH=services .venv/bin/python bench/bench_pii.py [--data ../shared/data] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    import docfactory  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from docfactory.core.lexical import SparseEncoder
from docfactory.pii import evalset
from docfactory.pii.detector import PiiDetector


def _chunks(texts: list[str], size: int = 1000) -> list[str]:
    out: list[str] = []
    for t in texts:
        out += [t[i : i + size] for i in range(0, len(t), size)]
    return out


def _best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) if rounds < 3 else statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    data = Path(ns.data)
    if not data.is_dir():
        print(f"data folder not found: {data}", file=sys.stderr)
        return 2
    samples = evalset.build(data)
    chunks = _chunks([s.text for s in samples])
    chars = sum(len(c) for c in chunks)

    t0 = time.perf_counter()
    det = PiiDetector()
    load_s = time.perf_counter() - t0

    det.analyze_many(chunks[:10])  # warm-up: regex compilation, first spaCy batch
    sparse = SparseEncoder()
    base_s = _best(lambda: [sparse.encode_document(c, "fr") for c in chunks], ns.rounds)
    detect_s = _best(lambda: det.analyze_many(chunks), ns.rounds)

    def redact() -> None:
        for c, fs in zip(chunks, det.analyze_many(chunks), strict=True):
            det.replace(c, fs)

    redact_s = _best(redact, ns.rounds)
    print(
        f"{len(chunks)} chunks, {chars} characters; spaCy {det.model}; detector load {load_s:.1f} s"
    )
    print(f"{'stage':<22}{'s':>8}{'chars/s':>12}{'x baseline':>12}")
    for name, s in (
        ("baseline (BM25 encode)", base_s),
        ("detect", detect_s),
        ("detect + redact", redact_s),
    ):
        print(f"{name:<22}{s:>8.2f}{chars / s:>12.0f}{s / base_s:>12.1f}")
    preds = [
        [(f.type, f.start, f.end) for f in fs] for fs in det.analyze_many([s.text for s in samples])
    ]
    print(evalset.report(evalset.score(samples, preds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
