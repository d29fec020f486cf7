"""GovernanceService transport: proto <-> domain only."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from docfactory.common.v1 import common_pb2
from docfactory.core.auth import Principal, current_principal
from docfactory.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from docfactory.governance.audit import canonical_json
from docfactory.governance.gate import GovernanceGate
from docfactory.governance.reviews import DEFAULT_CLAIM, Review
from docfactory.governance.v1 import governance_service_pb2 as pb
from docfactory.governance.v1 import governance_service_pb2_grpc as pb_grpc

_DECISIONS = {
    pb.REVIEW_DECISION_APPROVE: "APPROVED",
    pb.REVIEW_DECISION_AMEND: "AMENDED",
    pb.REVIEW_DECISION_REJECT: "REJECTED",
}


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


class GovernanceServicer(pb_grpc.GovernanceServiceServicer):
    def __init__(self, gate: GovernanceGate) -> None:
        self._gate = gate

    def _require_policy(self) -> None:
        if self._gate.policy is None or self._gate.reviews is None:
            raise FailedPrecondition(
                "no governance policy is configured (DOCFACTORY_POLICY_FILE)",
                reason="NO_POLICY",
            )

    def _require_role(self, principal: Principal, role: str) -> None:
        assert self._gate.policy is not None
        if not self._gate.policy.current().has_role(principal.key_id, role):
            raise PermissionDenied(
                f"the {role} role is required", reason=f"{role.upper()}_ROLE_REQUIRED"
            )

    async def GetPolicy(
        self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPolicyResponse:
        self._require_policy()
        assert self._gate.policy is not None
        policy = self._gate.policy.current()
        tenant = current_principal().tenant
        out = []
        for uc in policy.use_cases.values():
            if tenant not in uc.tenants:
                continue
            out.append(
                pb.UseCase(
                    use_case_id=uc.id,
                    owner=uc.owner,
                    purpose=uc.purpose,
                    allowed_collections=sorted(uc.allowed_collections or ()),
                    max_classification=uc.max_classification,  # type: ignore[arg-type]
                    allowed_models=sorted(uc.allowed_models or ()),
                    human_review_required=uc.human_review,
                    retention=uc.retention.spec,
                )
            )
        return pb.GetPolicyResponse(version=str(policy.version), use_cases=out)

    async def ListReviews(
        self, request: pb.ListReviewsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReviewsResponse:
        self._require_policy()
        principal = current_principal()
        self._require_role(principal, "reviewer")
        assert self._gate.reviews is not None
        reviews, token = await asyncio.to_thread(
            lambda: self._gate.reviews.list_pending(  # type: ignore[union-attr]
                principal.tenant,
                use_case=request.use_case or None,
                page_size=request.page_size or 50,
                page_token=request.page_token,
            )
        )
        return pb.ListReviewsResponse(reviews=[_review(r) for r in reviews], next_page_token=token)

    async def DecideReview(
        self, request: pb.DecideReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.DecideReviewResponse:
        self._require_policy()
        principal = current_principal()
        self._require_role(principal, "reviewer")
        decision = _DECISIONS.get(request.decision)
        if decision is None:
            raise InvalidArgument("decision is required", reason="INVALID_DECISION")
        assert self._gate.reviews is not None
        reviews = self._gate.reviews
        review = await asyncio.to_thread(
            lambda: reviews.decide(
                principal.tenant,
                request.review_id,
                reviewer_key_id=principal.key_id,
                decision=decision,
                amended_text=request.amended_text or None,
                comment=request.comment,
            )
        )
        await asyncio.to_thread(
            lambda: self._gate.record(
                principal,
                action="REVIEW_DECISION",
                use_case=review.use_case,
                outcome=decision,
                document_ids=[str(c.get("document_id", "")) for c in review.citations],
                model=review.model,
                details={"review_id": review.review_id},
            )
        )
        return pb.DecideReviewResponse(review=_review(review))

    async def GetReviewedAnswer(
        self, request: pb.GetReviewedAnswerRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReviewedAnswerResponse:
        self._require_policy()
        principal = current_principal()
        assert self._gate.reviews is not None
        reviews = self._gate.reviews
        released = await asyncio.to_thread(
            lambda: reviews.released_answer(principal.tenant, request.review_id)
        )
        return pb.GetReviewedAnswerResponse(
            state=released.state,
            text=released.text,
            citations=[_citation(c) for c in released.citations],
            reviewer_key_id=released.reviewer_key_id,
        )

    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyAuditResponse:
        self._require_policy()
        self._require_role(current_principal(), "auditor")
        report = await asyncio.to_thread(self._gate.audit.verify)
        return pb.VerifyAuditResponse(
            ok=report.ok,
            checked=report.checked,
            problems=[pb.AuditProblem(seq=p.seq, kind=p.kind) for p in report.problems],
        )

    async def GetCaller(
        self, request: pb.GetCallerRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCallerResponse:
        principal = current_principal()
        return pb.GetCallerResponse(
            tenant=principal.tenant,
            key_id=principal.key_id,
            roles=sorted(principal.roles),
            policy_configured=self._gate.policy is not None,
        )

    async def GetReview(
        self, request: pb.GetReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReviewResponse:
        self._require_policy()
        principal = current_principal()
        self._require_role(principal, "reviewer")
        assert self._gate.reviews is not None
        reviews = self._gate.reviews
        review = await asyncio.to_thread(lambda: reviews.get(principal.tenant, request.review_id))
        return pb.GetReviewResponse(review=_review(review))

    async def ClaimReview(
        self, request: pb.ClaimReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClaimReviewResponse:
        self._require_policy()
        principal = current_principal()
        self._require_role(principal, "reviewer")
        if request.ttl_seconds < 0:
            raise InvalidArgument("ttl_seconds must not be negative", reason="INVALID_CLAIM_TTL")
        ttl = dt.timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else DEFAULT_CLAIM
        assert self._gate.reviews is not None
        reviews = self._gate.reviews
        review = await asyncio.to_thread(
            lambda: reviews.claim(
                principal.tenant, request.review_id, reviewer_key_id=principal.key_id, ttl=ttl
            )
        )
        await asyncio.to_thread(
            lambda: self._gate.record(
                principal,
                action="REVIEW_CLAIM",
                use_case=review.use_case,
                outcome="CLAIMED",
                details={"review_id": review.review_id, "ttl_seconds": int(ttl.total_seconds())},
            )
        )
        return pb.ClaimReviewResponse(review=_review(review))

    async def ExportAudit(
        self, request: pb.ExportAuditRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportAuditResponse]:
        self._require_policy()
        principal = current_principal()
        self._require_role(principal, "auditor")
        since = request.start_time.ToDatetime(dt.UTC) if request.HasField("start_time") else None
        records = iter(self._gate.audit.records(since=since, tenant=principal.tenant))

        def batch() -> list[str]:
            return [canonical_json(r.to_json()) for r in itertools.islice(records, 500)]

        while lines := await asyncio.to_thread(batch):
            yield pb.ExportAuditResponse(lines=lines)


def register(server: grpc.aio.Server, gate: GovernanceGate) -> str:
    pb_grpc.add_GovernanceServiceServicer_to_server(GovernanceServicer(gate), server)
    return str(pb.DESCRIPTOR.services_by_name["GovernanceService"].full_name)
