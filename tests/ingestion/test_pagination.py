"""ListDocuments pages by keyset (newest first): a document added between two pages neither
shifts nor repeats the following pages; tokens from other filters or forged ones are refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from tests.helpers import error_reason, md, upload


async def test_keyset_pages_are_stable_under_inserts(
    channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    ids = []
    for i in range(5):
        f = tmp_path / f"note-{i}.txt"
        f.write_text(f"Note de service numéro {i} sur les congés.")
        ids.append((await upload(channel, f)).document.document_id)
    stub = pb_grpc.IngestionServiceStub(channel)
    first = await stub.ListDocuments(pb.ListDocumentsRequest(page_size=2), metadata=md("key-acme"))
    assert [d.document_id for d in first.documents] == ids[::-1][:2]
    assert first.total_size == 5 and first.next_page_token
    # A new document arrives between two pages (it is the newest).
    extra = tmp_path / "extra.txt"
    extra.write_text("Une note arrivée pendant la lecture des pages.")
    await upload(channel, extra)
    seen = [d.document_id for d in first.documents]
    token = first.next_page_token
    while token:
        page = await stub.ListDocuments(
            pb.ListDocumentsRequest(page_size=2, page_token=token), metadata=md("key-acme")
        )
        seen += [d.document_id for d in page.documents]
        token = page.next_page_token
    assert seen == ids[::-1]  # every original once, in order; no repeat
    # Tokens are bound to their filters, and validated.
    other = pb.ListDocumentsRequest(page_size=2, page_token=first.next_page_token, collection="x")
    forged = base64.urlsafe_b64encode(
        json.dumps({"k": ["not-a-date", "x"], "f": "docs||"}).encode()
    ).decode()
    for req in (
        other,
        pb.ListDocumentsRequest(page_token=forged),
        pb.ListDocumentsRequest(page_token="%%%"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListDocuments(req, metadata=md("key-acme"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(err.value) == "INVALID_PAGE_TOKEN"
