"""What other packages may rely on from ingestion (its public contract, besides its gRPC API).

- :class:`BackgroundUpload` / :class:`BackgroundSubmitter`: an upload ingestion has validated
  and staged, handed to whoever runs background jobs (docfactory.jobs implements the submitter;
  the composition root, ``docfactory.app``, injects it into the ingestion servicer).
- :func:`validate_collection`: the one rule for collection names, shared by every entry point
  that accepts one (UploadDocument, IngestPrefix, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from docfactory.core.errors import InvalidArgument
from docfactory.core.validation import shorten

__all__ = ["BackgroundSubmitter", "BackgroundUpload", "validate_collection"]


def validate_collection(name: str) -> str:
    name = name or "default"
    if len(name) > 128 or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise InvalidArgument(
            f"invalid collection name {shorten(name)}: use letters, digits, '-', '_' or '.' "
            "(max 128)",
            reason="INVALID_COLLECTION",
        )
    return name


@dataclass(frozen=True)
class BackgroundUpload:
    """A validated upload handed to the jobs layer (staged, then indexed by workers)."""

    tenant: str
    path: Path
    filename: str
    collection: str
    classification: int
    metadata: Mapping[str, str]
    source_uri: str
    document_id: str


class BackgroundSubmitter(Protocol):
    """Stages an upload and starts a job for it; returns the job id (docfactory.jobs)."""

    async def submit_upload(self, upload: BackgroundUpload) -> str: ...
