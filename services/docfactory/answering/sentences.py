"""Sentence-level answer selection inside retrieved passages.

The extractive answer (no generative model) quotes the sentences that answer, not the passage
openings nor its headings; the generative path sends the passages in the same order (the most
answer-bearing first). Three steps:

1. ``split_units``: a passage becomes reading units in order. Lines are classified first:
   *headings* (upper-case lines, Markdown ``#`` lines, the passage's section headings, a first
   line without final punctuation followed by more text: a title) and *questions* (a line that
   ends with ``?``: an FAQ heading or the title of a guide) are context, never answers. The
   other lines form paragraphs (a line without final punctuation continues on the next one:
   wrapped PDF lines, infographic fragments), split into sentences by French and English rules:
   a boundary is ``.``, ``!``, ``?`` or ``…`` followed by space and a capital, a digit or an
   opening quote, except after an abbreviation (``M.``, ``art.``, ``cf.``, ``n°``, ``e.g.``...),
   an initial (``J. Dupont``) or a list number (``1.``). List items (``-``, ``•``, ``1°``,
   ``a)``...) are units of their own, tied to the line that introduces them (``...:``).
2. ``score_units``: each answer unit gets the probability that it holds the answer, from a
   learned ranker (:mod:`docfactory.answering.sentence_ranker`: a logistic regression shipped
   as a table of weights, evaluated with numpy) over features of the unit: the BM25 score of
   the question's analysed terms (``docfactory.core.lexical``; IDF and length normalisation
   over the units of the retrieved passages) and its rank, the share of the question's terms
   it matches (alone, with its headings, with its neighbours), the score of the headings above
   it and of the sentences around it (the answer often follows the sentence that restates the
   question), the passage's retrieval rank, the unit's position and length, whether it holds
   the kind of answer the question asks for (a date for "quand", a number for "combien", a
   name for "qui"), the longest run of question words it repeats, how close together its
   matches are, the names and numbers it brings that the question does not hold.
3. ``select``: the best unit, then up to two more while they score close to it (the ranker
   is not sure which one answers), within a word budget; each with the minimum context to read
   correctly (the line that introduces a list item, the sentence before one that opens on a
   pronoun or a connective). A unit that shares no term with the question is quotable only
   when the sentence before it does. Nothing is quoted when no unit shares enough of the
   question's terms: the caller says the context is insufficient.

Quotes are verbatim (whitespace collapsed, line breaks inside a paragraph shown as `` / ``
when the lines are separate labels); units of one passage that are not adjacent are joined
with `` […] ``; a unit longer than ``unit_words`` (a table, unpunctuated text) is cut to the
words around its matches, the cuts shown as ``…``.

Measured on PIAF (all questions, hybrid retrieval, ``docfactory eval --answers``; figures in the
README). The ranker's weights are fitted on the questions of three articles in four (a stable
hash of the article's title, ``bench/answer_replay.py``) and the quoting settings of
:class:`SelectionConfig` chosen on the same articles; on the held-out articles it puts the
answering sentence first for 52.9% of questions (the hand-tuned score it replaces: 51.7%,
BM25 alone 46.8%), among the best two for 65.6% (62.9%), among the best three for 71.6%
(69.2%); the gold answer is inside the quotes of 64.7% of the held-out questions at a median
of 60 quoted words. A gradient-boosted model on the same features ranked no better on held-out
articles. The question/sentence cosine of the default embedding model (USE v3 multilingual)
as a further feature adds about 2 points (52.9% -> 55.3% first, 65.6% -> 68.0% best two) but
needs the embedding model in the answer path: not used.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from docfactory.answering.sentence_ranker import Ranker, UnitInput, default_ranker, unit_features
from docfactory.core.lexical import get_analyzer

__all__ = [
    "Selection",
    "SelectionConfig",
    "Unit",
    "order_passages",
    "select",
    "split_sentences",
    "split_units",
]

HEADING = "heading"
QUESTION = "question"
SENTENCE = "sentence"
ITEM = "item"

# Abbreviations after which a period does not end a sentence (lower-cased, without the dot).
_ABBREVIATIONS = frozenset(
    [
        "m",
        "mm",
        "mme",
        "mmes",
        "mlle",
        "mlles",
        "dr",
        "pr",
        "prof",
        "st",
        "ste",
        "sts",
        "stes",
        "mgr",
        "art",
        "arts",
        "al",
        "cf",
        "ch",
        "chap",
        "p",
        "pp",
        "vol",
        "no",
        "nos",
        "n°",
        "ex",
        "env",
        "etc",
        "éd",
        "coll",
        "fig",
        "tab",
        "av",
        "bd",
        "boul",
        "fg",
        "sq",
        "sqq",
        "op",
        "cit",
        "ibid",
        "trad",
        "resp",
        "approx",
        "janv",
        "fév",
        "févr",
        "avr",
        "juil",
        "oct",
        "nov",
        "déc",
        "mr",
        "mrs",
        "ms",
        "jr",
        "sr",
        "inc",
        "ltd",
        "corp",
        "vs",
        "viz",
        "e.g",
        "i.e",
        "jan",
        "feb",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "dec",
        "dept",
        "u.s",
        "u.k",
    ]
)
_LIST_MARKER = re.compile(
    r"^\s*(?:[-–—•▪◦●○*·>]|\d{1,3}[°º)]|\d{1,3}\.(?=\s)|[a-zA-Z][).](?=\s)|[ivxIVX]{1,4}[).](?=\s))\s*"
)
_FINAL = ".!?…;:"
_BOUNDARY = re.compile(r"([.!?…]+)([\"»”’)\]]*)(\s+)(?=[\"«“(\[]?\s*[A-ZÀ-ÖØ-Þ0-9])")
_WORD = re.compile(r"\S+")
_LETTERS = re.compile(r"[^\W\d_]")
# A sentence that opens on one of these needs the one before it to be read correctly.
_ANAPHORA = re.compile(
    r"^(?:il|elle|ils|elles|ce|cet|cette|ces|cela|ceci|celui-ci|celle-ci|ceux-ci|celles-ci|"
    r"en outre|de plus|toutefois|cependant|néanmoins|ainsi|dans ce cas|dans ce cadre|"
    r"à cet effet|à défaut|sinon|par ailleurs|en revanche|en effet|"
    r"it|its|they|their|this|these|those|that|he|she|his|her|however|moreover|"
    r"furthermore|therefore|in this case|otherwise)\b",
    re.IGNORECASE,
)


_PRONOUN = re.compile(r"\b(?:il|elle|ils|elles|he|she|they|it)\b", re.IGNORECASE)


def _needs_previous(text: str) -> bool:
    """A sentence that opens on a connective or a pronoun (``Il ...``, ``Dès 1987, il ...``)
    is read with the sentence before it."""
    if _ANAPHORA.match(text):
        return True
    return bool(_PRONOUN.search(" ".join(text.split()[:5])))


@dataclass(frozen=True)
class Unit:
    """One reading unit of a passage: a sentence, a list item, a heading or a question."""

    text: str  # verbatim, whitespace collapsed
    kind: str  # HEADING | QUESTION | SENTENCE | ITEM
    index: int  # reading order in the passage
    paragraph: int  # units of one paragraph share it; headings have their own
    headings: tuple[int, ...] = ()  # indexes of the headings and questions above it
    lead: int = -1  # ITEM: index of the line that introduces the list, else -1

    @property
    def answer(self) -> bool:
        return self.kind in (SENTENCE, ITEM)

    @property
    def words(self) -> int:
        return len(_WORD.findall(self.text))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _is_upper_line(line: str) -> bool:
    letters = _LETTERS.findall(line)
    if len(letters) < 3:
        return False
    upper = sum(1 for c in letters if c.isupper())
    return upper / len(letters) >= 0.85


def _ends_final(line: str) -> bool:
    stripped = line.rstrip(' "»”’)]*')
    return bool(stripped) and stripped[-1] in _FINAL


def _abbreviation_before(text: str, end: int) -> bool:
    """Whether the period ending at ``end`` (exclusive) closes an abbreviation or initial."""
    start = end
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in '(«"“':
        start -= 1
    token = text[start:end].rstrip(".")
    if not token:
        return False
    low = token.lower()
    if low in _ABBREVIATIONS or low.replace(".", "") in _ABBREVIATIONS:
        return True
    if len(token) == 1 and token.isalpha():
        return True  # an initial (J. Dupont) or a list letter
    if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]?", token):
        return True  # e.g. U.S.A. / i.e
    return bool(re.fullmatch(r"\d{1,3}", token)) and start == 0  # "1. ..." at line start


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (French and English rules), verbatim, whitespace collapsed."""
    text = _collapse(text)
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        punct_end = m.end(1)
        if m.group(1) == "." and _abbreviation_before(text, punct_end - 1):
            continue
        piece = text[start : m.end(2)].strip()
        if piece:
            out.append(piece)
        start = m.end(3)
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return out


def _is_heading_line(line: str, first: bool, more: bool, section_headings: frozenset[str]) -> bool:
    if line.startswith("#"):
        return True
    if _collapse(line).casefold() in section_headings:
        return True
    words = len(line.split())
    if _is_upper_line(line) and words <= 20:
        return True
    return first and more and not _ends_final(line) and words <= 15 and not _LIST_MARKER.match(line)


def split_units(text: str, section_headings: Sequence[str] = ()) -> list[Unit]:
    """The passage's reading units in order (see the module's documentation)."""
    known = frozenset(_collapse(h).casefold() for h in section_headings if h.strip())
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    units: list[Unit] = []
    headings: list[int] = []  # current heading stack (indexes of units)
    paragraph = -1
    buffer: list[str] = []
    lead = -1  # the unit introducing the current list

    def flush() -> None:
        nonlocal paragraph, lead
        if not buffer:
            return
        paragraph += 1
        joined = buffer[0]
        for prev, line in itertools.pairwise(buffer):
            soft = line[:1].islower() or prev.endswith((",", "-", "–")) or not line[:1].isalpha()
            joined += (" " if soft or _ends_final(prev) else " / ") + line
        buffer.clear()
        for sentence in split_sentences(joined):
            kind = QUESTION if sentence.rstrip(' "»”’)').endswith("?") else SENTENCE
            units.append(Unit(sentence, kind, len(units), paragraph, tuple(headings)))
        last = units[-1] if units else None
        lead = last.index if last is not None and last.text.endswith(":") else -1

    for i, line in enumerate(lines):
        if _is_heading_line(line, i == 0, i + 1 < len(lines), known) or (
            line.rstrip(' "»”’)').endswith("?") and not buffer
        ):
            flush()
            paragraph += 1
            kind = QUESTION if line.rstrip().endswith("?") else HEADING
            text_ = _collapse(line.lstrip("#").strip())
            units.append(Unit(text_, kind, len(units), paragraph, tuple(headings)))
            headings = [*headings[-2:], len(units) - 1]
            lead = -1
            continue
        if _LIST_MARKER.match(line) and not re.match(r"^\d{1,3}\.\d", line):
            flush()
            paragraph += 1
            units.append(Unit(_collapse(line), ITEM, len(units), paragraph, tuple(headings), lead))
            continue
        buffer.append(line)
        if _ends_final(line):
            flush()
    flush()
    return units


# ------------------------------------------------------------------------------------------
# Scoring and selection
# ------------------------------------------------------------------------------------------

_MONTHS = (
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|"
    "décembre|decembre|january|february|march|april|may|june|july|august|september|october|"
    "november|december"
)
_NUMBER_WORDS = (
    "un|une|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|onze|douze|vingt|trente|quarante|"
    "cinquante|soixante|cent|cents|mille|million|millions|milliard|milliards|moitié|tiers|"
    "quart|one|two|three|four|five|ten|twelve|twenty|hundred|thousand|half|dozen|"
    "billion|billions"
)
# Expected answer type of a question (its first words) -> what a sentence must hold to answer
# it: a date, a number, a name (a capitalised word that is not in the question).
_ANSWER_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b(?:quand|depuis quand|jusqu'à quand|en quelle (?:année|annee|date)|"
            r"(?:à|a|en|de) quelle (?:date|époque|epoque|période|periode|année|annee)|"
            r"en quel (?:siècle|siecle|mois|an)|quelle année|when|what year|which year|"
            r"what date)\b",
            re.IGNORECASE,
        ),
        "date",
    ),
    (
        re.compile(
            r"\b(?:combien|quel (?:nombre|pourcentage|âge|age|montant)|quelle (?:proportion|"
            r"somme|superficie|population|taille|distance|durée|duree|part|hauteur|longueur)|"
            r"how (?:many|much|long|old|far)|what (?:percentage|number|proportion))\b",
            re.IGNORECASE,
        ),
        "number",
    ),
    (
        re.compile(
            r"(?:^|[\s,])(?:qui|à qui|a qui|avec qui|par qui|contre qui|pour qui|de qui|who|"
            r"whom|whose)\b(?! (?:est-ce|a permis))",
            re.IGNORECASE,
        ),
        "name",
    ),
    (
        re.compile(
            r"\b(?:où|dans quel(?:le)? (?:pays|ville|région|region|lieu|continent|département)|"
            r"where|which (?:country|city))\b",
            re.IGNORECASE,
        ),
        "name",
    ),
)
_YEAR = re.compile(
    r"\b(?:1\d{3}|20\d{2}|\d{1,2}e siècle|[IVX]+e siècle)\b|\b(?:" + _MONTHS + r")\b", re.I
)
_NUMBER = re.compile(r"\d|\b(?:" + _NUMBER_WORDS + r")\b", re.IGNORECASE)
_CAPITALISED = re.compile(r"(?<=[\s(«\"“'’-])[A-ZÀ-ÖØ-Þ][\w’'-]+")


def answer_type(question: str) -> str:
    """``date``, ``number``, ``name`` or ``""`` from the question's wording (fr/en)."""
    q = question.strip()
    if re.match(r"(?i)^(?:qu'est[- ]ce qui|qu’est[- ]ce qui)", q):
        return ""
    for pattern, kind in _ANSWER_TYPES:
        if pattern.search(q):
            return kind
    return ""


def has_answer_type(text: str, kind: str, question: str) -> bool:
    if kind == "date":
        return bool(_YEAR.search(text))
    if kind == "number":
        return bool(_NUMBER.search(text))
    if kind == "name":
        asked = {w.casefold() for w in re.findall(r"[\w’'-]+", question)}
        return any(m.group(0).casefold() not in asked for m in _CAPITALISED.finditer(" " + text))
    return True


@dataclass(frozen=True)
class SelectionConfig:
    # Quoted: the best unit, then the next best (at most ``max_units``) while they score
    # >= ``close`` x the best and >= ``min_extra`` (the ranker is not sure which one answers),
    # within ``max_words`` (a longer unit is cut around its matches to ``unit_words``), plus
    # up to ``context_words`` of context (the line that introduces a list item, the sentence
    # before one that opens on a pronoun or a connective). Chosen on PIAF's training articles
    # (``bench/answer_replay.py tune``) for a median of at most 60 quoted words.
    max_units: int = 3
    max_words: int = 130
    unit_words: int = 80
    close: float = 0.2
    min_extra: float = 0.1
    context_words: int = 30
    min_coverage: float = 0.1  # share of the question's term weight the best unit must match
    # Share of the previous sentence's own score a sentence gets: a sentence matching nothing
    # is quotable when the one before it matches (the answer often follows the sentence that
    # restates the question: "X was founded in ... . It became ...").
    follow_share: float = 0.3
    k1: float = 1.2
    b: float = 0.5


@dataclass(frozen=True)
class Scored:
    passage: int  # position of the passage in the input
    unit: Unit
    score: float
    coverage: float  # share of the question's IDF mass the unit (with its headings) matches
    own: float  # the unit's own lexical score (without headings and prior)
    support: float = 0.0  # own score + the share of the previous sentence's (> 0: quotable)


@dataclass
class Selection:
    """Chosen quotes: passage position -> verbatim quote, in the order to show them."""

    quotes: list[tuple[int, str]] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)
    passage_order: list[int] = field(default_factory=list)  # most answer-bearing first

    @property
    def insufficient(self) -> bool:
        return not self.quotes


class _Bm25:
    def __init__(self, docs: Sequence[Sequence[str]], k1: float, b: float) -> None:
        self.n = len(docs)
        self.df: Counter[str] = Counter()
        for d in docs:
            self.df.update(set(d))
        self.avg = max(1.0, sum(len(d) for d in docs) / max(1, self.n))
        self.k1, self.b = k1, b

    def idf(self, term: str) -> float:
        n = self.df.get(term, 0)
        return math.log(1.0 + (self.n - n + 0.5) / (n + 0.5))

    def score(self, q_terms: Sequence[str], doc: Sequence[str]) -> float:
        tf = Counter(doc)
        norm = self.k1 * (1 - self.b + self.b * len(doc) / self.avg)
        s = 0.0
        for t in q_terms:
            f = tf.get(t, 0)
            if f:
                s += self.idf(t) * f * (self.k1 + 1) / (f + norm)
        return s


def _unit_inputs(
    question: str,
    passages: Sequence[Sequence[Unit]],
    language: str,
    cfg: SelectionConfig,
) -> tuple[list[str], list[tuple[int, Unit, UnitInput]]]:
    """The question's analysed terms and, for every answer unit, what its features are
    computed from (:mod:`docfactory.answering.sentence_ranker`)."""
    analyzer = get_analyzer(language if language in ("fr", "en") else "fr")
    q_terms = list(dict.fromkeys(analyzer.tokens(question)))
    tokens = [[analyzer.tokens(u.text) for u in units] for units in passages]
    bm25 = _Bm25([t for ts in tokens for t in ts], cfg.k1, cfg.b)
    q_mass = sum(bm25.idf(t) for t in q_terms) or 1.0
    kind = answer_type(question)
    out: list[tuple[int, Unit, UnitInput]] = []
    for pi, (units, toks) in enumerate(zip(passages, tokens, strict=True)):
        own = [bm25.score(q_terms, t) for t in toks]
        answers = [u.index for u in units if u.answer]
        in_passage = {x for ts in toks for x in ts}
        passage_cov = sum(bm25.idf(q) for q in q_terms if q in in_passage) / q_mass
        best_k = max(range(len(answers)), key=lambda k: own[answers[k]], default=-1)
        if best_k >= 0 and own[answers[best_k]] <= 0:
            best_k = -1
        for k, i in enumerate(answers):
            u, t = units[i], toks[i]
            head = max((own[h] for h in u.headings), default=0.0)
            if u.lead >= 0:
                head = max(head, own[u.lead])
            mine = set(t)
            matched = set(mine)
            for h in u.headings:
                matched |= set(toks[h])
            typed = 0
            if kind:
                typed = 1 if has_answer_type(u.text, kind, question) else -1
            prev = own[answers[k - 1]] if k > 0 and answers[k - 1] == i - 1 else 0.0
            nxt = own[answers[k + 1]] if k + 1 < len(answers) and answers[k + 1] == i + 1 else 0.0
            near = set(t)
            if k > 0:
                near |= set(toks[answers[k - 1]])
            if k + 1 < len(answers):
                near |= set(toks[answers[k + 1]])
            out.append(
                (
                    pi,
                    u,
                    UnitInput(
                        passage=pi,
                        position=k,
                        last=k == len(answers) - 1,
                        text=u.text,
                        tokens=t,
                        own=own[i],
                        coverage=sum(bm25.idf(q) for q in q_terms if q in mine) / q_mass,
                        coverage_head=sum(bm25.idf(q) for q in q_terms if q in matched) / q_mass,
                        head=head,
                        prev=prev,
                        next=nxt,
                        typed=typed,
                        item=u.kind == ITEM,
                        anaphora=u.kind == SENTENCE and _needs_previous(u.text),
                        passage_coverage=passage_cov,
                        from_best=k - best_k if best_k >= 0 else 99,
                        coverage_near=sum(bm25.idf(q) for q in q_terms if q in near) / q_mass,
                        rarest=bool(q_terms) and max(q_terms, key=bm25.idf) in mine,
                    ),
                )
            )
    return q_terms, out


def unit_matrix(
    question: str,
    passages: Sequence[Sequence[Unit]],
    language: str,
    cfg: SelectionConfig = SelectionConfig(),
) -> tuple[list[tuple[int, Unit, UnitInput]], np.ndarray]:
    """Every answer unit of every passage with its feature vector (in the same order)."""
    q_terms, inputs = _unit_inputs(question, passages, language, cfg)
    return inputs, unit_features(question, q_terms, [i for _, _, i in inputs])


def score_units(
    question: str,
    passages: Sequence[Sequence[Unit]],
    language: str,
    cfg: SelectionConfig = SelectionConfig(),
    ranker: Ranker | None = None,
) -> list[Scored]:
    """Every answer unit of every passage, best first: ``score`` is the ranker's probability
    that the unit holds the answer."""
    inputs, x = unit_matrix(question, passages, language, cfg)
    probs = (ranker or default_ranker()).probabilities(x)
    out: list[Scored] = []
    for (pi, u, inp), p in zip(inputs, probs, strict=True):
        support = inp.own + cfg.follow_share * inp.prev
        out.append(Scored(pi, u, float(p), inp.coverage_head, inp.own, support))
    out.sort(key=lambda o: (-o.score, o.passage, o.unit.index))
    return out


def _with_context(units: Sequence[Unit], chosen: set[int], budget: int) -> set[int]:
    """Add the minimum context for the chosen units to read correctly, within ``budget``
    extra words: the line that introduces a list item, the sentence before one that opens on
    a pronoun or connective (same paragraph)."""
    extra: set[int] = set()
    for i in sorted(chosen):
        u = units[i]
        need = -1
        if u.kind == ITEM and u.lead >= 0:
            need = u.lead
        elif u.kind == SENTENCE and _needs_previous(u.text) and i > 0:
            prev = units[i - 1]
            if prev.paragraph == u.paragraph and prev.answer:
                need = i - 1
        if need >= 0 and need not in chosen and need not in extra:
            w = units[need].words
            if w <= budget:
                extra.add(need)
                budget -= w
    return chosen | extra


def _window(text: str, q_terms: set[str], language: str, size: int) -> str:
    """A unit longer than ``size`` words (a table row, unpunctuated text) cut to the
    ``size`` consecutive words holding the most question terms, cuts shown as ``…``."""
    words = text.split()
    if len(words) <= size:
        return text
    analyzer = get_analyzer(language if language in ("fr", "en") else "fr")
    hits = [1 if q_terms & set(analyzer.tokens(w)) else 0 for w in words]
    counts, current = [], sum(hits[:size])
    for i in range(len(words) - size + 1):
        if i:
            current += hits[i + size - 1] - hits[i - 1]
        counts.append(current)
    best = max(counts)
    starts = [i for i, c in enumerate(counts) if c == best]
    start = starts[len(starts) // 2]  # the matches in the middle of the window
    out = " ".join(words[start : start + size])
    return ("… " if start else "") + out + (" …" if start + size < len(words) else "")


def _render(
    units: Sequence[Unit], indexes: set[int], q_terms: set[str], language: str, size: int
) -> str:
    parts: list[str] = []
    prev = -2
    for i in sorted(indexes):
        if parts and i != prev + 1:
            parts.append("[…]")
        parts.append(_window(units[i].text, q_terms, language, size))
        prev = i
    return " ".join(parts)


def select(
    question: str,
    texts: Sequence[str],
    language: str,
    *,
    headings: Sequence[Sequence[str]] = (),
    cfg: SelectionConfig = SelectionConfig(),
    ranker: Ranker | None = None,
) -> Selection:
    """The sentences to quote from ``texts`` (retrieved passages, best first)."""
    passages = [
        split_units(t, headings[i] if i < len(headings) else ()) for i, t in enumerate(texts)
    ]
    scored = score_units(question, passages, language, cfg, ranker)
    return pick(question, passages, scored, language, cfg)


def pick(
    question: str,
    passages: Sequence[Sequence[Unit]],
    scored: Sequence[Scored],
    language: str,
    cfg: SelectionConfig = SelectionConfig(),
) -> Selection:
    """The quotes from units already scored (:func:`score_units`)."""
    sel = Selection(scored=list(scored))
    seen: list[int] = []
    for s in scored:
        if s.support > 0 and s.passage not in seen:
            seen.append(s.passage)
    sel.passage_order = seen + [i for i in range(len(passages)) if i not in seen]
    if not scored:
        return sel
    # The question must be supported: some sentence that matches the question's terms itself
    # (not only through the sentence before it) covers enough of them with its headings.
    if max((s.coverage for s in scored if s.own > 0), default=0.0) < cfg.min_coverage:
        return sel
    analyzer = get_analyzer(language if language in ("fr", "en") else "fr")
    q_terms = set(analyzer.tokens(question))
    picked: list[Scored] = []
    words = 0
    best = 0.0  # score of the first quoted unit
    for s in scored:
        if len(picked) >= cfg.max_units:
            break
        if picked and (s.score < cfg.close * best or s.score < cfg.min_extra):
            break
        if s.support <= 0:
            continue  # shares nothing with the question, nor does the sentence before it
        cost = min(s.unit.words, cfg.unit_words)
        if picked and words + cost > cfg.max_words:
            continue
        best = best or s.score
        picked.append(s)
        words += cost
    by_passage: dict[int, set[int]] = {}
    for s in picked:
        by_passage.setdefault(s.passage, set()).add(s.unit.index)
    left = max(0, min(cfg.context_words, cfg.max_words - words))
    for pi in [s.passage for s in picked]:
        if any(q[0] == pi for q in sel.quotes):
            continue
        chosen = _with_context(passages[pi], by_passage[pi], left)
        left -= sum(passages[pi][i].words for i in chosen - by_passage[pi])
        quote = _render(passages[pi], chosen, q_terms, language, cfg.unit_words)
        sel.quotes.append((pi, quote))
    return sel


def order_passages(
    question: str, texts: Sequence[str], language: str, headings: Sequence[Sequence[str]] = ()
) -> list[int]:
    """Positions of ``texts`` with the most answer-bearing passage first (the generative
    path's context order); passages with no matching sentence keep their retrieval order
    after the others."""
    return select(question, texts, language, headings=headings).passage_order
