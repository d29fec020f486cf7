"""WorkflowService domain: dossiers, runs, decisions, under governance.

- A dossier's uploads go through the normal ingestion path (IngestionService.ingest_file: same
  parsing, chunking, indexing, audit) in the dossier's scope (caller's tenant, the dossier's
  classification, collection ``dossiers``); their page texts are kept with the dossier for the
  extraction steps (workers do not open the vector index).
- A flow runs only under a use case that lists it (policy ``use_cases[].flows``), within the
  tenant and the use case's classification ceiling; another tenant's dossier or run is
  NOT_FOUND; every refusal is audited.
- Sign-off: the flow's role (from the caller's policy roles; admin always qualifies), the
  escalation role once the deadline passed, four-eyes (two distinct reviewers) above the
  flow's threshold. A run's result is released only once approved.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from docfactory.core.auth import Principal
from docfactory.core.errors import (
    DocfactoryError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from docfactory.core.methods import method_names
from docfactory.core.pagination import next_page, page_request
from docfactory.ingestion.v1 import ingestion_service_pb2 as ingestion_pb
from docfactory.workflows import metrics
from docfactory.workflows.flows import FlowRegistry, FlowSpec
from docfactory.workflows.repo import (
    AMEND,
    APPROVE,
    CANCELLED,
    COMPLETED,
    ESCALATED,
    FAILED,
    INCOMPLETE,
    QUEUED,
    REJECT,
    TERMINAL,
    WAITING,
    DecisionRow,
    DocRow,
    DossierRow,
    EventRow,
    RunRow,
    WorkflowRepository,
)
from docfactory.workflows.steps import DOSSIER_COLLECTION

INTERNAL = 2
MAX_FILES = 50
#: Largest page of ListDossiers / ListPendingDecisions.
MAX_PAGE = 500
#: How often WatchRun looks for new events.
WATCH_POLL_SECONDS = 0.25


class Ingestor(Protocol):
    async def ingest_file(
        self,
        *,
        tenant: str,
        path: Path,
        filename: str,
        collection: str = "",
        classification: int = 0,
        metadata: Mapping[str, str] | None = None,
        source_uri: str = "",
        on_parsed: Callable[[Any], None] | None = None,
    ) -> Any: ...

    async def get(self, tenant: str, document_id: str) -> Any: ...


class PageParser(Protocol):
    def parse(self, path: Path, filename: str) -> Any: ...


class Queue(Protocol):
    def start(self, run_id: str, tenant: str) -> None: ...
    def notify(self, run_id: str, decision_id: str) -> None: ...
    def cancel(self, run_id: str) -> None: ...


@dataclass(frozen=True)
class RunView:
    run: RunRow
    result_visible: bool
    decisions: list[DecisionRow]
    notice: RunNotice | None = None


@dataclass(frozen=True)
class RunNotice:
    """Why a run is not progressing (``NO_WORKER``: queued, and no worker is alive)."""

    reason: str
    message: str
    queued_seconds: float


def pages_of(parsed: Any) -> list[str]:
    """Page texts of a parsed document (elements joined per page; one page when the format
    has none)."""
    pages: dict[int, list[str]] = {}
    for el in parsed.elements:
        if el.text and el.text.strip():
            pages.setdefault(max(int(el.page_number or 1), 1), []).append(el.text)
    if not pages:
        return []
    last = max(pages)
    return ["\n".join(pages.get(i, [])) for i in range(1, last + 1)]


#: A dossier's files are stored as documents: the same authorization as an upload.
(UPLOAD_METHOD,) = method_names(ingestion_pb.DESCRIPTOR, "IngestionService", "UploadDocument")


def granted_source(uri: str, roots: Sequence[str]) -> Path | None:
    """The server file behind a document's source URI, when the server may open it: only a
    ``file:`` URI (reserved to the server's own IngestPath, refused from clients) whose real
    path is, today, under one of the granted ``roots``. Any other source URI (``local:``,
    ``s3:``, ...) is the client's label and is never opened."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not roots:
        return None
    path = Path(os.path.realpath(unquote(parts.path)))
    for root in roots:
        real_root = Path(os.path.realpath(Path(root).expanduser()))
        if path == real_root or real_root in path.parents:
            return path if path.is_file() else None
    return None


class WorkflowService:
    def __init__(
        self,
        repo: WorkflowRepository,
        queue: Queue,
        flows: FlowRegistry,
        *,
        gate: Any = None,
        ingestion: Ingestor | None = None,
        parser: PageParser | None = None,
        max_file_bytes: int = 100 * 1024 * 1024,
        source_roots: Sequence[str] = (),
        queued_notice_seconds: float = 30.0,
        worker_timeout_seconds: float = 10.0,
        staging_dir: Path | None = None,
        staging_prefix: str = "docfactory-dossier-",
    ) -> None:
        self.repo = repo
        self.queue = queue
        self.flows = flows
        self.gate = gate
        self.ingestion = ingestion
        self.parser = parser
        self.max_file_bytes = max_file_bytes
        # IngestPath's granted roots: the only server files a dossier may read back.
        self.source_roots = tuple(source_roots)
        # A QUEUED run older than this while no worker heartbeats gets a NO_WORKER notice.
        self.queued_notice_seconds = queued_notice_seconds
        self.worker_timeout_seconds = worker_timeout_seconds
        # Where a dossier's uploaded files wait for their parse (under the data folder).
        self.staging_dir = staging_dir
        self.staging_prefix = staging_prefix

    # -- governance ----------------------------------------------------------------------------

    @property
    def _policy(self) -> Any:
        return self.gate.policy.current() if self.gate is not None and self.gate.policy else None

    def _record(
        self,
        principal: Principal,
        action: str,
        outcome: str = "OK",
        *,
        use_case: str = "",
        document_ids: Sequence[str] = (),
        **details: Any,
    ) -> None:
        if self.gate is None:
            return
        self.gate.record(
            principal,
            action=action,
            use_case=use_case,
            outcome=outcome,
            document_ids=document_ids,
            details=details,
        )

    def _refuse(
        self, principal: Principal, err: DocfactoryError, action: str, **details: Any
    ) -> DocfactoryError:
        self._record(principal, "DENIED", err.reason, rpc=action, message=err.message, **details)
        err.audited = True  # the interceptor does not record it again
        return err

    def _authorize(self, principal: Principal, use_case: str, action: str, flow: str = "") -> int:
        """The classification ceiling of ``use_case`` for the caller (0 = none); refusals
        audited."""
        policy = self._policy
        if policy is None:
            return 0
        try:
            decision = policy.authorize(principal.tenant, principal.key_id, use_case)
        except DocfactoryError as err:
            raise self._refuse(principal, err, action, use_case=use_case) from None
        if flow:
            uc = policy.use_cases[use_case]
            allowed: frozenset[str] | None = getattr(uc, "flows", frozenset())
            if allowed is not None and flow not in allowed:
                denied = PermissionDenied(
                    f"flow {flow!r} is not allowed for use case {use_case!r} "
                    f"(policy version {policy.version}: use_cases[].flows)",
                    reason="FLOW_NOT_ALLOWED",
                    metadata={"use_case": use_case, "flow": flow},
                )
                raise self._refuse(principal, denied, action, use_case=use_case, flow=flow)
        return int(decision.max_classification)

    def _may_sign(self, principal: Principal, run: RunRow, flow: FlowSpec) -> bool:
        if self._policy is None:
            return True  # embedded default without a policy: every key of the tenant
        roles = set(principal.roles)
        if "admin" in roles or run.signoff_role in roles:
            return True
        return run.state == ESCALATED and flow.signoff.escalation_role in roles

    # -- dossiers ------------------------------------------------------------------------------

    async def create_dossier(
        self,
        principal: Principal,
        *,
        display_name: str,
        use_case: str,
        document_ids: Sequence[str],
        files: Sequence[tuple[str, bytes]],
        metadata: Mapping[str, str],
        classification: int,
    ) -> DossierRow:
        action = "CreateDossier"
        classification = classification or INTERNAL
        if classification not in (1, 2, 3, 4):
            raise InvalidArgument(
                f"unknown classification {classification}", reason="INVALID_CLASSIFICATION"
            )
        if not document_ids and not files:
            raise InvalidArgument(
                "a dossier needs documents: give document_ids and/or files",
                reason="DOSSIER_EMPTY",
            )
        if len(document_ids) + len(files) > MAX_FILES:
            raise InvalidArgument(
                f"a dossier holds at most {MAX_FILES} documents", reason="TOO_MANY_DOCUMENTS"
            )
        if self._policy is not None or use_case:
            ceiling = self._authorize(principal, use_case, action)
            if ceiling and classification > ceiling:
                err = PermissionDenied(
                    f"classification {classification} is above the ceiling {ceiling} of use "
                    f"case {use_case!r}",
                    reason="CLASSIFICATION_ABOVE_CEILING",
                    metadata={"use_case": use_case},
                )
                raise self._refuse(principal, err, action, use_case=use_case)
        if self.ingestion is None or self.parser is None:
            raise FailedPrecondition(
                "this server has no ingestion service: dossiers cannot be created here",
                reason="INGESTION_UNAVAILABLE",
            )
        if files and self.gate is not None:
            # The files become documents of the tenant: the ingester role where the policy
            # asks for it, exactly as UploadDocument (refusal audited by the gate).
            await asyncio.to_thread(self.gate.authorize_method, UPLOAD_METHOD, principal)
        from docfactory.workflows.repo import new_id

        dossier_id = new_id()
        docs: list[DocRow] = []
        for i, (filename, content) in enumerate(files):
            name = Path(filename or f"document-{i + 1}").name
            if not content:
                raise InvalidArgument(f"{name}: the file is empty", reason="EMPTY_FILE")
            if len(content) > self.max_file_bytes:
                raise InvalidArgument(
                    f"{name}: exceeds the limit of {self.max_file_bytes} bytes",
                    reason="FILE_TOO_LARGE",
                )
            docs.append(await self._ingest(principal, dossier_id, i, name, content, classification))
        for doc_id in document_ids:
            docs.append(await self._existing(principal, doc_id, classification, action))
        row = await asyncio.to_thread(
            self.repo.create_dossier,
            tenant=principal.tenant,
            display_name=display_name or (docs[0].filename if docs else dossier_id),
            use_case=use_case,
            classification=classification,
            metadata=dict(metadata),
            docs=docs,
            dossier_id=dossier_id,
            created_by=principal.key_id,
        )
        await asyncio.to_thread(
            self._record,
            principal,
            "DOSSIER_CREATE",
            use_case=use_case,
            document_ids=[d.document_id for d in docs],
            dossier_id=row.dossier_id,
        )
        return row

    async def _ingest(
        self,
        principal: Principal,
        dossier_id: str,
        index: int,
        filename: str,
        content: bytes,
        classification: int,
    ) -> DocRow:
        assert self.ingestion is not None and self.parser is not None
        # Under the data folder (private, 0700), named so that the server removes what a killed
        # process left at its next start (ingestion's staging folder).
        staging = self.staging_dir
        fd, tmp = tempfile.mkstemp(
            prefix=self.staging_prefix,
            suffix=Path(filename).suffix,
            dir=None if staging is None else str(staging),
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            kept: list[list[str]] = []
            # The page texts come from ingestion's own parse (one parse per file): only the
            # texts are kept, not the parsed elements.
            result = await self.ingestion.ingest_file(
                tenant=principal.tenant,
                path=Path(tmp),
                filename=filename,
                collection=DOSSIER_COLLECTION,
                classification=classification,
                metadata={"dossier": dossier_id},
                source_uri=f"dossier://{dossier_id}/{index}/{filename}",
                on_parsed=lambda parsed: kept.append(pages_of(parsed)),
            )
            if result.error is not None:
                raise result.error
            if kept:
                pages = kept[0]
            else:  # unchanged content: nothing was parsed by ingestion
                parsed = await asyncio.to_thread(self.parser.parse, Path(tmp), filename)
                pages = pages_of(parsed)
                del parsed
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return DocRow(result.record.document_id, filename, len(pages), pages)

    async def _existing(
        self, principal: Principal, document_id: str, classification: int, action: str
    ) -> DocRow:
        assert self.ingestion is not None and self.parser is not None
        try:
            rec = await self.ingestion.get(principal.tenant, document_id)
        except NotFound as err:
            raise self._refuse(principal, err, action, document_id=document_id) from None
        if rec.classification > classification:
            above = PermissionDenied(
                f"document {document_id} is classified above the dossier "
                f"({rec.classification} > {classification})",
                reason="DOCUMENT_ABOVE_DOSSIER_CLASSIFICATION",
            )
            raise self._refuse(principal, above, action, document_id=document_id)
        path = granted_source(rec.source_uri, self.source_roots) if rec.source_uri else None
        if path is None:
            # A client's source URI is a label: the server never opens it.
            raise FailedPrecondition(
                f"document {document_id}: its text is not held by the server (only files "
                "ingested with IngestPath under a granted root can be reused); add the file "
                "to the dossier instead",
                reason="DOCUMENT_TEXT_UNAVAILABLE",
                metadata={"document_id": document_id},
            )
        parsed = await asyncio.to_thread(self.parser.parse, path, rec.filename)
        pages = pages_of(parsed)
        return DocRow(document_id, rec.filename, len(pages), pages)

    async def get_dossier(self, principal: Principal, dossier_id: str) -> DossierRow:
        row = await asyncio.to_thread(self.repo.get_dossier, principal.tenant, dossier_id)
        if row is None:
            err = NotFound(f"dossier {dossier_id} not found", reason="DOSSIER_NOT_FOUND")
            raise self._refuse(principal, err, "GetDossier", dossier_id=dossier_id)
        return row

    async def list_dossiers(
        self, principal: Principal, *, state: str, flow: str, page_size: int, page_token: str
    ) -> tuple[list[DossierRow], str]:
        """A page of the tenant's dossiers, newest first, and the next page's token."""
        req = page_request(
            page_size,
            page_token,
            fingerprint=f"dossiers:{state}:{flow}",
            parse=lambda k: (float(k[0]), k[1]),
            maximum=MAX_PAGE,
        )
        rows, _ = await asyncio.to_thread(
            lambda: self.repo.list_dossiers(
                principal.tenant, state=state, flow=flow, limit=req.size + 1, after=req.after
            )
        )
        return next_page(rows, req, lambda d: [repr(d.created_at), d.dossier_id])

    # -- runs ----------------------------------------------------------------------------------

    async def start_run(self, principal: Principal, dossier_id: str, flow_ref: str) -> RunRow:
        dossier = await self.get_dossier(principal, dossier_id)
        if not flow_ref:
            raise InvalidArgument("flow is required (name or name@version)", reason="FLOW_REQUIRED")
        flow = await asyncio.to_thread(self.flows.get, flow_ref)
        if flow is None:
            known = ", ".join(sorted(self.flows.latest())) or "none"
            raise NotFound(
                f"flow {flow_ref!r} not found (known: {known})",
                reason="FLOW_NOT_FOUND",
                metadata={"flow": flow_ref},
            )
        ceiling = await asyncio.to_thread(
            self._authorize, principal, dossier.use_case, "StartRun", flow.name
        )
        if ceiling and dossier.classification > ceiling:
            err = PermissionDenied(
                f"dossier classification {dossier.classification} is above the ceiling "
                f"{ceiling} of use case {dossier.use_case!r}",
                reason="CLASSIFICATION_ABOVE_CEILING",
            )
            raise self._refuse(principal, err, "StartRun", use_case=dossier.use_case)
        run = await asyncio.to_thread(
            lambda: self.repo.create_run(
                tenant=principal.tenant,
                dossier_id=dossier.dossier_id,
                flow_ref=flow.ref,
                flow_json=flow.model_dump_json(by_alias=True),
                use_case=dossier.use_case,
                requester=principal.key_id,
                signoff_role=flow.signoff.role,
                # Four-eyes among identified people (a policy): neither the dossier's submitter
                # nor the run's requester approves it. The embedded default has one local key.
                submitted_by=(dossier.created_by, principal.key_id)
                if self._policy is not None
                else (),
            )
        )
        await asyncio.to_thread(self.queue.start, run.run_id, run.tenant)
        await asyncio.to_thread(
            self._record,
            principal,
            "DOSSIER_RUN_REQUEST",
            use_case=dossier.use_case,
            dossier_id=dossier.dossier_id,
            run_id=run.run_id,
            flow=flow.ref,
        )
        return run

    async def _run(self, principal: Principal, run_id: str, action: str) -> RunRow:
        run = await asyncio.to_thread(self.repo.get_run, run_id, principal.tenant)
        if run is None:
            err = NotFound(f"run {run_id} not found", reason="RUN_NOT_FOUND")
            raise self._refuse(principal, err, action, run_id=run_id)
        return run

    async def get_run(self, principal: Principal, run_id: str) -> RunView:
        run = await self._run(principal, run_id, "GetRun")
        return await self._view(principal, run)

    async def _view(self, principal: Principal, run: RunRow) -> RunView:
        flow = FlowSpec.model_validate_json(run.flow_json)
        # Released results to the tenant; drafts to who may sign them; and what a run that
        # stopped before any decision (incomplete, failed) found, to the person who asked for
        # it and to who may sign: the analyst sees what was found and what is missing. A
        # rejected run releases nothing.
        mine = principal.key_id == run.requester or principal.key_id in run.submitters
        visible = (
            run.state == COMPLETED
            or (run.state in WAITING and self._may_sign(principal, run, flow))
            or (
                run.state in (INCOMPLETE, FAILED) and (mine or self._may_sign(principal, run, flow))
            )
        )
        decisions = await asyncio.to_thread(self.repo.decisions_of, run.run_id)
        return RunView(run, visible, decisions, await self._notice(run))

    async def _notice(self, run: RunRow) -> RunNotice | None:
        """A NO_WORKER notice for a run QUEUED for ``queued_notice_seconds`` while no worker
        has heartbeated within its liveness timeout (the run starts as soon as one does)."""
        if run.state != QUEUED:
            return None
        waited = time.time() - run.created_at
        if waited < self.queued_notice_seconds:
            return None
        live = await asyncio.to_thread(self.repo.live_executors, self.worker_timeout_seconds)
        if live:
            return None
        return RunNotice(
            "NO_WORKER",
            f"no dossier worker has taken this run for {int(waited)} s and none is running: "
            "start one (`docfactory serve` runs them unless --dossier-workers 0; "
            "`docfactory dossier worker`; the docfactory-dossier-worker deployment)",
            waited,
        )

    async def pending(
        self, principal: Principal, *, page_size: int, page_token: str
    ) -> tuple[list[RunView], str]:
        """A page of the runs waiting for this caller's sign-off, oldest first, and the next
        page's token (keyset on (created_at, run_id) over the tenant's waiting runs)."""
        req = page_request(
            page_size,
            page_token,
            fingerprint=f"pending:{principal.key_id}",
            parse=lambda k: (float(k[0]), k[1]),
            maximum=MAX_PAGE,
        )
        mine: list[RunView] = []
        after = req.after
        while len(mine) <= req.size:
            rows, more = await asyncio.to_thread(
                self.repo.list_runs, principal.tenant, sorted(WAITING), limit=200, after=after
            )
            for run in rows:
                view = await self._view(principal, run)
                if view.result_visible:
                    mine.append(view)
            if not more or not rows:
                break
            after = (rows[-1].created_at, rows[-1].run_id)
        return next_page(mine, req, lambda v: [repr(v.run.created_at), v.run.run_id])

    async def step_timings(self, run_id: str) -> dict[str, tuple[int, int, float]]:
        """step -> (starts, finishes, duration_ms) of a run."""
        return await asyncio.to_thread(self.repo.step_counts, run_id)

    async def watch_run(
        self, principal: Principal, run_id: str, poll_seconds: float = WATCH_POLL_SECONDS
    ) -> AsyncIterator[EventRow]:
        """The run's events from the start; ends once the run is terminal or waits for a
        decision."""
        await self.get_run(principal, run_id)  # tenancy check
        seq = 0
        while True:
            events = await asyncio.to_thread(self.repo.events_after, run_id, seq)
            for e in events:
                seq = e.seq
                yield e
            if events and (events[-1].state in TERMINAL or events[-1].state in WAITING):
                run = await asyncio.to_thread(self.repo.get_run, run_id)
                if run is None or run.state in TERMINAL or run.state in WAITING:
                    return
            await asyncio.sleep(poll_seconds)

    async def submit_decision(
        self,
        principal: Principal,
        run_id: str,
        kind: str,
        comment: str,
        amendments: Mapping[str, str],
    ) -> tuple[DecisionRow, RunRow]:
        action = "SubmitDecision"
        run = await self._run(principal, run_id, action)
        flow = FlowSpec.model_validate_json(run.flow_json)
        if kind not in (APPROVE, AMEND, REJECT):
            raise InvalidArgument(
                "kind must be APPROVE, AMEND or REJECT", reason="INVALID_DECISION_KIND"
            )
        if run.state not in WAITING:
            raise FailedPrecondition(
                f"run {run_id} is {run.state}, not awaiting sign-off",
                reason="RUN_NOT_AWAITING_SIGNOFF",
                metadata={"state": run.state},
            )
        if not self._may_sign(principal, run, flow):
            role = run.signoff_role
            err = PermissionDenied(
                f"signing off flow {flow.name!r} needs the {role!r} role"
                + (f" (or {flow.signoff.escalation_role!r} once escalated)"),
                reason="SIGNOFF_ROLE_REQUIRED",
                metadata={"role": role},
            )
            raise self._refuse(principal, err, action, run_id=run_id)
        if kind == REJECT and not comment.strip():
            raise InvalidArgument("a rejection needs a comment", reason="COMMENT_REQUIRED")
        clean: dict[str, str] = {}
        if kind == AMEND:
            if not amendments:
                raise InvalidArgument(
                    "AMEND needs amendments ('type.field' -> value)", reason="AMENDMENTS_REQUIRED"
                )
            present = {d.get("type") for d in run.result.get("documents", [])}
            for ref, value in amendments.items():
                doc, _, name = ref.partition(".")
                spec = flow.doc_type(doc)
                if spec is None or name not in spec.field_names:
                    raise InvalidArgument(
                        f"unknown field {ref!r} in flow {flow.ref}",
                        reason="UNKNOWN_FIELD",
                        metadata={"field": ref},
                    )
                if doc not in present:
                    raise InvalidArgument(
                        f"no document of type {doc!r} in this dossier",
                        reason="UNKNOWN_FIELD",
                        metadata={"field": ref},
                    )
                clean[ref] = normalise(spec.kind_of(name), value, ref)
        if kind == APPROVE and principal.key_id in run.submitters:
            err = PermissionDenied(
                "four-eyes: the person who submitted a dossier or requested its run never "
                f"approves it ({principal.key_id!r} did); another reviewer must sign off",
                reason="SUBMITTER_CANNOT_APPROVE",
                metadata={"reviewer": principal.key_id},
            )
            raise self._refuse(principal, err, action, run_id=run_id)
        if kind == APPROVE:
            decisions = await asyncio.to_thread(self.repo.decisions_of, run_id)
            last_amend = max((i for i, d in enumerate(decisions) if d.kind == AMEND), default=-1)
            if any(
                d.kind == APPROVE and d.reviewer == principal.key_id
                for d in decisions[last_amend + 1 :]
            ):
                err = PermissionDenied(
                    "four-eyes: this run needs approvals from two distinct reviewers and "
                    f"{principal.key_id!r} already approved it",
                    reason="SAME_REVIEWER",
                    metadata={"reviewer": principal.key_id},
                )
                raise self._refuse(principal, err, action, run_id=run_id)
        decision = await asyncio.to_thread(
            lambda: self.repo.add_decision(
                run_id=run_id,
                tenant=principal.tenant,
                kind=kind,
                reviewer=principal.key_id,
                comment=comment,
                amendments=clean,
            )
        )
        metrics.DECISIONS.labels(flow.name, kind).inc()
        if clean:
            metrics.FIELDS_AMENDED.labels(flow.name).inc(len(clean))
        await asyncio.to_thread(
            self._record,
            principal,
            "DOSSIER_DECISION",
            kind,
            use_case=run.use_case,
            run_id=run_id,
            decision_id=decision.decision_id,
            amended=sorted(clean),
        )
        await asyncio.to_thread(self.queue.notify, run_id, decision.decision_id)
        fresh = await self._run(principal, run_id, action)
        return decision, fresh

    async def cancel_run(self, principal: Principal, run_id: str) -> RunRow:
        run = await self._run(principal, run_id, "CancelRun")
        if run.state in TERMINAL:
            raise FailedPrecondition(
                f"run {run_id} already ended ({run.state})", reason="RUN_ENDED"
            )
        await asyncio.to_thread(
            lambda: self.repo.set_state_unless_terminal(
                run_id,
                CANCELLED,
                event=("run", CANCELLED, f"cancelled by {principal.key_id}"),
                error_reason="CANCELLED",
                error_message=f"cancelled by {principal.key_id}",
            )
        )
        await asyncio.to_thread(self.queue.notify, run_id, "cancel")
        await asyncio.to_thread(
            self._record, principal, "DOSSIER_RUN_CANCEL", use_case=run.use_case, run_id=run_id
        )
        return await self._run(principal, run_id, "CancelRun")


def normalise(kind: str, value: str, ref: str) -> str:
    """A reviewer's value in the extractors' normal form (amounts ``1234.50``, ISO dates, IBAN
    without spaces, digits for identifiers); an invalid one is refused naming the field."""
    from docfactory.workflows.extract import french

    v = value.strip()

    def bad(what: str) -> InvalidArgument:
        return InvalidArgument(
            f"{ref}: {v!r} is not a valid {what}",
            reason="INVALID_FIELD_VALUE",
            metadata={"field": ref},
        )

    if kind == "amount_eur":
        amount = french.parse_amount(v)
        if amount is None:
            raise bad("amount")
        return f"{amount:.2f}"
    if kind == "date":
        iso = french.parse_date(v)
        if iso is None:
            raise bad("date")
        return iso
    if kind in ("siren", "siret"):
        digits = "".join(c for c in v if c.isdigit())
        ok = french.siren_ok(digits) if kind == "siren" else french.siret_ok(digits)
        if not ok:
            raise bad(kind.upper())
        return digits
    if kind == "iban":
        iban = "".join(v.split()).upper()
        if not french.iban_ok(iban):
            raise bad("IBAN")
        return iban
    return " ".join(v.split())
