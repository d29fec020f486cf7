"""Fault: the ingestion server (``docfactory serve``, its own process) is SIGKILLed while a
client streams an upload. The client sees UNAVAILABLE; after a restart on the same data
directory its retry indexes the document once (no duplicate, a second retry is a no-op), and
what was indexed before the crash is intact and searchable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.fault.support import Serve, free_port
from tests.helpers import search

pytestmark = pytest.mark.slow

CHUNK = 16 * 1024


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.stop()


def _document(words: int) -> bytes:
    line = (
        "Article {i}. Le bailleur remet au locataire un logement décent, entretient les locaux "
        "et garantit la jouissance paisible du bien loué pendant toute la durée du bail.\n"
    )
    return "".join(line.format(i=i) for i in range(words // 25)).encode("utf-8")


async def _upload(
    ch: grpc.aio.Channel, key: str, data: bytes, *, pause_after: int | None = None
) -> ing_pb.UploadDocumentResponse:
    async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename="bail.txt", collection="faults")
        )
        for n, i in enumerate(range(0, len(data), CHUNK)):
            if pause_after is not None and n >= pause_after:
                await asyncio.sleep(30)  # the server is killed meanwhile
            yield ing_pb.UploadDocumentRequest(data=data[i : i + CHUNK])

    stub = ing_grpc.IngestionServiceStub(ch)
    resp: ing_pb.UploadDocumentResponse = await stub.UploadDocument(
        reqs(), metadata=(("x-api-key", key),), timeout=300
    )
    return resp


async def _documents(ch: grpc.aio.Channel, key: str) -> list[ing_pb.Document]:
    stub = ing_grpc.IngestionServiceStub(ch)
    resp = await stub.ListDocuments(
        ing_pb.ListDocumentsRequest(page_size=100), metadata=(("x-api-key", key),), timeout=30
    )
    return list(resp.documents)


async def test_server_killed_mid_upload_then_retry_is_idempotent(
    tmp_path: Path, servers: list[Serve]
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    first = Serve(data_dir, port, log)
    servers.append(first)
    await first.ready()
    key = (data_dir / "api-key").read_text().strip()
    before = tmp_path / "before.txt"
    before.write_text("Note antérieure : la garantie décennale couvre les vices de construction.")
    payload = _document(12_000)  # ~80 kB: several 16 kB chunks, a few dozen passages

    async with grpc.aio.insecure_channel(first.address) as ch:
        from tests.helpers import upload

        kept = await upload(ch, before, key=key, collection="faults")
        upload_task = asyncio.ensure_future(_upload(ch, key, payload, pause_after=2))
        await asyncio.sleep(2.0)  # metadata and two chunks are on the server
        assert not upload_task.done()
        first.kill()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await upload_task
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    second = Serve(data_dir, port, log)
    servers.append(second)
    await second.ready()
    async with grpc.aio.insecure_channel(second.address) as ch:
        docs = await _documents(ch, key)
        # the interrupted upload left nothing behind; the earlier document is intact
        assert [d.document_id for d in docs] == [kept.document.document_id]
        assert (await search(ch, "garantie décennale vices", key=key)).results
        retry = await _upload(ch, key, payload)
        assert retry.document.chunk_count > 0 and not retry.unchanged
        again = await _upload(ch, key, payload)
        assert again.unchanged and again.document.document_id == retry.document.document_id
        docs = await _documents(ch, key)
        assert sorted(d.document_id for d in docs) == sorted(
            [kept.document.document_id, retry.document.document_id]
        )
        hits = (await search(ch, "jouissance paisible du bien loué", key=key)).results
        assert hits and {h.citation.document_id for h in hits} == {retry.document.document_id}
