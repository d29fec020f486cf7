"""Retrieval metrics (BEIR / trec_eval conventions) and SQuAD answer metrics.

Retrieval, for one query with graded ``qrels`` (document id -> grade; grade > 0 is relevant)
and a ranked list of retrieved document ids:

- ``recall@k`` = |relevant in top k| / |relevant| (BEIR's recall; for one relevant document it
  is the hit rate);
- ``MRR@k`` = 1 / rank of the first relevant document within the top k, else 0;
- ``nDCG@k`` = DCG@k / IDCG@k with linear gains ``grade / log2(rank + 1)`` (trec_eval's
  ``ndcg_cut``, which BEIR reports), IDCG from the qrels sorted by grade.

A ranked list may repeat a document (several passages of one document): only its first
occurrence counts, later ones are ignored, as if removed from the list.

Answers (SQuAD v1.1 evaluation script, with a French variant of the normalisation): lower-case,
strip accents (French) and punctuation, drop articles (English ``a an the``; French ``le la les
l' un une des du de d'``), collapse whitespace; exact match and token F1 against each gold
answer, best over the gold answers.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "exact_match",
    "f1_score",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "percentile",
    "recall_at_k",
]


def _dedup(ranked: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for d in ranked:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, g in qrels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_dedup(ranked)[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    for rank, d in enumerate(_dedup(ranked)[:k], 1):
        if qrels.get(d, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    dcg = sum(
        qrels.get(d, 0) / math.log2(rank + 1)
        for rank, d in enumerate(_dedup(ranked)[:k], 1)
        if qrels.get(d, 0) > 0
    )
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    return dcg / idcg if idcg > 0 else 0.0


def percentile(values: Iterable[float], q: float) -> float:
    """``q``-th percentile (0-100), linear interpolation between closest ranks (numpy's
    default); 0.0 for no values."""
    data = sorted(values)
    if not data:
        return 0.0
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------
# SQuAD answer metrics.
# --------------------------------------------------------------------------------------

_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")
# After lower-casing and accent stripping; "l'" and "d'" are matched before punctuation goes.
_FR_ELIDED = re.compile(r"\b(l|d)['\u2019]")
_FR_ARTICLES = re.compile(r"\b(le|la|les|un|une|des|du|de)\b")
_PUNCT = frozenset(string.punctuation) | {"«", "»", "\u2019", "\u2018", "\u201c", "\u201d", "…"}


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def normalize_answer(text: str, language: str = "fr") -> str:
    """SQuAD normalisation; ``language="fr"`` also strips accents and French articles."""
    s = text.lower()
    if language == "fr":
        s = _strip_accents(s)
        s = _FR_ELIDED.sub(" ", s)
    s = "".join(" " if c in _PUNCT else c for c in s)
    s = _FR_ARTICLES.sub(" ", s) if language == "fr" else _EN_ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, golds: Sequence[str], language: str = "fr") -> float:
    pred = normalize_answer(prediction, language)
    return float(any(pred == normalize_answer(g, language) for g in golds))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Sequence[str], language: str = "fr") -> float:
    pred = normalize_answer(prediction, language).split()
    return max((_f1(pred, normalize_answer(g, language).split()) for g in golds), default=0.0)
