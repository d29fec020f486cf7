"""Features of the answer units of retrieved passages, and the learned ranker that scores them.

:func:`unit_features` describes every answer unit (sentence or list item) of the passages by
what it shares with the question and where it sits: its BM25 score over the analysed terms
(IDF over the units of the retrieved passages), the share of the question's term weight it
matches (alone, with its headings, with its neighbours; the whole passage), the score of its
headings and of the sentences around it (and whether it follows the passage's best match), the
passage's retrieval rank and its own score, the unit's position and length, the kind
of answer the question asks for (date, number, name) and whether the unit holds one, the
question words it shares as written (the longest shared run of words, words sharing a prefix:
French morphology the stemmer misses), how close together its matches are, and the names and
numbers it holds that the question does not (an answer brings something new).

:class:`Ranker` turns them into a probability that the unit holds the answer: a logistic
regression, ``sigmoid(w . standardised(x) + b)``, evaluated with numpy from the table in
``sentence_ranker_table.py`` (feature names, means, scales, weights). The table is fitted by
``bench/fit_sentence_ranker.py`` on the questions of PIAF v1.0 (French Wikipedia, SQuAD
layout) whose article is not held out (``bench/answer_replay.py``: an article is held out when
the first byte of the SHA-256 of its title is 0 modulo 4); the label of a unit is whether it
holds one of the question's gold answers. Only numbers are shipped, no text of the dataset.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["FEATURES", "Ranker", "default_ranker", "surface_words"]

# Order of the feature vector (the table's names must match).
FEATURES: tuple[str, ...] = (
    "own",  # BM25 of the question's analysed terms in the unit
    "own_rel",  # own / best own of all units
    "own_rank",  # 1 / (1 + rank of own among all units)
    "own_prank",  # 1 / (1 + rank of own among the passage's units)
    "coverage",  # share of the question's IDF mass the unit matches alone
    "coverage_head",  # ... with its headings (and list lead)
    "head_rel",  # best heading / lead own score, relative to the best own
    "prev_rel",  # previous answer unit's own score (same passage), relative
    "next_rel",  # next answer unit's own score, relative
    "rank_prior",  # 1 / sqrt(1 + passage retrieval rank)
    "first_passage",  # passage retrieval rank is 0
    "passage_rel",  # passage's best own score / best own of all passages
    "passage_sum_rel",  # sum of the passage's own scores / the best such sum
    "position",  # index of the unit among the passage's answer units, 1 / (1 + i)
    "last",  # last answer unit of the passage
    "log_words",  # log(1 + words)
    "short",  # fewer than 6 words
    "item",  # a list item
    "typed",  # question asks for a type and the unit holds one
    "untyped",  # question asks for a type and the unit does not hold one
    "matched",  # distinct question terms matched / question terms
    "ngram",  # longest run of question words (as written) the unit repeats, / 4, capped at 1
    "prefix",  # question words sharing a 5-letter prefix with a unit word, not matched as terms
    "span",  # matched terms / (1 + span of the shortest window holding them, in words)
    "new_names",  # capitalised words not in the question (0, 1, 2+ -> 0, .5, 1)
    "new_numbers",  # numbers not in the question (0, 1, 2+ -> 0, .5, 1)
    "anaphora",  # opens on a pronoun or connective
    "zero",  # no own match (only through headings or neighbours)
    "passage_coverage",  # share of the question's IDF mass the whole passage matches
    "after_best",  # the unit right after the passage's best-matching unit
    "before_best",  # the unit right before it
    "coverage_near",  # share of the question's IDF mass the unit and its neighbours match
    "rarest",  # the unit holds the question's rarest term
    "bigrams",  # pairs of adjacent question terms adjacent in the unit, / 3, capped at 1
)

_SURFACE = re.compile(r"[^\W_]+", re.UNICODE)
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_CAPS = re.compile(r"(?<=[\s(«\"“'’-])[A-ZÀ-ÖØ-Þ][\w’'-]+")
_STOP = frozenset(
    [
        "le",
        "la",
        "les",
        "un",
        "une",
        "des",
        "du",
        "de",
        "d",
        "l",
        "au",
        "aux",
        "et",
        "ou",
        "en",
        "dans",
        "par",
        "pour",
        "sur",
        "avec",
        "sans",
        "que",
        "qui",
        "quoi",
        "quel",
        "quelle",
        "quels",
        "quelles",
        "est",
        "sont",
        "a",
        "ont",
        "été",
        "etre",
        "être",
        "il",
        "elle",
        "ils",
        "elles",
        "ce",
        "cet",
        "cette",
        "ces",
        "se",
        "sa",
        "son",
        "ses",
        "leur",
        "leurs",
        "ne",
        "pas",
        "plus",
        "comme",
        "y",
        "lors",
        "the",
        "of",
        "a",
        "an",
        "in",
        "on",
        "to",
        "for",
        "by",
        "with",
        "is",
        "are",
        "was",
        "were",
        "what",
        "which",
        "who",
        "whom",
        "when",
        "where",
        "how",
        "why",
        "did",
        "does",
        "do",
    ]
)


def _fold(text: str) -> str:
    nfkd = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in nfkd if not unicodedata.combining(c))


def surface_words(text: str) -> list[str]:
    """Words as written: case and accents folded, letters and digits only."""
    return _SURFACE.findall(_fold(text))


def _longest_run(q: Sequence[str], u: Sequence[str]) -> int:
    """Longest run of consecutive words of ``q`` found consecutively in ``u``, counted in
    content words (stop words inside the run count, a run of stop words alone does not)."""
    if not q or not u:
        return 0
    best = 0
    prev = [0] * (len(u) + 1)
    content = [0] * (len(u) + 1)
    for i in range(1, len(q) + 1):
        cur = [0] * (len(u) + 1)
        cc = [0] * (len(u) + 1)
        for j in range(1, len(u) + 1):
            if q[i - 1] == u[j - 1]:
                cur[j] = prev[j - 1] + 1
                cc[j] = content[j - 1] + (q[i - 1] not in _STOP)
                best = max(best, cc[j])
        prev, content = cur, cc
    return best


def _span(positions: Sequence[Sequence[int]]) -> int:
    """Words spanned by the shortest window holding one position of each list."""
    lists = [sorted(p) for p in positions if p]
    if len(lists) < 2:
        return 0
    events = sorted((pos, k) for k, ps in enumerate(lists) for pos in ps)
    need = len(lists)
    have: Counter[int] = Counter()
    best = math.inf
    left = 0
    for right in range(len(events)):
        have[events[right][1]] += 1
        while len(have) == need:
            best = min(best, events[right][0] - events[left][0])
            k = events[left][1]
            have[k] -= 1
            if not have[k]:
                del have[k]
            left += 1
    return int(best)


@dataclass(frozen=True)
class UnitInput:
    """What the features of one answer unit are computed from (see ``sentences.score_units``)."""

    passage: int  # retrieval rank of its passage
    position: int  # index among the passage's answer units
    last: bool
    text: str
    tokens: Sequence[str]  # analysed terms
    own: float
    coverage: float
    coverage_head: float
    head: float  # best own score of its headings / list lead
    prev: float  # own score of the previous answer unit of the passage (0 if none)
    next: float
    typed: int  # 1: holds the expected type, -1: does not, 0: no type asked
    item: bool
    anaphora: bool
    passage_coverage: float = 0.0
    from_best: int = 99  # position relative to the passage's best-matching unit (99: none)
    coverage_near: float = 0.0
    rarest: bool = False


def unit_features(question: str, q_terms: Sequence[str], units: Sequence[UnitInput]) -> np.ndarray:
    """The ``len(units) x len(FEATURES)`` feature matrix."""
    n = len(units)
    x = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if not n:
        return x
    own = np.array([u.own for u in units])
    best = float(own.max()) or 1.0
    order = np.argsort(-own, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    passages = sorted({u.passage for u in units})
    p_best = {p: max(u.own for u in units if u.passage == p) for p in passages}
    p_sum = {p: sum(u.own for u in units if u.passage == p) for p in passages}
    best_sum = max(p_sum.values()) or 1.0
    p_rank: dict[tuple[int, int], int] = {}
    for p in passages:
        idx = sorted((i for i, u in enumerate(units) if u.passage == p), key=lambda i: -own[i])
        for r, i in enumerate(idx):
            p_rank[(p, i)] = r
    q_words = surface_words(question)
    q_content = [w for w in dict.fromkeys(q_words) if w not in _STOP]
    q_set = set(q_words)
    q_numbers = set(_NUM.findall(question))
    q_terms_set = set(q_terms)
    q_pairs = set(itertools.pairwise(q_terms))
    n_terms = max(1, len(q_terms_set))
    col = {name: k for k, name in enumerate(FEATURES)}
    for i, u in enumerate(units):
        words = surface_words(u.text)
        matched_terms = q_terms_set.intersection(u.tokens)
        positions = [[j for j, t in enumerate(u.tokens) if t == q] for q in matched_terms]
        prefixes = {w[:5] for w in words if len(w) >= 5}
        prefix = sum(1 for w in q_content if len(w) >= 5 and w not in words and w[:5] in prefixes)
        names = {m.group(0).casefold() for m in _CAPS.finditer(" " + u.text)} - q_set
        numbers = set(_NUM.findall(u.text)) - q_numbers
        span = _span(positions)
        row = x[i]
        row[col["own"]] = u.own
        row[col["own_rel"]] = u.own / best
        row[col["own_rank"]] = 1.0 / (1.0 + rank[i])
        row[col["own_prank"]] = 1.0 / (1.0 + p_rank[(u.passage, i)])
        row[col["coverage"]] = u.coverage
        row[col["coverage_head"]] = u.coverage_head
        row[col["head_rel"]] = u.head / best
        row[col["prev_rel"]] = u.prev / best
        row[col["next_rel"]] = u.next / best
        row[col["rank_prior"]] = 1.0 / math.sqrt(1.0 + u.passage)
        row[col["first_passage"]] = float(u.passage == 0)
        row[col["passage_rel"]] = p_best[u.passage] / best
        row[col["passage_sum_rel"]] = p_sum[u.passage] / best_sum
        row[col["position"]] = 1.0 / (1.0 + u.position)
        row[col["last"]] = float(u.last)
        row[col["log_words"]] = math.log1p(len(words))
        row[col["short"]] = float(len(words) < 6)
        row[col["item"]] = float(u.item)
        row[col["typed"]] = float(u.typed > 0)
        row[col["untyped"]] = float(u.typed < 0)
        row[col["matched"]] = len(matched_terms) / n_terms
        row[col["ngram"]] = min(1.0, _longest_run(q_words, words) / 4.0)
        row[col["prefix"]] = prefix / max(1, len(q_content))
        row[col["span"]] = (len(matched_terms) / (1.0 + span)) if len(matched_terms) > 1 else 0.0
        row[col["new_names"]] = min(len(names), 2) / 2.0
        row[col["new_numbers"]] = min(len(numbers), 2) / 2.0
        row[col["anaphora"]] = float(u.anaphora)
        row[col["zero"]] = float(u.own <= 0)
        row[col["passage_coverage"]] = u.passage_coverage
        row[col["after_best"]] = float(u.from_best == 1)
        row[col["before_best"]] = float(u.from_best == -1)
        row[col["coverage_near"]] = u.coverage_near
        row[col["rarest"]] = float(u.rarest)
        pairs = set(itertools.pairwise(u.tokens))
        row[col["bigrams"]] = min(1.0, sum(1 for pr in q_pairs if pr in pairs) / 3.0)
    return x


@dataclass(frozen=True)
class Ranker:
    """A logistic regression over standardised features (see the module's documentation)."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def from_table(cls, table: dict[str, object]) -> Ranker:
        names = tuple(str(n) for n in table["features"])  # type: ignore[attr-defined]
        if names != FEATURES:
            raise ValueError("sentence ranker table does not match the features computed")
        return cls(
            names,
            np.asarray(table["mean"], dtype=np.float64),
            np.asarray(table["scale"], dtype=np.float64),
            np.asarray(table["weights"], dtype=np.float64),
            float(table["bias"]),  # type: ignore[arg-type]
        )

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0)
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return out


@lru_cache(maxsize=1)
def default_ranker() -> Ranker:
    """The shipped table (``sentence_ranker_table.py`` beside this module)."""
    from docfactory.answering.sentence_ranker_table import TABLE

    return Ranker.from_table(TABLE)
