"""Full RPC names come from the generated descriptors; a missing RPC fails loudly."""

from __future__ import annotations

import pytest

from docfactory.core.methods import method_names
from docfactory.governance.gate import INGESTION_WRITE_METHODS
from docfactory.ingestion.v1 import ingestion_service_pb2 as pb


def test_method_names_from_descriptors() -> None:
    assert method_names(pb.DESCRIPTOR, "IngestionService", "IngestPath") == {
        "/docfactory.ingestion.v1.IngestionService/IngestPath"
    }
    assert "/docfactory.jobs.v1.JobsService/IngestPrefix" in INGESTION_WRITE_METHODS
    assert len(INGESTION_WRITE_METHODS) == 10
    with pytest.raises(KeyError):
        method_names(pb.DESCRIPTOR, "IngestionService", "NoSuchRpc")
    with pytest.raises(KeyError):
        method_names(pb.DESCRIPTOR, "NoSuchService", "IngestPath")
