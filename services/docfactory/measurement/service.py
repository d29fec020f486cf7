"""MeasurementService domain: feedback linked to answers' audit records, usage records.

Linking a feedback to its answer (the ANSWER audit record), in this order:

1. ``answer_audit_seq``: that record, which must be an ANSWER of the caller's tenant;
2. ``review_id`` (held answers): the requester's first ANSWER record with outcome
   PENDING_REVIEW written at or after the draft's creation (the answering service writes the
   audit record right after the draft), within the link window;
3. neither: the latest completed ANSWER record (outcome OK or PENDING_REVIEW) of the caller's
   API key within the link window (default 30 minutes; ``link_window``).

Feedback on a signed dossier run (``run``) is linked to the run's DOSSIER_RELEASE audit record
(the run must be COMPLETED, in the caller's tenant); it goes to the dossier figures.

Two small contracts are injected by the composition root: ``internal_keys`` (the key ids of
workers, whose Search calls for a dossier are not user searches) and ``dossiers`` (the runs,
:class:`docfactory.measurement.dossiers.DossierRuns`; default: the workflow tables, read-only).

AnswerSummary does not carry the audit seq yet, so (3) is what a plain client gets today.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from docfactory.core import metrics
from docfactory.core.auth import Principal
from docfactory.core.errors import FailedPrecondition, InvalidArgument, NotFound
from docfactory.core.timeutil import utc, utcnow
from docfactory.governance.audit import ANSWER, FEEDBACK, AuditLog, AuditRecord
from docfactory.governance.reviews import ReviewStore
from docfactory.measurement.dossiers import (
    COMPLETED as RUN_COMPLETED,
)
from docfactory.measurement.dossiers import (
    DossierRuns,
    DossierUsage,
    SqlDossierRuns,
    dossier_usage,
)
from docfactory.measurement.feedback import (
    LINK_AUDIT_SEQ,
    LINK_LATEST_ANSWER,
    LINK_REVIEW_ID,
    LINK_RUN,
    USAGES,
    Feedback,
    FeedbackStore,
)
from docfactory.measurement.usage import (
    COMPLETED,
    Period,
    UsageData,
    UsageRecord,
    load_usage,
)

log = logging.getLogger("docfactory.measurement")

MAX_COMMENT_CHARS = 4000
MAX_MINUTES = 24 * 60.0


@dataclass(frozen=True)
class FeedbackInput:
    answer_audit_seq: int = 0
    review_id: str = ""
    useful: bool | None = None
    rating: int = 0  # 0 = not given
    comment: str = ""
    time_saved_minutes: float = 0.0
    usage: str = ""  # "" or one of USAGES
    run: str = ""  # "runs/{id}" or "{id}": a signed dossier run instead of an answer


@dataclass(frozen=True)
class LinkedAnswer:
    seq: int
    tenant: str
    key_id: str
    use_case: str
    document_ids: tuple[str, ...]
    method: str
    review_id: str = ""


class MeasurementService:
    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        *,
        reviews: ReviewStore | None = None,
        feedback: FeedbackStore | None = None,
        link_window: dt.timedelta = dt.timedelta(minutes=30),
        clock: Callable[[], dt.datetime] = utcnow,
        internal_keys: Callable[[], Iterable[str]] | None = None,
        dossiers: DossierRuns | None = None,
    ) -> None:
        self._engine = engine
        self.audit = audit
        self._reviews = reviews
        self.feedback = feedback or FeedbackStore(engine, clock=clock)
        self._window = link_window
        self._clock = clock
        self._internal_keys = internal_keys
        self.dossiers: DossierRuns = dossiers or SqlDossierRuns(engine)

    # -- feedback ------------------------------------------------------------------------

    def _validate(self, fb: FeedbackInput) -> None:
        if fb.rating and not 1 <= fb.rating <= 5:
            raise InvalidArgument("rating must be within 1-5 (0 = none)", reason="INVALID_RATING")
        if fb.time_saved_minutes < 0 or fb.time_saved_minutes > MAX_MINUTES:
            raise InvalidArgument(
                f"time_saved_minutes must be within [0, {MAX_MINUTES:g}]",
                reason="INVALID_TIME_SAVED",
            )
        if fb.usage and fb.usage not in USAGES:
            raise InvalidArgument(f"unknown usage {fb.usage!r}", reason="INVALID_USAGE")
        if len(fb.comment) > MAX_COMMENT_CHARS:
            raise InvalidArgument(
                f"the comment exceeds {MAX_COMMENT_CHARS} characters", reason="COMMENT_TOO_LONG"
            )
        if fb.run and (fb.answer_audit_seq or fb.review_id):
            raise InvalidArgument(
                "give a run or an answer (answer_audit_seq, review_id), not both",
                reason="FEEDBACK_TARGET_CONFLICT",
            )
        given = (fb.useful is not None, fb.rating, fb.usage, fb.time_saved_minutes)
        if not any(given) and not fb.comment.strip():
            raise InvalidArgument(
                "empty feedback: give a verdict, a rating, a usage, minutes or a comment",
                reason="EMPTY_FEEDBACK",
            )

    def _linked(self, record: AuditRecord, method: str, review_id: str = "") -> LinkedAnswer:
        return LinkedAnswer(
            seq=record.seq,
            tenant=record.tenant,
            key_id=record.key_id,
            use_case=record.use_case,
            document_ids=record.document_ids,
            method=method,
            review_id=review_id,
        )

    def link(self, principal: Principal, fb: FeedbackInput) -> LinkedAnswer:
        """The ANSWER audit record a feedback is about (see the module docstring)."""
        now = utc(self._clock())
        if fb.run:
            return self._link_run(principal, fb.run)
        if fb.answer_audit_seq:
            record = self.audit.find(ANSWER, principal.tenant, seq=fb.answer_audit_seq)
            if record is None:
                raise NotFound(
                    f"no answer with audit seq {fb.answer_audit_seq}",
                    reason="ANSWER_NOT_FOUND",
                )
            return self._linked(record, LINK_AUDIT_SEQ)
        if fb.review_id:
            if self._reviews is None:
                raise FailedPrecondition(
                    "no human review is configured (DOCFACTORY_POLICY_FILE)",
                    reason="NO_POLICY",
                )
            review = self._reviews.get(principal.tenant, fb.review_id)
            created = utc(review.created_at)
            record = self.audit.find(
                ANSWER,
                principal.tenant,
                key_id=review.requester_key_id,
                outcomes=("PENDING_REVIEW",),
                since=created - dt.timedelta(seconds=1),
                until=created + self._window,
            )
            if record is None:
                raise NotFound(
                    f"no answer audit record for review {fb.review_id}",
                    reason="ANSWER_NOT_FOUND",
                )
            return self._linked(record, LINK_REVIEW_ID, review.review_id)
        record = self.audit.find(
            ANSWER,
            principal.tenant,
            key_id=principal.key_id,
            outcomes=COMPLETED,
            since=now - self._window,
            newest=True,
        )
        if record is None:
            minutes = int(self._window.total_seconds() // 60)
            raise NotFound(
                f"no answer of this API key in the last {minutes} minutes: "
                "give answer_audit_seq or review_id",
                reason="ANSWER_NOT_FOUND",
            )
        return self._linked(record, LINK_LATEST_ANSWER)

    def _link_run(self, principal: Principal, name: str) -> LinkedAnswer:
        run_id = name.removeprefix("runs/")
        run = self.dossiers.run(principal.tenant, run_id) if run_id else None
        if run is None:
            raise NotFound(f"no run {run_id!r}", reason="RUN_NOT_FOUND")
        if run.state != RUN_COMPLETED or run.finished_at is None:
            raise FailedPrecondition(
                f"run {run_id} is {run.state}: feedback is given on signed runs",
                reason="RUN_NOT_SIGNED",
            )
        released = dt.datetime.fromtimestamp(run.finished_at, dt.UTC)
        for record in self.audit.records(
            since=released - dt.timedelta(minutes=5), tenant=principal.tenant
        ):
            if record.time > released + dt.timedelta(minutes=5):
                break
            if record.action == "DOSSIER_RELEASE" and record.details.get("run_id") == run_id:
                return self._linked(record, LINK_RUN)
        raise NotFound(f"no release audit record for run {run_id}", reason="RUN_NOT_FOUND")

    def submit(self, principal: Principal, fb: FeedbackInput) -> Feedback:
        """Validate, link, store, audit (action FEEDBACK) and count one feedback."""
        self._validate(fb)
        answer = self.link(principal, fb)
        stored = self.feedback.add(
            self.feedback.new(
                tenant=principal.tenant,
                key_id=principal.key_id,
                use_case=answer.use_case,
                answer_audit_seq=answer.seq,
                review_id=answer.review_id,
                link_method=answer.method,
                useful=fb.useful,
                rating=fb.rating or None,
                comment=fb.comment,
                time_saved_minutes=float(fb.time_saved_minutes),
                usage=fb.usage,
            )
        )
        try:
            record = self.audit.append(
                tenant=principal.tenant,
                key_id=principal.key_id,
                use_case=answer.use_case,
                action=FEEDBACK,
                outcome="OK",
                document_ids=answer.document_ids,
                details={
                    "answer_seq": answer.seq,
                    **({"run_id": fb.run.removeprefix("runs/")} if fb.run else {}),
                    "feedback_id": stored.id,
                    "link": answer.method,
                    "useful": fb.useful,
                    "rating": fb.rating or None,
                    "usage": fb.usage or None,
                    "time_saved_minutes": float(fb.time_saved_minutes),
                },
            )
        except Exception:
            log.exception("audit append failed; removing the feedback")
            self.feedback.delete(stored.id)
            raise
        self.feedback.set_audit_seq(stored.id, record.seq)
        tenant, use_case = principal.tenant, answer.use_case
        metrics.FEEDBACK.labels(tenant, use_case, str(fb.rating) if fb.rating else "none").inc()
        verdict = "none" if fb.useful is None else ("useful" if fb.useful else "not_useful")
        metrics.FEEDBACK_VERDICTS.labels(tenant, use_case, verdict).inc()
        metrics.ANSWER_USAGE.labels(tenant, use_case, (fb.usage or "unknown").lower()).inc()
        if fb.time_saved_minutes:
            metrics.TIME_SAVED_MINUTES.labels(tenant, use_case).inc(fb.time_saved_minutes)
        return Feedback(**{**stored.__dict__, "feedback_audit_seq": record.seq})

    # -- usage ---------------------------------------------------------------------------

    def internal_keys(self) -> frozenset[str]:
        if self._internal_keys is None:
            return frozenset()
        try:
            return frozenset(self._internal_keys())
        except Exception:  # a keys file being rewritten: count as before, never fail
            log.exception("cannot read the worker keys")
            return frozenset()

    def load(self, tenant: str | None, period: Period, use_case: str | None = None) -> UsageData:
        return load_usage(
            self.audit,
            self.feedback,
            period,
            tenant=tenant,
            use_case=use_case,
            internal_keys=self.internal_keys(),
        )

    def usage(self, tenant: str, period: Period, use_case: str | None = None) -> list[UsageRecord]:
        """One record per use case with activity; with ``use_case``, exactly one record."""
        return self.usage_and_dossiers(tenant, period, use_case)[0]

    def usage_and_dossiers(
        self, tenant: str, period: Period, use_case: str | None = None
    ) -> tuple[list[UsageRecord], DossierUsage]:
        data = self.load(tenant, period, use_case)
        records = [data.record_for(tenant, use_case)] if use_case is not None else data.per_group()
        return records, self.dossier_usage(data, tenant, use_case)

    def dossier_usage(
        self, data: UsageData, tenant: str | None, use_case: str | None = None
    ) -> DossierUsage:
        runs = self.dossiers.runs(
            start=data.period.start_time, end=data.period.end_time, tenant=tenant,
            use_case=use_case,
        )  # fmt: skip
        return dossier_usage(runs, data.run_feedback(tenant or "*", use_case or "*"))
