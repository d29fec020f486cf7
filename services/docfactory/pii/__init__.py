"""French personal data: detection (Presidio + a French spaCy model + recognizers with check
digits), redaction at ingestion and masking on the answer path, per the use case's ``pii``
policy. Importing this package imports neither Presidio nor spaCy: the detector is built on
first use, only when a policy asks for PII handling."""

from docfactory.pii.model import MODES, PLACEHOLDERS, Finding, PiiMode
from docfactory.pii.stage import (
    IngestPii,
    answer_mode,
    ingestion_mode,
    process_chunks,
    question_for,
    texts_for,
)

__all__ = [
    "MODES",
    "PLACEHOLDERS",
    "Finding",
    "IngestPii",
    "PiiMode",
    "answer_mode",
    "ingestion_mode",
    "process_chunks",
    "question_for",
    "texts_for",
]
