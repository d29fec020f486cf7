"""The embedded default extractor: no language model, typed finders guided by field labels.

For each field of the schema, the label phrases (``x-labels``, ``title``, the field name with
spaces, then the words of ``description``) are looked up in the pages (case and accents
folded); the value is the first match of the field's kind after the label on the same line,
else on the next non-empty lines. Identifiers (SIREN, SIRET, IBAN, NIR, e-mail) that no label
points to are taken from the whole document only when exactly one distinct, check-digit-valid
value occurs. Nothing else is guessed: a field without a located value is MISSING.

Confidence is an honest, coarse score: it drops with the distance from the label, for a failed
check digit, and for a value found without its label.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from docfactory.workflows.extract.french import FINDERS, Candidate, find_amount, fold
from docfactory.workflows.extract.model import (
    FOUND,
    MISSING,
    UNKNOWN_TYPE,
    Evidence,
    ExtractedField,
    field_kind,
    schema_fields,
)

_NEXT_LINES = 2
_UNLABELLED_KINDS = ("siren", "siret", "iban", "nir", "email")
_STOP = {"de", "du", "des", "la", "le", "les", "l", "d", "a", "au", "aux", "et", "ou", "en",
         "par", "pour", "sur", "un", "une", "the", "of", "nom", "n", "no"}  # fmt: skip
_SEPARATORS = " \t:;-–—|=\u00a0\u202f"


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", fold(s)).strip()


def label_phrases(name: str, prop: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(folded label phrase, confidence penalty): the declared labels (``title``, ``x-labels``)
    longest first (the most specific), then the field name with spaces."""
    declared: list[str] = []
    labels = prop.get("x-labels")
    if isinstance(labels, Sequence) and not isinstance(labels, str):
        declared.extend(str(x) for x in labels)
    if isinstance(prop.get("title"), str):
        declared.append(str(prop["title"]))
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for p in sorted((_norm(x) for x in declared), key=lambda s: (-len(s.split()), -len(s))):
        if p and p not in seen:
            seen.add(p)
            out.append((p, 0.0))
    fallback = _norm(name.replace("_", " "))
    if fallback and fallback not in seen:
        out.append((fallback, 0.1))
    return out


@dataclass(frozen=True)
class _Line:
    page: int  # 0-based
    start: int
    end: int
    text: str
    folded: str


def _lines(pages: Sequence[str]) -> list[_Line]:
    out = []
    for p, page in enumerate(pages):
        pos = 0
        for raw in page.split("\n"):
            out.append(_Line(p, pos, pos + len(raw), raw, _folded_words(raw)))
            pos += len(raw) + 1
    return out


def _folded_words(s: str) -> str:
    """``fold`` with every non-alphanumeric character turned into a space (same length)."""
    return "".join(c if c.isalnum() else " " for c in fold(s))


def _find_label(line: _Line, phrase: str) -> int | None:
    """End offset (in the line) of ``phrase`` found on word boundaries, else None."""
    pattern = r"(?<![a-z0-9])" + r"\s+".join(map(re.escape, phrase.split())) + r"(?![a-z0-9])"
    m = re.search(pattern, line.folded)
    return m.end() if m else None


def _field_like(line: _Line, end: int, phrase: str) -> bool:
    """The label at ``end`` is followed by a colon, or opens its line."""
    after = line.text[end:].lstrip(" \t\u00a0")
    if after.startswith(":"):
        return True
    start = line.folded.rfind(phrase.split()[0], 0, end)
    return start >= 0 and not line.folded[:start].strip()


def _find_label_fuzzy(line: _Line, phrase: str) -> int | None:
    """End offset of a run of words within a few edits of ``phrase`` (OCR misreads such as
    "Chiftre d'aftaires"); phrases under 8 characters are matched exactly only."""
    if len(phrase) < 8:
        return None
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:  # pragma: no cover - rapidfuzz ships with the parsing extra
        return None
    n = len(phrase.split())
    words = list(re.finditer(r"[a-z0-9]+", line.folded))
    budget = max(1, len(phrase) // 7)
    for i in range(len(words) - n + 1):
        window = " ".join(w.group() for w in words[i : i + n])
        if Levenshtein.distance(window, phrase, score_cutoff=budget) <= budget:
            return words[i + n - 1].end()
    return None


class TypedExtractor:
    """Implements ``Extractor`` without a model (see the module docstring)."""

    def classify(self, text: str, doc_types: Sequence[Any]) -> tuple[str, float]:
        folded = " " + _norm(text) + " "
        scores: list[tuple[float, str]] = []
        for dt in doc_types:
            score = 0.0
            for cue in getattr(dt, "cues", ()) or ():
                c = _norm(str(cue))
                if not c:
                    continue
                hits = folded.count(" " + c + " ")
                if hits:
                    # longer cues are more specific; repeated hits add a little
                    score += len(c.split()) * (1.0 + 0.1 * min(hits - 1, 5))
            if score > 0:
                scores.append((score, str(dt.name)))
        if not scores:
            return UNKNOWN_TYPE, 0.0
        scores.sort(reverse=True)
        best, name = scores[0]
        second = scores[1][0] if len(scores) > 1 else 0.0
        margin = (best - second) / best
        confidence = round(min(0.99, 0.5 + 0.5 * margin) * min(1.0, 0.4 + 0.2 * best), 3)
        return name, confidence

    def extract(
        self, document_id: str, pages: Sequence[str], schema: Mapping[str, Any]
    ) -> list[ExtractedField]:
        lines = _lines(pages)
        out = []
        for name, prop in schema_fields(schema):
            kind = field_kind(prop)
            hit = self._labelled(lines, name, prop, kind)
            if hit is None and kind in _UNLABELLED_KINDS:
                hit = self._unique_in_document(pages, kind)
            if hit is None:
                out.append(ExtractedField(name, None, None, 0.0, MISSING))
                continue
            page, cand, confidence = hit
            quote = pages[page][cand.start : cand.end]
            out.append(
                ExtractedField(
                    name,
                    cand.value,
                    Evidence(document_id, page + 1, cand.start, cand.end, quote),
                    round(confidence, 3),
                    FOUND,
                )
            )
        return out

    # -- location ---------------------------------------------------------------------------

    def _labelled(
        self, lines: list[_Line], name: str, prop: Mapping[str, Any], kind: str
    ) -> tuple[int, Candidate, float] | None:
        phrases = label_phrases(name, prop)
        # exact labels first; then labels with a few misread characters (OCR), less sure.
        # Per phrase, a label written as a field ("Label : value", or opening its line) is
        # preferred to the same words inside a sentence.
        for finder, extra in ((_find_label, 0.0), (_find_label_fuzzy, 0.15)):
            for phrase, penalty in phrases:
                hits = [(i, end) for i, line in enumerate(lines) if (end := finder(line, phrase))]
                hits.sort(key=lambda h: (not _field_like(lines[h[0]], h[1], phrase), h[0]))
                for i, end in hits:
                    got = self._value_after(lines, i, end, kind)
                    if got is not None:
                        page, cand, conf = got
                        return page, cand, max(0.05, conf - penalty - extra)
        return None

    def _value_after(
        self, lines: list[_Line], i: int, label_end: int, kind: str
    ) -> tuple[int, Candidate, float] | None:
        line = lines[i]
        rest = line.text[label_end:]
        cand = self._first(rest, kind, same_line=True)
        if cand is not None:
            c = Candidate(
                line.start + label_end + cand.start,
                line.start + label_end + cand.end,
                cand.value,
                cand.valid,
            )
            return line.page, c, self._confidence(kind, c, 0)
        seen = 0
        for j in range(i + 1, len(lines)):
            nxt = lines[j]
            if nxt.page != line.page or seen >= _NEXT_LINES:
                break
            if not nxt.text.strip():
                continue
            seen += 1
            cand = self._first(nxt.text, kind, same_line=False)
            if cand is not None:
                c = Candidate(nxt.start + cand.start, nxt.start + cand.end, cand.value, cand.valid)
                return nxt.page, c, self._confidence(kind, c, seen)
            if kind == "text":
                break
        return None

    def _first(self, segment: str, kind: str, *, same_line: bool) -> Candidate | None:
        if kind == "text":
            return _text_value(segment, same_line=same_line)
        finder = FINDERS[kind]
        cands = find_amount(segment, bare=True) if kind == "amount_eur" else finder(segment)
        return cands[0] if cands else None

    @staticmethod
    def _confidence(kind: str, cand: Candidate, distance: int) -> float:
        base = {"text": 0.7, "amount_eur": 0.85, "date": 0.85}.get(kind, 0.95)
        conf = base - 0.1 * distance
        if not cand.valid:
            conf -= 0.3
        return conf

    def _unique_in_document(
        self, pages: Sequence[str], kind: str
    ) -> tuple[int, Candidate, float] | None:
        found: dict[str, tuple[int, Candidate]] = {}
        for p, page in enumerate(pages):
            for c in FINDERS[kind](page):
                if c.valid and c.value not in found:
                    found[c.value] = (p, c)
        if len(found) != 1:
            return None
        page_no, cand = next(iter(found.values()))
        return page_no, cand, 0.6


def _text_value(segment: str, *, same_line: bool) -> Candidate | None:
    """A text value: after the label's separators up to a column break (3+ spaces, tab, |) or
    the next ``Label :`` on the same line (lines merged by the parser)."""
    start = 0
    while start < len(segment) and segment[start] in _SEPARATORS:
        start += 1
    if same_line and start == 0 and segment[:1].isalnum():
        return None  # the label is a prefix of a longer word run, not a "label: value"
    # the rest of a longer label ("Dénomination" + " ou raison sociale : ACME"): skip it
    rest = re.match(r"(?:[a-zà-ÿ'’-]+\s+){0,4}[a-zà-ÿ'’-]+\s?:\s*", segment[start:])
    if same_line and rest is not None and rest.end() < len(segment) - start:
        start += rest.end()
    m = re.search(r"\s{3,}|\t|\s\|\s?", segment[start:])
    end = start + m.start() if m else len(segment)
    colon = re.search(r"\s?:(?:\s|$)", segment[start:end])
    if colon is not None:
        head = segment[start : start + colon.start()]
        words = list(re.finditer(r"\S+", head))
        caps = [w for w in words if w.group()[:1].isupper()]
        if caps and caps[-1].start() > 0:
            end = start + caps[-1].start()
    while end > start and segment[end - 1] in " .,;\u00a0":
        end -= 1
    if end - start < 2:
        return None
    value = " ".join(segment[start:end].split())
    return Candidate(start, end, value)
