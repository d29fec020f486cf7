"""PII findings and modes: plain data, no Presidio import (cheap to import everywhere)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PiiMode = Literal["allow", "mask_in_answers", "redact_at_ingest"]
#: The same three values as ``docfactory.governance.policy.PII_MODES`` (a test checks).
MODES: tuple[PiiMode, ...] = ("allow", "mask_in_answers", "redact_at_ingest")
#: Strictness order: the strictest use case reading a collection decides what ingestion does.
RANK: dict[str, int] = {m: i for i, m in enumerate(MODES)}

#: Entity types and what replaces their values (in chunks, search results and prompts).
PLACEHOLDERS: dict[str, str] = {
    "FR_NIR": "[NIR]",
    "IBAN_CODE": "[IBAN]",
    "FR_SIREN": "[SIREN]",
    "FR_SIRET": "[SIRET]",
    "PHONE_NUMBER": "[TÉLÉPHONE]",
    "EMAIL_ADDRESS": "[COURRIEL]",
    "FR_ADDRESS": "[ADRESSE]",
    "PERSON": "[PERSONNE]",
}
ENTITIES = tuple(PLACEHOLDERS)


@dataclass(frozen=True)
class Finding:
    """One piece of personal data in a text: type, character span, score. Never the value."""

    type: str
    start: int
    end: int
    score: float

    def as_payload(self) -> dict[str, Any]:
        return {"type": self.type, "start": self.start, "end": self.end, "score": self.score}

    @classmethod
    def from_payload(cls, d: Mapping[str, Any]) -> Finding:
        return cls(str(d["type"]), int(d["start"]), int(d["end"]), float(d.get("score", 1.0)))


#: Which finding wins an overlap: identifiers with check digits, then the other patterns,
#: then addresses, then names (a spaCy PER span "IBAN FR76..." must not hide the IBAN).
PRIORITY: dict[str, int] = {
    "FR_NIR": 0, "IBAN_CODE": 0, "FR_SIRET": 0, "FR_SIREN": 1, "EMAIL_ADDRESS": 1,
    "PHONE_NUMBER": 1, "FR_ADDRESS": 2, "PERSON": 3,
}  # fmt: skip


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep the best of overlapping findings (type priority, score, then length), sorted by
    position."""

    def rank(f: Finding) -> tuple[int, float, int, int]:
        return (PRIORITY.get(f.type, 4), -f.score, -(f.end - f.start), f.start)

    kept: list[Finding] = []
    for f in sorted(findings, key=rank):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def counts(findings: Iterable[Sequence[Finding]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in findings:
        for f in chunk:
            out[f.type] = out.get(f.type, 0) + 1
    return dict(sorted(out.items()))


def strictest(modes: Iterable[str]) -> PiiMode:
    best: PiiMode = "allow"
    for m in modes:
        if RANK.get(m, 0) > RANK[best]:
            best = MODES[RANK[m]]
    return best


def replace_spans(text: str, findings: Sequence[Finding], placeholders: Mapping[str, str]) -> str:
    """``text`` with each finding's span replaced by its type's placeholder (spans that do not
    fit the text are ignored: a stale span must never raise on the answer path)."""
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos or f.end > len(text) or f.start >= f.end:
            continue
        out.append(text[pos : f.start])
        out.append(placeholders.get(f.type, "[DONNÉE]"))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
