"""Search and Answer with a DocumentFilter over a real server: file type, language, tables and
ingestion date narrow retrieval; an invalid filter is INVALID_ARGUMENT / INVALID_FILTER."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from docfactory.answering.v1 import answering_service_pb2 as pb
from docfactory.common.v1 import common_pb2
from tests.helpers import answer, error_reason, search, upload


async def test_document_filter(channel: grpc.aio.Channel, tmp_path: Path) -> None:
    files = {
        "bail.md": "# Bail\n\nLe bail commercial prévoit un loyer révisé chaque année.",
        "lease.txt": "The commercial lease sets a rent reviewed every year by the landlord.",
        "loyers.csv": "ville,loyer annuel du bail\nLille,12000\nLyon,15000\n",
    }
    ids = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        ids[name] = (await upload(channel, tmp_path / name)).document.document_id

    async def docs(query: str = "bail loyer lease rent", **f: object) -> set[str]:
        flt = common_pb2.DocumentFilter(**f)  # type: ignore[arg-type]
        r = await search(channel, query, top_k=10, filter=flt)
        return {name for name, i in ids.items() if i in {h.citation.document_id for h in r.results}}

    assert await docs() == set(files)
    assert await docs(file_types=["md", "csv"]) == {"bail.md", "loyers.csv"}
    assert await docs(file_types=[".TXT"]) == {"lease.txt"}  # normalised
    assert await docs(languages=["en"]) == {"lease.txt"}
    assert await docs(has_tables=True) == {"loyers.csv"}
    assert "loyers.csv" not in await docs(has_tables=False)
    future = common_pb2.DocumentFilter()
    future.ingested_after.seconds = int(time.time()) + 3600
    r = await search(channel, "bail", top_k=10, filter=future)
    assert list(r.results) == []
    # Answer takes the same filter.
    text, cits, _ = await answer(
        channel,
        "Quand le loyer du bail est-il révisé ?",
        filter=common_pb2.DocumentFilter(file_types=["md"]),
    )
    assert cits and {c.document_id for c in cits} == {ids["bail.md"]}
    for bad in (
        common_pb2.DocumentFilter(file_types=["p d f"]),
        common_pb2.DocumentFilter(languages=["x" * 40]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await search(channel, "bail", filter=bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(err.value) == "INVALID_FILTER"
    inverted = common_pb2.DocumentFilter()
    inverted.ingested_after.seconds, inverted.ingested_before.seconds = 200, 100
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await search(channel, "bail", filter=inverted)
    assert error_reason(err.value) == "INVALID_FILTER"
    assert (
        pb.SearchRequest.DESCRIPTOR.fields_by_name["filter"].message_type.name == "DocumentFilter"
    )
