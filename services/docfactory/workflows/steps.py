"""The steps of a run (domain logic, no DBOS here: ``engine`` makes each one a durable step).

Each step reads what it needs from the repository, writes its outcome keyed by (run, step) —
re-executing a step after a crash rewrites the same rows — records a STARTED/FINISHED event,
counts its executions (``workflow_step_runs``), observes its duration and appends an audit
record. Nothing of the outcome is released before sign-off: the result stays a draft, visible
only to reviewers, until :meth:`RunSteps.release`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from docfactory.workflows import metrics
from docfactory.workflows.flows import FlowSpec
from docfactory.workflows.note import Passage, draft_note
from docfactory.workflows.repo import (
    AMEND,
    APPROVE,
    AWAITING_SIGNOFF,
    CANCELLED,
    COMPLETED,
    ESCALATED,
    FAILED,
    INCOMPLETE,
    REJECT,
    REJECTED,
    RUNNING,
    TERMINAL,
    RunRow,
    WorkflowRepository,
)

log = logging.getLogger("docfactory.workflows")

#: Collection of the documents uploaded with dossiers (docfactory.workflows.service).
DOSSIER_COLLECTION = "dossiers"

#: Test and bench knob: "extract:2.5" makes every extract step sleep 2.5 s after it started
#: (to kill a worker mid-extraction deterministically). Unset in production.
STEP_DELAY_ENV = "DOCFACTORY_WORKFLOWS_STEP_DELAY"

# Outcomes of evaluate_decisions.
WAIT, APPROVED, AMENDED = "WAIT", "APPROVED", "AMENDED"


class Searcher(Protocol):
    """Retrieval of passages of indexed rule collections (AnsweringService.Search)."""

    def search(
        self,
        *,
        tenant: str,
        use_case: str,
        query: str,
        collections: Sequence[str],
        top_k: int,
    ) -> list[Passage]: ...


@dataclass
class RunContext:
    run: RunRow
    flow: FlowSpec


def _delay(step: str) -> float:
    spec = os.environ.get(STEP_DELAY_ENV, "")
    for part in spec.split(","):
        name, _, seconds = part.partition(":")
        if name.strip() == step.split(":", 1)[0] and seconds:
            try:
                return float(seconds)
            except ValueError:
                return 0.0
    return 0.0


def _amount(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        return Decimal(value.replace(" ", "").replace(",", "."))
    except InvalidOperation:
        return None


_OUTCOME = {"PASS": "PASSED", "FAIL": "FAILED", "NOT_EVALUATED": "NOT_EVALUATED"}


class RunSteps:
    def __init__(
        self,
        repo: WorkflowRepository,
        extractor: Any,
        *,
        audit: Any = None,  # docfactory.governance.audit.AuditLog
        searcher: Searcher | None = None,
        extractor_name: str = "typed",
        clock: Callable[[], float] = time.time,
        model_refusal: Callable[[str, str], str] | None = None,
        local_extractor: Any = None,
    ) -> None:
        self.repo = repo
        self.extractor = extractor
        self.audit = audit
        self.searcher = searcher
        self.extractor_name = extractor_name
        self.clock = clock
        # (use case, model) -> why the use case may not send text to the model ("" = it may):
        # governance.contracts.model_refusal on the policy file.
        self.model_refusal = model_refusal
        # The embedded typed extractors: used instead of the model (vLLM) when the run's use
        # case may not send the dossier's pages to it.
        self.local_extractor = local_extractor

    def extractor_for(self, run: RunRow) -> tuple[Any, str, str]:
        """(extractor, its name, why the model is not used) for ``run``.

        A dossier's pages go to the generative model (vLLM) only when the run's use case allows
        that model (``allowed_models``) and does not ask for personal-data handling (``pii``
        other than ``allow``: no page holding personal data is sent to a model for such a use
        case). Otherwise the embedded typed extractors run in the worker, and the audit record
        of the step names them and the reason."""
        if self.local_extractor is None or self.model_refusal is None or not run.use_case:
            return self.extractor, self.extractor_name, ""
        why = self.model_refusal(run.use_case, self.extractor_name)
        if why:
            return self.local_extractor, "typed", why
        return self.extractor, self.extractor_name, ""

    # -- plumbing ------------------------------------------------------------------------------

    def context(self, run_id: str) -> RunContext:
        run = self.repo.get_run(run_id)
        if run is None:
            raise LookupError(f"run {run_id} not found")
        return RunContext(run, FlowSpec.model_validate_json(run.flow_json))

    def _audit(self, run: RunRow, action: str, outcome: str = "OK", **details: Any) -> None:
        if self.audit is None:
            return
        self.audit.append(
            tenant=run.tenant,
            key_id=run.requester,
            use_case=run.use_case,
            action=action,
            outcome=outcome,
            document_ids=list(details.pop("document_ids", ())),
            model=str(details.pop("model", "")),
            details={"run_id": run.run_id, "flow": run.flow_ref, **details},
        )

    def _begin(self, run_id: str, step: str) -> tuple[RunContext, float] | None:
        ctx = self.context(run_id)
        if ctx.run.state in TERMINAL:
            return None  # cancelled (or ended) while queued: nothing more to do
        self.repo.step_started(run_id, step)
        delay = _delay(step)
        if delay:
            time.sleep(delay)
        return ctx, time.perf_counter()

    def _end(self, ctx: RunContext, step: str, t0: float, detail: str = "") -> None:
        elapsed = time.perf_counter() - t0
        self.repo.step_finished(ctx.run.run_id, step, elapsed * 1000, detail)
        metrics.STEP_SECONDS.labels(ctx.flow.name, step.split(":", 1)[0]).observe(elapsed)

    # -- steps ---------------------------------------------------------------------------------

    def start(self, run_id: str) -> bool:
        ctx = self.context(run_id)
        ok = self.repo.set_state_unless_terminal(
            run_id, RUNNING, event=("run", RUNNING, ctx.run.flow_ref)
        )
        if ok:
            self._audit(ctx.run, "DOSSIER_RUN_START")
        return ok

    def classify(self, run_id: str) -> dict[str, str]:
        begun = self._begin(run_id, "classify")
        if begun is None:
            return {}
        ctx, t0 = begun
        docs = self.repo.dossier_pages(ctx.run.dossier_id)
        extractor, model, why = self.extractor_for(ctx.run)
        out: list[dict[str, Any]] = []
        types: dict[str, str] = {}
        for d in docs:
            text = "\n".join(d.pages)
            name, confidence = extractor.classify(text, ctx.flow.documents)
            types[d.document_id] = name
            out.append(
                {
                    "document_id": d.document_id,
                    "filename": d.filename,
                    "type": name,
                    "type_confidence": round(float(confidence), 4),
                    "fields": [],
                }
            )
        result = dict(ctx.run.result)
        result["documents"] = out
        self.repo.update_run(run_id, result=result)
        self._audit(
            ctx.run,
            "DOSSIER_CLASSIFY",
            document_ids=list(types),
            types={k: v or "unknown" for k, v in types.items()},
            model=model,
            **({"model_not_used": why} if why else {}),
        )
        summary = ", ".join(f"{d['filename']}={d['type'] or '?'}" for d in out)
        self._end(ctx, "classify", t0, summary)
        return types

    def required(self, run_id: str, types: Mapping[str, str]) -> list[str]:
        """The required document types absent from the dossier; the run stops INCOMPLETE
        naming them."""
        begun = self._begin(run_id, "required")
        if begun is None:
            return []
        ctx, t0 = begun
        present = set(types.values())
        missing = [d for d in ctx.flow.documents if d.required and d.name not in present]
        names = [d.name for d in missing]
        if missing:
            labels = "; ".join(f"{d.label} ({d.name})" for d in missing)
            self.repo.set_state_unless_terminal(
                run_id,
                INCOMPLETE,
                event=("required", INCOMPLETE, labels),
                missing_json=_json(names),
                error_reason="MISSING_DOCUMENTS",
                error_message=f"missing required document(s): {labels}",
                finished_at=self.clock(),
            )
            self._audit(ctx.run, "DOSSIER_RUN_STOP", "MISSING_DOCUMENTS", missing=names)
        self._end(ctx, "required", t0, ", ".join(names))
        return names

    def extract(self, run_id: str, document_id: str) -> int:
        step = f"extract:{document_id}"
        begun = self._begin(run_id, step)
        if begun is None:
            return 0
        ctx, t0 = begun
        result = dict(ctx.run.result)
        docs = result.get("documents", [])
        entry = next((d for d in docs if d["document_id"] == document_id), None)
        spec = ctx.flow.doc_type(entry["type"]) if entry else None
        if entry is None or spec is None:
            self._end(ctx, step, t0, "no document type: nothing to extract")
            return 0
        pages = next(
            (
                d.pages
                for d in self.repo.dossier_pages(ctx.run.dossier_id)
                if d.document_id == document_id
            ),
            [],
        )
        extractor, model, why = self.extractor_for(ctx.run)
        fields = extractor.extract(document_id, pages, spec.field_schema)
        entry["fields"] = [
            {
                "name": f.name,
                "title": spec.title_of(f.name),
                "kind": spec.kind_of(f.name),
                "value": f.value,
                "evidence": None
                if f.evidence is None
                else {
                    "document_id": f.evidence.document_id,
                    "page": f.evidence.page or 0,
                    "start": f.evidence.start,
                    "end": f.evidence.end,
                    "quote": f.evidence.quote,
                },
                "confidence": round(float(f.confidence), 4),
                "status": f.status,
                "amended_by": "",
            }
            for f in fields
        ]
        self.repo.update_run(run_id, result=result)
        found = sum(1 for f in fields if f.status == "FOUND")
        self._audit(
            ctx.run,
            "DOSSIER_EXTRACT",
            document_ids=[document_id],
            type=spec.name,
            fields={f.name: f.status for f in fields},
            model=model,
            **({"model_not_used": why} if why else {}),
        )
        metrics.FIELDS_EXTRACTED.labels(ctx.flow.name).inc(len(fields))
        self._end(ctx, step, t0, f"{found}/{len(fields)} fields found")
        return len(fields)

    def check(self, run_id: str, round_: int) -> int:
        from docfactory.workflows.extract.checks import run_checks
        from docfactory.workflows.extract.model import ExtractedField

        step = f"check:{round_}"
        begun = self._begin(run_id, step)
        if begun is None:
            return 0
        ctx, t0 = begun
        result = dict(ctx.run.result)
        by_type: dict[str, list[ExtractedField]] = {}
        for d in result.get("documents", []):
            if not d.get("type"):
                continue
            current = by_type.setdefault(d["type"], [])
            known = {f.name for f in current if f.status == "FOUND"}
            for f in d.get("fields", []):
                status = "FOUND" if f["status"] in ("FOUND", "AMENDED") else f["status"]
                if f["name"] in known:
                    continue
                current[:] = [c for c in current if c.name != f["name"]]
                current.append(
                    ExtractedField(f["name"], f["value"], None, float(f["confidence"]), status)
                )
        today = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        checks = run_checks(ctx.flow.rules, by_type, as_of=today)
        severity = {r.id: r.severity for r in ctx.flow.rules}
        labels = {r.id: r.label for r in ctx.flow.rules}
        result["checks"] = [
            {
                "rule": c.rule,
                "label": labels.get(c.rule, c.rule),
                "outcome": _OUTCOME.get(c.outcome, c.outcome),
                "fields": list(c.fields),
                "detail": c.message,
                "severity": severity.get(c.rule, "blocking"),
            }
            for c in checks
        ]
        approvals = 1
        signoff = ctx.flow.signoff
        if signoff.four_eyes_above is not None and signoff.amount_field:
            doc, _, name = signoff.amount_field.partition(".")
            value = next(
                (f.value for f in by_type.get(doc, []) if f.name == name and f.status == "FOUND"),
                None,
            )
            amount = _amount(value)
            # Unknown amount: four-eyes too (never fewer controls for missing data).
            if amount is None or amount > Decimal(str(signoff.four_eyes_above)):
                approvals = 2
        if round_ > 0:
            # After an amendment the rule is never weaker than at the first check: amending
            # the amount below the four-eyes threshold cannot cut the approvals needed.
            approvals = max(approvals, ctx.run.approvals_required)
        self.repo.update_run(run_id, result=result, approvals_required=approvals)
        failed = [c.rule for c in checks if c.outcome == "FAIL"]
        self._audit(
            ctx.run,
            "DOSSIER_CHECK",
            "FAILED" if failed else "OK",
            outcomes={c.rule: c.outcome for c in checks},
        )
        self._end(ctx, step, t0, f"{len(failed)} failed: {', '.join(failed)}" if failed else "")
        return len(checks)

    def retrieve(self, run_id: str) -> int:
        begun = self._begin(run_id, "retrieve")
        if begun is None:
            return 0
        ctx, t0 = begun
        spec = ctx.flow.retrieval
        passages: list[dict[str, Any]] = []
        errors: list[str] = []
        if self.searcher is not None and spec.questions:
            for q in spec.questions:
                try:
                    hits = self.searcher.search(
                        tenant=ctx.run.tenant,
                        use_case=ctx.run.use_case,
                        query=q,
                        collections=spec.collections,
                        top_k=spec.top_k,
                    )
                except Exception as exc:  # retrieval is best effort: the note says so
                    errors.append(f"{q}: {exc}")
                    continue
                # Rule collections only: never passages of this or another dossier.
                passages.extend(
                    {"question": q, **p.as_dict()}
                    for p in hits
                    if p.collection != DOSSIER_COLLECTION
                    and p.document_id not in _dossier_docs(ctx.run.result)
                )
        result = dict(ctx.run.result)
        result["passages"] = passages
        result["retrieval_errors"] = errors
        self.repo.update_run(run_id, result=result)
        self._end(ctx, "retrieve", t0, f"{len(passages)} passages")
        return len(passages)

    def draft(self, run_id: str, round_: int) -> int:
        step = f"draft:{round_}"
        begun = self._begin(run_id, step)
        if begun is None:
            return 0
        ctx, t0 = begun
        result = dict(ctx.run.result)
        note, citations = draft_note(ctx.flow, result)
        result["note"] = note
        result["citations"] = citations
        result["extractive"] = True
        self.repo.update_run(run_id, result=result)
        self._audit(ctx.run, "DOSSIER_DRAFT", citations=len(citations))
        self._end(ctx, step, t0, f"{len(note)} characters, {len(citations)} citations")
        return len(note)

    def await_signoff(self, run_id: str) -> float:
        """Enter AWAITING_SIGNOFF (first time: deadline set); return the seconds left."""
        ctx = self.context(run_id)
        run = ctx.run
        if run.state in TERMINAL:
            return 0.0
        if run.deadline is None:
            deadline = self.clock() + ctx.flow.signoff.deadline_hours * 3600
            self.repo.set_state_unless_terminal(
                run_id,
                AWAITING_SIGNOFF,
                event=("signoff", AWAITING_SIGNOFF, f"{run.approvals_required} approval(s)"),
                deadline=deadline,
                step="signoff",
            )
            self._audit(run, "DOSSIER_AWAIT_SIGNOFF", approvals_required=run.approvals_required)
        else:
            deadline = run.deadline
        return max(1.0, deadline - self.clock())

    def escalate(self, run_id: str) -> None:
        ctx = self.context(run_id)
        if ctx.run.state in TERMINAL:
            return
        deadline = self.clock() + ctx.flow.signoff.deadline_hours * 3600
        self.repo.set_state_unless_terminal(
            run_id,
            ESCALATED,
            event=("signoff", ESCALATED, f"deadline passed: {ctx.flow.signoff.escalation_role}"),
            deadline=deadline,
        )
        metrics.ESCALATIONS.labels(ctx.flow.name).inc()
        self._audit(ctx.run, "DOSSIER_ESCALATE", role=ctx.flow.signoff.escalation_role)

    def round_of(self, run_id: str) -> int:
        """How many rounds of amendments have been applied to the run (0: none)."""
        run = self.repo.get_run(run_id)
        return int(run.result.get("round", 0)) if run is not None else 0

    def deadline(self, run_id: str) -> float:
        """The sign-off deadline's timer fired: escalate the run when its deadline has passed.
        Returns the seconds left until the (possibly new) deadline, 0 when the run no longer
        waits for a decision."""
        run = self.repo.get_run(run_id)
        if run is None or run.state not in (AWAITING_SIGNOFF, ESCALATED):
            return 0.0
        if run.deadline is not None and run.deadline > self.clock():
            return run.deadline - self.clock()
        self.escalate(run_id)
        fresh = self.repo.get_run(run_id)
        if fresh is None or fresh.deadline is None or fresh.state in TERMINAL:
            return 0.0
        return max(1.0, fresh.deadline - self.clock())

    def evaluate_decisions(self, run_id: str) -> str:
        """Apply the decisions recorded so far: amendments not yet applied -> AMENDED (checks
        and note are recomputed), a rejection -> REJECTED, enough distinct approvals ->
        APPROVED, else WAIT."""
        ctx = self.context(run_id)
        run = ctx.run
        if run.state == CANCELLED:
            return CANCELLED
        if run.state in TERMINAL:
            return run.state
        decisions = self.repo.decisions_of(run_id)
        result = dict(run.result)
        applied = set(result.get("applied_decisions", []))
        amended = False
        for d in decisions:
            if d.decision_id in applied:
                continue
            if d.kind == AMEND:
                _apply_amendments(result, d.amendments, d.reviewer)
                amended = True
            applied.add(d.decision_id)
        if amended:
            result["applied_decisions"] = sorted(applied)
            result["round"] = int(result.get("round", 0)) + 1  # checks and note redone
            self.repo.update_run(run_id, result=result)
            return AMENDED
        if any(d.kind == REJECT for d in decisions):
            return REJECTED
        if len(qualifying_approvers(decisions, run)) >= run.approvals_required:
            return APPROVED
        return WAIT

    def release(self, run_id: str) -> None:
        ctx = self.context(run_id)
        result = dict(ctx.run.result)
        result["released"] = True
        now = self.clock()
        if self.repo.set_state_unless_terminal(
            run_id,
            COMPLETED,
            event=("release", COMPLETED, "approved"),
            result_json=_json(result),
            finished_at=now,
            step="release",
        ):
            metrics.RUNS_FINISHED.labels(ctx.flow.name, COMPLETED).inc()
            metrics.DOSSIER_SECONDS.labels(ctx.flow.name).observe(now - ctx.run.created_at)
            self._audit(
                ctx.run,
                "DOSSIER_RELEASE",
                approvers=sorted(qualifying_approvers(self.repo.decisions_of(run_id), ctx.run)),
            )

    def reject(self, run_id: str) -> None:
        ctx = self.context(run_id)
        if self.repo.set_state_unless_terminal(
            run_id,
            REJECTED,
            event=("release", REJECTED, "rejected: nothing released"),
            finished_at=self.clock(),
            step="release",
        ):
            metrics.RUNS_FINISHED.labels(ctx.flow.name, REJECTED).inc()
            self._audit(ctx.run, "DOSSIER_REJECT", "REJECTED")

    def fail(self, run_id: str, reason: str, message: str) -> None:
        ctx = self.context(run_id)
        if self.repo.set_state_unless_terminal(
            run_id,
            FAILED,
            event=("run", FAILED, f"{reason}: {message}"),
            error_reason=reason,
            error_message=message,
            finished_at=self.clock(),
        ):
            metrics.RUNS_FINISHED.labels(ctx.flow.name, FAILED).inc()
            self._audit(ctx.run, "DOSSIER_RUN_FAIL", reason, message=message[:500])


def qualifying_approvers(decisions: Sequence[Any], run: RunRow) -> set[str]:
    """The distinct people whose approval counts towards the run's sign-off: approvals given
    after the last amendment (an amendment changes what is approved, so the approvals before
    it are void), never the person who requested the run or submitted its dossier."""
    last_amend = max((i for i, d in enumerate(decisions) if d.kind == AMEND), default=-1)
    return {
        d.reviewer
        for d in decisions[last_amend + 1 :]
        if d.kind == APPROVE and d.reviewer not in run.submitters
    }


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _dossier_docs(result: Mapping[str, Any]) -> set[str]:
    return {d["document_id"] for d in result.get("documents", [])}


def _apply_amendments(result: dict[str, Any], amendments: Mapping[str, str], reviewer: str) -> None:
    for ref, value in amendments.items():
        doc_type, _, name = ref.partition(".")
        for d in result.get("documents", []):
            if d.get("type") != doc_type:
                continue
            for f in d.get("fields", []):
                if f["name"] == name:
                    f["previous_value"] = f.get("value")
                    f["value"] = value
                    f["status"] = "AMENDED"
                    f["amended_by"] = reviewer
                    f["confidence"] = 1.0
            break
