"""Client helpers for tests: upload, search, answer over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc


def md(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


async def upload(
    channel: grpc.aio.Channel,
    path: Path,
    key: str = "key-acme",
    collection: str = "default",
    classification: int = 0,
    filename: str | None = None,
    data: bytes | None = None,
) -> ing_pb.UploadDocumentResponse:
    stub = ing_grpc.IngestionServiceStub(channel)
    payload = path.read_bytes() if data is None else data

    async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(
                filename=filename or path.name,
                collection=collection,
                classification=classification,  # type: ignore[arg-type]
            )
        )
        for i in range(0, len(payload), 256 * 1024):
            yield ing_pb.UploadDocumentRequest(data=payload[i : i + 256 * 1024])

    resp: ing_pb.UploadDocumentResponse = await stub.UploadDocument(
        reqs(), metadata=md(key), timeout=600
    )
    return resp


async def search(
    channel: grpc.aio.Channel, query: str, key: str = "key-acme", **kw: Any
) -> ans_pb.SearchResponse:
    stub = ans_grpc.AnsweringServiceStub(channel)
    resp: ans_pb.SearchResponse = await stub.Search(
        ans_pb.SearchRequest(query=query, **kw), metadata=md(key), timeout=60
    )
    return resp


async def answer(
    channel: grpc.aio.Channel, question: str, key: str = "key-acme", **kw: Any
) -> tuple[str, list[Any], Any]:
    stub = ans_grpc.AnsweringServiceStub(channel)
    text, cits, summary = [], [], None
    order = []
    async for msg in stub.Answer(
        ans_pb.AnswerRequest(question=question, **kw), metadata=md(key), timeout=120
    ):
        kind = msg.WhichOneof("content")
        order.append(kind)
        if kind == "delta":
            text.append(msg.delta.text)
        elif kind == "citations":
            cits = list(msg.citations.citations)
        else:
            summary = msg.summary
    # deltas first, then citations, then the summary, once each
    assert order[-2:] == ["citations", "summary"], order
    assert all(k == "delta" for k in order[:-2]), order
    return "".join(text), cits, summary


def error_reason(exc: grpc.aio.AioRpcError) -> str:
    from docfactory.core.interceptors import error_from_rpc

    return error_from_rpc(exc).reason
