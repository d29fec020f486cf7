"""MeasurementService transport: proto <-> domain only."""

from __future__ import annotations

import asyncio

import grpc

from docfactory.core.auth import current_principal
from docfactory.measurement.dossiers import DossierUsage
from docfactory.measurement.feedback import DISCARDED, EDITED, USED_AS_IS
from docfactory.measurement.service import FeedbackInput, MeasurementService
from docfactory.measurement.usage import Period, UsageRecord
from docfactory.measurement.v1 import measurement_service_pb2 as pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as pb_grpc

_USAGE = {
    pb.ANSWER_USAGE_USED_AS_IS: USED_AS_IS,
    pb.ANSWER_USAGE_EDITED: EDITED,
    pb.ANSWER_USAGE_DISCARDED: DISCARDED,
}
_VERDICT = {pb.VERDICT_USEFUL: True, pb.VERDICT_NOT_USEFUL: False}
_LINK = {
    "AUDIT_SEQ": pb.LINK_METHOD_AUDIT_SEQ,
    "REVIEW_ID": pb.LINK_METHOD_REVIEW_ID,
    "LATEST_ANSWER": pb.LINK_METHOD_LATEST_ANSWER,
    "RUN": pb.LINK_METHOD_RUN,
}


def _f(value: float | None) -> float:
    return float(value) if value is not None else 0.0


def usage_pb(r: UsageRecord) -> pb.UsageRecord:
    return pb.UsageRecord(
        tenant=r.tenant,
        use_case=r.use_case,
        active_users=r.active_users,
        questions=r.questions,
        searches=r.searches,
        denied=r.denied,
        denied_other=r.denied_other,
        internal_searches=r.internal_searches,
        answers_with_feedback=r.answers_with_feedback,
        feedback=r.feedback,
        mean_rating=_f(r.mean_rating),
        useful_rate=_f(r.useful_rate),
        time_saved_minutes=r.time_saved_minutes,
        citation_rate=_f(r.citation_rate),
        refusal_rate=_f(r.refusal_rate),
        review_approval_rate=_f(r.review_approval_rate),
        review_decisions=r.review_decisions,
        latency_p50_ms=_f(r.latency_p50_ms),
        latency_p95_ms=_f(r.latency_p95_ms),
        used_as_is=r.used_as_is,
        edited=r.edited,
        discarded=r.discarded,
        daily=[
            pb.DailyUsage(
                date=d.date,
                active_users=d.active_users,
                questions=d.questions,
                searches=d.searches,
                feedback=d.feedback,
                time_saved_minutes=d.time_saved_minutes,
            )
            for d in r.daily
        ],
        weekly=[
            pb.WeeklyUsage(week=w.week, active_users=w.active_users, questions=w.questions)
            for w in r.weekly
        ],
    )


def dossier_usage_pb(d: DossierUsage) -> pb.DossierUsage:
    return pb.DossierUsage(
        runs=d.runs,
        by_state=[pb.RunStateCount(state=k, runs=v) for k, v in d.by_state.items()],
        signed=d.signed,
        rejected=d.rejected,
        incomplete=d.incomplete,
        approval_rate=_f(d.approval_rate),
        has_approval_rate=d.approval_rate is not None,
        median_decision_seconds=_f(d.median_decision_seconds),
        decided_timed=d.decided_timed,
        approvals=d.approvals,
        rejections=d.rejections,
        fields_corrected=[
            pb.FieldCorrections(field=k, count=v) for k, v in d.fields_corrected.items()
        ],
        feedback=d.feedback,
        useful_rate=_f(d.useful_rate),
        time_saved_minutes=d.time_saved_minutes,
    )


class MeasurementServicer(pb_grpc.MeasurementServiceServicer):
    def __init__(self, service: MeasurementService) -> None:
        self._service = service

    async def SubmitFeedback(
        self, request: pb.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitFeedbackResponse:
        principal = current_principal()
        fb = FeedbackInput(
            answer_audit_seq=request.answer_audit_seq,
            review_id=request.review_id,
            useful=_VERDICT.get(request.verdict),
            rating=request.rating,
            comment=request.comment,
            time_saved_minutes=request.time_saved_minutes,
            usage=_USAGE.get(request.usage, ""),
            run=request.run,
        )
        stored = await asyncio.to_thread(self._service.submit, principal, fb)
        return pb.SubmitFeedbackResponse(
            feedback_id=stored.id,
            answer_audit_seq=stored.answer_audit_seq,
            link_method=_LINK.get(stored.link_method, pb.LINK_METHOD_UNSPECIFIED),
            feedback_audit_seq=stored.feedback_audit_seq,
            use_case=stored.use_case,
        )

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageResponse:
        principal = current_principal()
        period = Period.parse(request.from_date, request.to_date)
        records, dossiers = await asyncio.to_thread(
            self._service.usage_and_dossiers, principal.tenant, period, request.use_case or None
        )
        return pb.GetUsageResponse(
            records=[usage_pb(r) for r in records],
            from_date=period.start.isoformat(),
            to_date=period.end.isoformat(),
            dossiers=dossier_usage_pb(dossiers),
        )


def register(server: grpc.aio.Server, service: MeasurementService) -> str:
    pb_grpc.add_MeasurementServiceServicer_to_server(MeasurementServicer(service), server)
    return str(pb.DESCRIPTOR.services_by_name["MeasurementService"].full_name)
