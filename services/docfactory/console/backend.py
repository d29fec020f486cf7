"""The console's only way to the services: their gRPC APIs, called with the person's API key.

Every call carries the signed-in person's key, so the servers authenticate, authorize and audit
the person (not the console). A failure comes back as :class:`ServiceError` with the gRPC code
and the ``ErrorInfo`` reason; an unreachable service as code ``UNAVAILABLE``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.core.auth import API_KEY_HEADER
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as jobs_pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as jobs_grpc
from docfactory.measurement.v1 import measurement_service_pb2 as meas_pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as meas_grpc
from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc

DEFAULT_TIMEOUT = 30.0


@dataclass
class ServiceError(Exception):
    """A failed call: gRPC status code name, ErrorInfo reason and message."""

    code: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} [{self.reason}]: {self.message}"


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str
    roles: frozenset[str]
    policy_configured: bool


def _service_error(exc: grpc.aio.AioRpcError) -> ServiceError:
    from docfactory.core.interceptors import error_from_rpc

    code = exc.code()
    reason = error_from_rpc(exc).reason
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        reason = reason or "SERVICE_UNAVAILABLE"
    return ServiceError(code.name, str(reason or code.name), exc.details() or code.name)


class Backend:
    """Stubs of every service behind one address (``docfactory serve`` or a gateway)."""

    workflows: WorkflowsBackend

    def __init__(
        self, address: str, max_message_bytes: int = 64 * 1024 * 1024, tls: Any = None
    ) -> None:
        """``tls``: a :class:`docfactory.core.config.TlsConfig` (TLS / mTLS to the services, as
        the CLI does when ``DOCFACTORY_TLS_CA`` or a certificate is set); None: plain text."""
        self.address = address
        self._tls = tls
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._channel: grpc.aio.Channel | None = None
        self.workflows = WorkflowsBackend(self)

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._tls is None:
                self._channel = grpc.aio.insecure_channel(self.address, options=self._options)
            else:
                from docfactory.core.tls import aio_channel

                self._channel = aio_channel(self.address, self._tls, self._options)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def call(
        self, method: Any, request: Any, key: str, deadline_s: float = DEFAULT_TIMEOUT
    ) -> Any:
        try:
            return await method(request, metadata=((API_KEY_HEADER, key),), timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            raise _service_error(exc) from None

    # -- governance ----------------------------------------------------------------------------

    def _gov(self) -> gov_grpc.GovernanceServiceStub:
        return gov_grpc.GovernanceServiceStub(self.channel)

    async def caller(self, key: str) -> Caller:
        resp = await self.call(self._gov().GetCaller, gov_pb.GetCallerRequest(), key)
        return Caller(resp.tenant, resp.key_id, frozenset(resp.roles), resp.policy_configured)

    async def policy(self, key: str) -> gov_pb.GetPolicyResponse:
        resp: gov_pb.GetPolicyResponse = await self.call(
            self._gov().GetPolicy, gov_pb.GetPolicyRequest(), key
        )
        return resp

    async def list_reviews(
        self, key: str, *, page_token: str = "", use_case: str = ""
    ) -> gov_pb.ListReviewsResponse:
        resp: gov_pb.ListReviewsResponse = await self.call(
            self._gov().ListReviews,
            gov_pb.ListReviewsRequest(page_size=50, page_token=page_token, use_case=use_case),
            key,
        )
        return resp

    async def get_review(self, key: str, review_id: str) -> gov_pb.Review:
        resp = await self.call(
            self._gov().GetReview, gov_pb.GetReviewRequest(review_id=review_id), key
        )
        review: gov_pb.Review = resp.review
        return review

    async def claim_review(self, key: str, review_id: str) -> gov_pb.Review:
        resp = await self.call(
            self._gov().ClaimReview, gov_pb.ClaimReviewRequest(review_id=review_id), key
        )
        review: gov_pb.Review = resp.review
        return review

    async def decide_review(
        self, key: str, review_id: str, decision: int, *, amended_text: str, comment: str
    ) -> gov_pb.Review:
        resp = await self.call(
            self._gov().DecideReview,
            gov_pb.DecideReviewRequest(
                review_id=review_id,
                decision=decision,  # type: ignore[arg-type]
                amended_text=amended_text,
                comment=comment,
            ),
            key,
        )
        review: gov_pb.Review = resp.review
        return review

    async def verify_audit(self, key: str) -> gov_pb.VerifyAuditResponse:
        resp: gov_pb.VerifyAuditResponse = await self.call(
            self._gov().VerifyAudit, gov_pb.VerifyAuditRequest(), key, deadline_s=300
        )
        return resp

    async def export_audit(self, key: str) -> AsyncIterator[str]:
        """The tenant's audit records as JSON lines (streamed)."""
        call = self._gov().ExportAudit(
            gov_pb.ExportAuditRequest(), metadata=((API_KEY_HEADER, key),), timeout=600
        )
        try:
            async for batch in call:
                for line in batch.lines:
                    yield line + "\n"
        except grpc.aio.AioRpcError as exc:
            raise _service_error(exc) from None

    # -- documents -----------------------------------------------------------------------------

    def _ing(self) -> ing_grpc.IngestionServiceStub:
        return ing_grpc.IngestionServiceStub(self.channel)

    async def list_documents(
        self, key: str, *, collection: str = "", page_token: str = "", page_size: int = 50
    ) -> ing_pb.ListDocumentsResponse:
        resp: ing_pb.ListDocumentsResponse = await self.call(
            self._ing().ListDocuments,
            ing_pb.ListDocumentsRequest(
                page_size=page_size, page_token=page_token, collection=collection
            ),
            key,
        )
        return resp

    async def get_document(self, key: str, name: str) -> ing_pb.Document:
        resp = await self.call(self._ing().GetDocument, ing_pb.GetDocumentRequest(name=name), key)
        document: ing_pb.Document = resp.document
        return document

    async def delete_document(self, key: str, name: str) -> int:
        resp = await self.call(
            self._ing().DeleteDocument, ing_pb.DeleteDocumentRequest(name=name), key, deadline_s=120
        )
        return int(resp.deleted_chunks)

    async def search(
        self,
        key: str,
        query: str,
        *,
        use_case: str = "",
        collections: Sequence[str] = (),
        document_ids: Sequence[str] = (),
        top_k: int = 10,
    ) -> ans_pb.SearchResponse:
        resp: ans_pb.SearchResponse = await self.call(
            ans_grpc.AnsweringServiceStub(self.channel).Search,
            ans_pb.SearchRequest(
                query=query,
                use_case=use_case,
                collections=list(collections),
                document_ids=list(document_ids),
                top_k=top_k,
            ),
            key,
            deadline_s=120,
        )
        return resp

    async def answer(
        self,
        key: str,
        question: str,
        *,
        use_case: str = "",
        collections: Sequence[str] = (),
        deadline_s: float = 300.0,
    ) -> AsyncIterator[ans_pb.AnswerResponse]:
        """AnsweringService.Answer, streamed: text deltas, then citations, then the summary."""
        call = ans_grpc.AnsweringServiceStub(self.channel).Answer(
            ans_pb.AnswerRequest(
                question=question, use_case=use_case, collections=list(collections)
            ),
            metadata=((API_KEY_HEADER, key),),
            timeout=deadline_s,
        )
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise _service_error(exc) from None
        finally:
            call.cancel()  # the browser left: stop the generation (no-op once it ended)

    async def use_cases(self, key: str, caller: Caller) -> list[gov_pb.UseCase]:
        """The use cases the person may declare (the policy's for their tenant); none without a
        policy (the policy-free default: no use case declared)."""
        if not caller.policy_configured:
            return []
        return list((await self.policy(key)).use_cases)

    # -- jobs ------------------------------------------------------------------------------------

    def _jobs(self) -> jobs_grpc.JobsServiceStub:
        return jobs_grpc.JobsServiceStub(self.channel)

    async def list_jobs(self, key: str, *, page_token: str = "") -> jobs_pb.ListJobsResponse:
        resp: jobs_pb.ListJobsResponse = await self.call(
            self._jobs().ListJobs, jobs_pb.ListJobsRequest(page_size=50, page_token=page_token), key
        )
        return resp

    async def get_job(self, key: str, name: str) -> jobs_pb.Job:
        resp = await self.call(self._jobs().GetJob, jobs_pb.GetJobRequest(name=name), key)
        job: jobs_pb.Job = resp.job
        return job

    async def job_failures(self, key: str, name: str) -> list[jobs_pb.JobDocument]:
        resp = await self.call(
            self._jobs().ListJobDocuments,
            jobs_pb.ListJobDocumentsRequest(
                name=name, page_size=200, outcome=jobs_pb.DOCUMENT_OUTCOME_FAILED
            ),
            key,
        )
        return list(resp.documents)

    # -- usage -----------------------------------------------------------------------------------

    async def usage(
        self, key: str, *, use_case: str = "", from_date: str = "", to_date: str = ""
    ) -> meas_pb.GetUsageResponse:
        resp: meas_pb.GetUsageResponse = await self.call(
            meas_grpc.MeasurementServiceStub(self.channel).GetUsage,
            meas_pb.GetUsageRequest(use_case=use_case, from_date=from_date, to_date=to_date),
            key,
            deadline_s=120,
        )
        return resp

    async def submit_feedback(
        self,
        key: str,
        *,
        answer_id: int = 0,
        run: str = "",
        useful: bool | None = None,
        minutes: float = 0.0,
        comment: str = "",
    ) -> meas_pb.SubmitFeedbackResponse:
        """MeasurementService.SubmitFeedback on an answer (AnswerSummary.answer_id) or a signed
        dossier run ("runs/{id}")."""
        verdict = meas_pb.VERDICT_UNSPECIFIED
        if useful is not None:
            verdict = meas_pb.VERDICT_USEFUL if useful else meas_pb.VERDICT_NOT_USEFUL
        resp: meas_pb.SubmitFeedbackResponse = await self.call(
            meas_grpc.MeasurementServiceStub(self.channel).SubmitFeedback,
            meas_pb.SubmitFeedbackRequest(
                answer_audit_seq=answer_id,
                run=run,
                verdict=verdict,
                time_saved_minutes=minutes,
                comment=comment,
            ),
            key,
        )
        return resp


class WorkflowsBackend:
    """WorkflowService calls (dossiers, runs, sign-off decisions) on the backend's channel."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def _stub(self) -> Any:
        return wf_grpc.WorkflowServiceStub(self._backend.channel)

    async def list_dossiers(
        self, key: str, *, state: int = 0, flow: str = "", page_token: str = ""
    ) -> Any:
        return await self._backend.call(
            self._stub().ListDossiers,
            wf_pb.ListDossiersRequest(
                page_size=50,
                page_token=page_token,
                state=state,  # type: ignore[arg-type]
                flow=flow,
            ),
            key,
        )

    async def get_dossier(self, key: str, name: str) -> Any:
        resp = await self._backend.call(
            self._stub().GetDossier, wf_pb.GetDossierRequest(name=name), key
        )
        return resp.dossier

    async def start_run(self, key: str, dossier: str, flow: str) -> Any:
        resp = await self._backend.call(
            self._stub().StartRun, wf_pb.StartRunRequest(dossier=dossier, flow=flow), key
        )
        return resp.run

    async def get_run(self, key: str, name: str) -> Any:
        resp = await self._backend.call(self._stub().GetRun, wf_pb.GetRunRequest(name=name), key)
        return resp.run

    async def pending(self, key: str) -> list[Any]:
        resp = await self._backend.call(
            self._stub().ListPendingDecisions,
            wf_pb.ListPendingDecisionsRequest(page_size=100),
            key,
        )
        return list(resp.runs)

    async def decide(
        self, key: str, name: str, kind: int, comment: str, amendments: dict[str, str]
    ) -> Any:
        return await self._backend.call(
            self._stub().SubmitDecision,
            wf_pb.SubmitDecisionRequest(
                name=name,
                kind=kind,  # type: ignore[arg-type]
                comment=comment,
                amendments=amendments,
            ),
            key,
        )
