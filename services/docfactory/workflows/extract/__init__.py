"""Field extraction for dossier workflows.

- ``typed_extractor()``: the embedded default (no model): typed French finders with check
  digits, guided by each field's labels (``docfactory.workflows.extract.typed``).
- ``vllm_extractor(base_url, model)``: JSON-Schema-constrained generation through vLLM's
  OpenAI-compatible structured outputs, validated and retried, every value backed by a verbatim
  quote or flagged UNSUPPORTED (``docfactory.workflows.extract.vllm``).
- ``docfactory.workflows.extract.checks.run_checks``: the flow's rules over the extracted fields.

Field schemas are JSON Schema objects whose properties may carry ``x-kind`` (siren, siret, iban,
nir, amount_eur, date, email, phone, text) and ``x-labels`` (label phrases in the documents).
"""

from __future__ import annotations

from docfactory.workflows.extract.model import (
    FOUND,
    KINDS,
    MISSING,
    UNKNOWN_TYPE,
    UNSUPPORTED,
    Evidence,
    ExtractedField,
    Extractor,
)

__all__ = [
    "FOUND",
    "KINDS",
    "MISSING",
    "UNKNOWN_TYPE",
    "UNSUPPORTED",
    "Evidence",
    "ExtractedField",
    "Extractor",
    "typed_extractor",
    "vllm_extractor",
]


def typed_extractor() -> Extractor:
    from docfactory.workflows.extract.typed import TypedExtractor

    return TypedExtractor()


def vllm_extractor(
    base_url: str, model: str, *, api_key: str | None = None, max_attempts: int = 3
) -> Extractor:
    from docfactory.workflows.extract.vllm import VllmExtractor

    return VllmExtractor(base_url, model, api_key=api_key, max_attempts=max_attempts)
