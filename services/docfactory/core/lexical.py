"""Sparse lexical (BM25-style) vectors for Qdrant sparse vectors with the IDF modifier.

Qdrant computes the IDF part of BM25 server-side when the sparse vector is
configured with ``modifier=models.Modifier.IDF``.  docfactory therefore only
provides:

* document side: the BM25 term-frequency saturation
  ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avg_doc_len))``;
* query side: ``1.0`` per unique query term.

The dot product computed by Qdrant, ``sum(idf(t) * q(t) * d(t))``, is then the
classic BM25 score.

Text analysis (``Analyzer.tokens``)
-----------------------------------
1. Unicode NFKC, typographic apostrophes (``’``, ``‘``, ``ʼ``, ``´``, `````) mapped
   to ``'``, lower-casing.
2. Tokenisation on runs of letters/digits (``[^\\W_]+``) that may contain
   internal apostrophes.  Everything else (hyphens, dots, slashes, ...) splits.
   Article references: ``"L1234-5"`` gives ``"l1234"``, ``"1234"`` and ``"5"``
   (the code-prefixed form is kept *and* its bare number is emitted so that
   ``"L. 1234-5"``, ``"article 1234-5"`` and ``"L1234-5"`` share the terms
   ``"1234"`` and ``"5"``; only tokens made of a 1-3 letter prefix followed by
   digits get this extra number term).  Tokens containing a digit are never
   stemmed nor stop-listed; single digits are kept.
3. French elision: a token whose part before the first apostrophe is an elided
   article/pronoun/conjunction (``l' d' j' m' n' s' t' c' qu' jusqu' lorsqu'
   puisqu' quoiqu' quelqu'``) keeps only what follows (``l'article`` ->
   ``article``).  Remaining apostrophes are removed (``prud'hommes`` ->
   ``prudhommes``).  English keeps the apostrophe so that the Snowball stop
   list (``don't``) and the English stemmer (``company's`` -> ``compani``) see
   it.
4. Stop words (Snowball stop lists, accent-folded) are removed; remaining
   single letters are dropped.
5. Accent folding (``é -> e``, ``ç -> c``, ``œ -> oe``, ``æ -> ae`` ...) is done
   BEFORE Snowball stemming, then the stem is produced.

Why fold before stemming?  The French Snowball stemmer gives somewhat better
stems on accented input, but its output then depends on whether the writer
typed the accents: ``responsabilité`` -> ``respons`` while ``responsabilite``
-> ``responsabilit``; the same for ``sécurité``/``securite``,
``activité``/``activite``, ``employé``/``employe`` and about a third of
accented words.  User queries, upper-case legal headings (``SOCIETE``) and OCR
often lack accents, so a term that is a function of the *folded* word only is
accent-insensitive by construction.  The one systematic loss of folding first
is the feminine past participle / ``-ée`` nouns (``réparée`` would stem to
``repare`` but ``réparé`` to ``repar``); it is restored by rewriting a final
``ee``/``ees`` to ``e`` before stemming (``réparée(s)`` -> ``repare`` ->
``repar``; ``année(s)`` -> ``anne``).  On the inflection groups checked while
writing this (plural, gender, participles, ``-aux`` plurals such as
``chevaux``/``cheval``) this matches the conflation obtained on accented input.

Term ids (``term_id``) are the first 4 bytes (big-endian) of
``blake2b(term, digest_size=4)``: stable across processes, machines and
Python versions (unlike ``hash()``), in ``[0, 2**32)``.  Collisions are
possible and accepted; colliding terms are merged (their counts add up).
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol

import snowballstemmer  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "SUPPORTED_LANGUAGES",
    "Analyzer",
    "Bm25Params",
    "SparseEncoder",
    "SparseVector",
    "detect_language",
    "fold_accents",
    "get_analyzer",
    "term_id",
]

SUPPORTED_LANGUAGES: Final[tuple[str, ...]] = ("fr", "en")

# --------------------------------------------------------------------------
# Stop lists (Snowball stop lists, plus a few French elision forms/pronouns).
# --------------------------------------------------------------------------

_FRENCH_STOP_WORDS_RAW: Final[str] = """
au aux avec ce ces dans de des du elle en et eux il ils je la le les leur lui
ma mais me même mes moi mon ne nos notre nous on ou par pas pour qu que qui sa
se ses son sur ta te tes toi ton tu un une vos votre vous c d j l à m n s t y
été étée étées étés étant étante étants étantes suis es est sommes êtes sont
serai seras sera serons serez seront serais serait serions seriez seraient
étais était étions étiez étaient fus fut fûmes fûtes furent sois soit soyons
soyez soient fusse fusses fût fussions fussiez fussent ayant ayante ayantes
ayants eu eue eues eus ai as avons avez ont aurai auras aura aurons aurez
auront aurais aurait aurions auriez auraient avais avait avions aviez avaient
eut eûmes eûtes eurent aie aies ait ayons ayez aient eusse eusses eût eussions
eussiez eussent
cet cette cela ceci dont où jusqu lorsqu puisqu quoiqu quelqu
"""

_ENGLISH_STOP_WORDS_RAW: Final[str] = """
i me my myself we our ours ourselves you your yours yourself yourselves he him
his himself she her hers herself it its itself they them their theirs
themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing would should could ought i'm
you're he's she's it's we're they're i've you've we've they've i'd you'd he'd
she'd we'd they'd i'll you'll he'll she'll we'll they'll isn't aren't wasn't
weren't hasn't haven't hadn't doesn't don't didn't won't wouldn't shan't
shouldn't can't cannot couldn't mustn't let's that's who's what's here's
there's when's where's why's how's a an the and but if or because as until
while of at by for with about against between into through during before
after above below to from up down in out on off over under again further then
once here there when where why how all any both each few more most other some
such no nor not only own same so than too very
"""

# Elided French words (the part before the apostrophe).
_FRENCH_ELISIONS: Final[frozenset[str]] = frozenset(
    {"l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu", "quelqu"}
)

# --------------------------------------------------------------------------
# Normalisation helpers.
# --------------------------------------------------------------------------

_APOSTROPHES: Final[dict[int, str]] = {
    ord(c): "'" for c in ("\u2019", "\u2018", "\u02bc", "\u00b4", "\u0060", "\u2032")
}
# A word: letters/digits, possibly with internal apostrophes ("l'article").
_TOKEN_RE: Final[re.Pattern[str]] = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_PREFIXED_NUMBER_RE: Final[re.Pattern[str]] = re.compile(r"([^\W\d_]{1,3})(\d+)")
_LIGATURES: Final[dict[int, str]] = {
    ord("œ"): "oe",
    ord("Œ"): "OE",
    ord("æ"): "ae",
    ord("Æ"): "AE",
    ord("ß"): "ss",
}


@lru_cache(maxsize=1 << 16)
def fold_accents(word: str) -> str:
    """Remove diacritics and expand ligatures (``é -> e``, ``ç -> c``, ``œ -> oe``)."""
    if word.isascii():
        return word
    word = word.translate(_LIGATURES)
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _fold_stop_list(raw: str) -> frozenset[str]:
    return frozenset(fold_accents(w) for w in raw.split())


_FRENCH_STOP_WORDS: Final[frozenset[str]] = _fold_stop_list(_FRENCH_STOP_WORDS_RAW)
_ENGLISH_STOP_WORDS: Final[frozenset[str]] = _fold_stop_list(_ENGLISH_STOP_WORDS_RAW)


class _Stemmer(Protocol):
    def stemWord(self, word: str) -> str: ...  # snowballstemmer API name


class _StemFn(Protocol):
    def __call__(self, folded: str, /) -> str: ...


_STEM_LOCK: Final[threading.Lock] = threading.Lock()
# Snowball stemmer instances keep per-call state: they are not thread-safe.
_FRENCH_STEMMER: Final[_Stemmer] = snowballstemmer.stemmer("french")
_ENGLISH_STEMMER: Final[_Stemmer] = snowballstemmer.stemmer("english")


def _stem(stemmer: _Stemmer, word: str) -> str:
    with _STEM_LOCK:
        return str(stemmer.stemWord(word))


@lru_cache(maxsize=1 << 18)
def _analyze_french_word(word: str) -> tuple[str, ...]:
    """Terms for one lower-cased French token (may contain apostrophes)."""
    if "'" in word:
        head, _, rest = word.partition("'")
        word = rest if head in _FRENCH_ELISIONS else head + rest
        word = word.replace("'", "")
        if not word:
            return ()
    return _finish_word(word, _FRENCH_STOP_WORDS, _french_stem)


def _french_stem(folded: str) -> str:
    # Restore the conflation of "-é"/"-ée"/"-ées" lost by folding before stemming.
    if len(folded) > 4 and folded.endswith("ees"):
        folded = folded[:-2]
    elif len(folded) > 3 and folded.endswith("ee"):
        folded = folded[:-1]
    return _stem(_FRENCH_STEMMER, folded)


@lru_cache(maxsize=1 << 18)
def _analyze_english_word(word: str) -> tuple[str, ...]:
    """Terms for one lower-cased English token (may contain apostrophes)."""
    return _finish_word(word, _ENGLISH_STOP_WORDS, _english_stem)


def _english_stem(folded: str) -> str:
    return _stem(_ENGLISH_STEMMER, folded).replace("'", "")


def _finish_word(
    word: str,
    stop_words: frozenset[str],
    stem: _StemFn,
) -> tuple[str, ...]:
    folded = fold_accents(word)
    if any(c.isdigit() for c in folded):
        # Identifiers / numbers: never stemmed nor stop-listed.
        folded = folded.replace("'", "")
        match = _PREFIXED_NUMBER_RE.fullmatch(folded)
        if match is not None:
            return (folded, match.group(2))
        return (folded,)
    if folded in stop_words or len(folded) < 2:
        return ()
    term = stem(folded)
    if len(term) < 2:
        return ()
    return (term,)


# --------------------------------------------------------------------------
# Analyzers.
# --------------------------------------------------------------------------


class Analyzer:
    """Language-specific text analysis producing index/query terms."""

    __slots__ = ("_word_fn", "language")

    language: str

    def __init__(self, language: str) -> None:
        if language == "fr":
            self._word_fn = _analyze_french_word
        elif language == "en":
            self._word_fn = _analyze_english_word
        else:
            raise ValueError(
                f"unsupported language {language!r}; expected one of {SUPPORTED_LANGUAGES}"
            )
        self.language = language

    def __repr__(self) -> str:
        return f"Analyzer(language={self.language!r})"

    def tokens(self, text: str) -> list[str]:
        """Analyzed terms of ``text`` in order (duplicates kept)."""
        normalized = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
        word_fn = self._word_fn
        out: list[str] = []
        for word in _TOKEN_RE.findall(normalized):
            out.extend(word_fn(word))
        return out


_ANALYZERS: Final[dict[str, Analyzer]] = {lang: Analyzer(lang) for lang in SUPPORTED_LANGUAGES}


def get_analyzer(language: str) -> Analyzer:
    """Shared analyzer for ``"fr"`` or ``"en"``; ``ValueError`` otherwise."""
    try:
        return _ANALYZERS[language]
    except KeyError:
        raise ValueError(
            f"unsupported language {language!r}; expected one of {SUPPORTED_LANGUAGES}"
        ) from None


# --------------------------------------------------------------------------
# Language detection.
# --------------------------------------------------------------------------

# Frequent, mostly unambiguous function words (no overlap between the two sets;
# words frequent in both languages such as "on", "a", "an", "as" are excluded).
_FR_MARKERS: Final[frozenset[str]] = frozenset(
    {
        "le", "la", "les", "des", "du", "et", "est", "une", "un", "pour", "dans", "que",
        "qui", "sur", "pas", "par", "au", "aux", "avec", "ce", "cette", "ces", "sont", "il",
        "elle", "ils", "nous", "vous", "ne", "se", "son", "sa", "ses", "leur", "mais", "ou",
        "où", "été", "être", "l", "d", "qu", "n", "c", "j",
    }
)  # fmt: skip
_EN_MARKERS: Final[frozenset[str]] = frozenset(
    {
        "the", "and", "of", "to", "is", "are", "was", "were", "be", "been", "that", "this",
        "these", "with", "for", "from", "by", "it", "its", "not", "have", "has", "had",
        "which", "or", "their", "they", "will", "would", "shall", "may", "must", "any",
        "such", "if", "there", "than", "what", "who",
    }
)  # fmt: skip
_ACCENTED: Final[frozenset[str]] = frozenset("éèêëàâäçùûüîïôöœæÿ")
_DETECT_MAX_CHARS: Final[int] = 4096
_WORD_RE: Final[re.Pattern[str]] = re.compile(r"[^\W\d_]+")
_ACCENT_WEIGHT: Final[float] = 0.5


def _language_scores(text: str) -> tuple[float, float]:
    sample = text[:_DETECT_MAX_CHARS].translate(_APOSTROPHES).lower()
    fr = 0.0
    en = 0.0
    for word in _WORD_RE.findall(sample):
        if word in _FR_MARKERS:
            fr += 1.0
        elif word in _EN_MARKERS:
            en += 1.0
    fr += _ACCENT_WEIGHT * sum(1 for c in sample if c in _ACCENTED)
    return fr, en


def detect_language_or_none(text: str) -> str | None:
    """Like :func:`detect_language`, but ``None`` when nothing tells the languages apart
    (short queries without marker words or accents)."""
    fr, en = _language_scores(text)
    if fr == en:
        return None
    return "en" if en > fr else "fr"


def detect_language(text: str) -> str:
    """``"fr"`` or ``"en"``; fast heuristic on marker words and accent frequency.

    Only the first 4096 characters are looked at.  Each French marker word
    scores 1 for French, each English marker 1 for English and each French
    accented letter 0.5 for French.  Ties (including empty text) give ``"fr"``.
    """
    sample = text[:_DETECT_MAX_CHARS].translate(_APOSTROPHES).lower()
    fr = 0.0
    en = 0.0
    for word in _WORD_RE.findall(sample):
        if word in _FR_MARKERS:
            fr += 1.0
        elif word in _EN_MARKERS:
            en += 1.0
    fr += _ACCENT_WEIGHT * sum(1 for c in sample if c in _ACCENTED)
    return "en" if en > fr else "fr"


# --------------------------------------------------------------------------
# Sparse vectors.
# --------------------------------------------------------------------------


@lru_cache(maxsize=1 << 18)
def term_id(term: str) -> int:
    """Stable unsigned 32-bit id of ``term``: ``blake2b(utf-8, digest_size=4)``, big-endian."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class SparseVector:
    """Sparse vector with sorted, unique ``indices`` (Qdrant ``SparseVector`` shape)."""

    indices: list[int]
    values: list[float]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError("indices and values must have the same length")

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.indices, self.values, strict=True))


@dataclass(frozen=True)
class Bm25Params:
    """BM25 parameters; ``avg_doc_len`` is in analyzed terms (after stop words)."""

    k1: float = 1.2
    b: float = 0.75
    avg_doc_len: float = 256.0

    def __post_init__(self) -> None:
        if self.k1 < 0:
            raise ValueError("k1 must be >= 0")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError("b must be in [0, 1]")
        if self.avg_doc_len <= 0:
            raise ValueError("avg_doc_len must be > 0")


class SparseEncoder:
    """Encode texts into BM25 sparse vectors for a Qdrant IDF-modified sparse index."""

    def __init__(self, params: Bm25Params = Bm25Params(), language: str | None = None) -> None:
        if language is not None:
            get_analyzer(language)  # validate early
        self.params = params
        self.language = language

    def _analyzer(self, text: str, language: str | None) -> Analyzer:
        lang = language or self.language or detect_language(text)
        return get_analyzer(lang)

    def encode_document(self, text: str, language: str | None = None) -> SparseVector:
        """BM25 term-frequency saturation per term (IDF is applied by Qdrant)."""
        terms = self._analyzer(text, language).tokens(text)
        if not terms:
            return SparseVector(indices=[], values=[])
        counts = Counter(term_id(t) for t in terms)
        p = self.params
        norm = p.k1 * (1.0 - p.b + p.b * len(terms) / p.avg_doc_len)
        indices = sorted(counts)
        values = [counts[i] * (p.k1 + 1.0) / (counts[i] + norm) for i in indices]
        return SparseVector(indices=indices, values=values)

    def encode_query(self, text: str, language: str | None = None) -> SparseVector:
        """``1.0`` per unique query term. Without a language, one is detected; when the
        query gives no clue (no marker word, no accent), the terms of both analyzers are used,
        so a short English claim is not stemmed as French only."""
        if language is None and self.language is None and detect_language_or_none(text) is None:
            terms = get_analyzer("fr").tokens(text) + get_analyzer("en").tokens(text)
        else:
            terms = self._analyzer(text, language).tokens(text)
        indices = sorted({term_id(t) for t in terms})
        return SparseVector(indices=indices, values=[1.0] * len(indices))
