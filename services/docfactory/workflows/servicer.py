"""WorkflowService transport: proto <-> domain only."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from docfactory.core.auth import current_principal
from docfactory.core.errors import InvalidArgument
from docfactory.workflows.repo import DecisionRow, DossierRow, RunRow
from docfactory.workflows.service import RunView, WorkflowService
from docfactory.workflows.steps import qualifying_approvers
from docfactory.workflows.v1 import workflows_service_pb2 as pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as pb_grpc

_STATE = {
    "QUEUED": pb.RUN_STATE_QUEUED,
    "RUNNING": pb.RUN_STATE_RUNNING,
    "INCOMPLETE": pb.RUN_STATE_INCOMPLETE,
    "AWAITING_SIGNOFF": pb.RUN_STATE_AWAITING_SIGNOFF,
    "ESCALATED": pb.RUN_STATE_ESCALATED,
    "COMPLETED": pb.RUN_STATE_COMPLETED,
    "REJECTED": pb.RUN_STATE_REJECTED,
    "CANCELLED": pb.RUN_STATE_CANCELLED,
    "FAILED": pb.RUN_STATE_FAILED,
}
_STATE_NAME = {v: k for k, v in _STATE.items()}
_KIND = {
    "APPROVE": pb.DECISION_KIND_APPROVE,
    "AMEND": pb.DECISION_KIND_AMEND,
    "REJECT": pb.DECISION_KIND_REJECT,
}
_KIND_NAME = {v: k for k, v in _KIND.items()}
_CHECK = {
    "PASSED": pb.CHECK_OUTCOME_PASSED,
    "FAILED": pb.CHECK_OUTCOME_FAILED,
    "NOT_EVALUATED": pb.CHECK_OUTCOME_NOT_EVALUATED,
}


def _ts(epoch: float | None) -> Timestamp | None:
    if epoch is None:
        return None
    t = Timestamp()
    t.FromDatetime(dt.datetime.fromtimestamp(epoch, dt.UTC))
    return t


def _id(name: str, prefix: str) -> str:
    value = name.removeprefix(f"{prefix}/")
    if not value or "/" in value or len(value) > 64:
        raise InvalidArgument(
            f"invalid name {name!r}: expected '{prefix}/{{id}}'",
            reason=f"INVALID_{prefix[:-1].upper()}_NAME",
        )
    return value


def dossier_to_proto(d: DossierRow) -> pb.Dossier:
    return pb.Dossier(
        name=f"dossiers/{d.dossier_id}",
        dossier_id=d.dossier_id,
        display_name=d.display_name,
        use_case=d.use_case,
        classification=d.classification,
        documents=[
            pb.DossierDocument(
                document_id=x.document_id, filename=x.filename, page_count=x.page_count
            )
            for x in d.documents
        ],
        metadata=d.metadata,
        latest_run_state=_STATE.get(d.latest_state, pb.RUN_STATE_UNSPECIFIED),
        latest_flow=d.latest_flow,
        create_time=_ts(d.created_at),
        latest_run=f"runs/{d.latest_run_id}" if d.latest_run_id else "",
        submitted_by=d.created_by,
        runs=[
            pb.RunSummary(
                name=f"runs/{r.run_id}",
                flow=r.flow_ref,
                state=_STATE.get(r.state, pb.RUN_STATE_UNSPECIFIED),
                create_time=_ts(r.created_at),
                finish_time=_ts(r.finished_at),
            )
            for r in d.runs
        ],
    )


def _decision(d: DecisionRow) -> pb.Decision:
    return pb.Decision(
        decision_id=d.decision_id,
        kind=_KIND.get(d.kind, pb.DECISION_KIND_UNSPECIFIED),
        reviewer=d.reviewer,
        comment=d.comment,
        amendments=d.amendments,
        create_time=_ts(d.created_at),
    )


def _field(f: Mapping[str, Any]) -> pb.Field:
    ev = f.get("evidence")
    return pb.Field(
        name=f["name"],
        title=f.get("title", ""),
        value=f.get("value") or "",
        evidence=pb.Evidence(
            document_id=ev["document_id"],
            page=int(ev.get("page") or 0),
            start=int(ev["start"]),
            end=int(ev["end"]),
            quote=ev["quote"],
        )
        if ev
        else None,
        confidence=float(f.get("confidence", 0.0)),
        status=f.get("status", ""),
        amended_by=f.get("amended_by", ""),
        kind=f.get("kind", ""),
    )


def result_to_proto(
    result: Mapping[str, Any], decisions: list[DecisionRow], released: bool
) -> pb.RunResult:
    return pb.RunResult(
        documents=[
            pb.DocumentResult(
                document_id=d["document_id"],
                filename=d.get("filename", ""),
                type=d.get("type", ""),
                type_confidence=float(d.get("type_confidence", 0.0)),
                fields=[_field(f) for f in d.get("fields", [])],
            )
            for d in result.get("documents", [])
        ],
        checks=[
            pb.CheckResult(
                rule=c["rule"],
                label=c.get("label", ""),
                outcome=_CHECK.get(c["outcome"], pb.CHECK_OUTCOME_UNSPECIFIED),
                fields=list(c.get("fields", [])),
                detail=c.get("detail", ""),
                severity=c.get("severity", ""),
            )
            for c in result.get("checks", [])
        ],
        note=result.get("note", ""),
        citations=[
            pb.Citation(
                marker=int(c["marker"]),
                document_id=c["document_id"],
                filename=c.get("filename", ""),
                page=int(c.get("page") or 0),
                quote=c["quote"],
                source=c.get("source", ""),
            )
            for c in result.get("citations", [])
        ],
        extractive=bool(result.get("extractive", False)),
        decisions=[_decision(d) for d in decisions],
        released=released,
    )


def run_to_proto(view: RunView, timings: Mapping[str, tuple[int, int, float]]) -> pb.Run:
    r: RunRow = view.run
    # Approvals that count: after the last amendment, never the submitter's.
    approvals = len(qualifying_approvers(view.decisions, r))
    return pb.Run(
        name=f"runs/{r.run_id}",
        run_id=r.run_id,
        dossier=f"dossiers/{r.dossier_id}",
        flow=r.flow_ref,
        state=_STATE.get(r.state, pb.RUN_STATE_UNSPECIFIED),
        step=r.step,
        missing_documents=r.missing,
        error_reason=r.error_reason,
        error_message=r.error_message,
        result=result_to_proto(r.result, view.decisions, r.state == "COMPLETED")
        if view.result_visible
        else None,
        signoff_role=r.signoff_role,
        approvals_required=r.approvals_required,
        approvals=approvals,
        signoff_deadline=_ts(r.deadline),
        timings=[
            pb.StepTiming(step=k, duration_ms=v[2], attempts=v[0]) for k, v in timings.items()
        ],
        create_time=_ts(r.created_at),
        update_time=_ts(r.updated_at),
        notice=pb.RunNotice(
            reason=view.notice.reason,
            message=view.notice.message,
            queued_seconds=view.notice.queued_seconds,
        )
        if view.notice is not None
        else None,
    )


class WorkflowServicer(pb_grpc.WorkflowServiceServicer):
    def __init__(self, service: WorkflowService) -> None:
        self._svc = service

    async def _proto(self, view: RunView) -> pb.Run:
        return run_to_proto(view, await self._svc.step_timings(view.run.run_id))

    async def CreateDossier(
        self, request: pb.CreateDossierRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateDossierResponse:
        row = await self._svc.create_dossier(
            current_principal(),
            display_name=request.display_name,
            use_case=request.use_case,
            document_ids=list(request.document_ids),
            files=[(f.filename, f.content) for f in request.files],
            metadata=dict(request.metadata),
            classification=request.classification,
        )
        return pb.CreateDossierResponse(dossier=dossier_to_proto(row))

    async def GetDossier(
        self, request: pb.GetDossierRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDossierResponse:
        row = await self._svc.get_dossier(current_principal(), _id(request.name, "dossiers"))
        return pb.GetDossierResponse(dossier=dossier_to_proto(row))

    async def ListDossiers(
        self, request: pb.ListDossiersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDossiersResponse:
        rows, token = await self._svc.list_dossiers(
            current_principal(),
            state=_STATE_NAME.get(request.state, ""),
            flow=request.flow,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListDossiersResponse(
            dossiers=[dossier_to_proto(r) for r in rows], next_page_token=token
        )

    async def StartRun(
        self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartRunResponse:
        principal = current_principal()
        run = await self._svc.start_run(principal, _id(request.dossier, "dossiers"), request.flow)
        return pb.StartRunResponse(run=await self._proto(RunView(run, False, [])))

    async def GetRun(
        self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRunResponse:
        view = await self._svc.get_run(current_principal(), _id(request.name, "runs"))
        return pb.GetRunResponse(run=await self._proto(view))

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchRunResponse]:
        async for e in self._svc.watch_run(current_principal(), _id(request.name, "runs")):
            yield pb.WatchRunResponse(
                sequence=e.seq,
                step=e.step,
                event=e.event,
                state=_STATE.get(e.state, pb.RUN_STATE_UNSPECIFIED),
                detail=e.detail,
                time=_ts(e.at),
            )

    async def ListPendingDecisions(
        self, request: pb.ListPendingDecisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPendingDecisionsResponse:
        views, token = await self._svc.pending(
            current_principal(), page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListPendingDecisionsResponse(
            runs=[await self._proto(v) for v in views], next_page_token=token
        )

    async def SubmitDecision(
        self, request: pb.SubmitDecisionRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitDecisionResponse:
        principal = current_principal()
        decision, _ = await self._svc.submit_decision(
            principal,
            _id(request.name, "runs"),
            _KIND_NAME.get(request.kind, ""),
            request.comment,
            dict(request.amendments),
        )
        view = await self._svc.get_run(principal, decision.run_id)
        return pb.SubmitDecisionResponse(decision=_decision(decision), run=await self._proto(view))

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelRunResponse:
        principal = current_principal()
        run = await self._svc.cancel_run(principal, _id(request.name, "runs"))
        view = await self._svc.get_run(principal, run.run_id)
        return pb.CancelRunResponse(run=await self._proto(view))


def register(server: grpc.aio.Server, service: WorkflowService) -> str:
    pb_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(service), server)
    name: str = pb.DESCRIPTOR.services_by_name["WorkflowService"].full_name
    return name
