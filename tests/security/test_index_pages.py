"""ListPointIds over the internal IndexService listener: keyset pages (points added between two
pages neither repeat nor hide the original ones), tokens bound to their scope."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from docfactory.app import start_server
from docfactory.core.vectorstore import document_id_for, point_id
from docfactory.index.v1 import index_service_pb2 as idx_pb
from docfactory.index.v1 import index_service_pb2_grpc as idx_grpc
from tests.security._env import SERVICE_MD, details, make_env, md

META = (*md("ing-sud"), *SERVICE_MD)


def _points(source_uri: str, n: int) -> list[idx_pb.Point]:
    doc = document_id_for("sud", "notes", source_uri)
    out = []
    for i in range(n):
        payload = struct_pb2.Struct()
        payload.update(
            {
                "collection": "notes",
                "source_uri": source_uri,
                "document_id": doc,
                "document_version": 1,
                "chunk_index": i,
                "classification": 1,
                "text": f"chunk {i}",
            }
        )
        out.append(idx_pb.Point(id=point_id(doc, 1, i), dense=[1.0, 0.0, 0.0, i], payload=payload))
    return out


async def test_point_id_pages_are_stable_under_inserts(tmp_path: Path) -> None:
    running = await start_server(make_env(tmp_path).settings, port=0)
    assert running.index_address
    try:
        async with grpc.aio.insecure_channel(running.index_address) as ch:
            stub = idx_grpc.IndexServiceStub(ch)
            first_points = _points("file:///notes/a.txt", 7)
            await stub.UpsertPoints(
                idx_pb.UpsertPointsRequest(points=first_points, dimension=4), metadata=META
            )
            originals = {p.id for p in first_points}
            page = await stub.ListPointIds(idx_pb.ListPointIdsRequest(page_size=3), metadata=META)
            assert len(page.ids) == 3 and page.next_page_token
            first_token = page.next_page_token
            # Points of another document arrive between two pages.
            await stub.UpsertPoints(
                idx_pb.UpsertPointsRequest(points=_points("file:///notes/b.txt", 5), dimension=4),
                metadata=META,
            )
            seen = list(page.ids)
            while page.next_page_token:
                page = await stub.ListPointIds(
                    idx_pb.ListPointIdsRequest(page_size=3, page_token=page.next_page_token),
                    metadata=META,
                )
                assert len(page.ids) <= 3
                seen += list(page.ids)
            assert len(seen) == len(set(seen)), "no id repeated"
            assert originals <= set(seen), "no original id skipped"
            everything = await stub.ListPointIds(
                idx_pb.ListPointIdsRequest(page_size=100), metadata=META
            )
            assert len(everything.ids) == 12 and not everything.next_page_token
            assert [i for i in everything.ids if i in set(seen)] == seen  # in the store's order
            # Tokens are bound to their scope, and validated.
            for req in (
                idx_pb.ListPointIdsRequest(
                    page_token=first_token, scope=idx_pb.Scope(collections=["other"])
                ),
                idx_pb.ListPointIdsRequest(page_token="not-a-token"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.ListPointIds(req, metadata=META)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert details(err.value)[0] == "INVALID_PAGE_TOKEN"
    finally:
        await running.stop(0.5)
