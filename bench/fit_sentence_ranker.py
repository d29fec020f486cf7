"""Fit the sentence ranker (:mod:`docfactory.answering.sentence_ranker`) on a dump of
``bench/answer_replay.py``: a logistic regression (scikit-learn, only here: the service
evaluates the shipped table with numpy) on the answer units of the retrieved passages of the
questions whose article is not held out; label: the unit holds a gold answer.

    nice -n 10 .venv/bin/python bench/fit_sentence_ranker.py --dump /tmp/h19dump.pkl \\
        --write services/docfactory/answering/sentence_ranker_table.py

Prints the share of questions whose best-scored unit (and best three) hold the answer, on the
training and on the held-out articles.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_replay import heldout_article, load

from docfactory.answering.sentence_ranker import FEATURES
from docfactory.answering.sentences import split_units, unit_matrix
from docfactory.evaluation.metrics import normalize_answer


def matrix(dump: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels, question index and held-out flag of every answer unit."""
    xs, ys, qs, hs = [], [], [], []
    for qi, r in enumerate(load(dump)):
        if not r.passages:
            continue
        passages = [split_units(t, h) for t, h in r.passages]
        inputs, x = unit_matrix(r.question, passages, r.language)
        golds = [f" {normalize_answer(g, r.language)} " for g in r.golds]
        for (_, u, _), row in zip(inputs, x, strict=True):
            text = f" {normalize_answer(u.text, r.language)} "
            xs.append(row)
            ys.append(float(any(g in text for g in golds)))
            qs.append(qi)
            hs.append(heldout_article(r.title))
    return np.array(xs), np.array(ys), np.array(qs), np.array(hs, dtype=bool)


def hit_rates(p: np.ndarray, y: np.ndarray, q: np.ndarray, ks=(1, 2, 3)) -> dict[str, float]:
    out = {f"top{k}": 0.0 for k in ks}
    questions = np.unique(q)
    for qi in questions:
        m = q == qi
        order = np.argsort(-p[m], kind="stable")
        ym = y[m][order]
        for k in ks:
            out[f"top{k}"] += float(ym[:k].any())
    return {k: round(v / max(1, len(questions)), 4) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--features", default="/tmp/h19features.npz", help="cache of the matrix")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--write", help="write the fitted table (a Python module)")
    ns = ap.parse_args()
    from sklearn.linear_model import LogisticRegression

    cache = Path(ns.features)
    if cache.exists() and not ns.rebuild:
        d = np.load(cache)
        x, y, q, h = d["x"], d["y"], d["q"], d["h"]
    else:
        x, y, q, h = matrix(ns.dump)
        np.savez(cache, x=x, y=y, q=q, h=h)
    mean = x[~h].mean(axis=0)
    scale = x[~h].std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    model = LogisticRegression(C=ns.C, max_iter=2000)
    model.fit(z[~h], y[~h])
    p = model.predict_proba(z)[:, 1]
    own = x[:, FEATURES.index("own")]
    print("units", len(y), "positive", int(y.sum()), "questions", len(np.unique(q)))
    print("oracle (some unit holds the answer): train", hit_rates(y, y, q, (99,)))
    for name, m in (("train", ~h), ("heldout", h)):
        print(name, "bm25", hit_rates(own[m], y[m], q[m]), "ranker", hit_rates(p[m], y[m], q[m]))
    for f, w in sorted(zip(FEATURES, model.coef_[0], strict=True), key=lambda t: -abs(t[1])):
        print(f"  {f:16s} {w:+.3f}")
    if ns.write:
        table = {
            "model": "logistic regression on standardised features",
            "fitted_on": "PIAF v1.0, articles not held out (answer_replay.heldout_article)",
            "units_of": "hybrid retrieval, top 5 passages",
            "label": "the unit holds a gold answer",
            "units": int((~h).sum()),
            "C": ns.C,
            "features": list(FEATURES),
            "mean": [round(float(v), 6) for v in mean],
            "scale": [round(float(v), 6) for v in scale],
            "weights": [round(float(v), 6) for v in model.coef_[0]],
            "bias": round(float(model.intercept_[0]), 6),
        }
        Path(ns.write).write_text(
            '"""The sentence ranker\'s table, written by bench/fit_sentence_ranker.py: do not '
            'edit."""\n\nfrom typing import Any\n\nTABLE: dict[str, Any] = '
            + json.dumps(table, indent=1)
            + "\n",
            encoding="utf-8",
        )
        print("->", ns.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
