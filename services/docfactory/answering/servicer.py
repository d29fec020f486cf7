"""AnsweringService transport: proto <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from docfactory.answering.service import (
    AnsweringService,
    Citation,
    CitationsUsed,
    Delta,
    SearchParams,
    Summary,
)
from docfactory.answering.v1 import answering_service_pb2 as pb
from docfactory.answering.v1 import answering_service_pb2_grpc as pb_grpc
from docfactory.common.v1 import common_pb2
from docfactory.core.auth import current_principal
from docfactory.core.errors import InvalidArgument
from docfactory.core.filters import filter_from_proto

_MODE = {
    pb.SEARCH_MODE_DENSE: "dense",
    pb.SEARCH_MODE_SPARSE: "sparse",
    pb.SEARCH_MODE_HYBRID: "hybrid",
}


def citation_to_proto(c: Citation) -> common_pb2.Citation:
    return common_pb2.Citation(
        document_id=c.document_id,
        document_name=c.document_name,
        source_uri=c.source_uri,
        chunk_id=c.chunk_id,
        page_numbers=list(c.page_numbers),
        section_path=list(c.section_path),
        quote=c.quote,
        score=c.score,
        collection=c.collection,
        document_version=c.document_version,
        marker=c.marker,
    )


_ROLE = {pb.TURN_ROLE_USER: "user", pb.TURN_ROLE_ASSISTANT: "assistant"}


def _history(request: pb.SearchRequest | pb.AnswerRequest) -> tuple[tuple[str, str], ...]:
    if not isinstance(request, pb.AnswerRequest):
        return ()
    turns = []
    for i, t in enumerate(request.history):
        role = _ROLE.get(t.role)
        if role is None or not t.text.strip():
            raise InvalidArgument(
                f"history[{i}] needs a role (USER or ASSISTANT) and a text",
                reason="INVALID_HISTORY",
                field_violations=[(f"history[{i}]", "role and text are required")],
            )
        turns.append((role, t.text))
    return tuple(turns)


def _params(request: pb.SearchRequest | pb.AnswerRequest, query: str) -> SearchParams:
    return SearchParams(
        query=query,
        collections=tuple(request.collections),
        top_k=request.top_k,
        document_ids=tuple(request.document_ids),
        mode=_MODE.get(request.mode, ""),
        use_case=request.use_case,
        filter=filter_from_proto(request.filter if request.HasField("filter") else None),
        history=_history(request),
    )


class AnsweringServicer(pb_grpc.AnsweringServiceServicer):
    def __init__(self, service: AnsweringService) -> None:
        self._svc = service

    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        passages, took = await self._svc.search(
            current_principal(), _params(request, request.query)
        )
        return pb.SearchResponse(
            results=[
                pb.SearchResult(text=p.text, score=p.score, citation=citation_to_proto(p.citation))
                for p in passages
            ],
            took_ms=took,
        )

    async def Answer(
        self, request: pb.AnswerRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AnswerResponse]:
        async for event in self._svc.answer(
            current_principal(), _params(request, request.question)
        ):
            if isinstance(event, Delta):
                yield pb.AnswerResponse(delta=pb.AnswerDelta(text=event.text))
            elif isinstance(event, CitationsUsed):
                yield pb.AnswerResponse(
                    citations=pb.AnswerCitations(
                        citations=[citation_to_proto(c) for c in event.citations]
                    )
                )
            elif isinstance(event, Summary):
                yield pb.AnswerResponse(
                    summary=pb.AnswerSummary(
                        generator=event.generator,
                        extractive=event.extractive,
                        insufficient_context=event.insufficient_context,
                        retrieval_ms=event.retrieval_ms,
                        first_token_ms=event.first_token_ms,
                        generation_ms=event.generation_ms,
                        total_ms=event.total_ms,
                        prompt_tokens=event.prompt_tokens,
                        completion_tokens=event.completion_tokens,
                        language=event.language,
                        review_id=event.review_id,
                        pending_review=event.pending_review,
                        model=event.model,
                        answer_id=event.answer_id,
                    )
                )


def register(server: grpc.aio.Server, service: AnsweringService) -> str:
    pb_grpc.add_AnsweringServiceServicer_to_server(AnsweringServicer(service), server)
    return str(pb.DESCRIPTOR.services_by_name["AnsweringService"].full_name)
