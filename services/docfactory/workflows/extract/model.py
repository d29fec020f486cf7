"""Result types and the ``Extractor`` protocol shared by the embedded and the vLLM extractors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

FOUND = "FOUND"
UNSUPPORTED = "UNSUPPORTED"
MISSING = "MISSING"
UNKNOWN_TYPE = ""  # classify() result when no document type's cue appears in the text

KINDS = ("siren", "siret", "iban", "nir", "amount_eur", "date", "email", "phone", "text")


@dataclass(frozen=True)
class Evidence:
    """Where a value was read: ``quote == pages[page - 1][start:end]`` (page is 1-based)."""

    document_id: str
    page: int | None
    start: int
    end: int
    quote: str


@dataclass(frozen=True)
class ExtractedField:
    """One schema field of one document.

    ``value`` is normalised by kind: siren/siret/nir digits only (NIR may hold 2A/2B), IBAN
    upper-case without spaces, amounts as a decimal string with two decimals (``"1234.50"``),
    dates ISO ``YYYY-MM-DD`` (``--MM-DD`` when the text gives no year), e-mail lower-case,
    phone E.164 (``+33...``), text verbatim (whitespace collapsed).
    ``status``: FOUND (value with evidence), UNSUPPORTED (a value was proposed but no verbatim
    quote supports it: evidence None), MISSING (nothing found: value and evidence None).
    """

    name: str
    value: str | None
    evidence: Evidence | None
    confidence: float
    status: str


class Extractor(Protocol):
    def classify(self, text: str, doc_types: Sequence[Any]) -> tuple[str, float]:
        """(type name, confidence in [0, 1]); doc types have ``.name`` and ``.cues``.
        ``("", 0.0)`` when nothing matches."""
        ...

    def extract(
        self, document_id: str, pages: Sequence[str], schema: Mapping[str, Any]
    ) -> list[ExtractedField]:
        """One ExtractedField per property of the JSON Schema ``schema``, in schema order."""
        ...


def schema_fields(schema: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, property schema) of a JSON Schema object, in declaration order."""
    props = schema.get("properties") or {}
    if not isinstance(props, Mapping):
        return []
    return [(str(k), v if isinstance(v, Mapping) else {}) for k, v in props.items()]


def field_kind(prop: Mapping[str, Any]) -> str:
    kind = prop.get("x-kind")
    if isinstance(kind, str) and kind in KINDS:
        return kind
    fmt = prop.get("format")
    if fmt == "date":
        return "date"
    if fmt == "email":
        return "email"
    return "text"
