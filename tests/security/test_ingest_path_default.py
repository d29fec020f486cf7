"""IngestPath is off on a default server: even an ingester key cannot make it read its disk."""

from __future__ import annotations

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from tests.conftest import INGESTER_KEY
from tests.helpers import error_reason, md


async def test_ingest_path_is_disabled_by_default(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.IngestionServiceStub(channel)
    for key in (INGESTER_KEY, "key-acme"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.IngestPath(
                pb.IngestPathRequest(paths=["/etc/hostname"]), metadata=md(key)
            ):
                pass
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value) == "INGEST_PATH_DISABLED"
    listed = await pb_grpc.IngestionServiceStub(channel).ListDocuments(
        pb.ListDocumentsRequest(), metadata=md(INGESTER_KEY)
    )
    assert list(listed.documents) == []
