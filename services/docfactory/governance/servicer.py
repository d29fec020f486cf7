"""GovernanceService transport: proto <-> domain only."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from docfactory.common.v1 import common_pb2
from docfactory.core.auth import current_principal
from docfactory.core.validation import check_timestamp
from docfactory.governance.gate import GovernanceGate
from docfactory.governance.reviews import Review
from docfactory.governance.service import GovernanceService, UseCaseView
from docfactory.governance.v1 import governance_service_pb2 as pb
from docfactory.governance.v1 import governance_service_pb2_grpc as pb_grpc

_DECISIONS = {
    pb.REVIEW_DECISION_APPROVE: "APPROVED",
    pb.REVIEW_DECISION_AMEND: "AMENDED",
    pb.REVIEW_DECISION_REJECT: "REJECTED",
}


def _since(request: pb.ExportAuditRequest) -> dt.datetime | None:
    """``start_time`` as an aware datetime (None when unset). The interceptor has refused a
    timestamp out of range already; checked again here so that a direct call never turns
    ``ToDatetime``'s ValueError into INTERNAL."""
    if not request.HasField("start_time"):
        return None
    ts = request.start_time
    check_timestamp(ts.seconds, ts.nanos, "start_time")
    return ts.ToDatetime(dt.UTC)


def _citation(d: Mapping[str, Any]) -> common_pb2.Citation:
    return common_pb2.Citation(
        document_id=str(d.get("document_id", "")),
        document_name=str(d.get("document_name", "")),
        source_uri=str(d.get("source_uri", "")),
        chunk_id=str(d.get("chunk_id", "")),
        page_numbers=[int(x) for x in d.get("page_numbers") or ()],
        section_path=[str(x) for x in d.get("section_path") or ()],
        quote=str(d.get("quote", "")),
        score=float(d.get("score", 0.0)),
        collection=str(d.get("collection", "")),
        document_version=int(d.get("document_version", 0)),
        marker=int(d.get("marker", 0)),
    )


def _review(r: Review) -> pb.Review:
    ts = Timestamp()
    ts.FromDatetime(r.created_at)
    now = dt.datetime.now(dt.UTC)
    holder = r.claim_holder(now)
    claim_end = None
    if holder and r.claimed_until is not None:
        claim_end = Timestamp()
        claim_end.FromDatetime(r.claimed_until)
    return pb.Review(
        claimed_by_key_id=holder or "",
        claim_expire_time=claim_end,
        reviewer_key_id=r.reviewer_key_id or "",
        comment=r.comment,
        amended_text=r.amended_text or "",
        question=r.question(now),
        review_id=r.review_id,
        use_case=r.use_case,
        requester_key_id=r.requester_key_id,
        state=r.state,
        draft_text=r.answer_text,
        citations=[_citation(c) for c in r.citations],
        model=r.model,
        create_time=ts,
    )


def _use_case(uc: UseCaseView) -> pb.UseCase:
    return pb.UseCase(
        use_case_id=uc.id,
        owner=uc.owner,
        purpose=uc.purpose,
        allowed_collections=list(uc.allowed_collections),
        max_classification=uc.max_classification,  # type: ignore[arg-type]
        allowed_models=list(uc.allowed_models),
        human_review_required=uc.human_review,
        retention=uc.retention,
    )


class GovernanceServicer(pb_grpc.GovernanceServiceServicer):
    def __init__(self, service: GovernanceService) -> None:
        self._svc = service

    async def GetPolicy(
        self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPolicyResponse:
        version, use_cases = self._svc.policy_for(current_principal())
        return pb.GetPolicyResponse(version=version, use_cases=[_use_case(u) for u in use_cases])

    async def ListReviews(
        self, request: pb.ListReviewsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReviewsResponse:
        reviews, token = await self._svc.list_reviews(
            current_principal(),
            use_case=request.use_case,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListReviewsResponse(reviews=[_review(r) for r in reviews], next_page_token=token)

    async def DecideReview(
        self, request: pb.DecideReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.DecideReviewResponse:
        review = await self._svc.decide_review(
            current_principal(),
            request.review_id,
            decision=_DECISIONS.get(request.decision, ""),
            amended_text=request.amended_text,
            comment=request.comment,
        )
        return pb.DecideReviewResponse(review=_review(review))

    async def GetReviewedAnswer(
        self, request: pb.GetReviewedAnswerRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReviewedAnswerResponse:
        released = await self._svc.reviewed_answer(current_principal(), request.review_id)
        return pb.GetReviewedAnswerResponse(
            state=released.state,
            text=released.text,
            citations=[_citation(c) for c in released.citations],
            reviewer_key_id=released.reviewer_key_id,
        )

    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyAuditResponse:
        report = await self._svc.verify_audit(current_principal())
        return pb.VerifyAuditResponse(
            ok=report.ok,
            checked=report.checked,
            problems=[pb.AuditProblem(seq=p.seq, kind=p.kind) for p in report.problems],
        )

    async def GetCaller(
        self, request: pb.GetCallerRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCallerResponse:
        caller = self._svc.caller(current_principal())
        return pb.GetCallerResponse(
            tenant=caller.principal.tenant,
            key_id=caller.principal.key_id,
            roles=sorted(caller.principal.roles),
            policy_configured=caller.policy_configured,
        )

    async def GetReview(
        self, request: pb.GetReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReviewResponse:
        review = await self._svc.get_review(current_principal(), request.review_id)
        return pb.GetReviewResponse(review=_review(review))

    async def ClaimReview(
        self, request: pb.ClaimReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClaimReviewResponse:
        review = await self._svc.claim_review(
            current_principal(), request.review_id, request.ttl_seconds
        )
        return pb.ClaimReviewResponse(review=_review(review))

    async def ExportAudit(
        self, request: pb.ExportAuditRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportAuditResponse]:
        since = _since(request)
        async for lines in self._svc.export_audit(current_principal(), since):
            yield pb.ExportAuditResponse(lines=lines)


def register(server: grpc.aio.Server, gate: GovernanceGate) -> str:
    pb_grpc.add_GovernanceServiceServicer_to_server(
        GovernanceServicer(GovernanceService(gate)), server
    )
    return str(pb.DESCRIPTOR.services_by_name["GovernanceService"].full_name)
