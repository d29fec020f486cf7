"""Storage of dossiers, runs, step events, step executions and decisions (SQLAlchemy Core).

Shared by the gRPC server (creates dossiers and runs, records decisions) and the workflow
workers (steps write their outcome). Every write a step makes is keyed by (run, step), so a step
re-executed after a crash rewrites the same rows (idempotent effects).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from docfactory.core.migrate import ensure_schema

metadata = sa.MetaData()

# Run states (the proto's RunState names without the prefix).
QUEUED = "QUEUED"
RUNNING = "RUNNING"
INCOMPLETE = "INCOMPLETE"
AWAITING_SIGNOFF = "AWAITING_SIGNOFF"
ESCALATED = "ESCALATED"
COMPLETED = "COMPLETED"
REJECTED = "REJECTED"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
TERMINAL = frozenset({INCOMPLETE, COMPLETED, REJECTED, CANCELLED, FAILED})
WAITING = frozenset({AWAITING_SIGNOFF, ESCALATED})

APPROVE, AMEND, REJECT = "APPROVE", "AMEND", "REJECT"

dossiers = sa.Table(
    "workflow_dossiers",
    metadata,
    sa.Column("dossier_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("display_name", sa.String(255), nullable=False, default=""),
    sa.Column("use_case", sa.String(128), nullable=False, default=""),
    sa.Column("classification", sa.Integer, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False, default="{}"),
    sa.Column("latest_run_id", sa.String(64), nullable=False, default=""),
    sa.Column("latest_state", sa.String(32), nullable=False, default=""),
    sa.Column("latest_flow", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    # The key (person) that created the dossier: never one of its approvers (four-eyes).
    sa.Column("created_by", sa.String(128), nullable=False, default=""),
)

documents = sa.Table(
    "workflow_documents",
    metadata,
    sa.Column("dossier_id", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("page_count", sa.Integer, nullable=False),
    sa.Column("pages_json", sa.Text, nullable=False),
)

runs = sa.Table(
    "workflow_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("dossier_id", sa.String(64), nullable=False, index=True),
    sa.Column("flow_ref", sa.String(128), nullable=False),
    sa.Column("flow_json", sa.Text, nullable=False),
    sa.Column("use_case", sa.String(128), nullable=False, default=""),
    sa.Column("requester", sa.String(128), nullable=False, default=""),
    # Who may not approve the run (four-eyes): the dossier's submitter and the run's requester,
    # comma-separated; empty without a policy (the embedded default: one local key).
    sa.Column("submitted_by", sa.Text, nullable=False, default=""),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("step", sa.String(64), nullable=False, default=""),
    sa.Column("missing_json", sa.Text, nullable=False, default="[]"),
    sa.Column("error_reason", sa.String(64), nullable=False, default=""),
    sa.Column("error_message", sa.Text, nullable=False, default=""),
    sa.Column("result_json", sa.Text, nullable=False, default="{}"),
    sa.Column("signoff_role", sa.String(32), nullable=False, default="reviewer"),
    sa.Column("approvals_required", sa.Integer, nullable=False, default=1),
    sa.Column("deadline", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)

events = sa.Table(
    "workflow_events",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.Float, nullable=False),
)

step_runs = sa.Table(
    "workflow_step_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(64), primary_key=True),
    sa.Column("starts", sa.Integer, nullable=False, default=0),
    sa.Column("finishes", sa.Integer, nullable=False, default=0),
    sa.Column("duration_ms", sa.Float, nullable=False, default=0.0),
)

decisions = sa.Table(
    "workflow_decisions",
    metadata,
    sa.Column("decision_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("amendments_json", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
)

executors = sa.Table(
    "workflow_executors",
    metadata,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)


def ensure_tables(engine: Engine) -> None:
    """The workflow tables come with docfactory's migrations (revision 0004)."""
    ensure_schema(engine)


@dataclass
class DossierRow:
    dossier_id: str
    tenant: str
    display_name: str
    use_case: str
    classification: int
    metadata: dict[str, str]
    latest_run_id: str
    latest_state: str
    latest_flow: str
    created_at: float
    documents: list[DocRow] = field(default_factory=list)
    created_by: str = ""
    runs: list[RunSummary] = field(default_factory=list)  # newest first


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    flow_ref: str
    state: str
    created_at: float
    finished_at: float | None


@dataclass
class DocRow:
    document_id: str
    filename: str
    page_count: int
    pages: list[str]


@dataclass
class RunRow:
    run_id: str
    tenant: str
    dossier_id: str
    flow_ref: str
    flow_json: str
    use_case: str
    requester: str
    state: str
    step: str
    missing: list[str]
    error_reason: str
    error_message: str
    result: dict[str, Any]
    signoff_role: str
    approvals_required: int
    deadline: float | None
    created_at: float
    updated_at: float
    finished_at: float | None
    submitted_by: str = ""

    @property
    def submitters(self) -> frozenset[str]:
        """The people who asked for this run: none of them may approve it."""
        return frozenset(k for k in self.submitted_by.split(",") if k)


@dataclass
class DecisionRow:
    decision_id: str
    run_id: str
    kind: str
    reviewer: str
    comment: str
    amendments: dict[str, str]
    created_at: float


@dataclass
class EventRow:
    seq: int
    step: str
    event: str
    state: str
    detail: str
    at: float


def _run(row: Any) -> RunRow:
    return RunRow(
        run_id=row.run_id,
        tenant=row.tenant,
        dossier_id=row.dossier_id,
        flow_ref=row.flow_ref,
        flow_json=row.flow_json,
        use_case=row.use_case,
        requester=row.requester,
        state=row.state,
        step=row.step,
        missing=json.loads(row.missing_json or "[]"),
        error_reason=row.error_reason,
        error_message=row.error_message,
        result=json.loads(row.result_json or "{}"),
        signoff_role=row.signoff_role,
        approvals_required=row.approvals_required,
        deadline=row.deadline,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        submitted_by=row.submitted_by,
    )


def _dossier(row: Any) -> DossierRow:
    return DossierRow(
        dossier_id=row.dossier_id,
        tenant=row.tenant,
        display_name=row.display_name,
        use_case=row.use_case,
        classification=row.classification,
        metadata=json.loads(row.metadata_json or "{}"),
        latest_run_id=row.latest_run_id,
        latest_state=row.latest_state,
        latest_flow=row.latest_flow,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def new_id() -> str:
    return uuid.uuid4().hex


class WorkflowRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_tables(engine)

    # -- dossiers ------------------------------------------------------------------------------

    def create_dossier(
        self,
        *,
        tenant: str,
        display_name: str,
        use_case: str,
        classification: int,
        metadata: dict[str, str],
        docs: Sequence[DocRow],
        dossier_id: str = "",
        created_by: str = "",
    ) -> DossierRow:
        did = dossier_id or new_id()
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                dossiers.insert().values(
                    dossier_id=did,
                    tenant=tenant,
                    display_name=display_name,
                    use_case=use_case,
                    classification=classification,
                    metadata_json=json.dumps(metadata, ensure_ascii=False),
                    latest_run_id="",
                    latest_state="",
                    latest_flow="",
                    created_at=now,
                    created_by=created_by,
                )
            )
            for i, d in enumerate(docs):
                conn.execute(
                    documents.insert().values(
                        dossier_id=did,
                        document_id=d.document_id,
                        position=i,
                        filename=d.filename,
                        page_count=d.page_count,
                        pages_json=json.dumps(d.pages, ensure_ascii=False),
                    )
                )
        found = self.get_dossier(tenant, did, with_pages=False)
        assert found is not None
        return found

    def get_dossier(
        self, tenant: str, dossier_id: str, *, with_pages: bool = False
    ) -> DossierRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(dossiers).where(
                    dossiers.c.tenant == tenant, dossiers.c.dossier_id == dossier_id
                )
            ).first()
            if row is None:
                return None
            out = _dossier(row)
            out.documents = self._docs(conn, dossier_id, with_pages)
            out.runs = self._runs_of(conn, [dossier_id]).get(dossier_id, [])
        return out

    def _runs_of(self, conn: Connection, dossier_ids: Sequence[str]) -> dict[str, list[RunSummary]]:
        """dossier id -> its runs, newest first (one query for a page of dossiers)."""
        if not dossier_ids:
            return {}
        rows = conn.execute(
            sa.select(
                runs.c.dossier_id,
                runs.c.run_id,
                runs.c.flow_ref,
                runs.c.state,
                runs.c.created_at,
                runs.c.finished_at,
            )
            .where(runs.c.dossier_id.in_(list(dossier_ids)))
            .order_by(runs.c.created_at.desc(), runs.c.run_id)
        ).all()
        out: dict[str, list[RunSummary]] = {}
        for r in rows:
            out.setdefault(r.dossier_id, []).append(
                RunSummary(r.run_id, r.flow_ref, r.state, r.created_at, r.finished_at)
            )
        return out

    def _docs(self, conn: Connection, dossier_id: str, with_pages: bool) -> list[DocRow]:
        cols = [documents.c.document_id, documents.c.filename, documents.c.page_count]
        if with_pages:
            cols.append(documents.c.pages_json)
        rows = conn.execute(
            sa.select(*cols)
            .where(documents.c.dossier_id == dossier_id)
            .order_by(documents.c.position)
        ).all()
        return [
            DocRow(
                r.document_id,
                r.filename,
                r.page_count,
                json.loads(r.pages_json) if with_pages else [],
            )
            for r in rows
        ]

    def dossier_pages(self, dossier_id: str) -> list[DocRow]:
        with self.engine.connect() as conn:
            return self._docs(conn, dossier_id, True)

    def list_dossiers(
        self,
        tenant: str,
        *,
        state: str = "",
        flow: str = "",
        limit: int = 50,
        after: tuple[float, str] | None = None,
    ) -> tuple[list[DossierRow], bool]:
        """Newest first; ``after``: (created_at, dossier_id) of the previous page's last one."""
        q = sa.select(dossiers).where(dossiers.c.tenant == tenant)
        if after is not None:
            q = q.where(
                sa.or_(
                    dossiers.c.created_at < after[0],
                    sa.and_(dossiers.c.created_at == after[0], dossiers.c.dossier_id > after[1]),
                )
            )
        if state:
            q = q.where(dossiers.c.latest_state == state)
        if flow:
            q = q.where(
                sa.or_(dossiers.c.latest_flow == flow, dossiers.c.latest_flow.like(f"{flow}@%"))
            )
        q = q.order_by(dossiers.c.created_at.desc(), dossiers.c.dossier_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.limit(limit + 1)).all()
            out = [_dossier(r) for r in rows[:limit]]
            by_dossier = self._runs_of(conn, [d.dossier_id for d in out])
            for d in out:
                d.documents = self._docs(conn, d.dossier_id, False)
                d.runs = by_dossier.get(d.dossier_id, [])
        return out, len(rows) > limit

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        tenant: str,
        dossier_id: str,
        flow_ref: str,
        flow_json: str,
        use_case: str,
        requester: str,
        signoff_role: str,
        submitted_by: Sequence[str] = (),
    ) -> RunRow:
        rid = new_id()
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=rid,
                    tenant=tenant,
                    dossier_id=dossier_id,
                    flow_ref=flow_ref,
                    flow_json=flow_json,
                    use_case=use_case,
                    requester=requester,
                    submitted_by=",".join(sorted(set(submitted_by))),
                    state=QUEUED,
                    step="",
                    missing_json="[]",
                    error_reason="",
                    error_message="",
                    result_json="{}",
                    signoff_role=signoff_role,
                    approvals_required=1,
                    deadline=None,
                    created_at=now,
                    updated_at=now,
                    finished_at=None,
                )
            )
            conn.execute(
                dossiers.update()
                .where(dossiers.c.dossier_id == dossier_id)
                .values(latest_run_id=rid, latest_state=QUEUED, latest_flow=flow_ref)
            )
            self._event(conn, rid, "run", QUEUED, QUEUED, flow_ref)
        run = self.get_run(rid)
        assert run is not None
        return run

    def get_run(self, run_id: str, tenant: str | None = None) -> RunRow | None:
        q = sa.select(runs).where(runs.c.run_id == run_id)
        if tenant is not None:
            q = q.where(runs.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _run(row) if row is not None else None

    def list_runs(
        self,
        tenant: str,
        states: Sequence[str],
        *,
        limit: int = 50,
        after: tuple[float, str] | None = None,
    ) -> tuple[list[RunRow], bool]:
        """Oldest first; ``after``: (created_at, run_id) of the previous page's last run."""
        q = sa.select(runs).where(runs.c.tenant == tenant, runs.c.state.in_(list(states)))
        if after is not None:
            q = q.where(
                sa.or_(
                    runs.c.created_at > after[0],
                    sa.and_(runs.c.created_at == after[0], runs.c.run_id > after[1]),
                )
            )
        q = q.order_by(runs.c.created_at, runs.c.run_id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [_run(r) for r in rows[:limit]], len(rows) > limit

    def update_run(
        self, run_id: str, *, event: tuple[str, str, str] | None = None, **values: Any
    ) -> RunRow:
        """Update columns (``result`` / ``missing`` as Python values) and append an event
        ``(step, event, detail)``; the dossier's latest state follows."""
        if "result" in values:
            values["result_json"] = json.dumps(values.pop("result"), ensure_ascii=False)
        if "missing" in values:
            values["missing_json"] = json.dumps(values.pop("missing"), ensure_ascii=False)
        values["updated_at"] = time.time()
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            assert row is not None
            conn.execute(
                dossiers.update()
                .where(
                    dossiers.c.dossier_id == row.dossier_id,
                    dossiers.c.latest_run_id == run_id,
                )
                .values(latest_state=row.state)
            )
            if event is not None:
                self._event(conn, run_id, event[0], event[1], row.state, event[2])
        return _run(row)

    def set_state_unless_terminal(
        self, run_id: str, state: str, *, event: tuple[str, str, str], **values: Any
    ) -> bool:
        """Move a run to ``state`` unless it already ended (atomic compare-and-set)."""
        values["updated_at"] = time.time()
        with self.engine.begin() as conn:
            n = conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.state.not_in(list(TERMINAL)))
                .values(state=state, **values)
            ).rowcount
            if not n:
                return False
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            assert row is not None
            conn.execute(
                dossiers.update()
                .where(
                    dossiers.c.dossier_id == row.dossier_id,
                    dossiers.c.latest_run_id == run_id,
                )
                .values(latest_state=state)
            )
            self._event(conn, run_id, event[0], event[1], state, event[2])
        return True

    # -- events and step executions ------------------------------------------------------------

    def _event(
        self, conn: Connection, run_id: str, step: str, event: str, state: str, detail: str
    ) -> None:
        seq = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(events.c.seq), 0)).where(
                events.c.run_id == run_id
            )
        ).scalar_one()
        conn.execute(
            events.insert().values(
                run_id=run_id,
                seq=int(seq) + 1,
                step=step,
                event=event,
                state=state,
                detail=detail[:2000],
                at=time.time(),
            )
        )

    def add_event(self, run_id: str, step: str, event: str, detail: str = "") -> None:
        with self.engine.begin() as conn:
            state = conn.execute(
                sa.select(runs.c.state).where(runs.c.run_id == run_id)
            ).scalar_one()
            self._event(conn, run_id, step, event, state, detail)

    def events_after(self, run_id: str, seq: int) -> list[EventRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(events)
                .where(events.c.run_id == run_id, events.c.seq > seq)
                .order_by(events.c.seq)
            ).all()
        return [EventRow(r.seq, r.step, r.event, r.state, r.detail, r.at) for r in rows]

    def step_started(self, run_id: str, step: str) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(
                step_runs.update()
                .where(step_runs.c.run_id == run_id, step_runs.c.step == step)
                .values(starts=step_runs.c.starts + 1)
            ).rowcount
            if not n:
                conn.execute(
                    step_runs.insert().values(
                        run_id=run_id, step=step, starts=1, finishes=0, duration_ms=0.0
                    )
                )
            state = conn.execute(
                sa.select(runs.c.state).where(runs.c.run_id == run_id)
            ).scalar_one()
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(step=step, updated_at=time.time())
            )
            self._event(conn, run_id, step, "STARTED", state, "")

    def step_finished(self, run_id: str, step: str, duration_ms: float, detail: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                step_runs.update()
                .where(step_runs.c.run_id == run_id, step_runs.c.step == step)
                .values(finishes=step_runs.c.finishes + 1, duration_ms=duration_ms)
            )
            state = conn.execute(
                sa.select(runs.c.state).where(runs.c.run_id == run_id)
            ).scalar_one()
            self._event(conn, run_id, step, "FINISHED", state, detail)

    def step_counts(self, run_id: str) -> dict[str, tuple[int, int, float]]:
        """step -> (starts, finishes, duration_ms)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(step_runs).where(step_runs.c.run_id == run_id)).all()
        return {r.step: (r.starts, r.finishes, r.duration_ms) for r in rows}

    # -- decisions -----------------------------------------------------------------------------

    def add_decision(
        self,
        *,
        run_id: str,
        tenant: str,
        kind: str,
        reviewer: str,
        comment: str,
        amendments: dict[str, str],
    ) -> DecisionRow:
        row = DecisionRow(new_id(), run_id, kind, reviewer, comment, amendments, time.time())
        with self.engine.begin() as conn:
            conn.execute(
                decisions.insert().values(
                    decision_id=row.decision_id,
                    run_id=run_id,
                    tenant=tenant,
                    kind=kind,
                    reviewer=reviewer,
                    comment=comment,
                    amendments_json=json.dumps(amendments, ensure_ascii=False),
                    created_at=row.created_at,
                )
            )
            state = conn.execute(
                sa.select(runs.c.state).where(runs.c.run_id == run_id)
            ).scalar_one()
            self._event(
                conn, run_id, "signoff", f"DECISION_{kind}", state, f"{reviewer}: {comment}"
            )
        return row

    def decisions_of(self, run_id: str) -> list[DecisionRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(decisions)
                .where(decisions.c.run_id == run_id)
                .order_by(decisions.c.created_at, decisions.c.decision_id)
            ).all()
        return [
            DecisionRow(
                r.decision_id,
                r.run_id,
                r.kind,
                r.reviewer,
                r.comment,
                json.loads(r.amendments_json or "{}"),
                r.created_at,
            )
            for r in rows
        ]

    # -- measurement ---------------------------------------------------------------------------

    def stats(
        self, tenant: str | None = None, since: float = 0.0, until: float | None = None
    ) -> dict[str, Any]:
        """Runs by state, time per step and per dossier, decisions and amended fields."""
        rq = sa.select(runs.c.run_id, runs.c.state, runs.c.created_at, runs.c.finished_at).where(
            runs.c.created_at >= since
        )
        if until is not None:
            rq = rq.where(runs.c.created_at < until)
        if tenant:
            rq = rq.where(runs.c.tenant == tenant)
        with self.engine.connect() as conn:
            run_rows = conn.execute(rq).all()
            ids = [r.run_id for r in run_rows]
            steps = (
                conn.execute(sa.select(step_runs).where(step_runs.c.run_id.in_(ids))).all()
                if ids
                else []
            )
            decs = (
                conn.execute(
                    sa.select(decisions.c.kind, decisions.c.amendments_json).where(
                        decisions.c.run_id.in_(ids)
                    )
                ).all()
                if ids
                else []
            )
        by_state: dict[str, int] = {}
        for r in run_rows:
            by_state[r.state] = by_state.get(r.state, 0) + 1
        per_step: dict[str, list[float]] = {}
        for s in steps:
            if s.finishes:
                per_step.setdefault(s.step.split(":", 1)[0], []).append(s.duration_ms)
        durations = [
            (r.finished_at - r.created_at) * 1000 for r in run_rows if r.finished_at is not None
        ]
        kinds = {APPROVE: 0, AMEND: 0, REJECT: 0}
        amended = 0
        for d in decs:
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
            amended += len(json.loads(d.amendments_json or "{}"))
        decided = by_state.get(COMPLETED, 0) + by_state.get(REJECTED, 0)
        return {
            "runs": len(run_rows),
            "by_state": by_state,
            "step_ms": {k: sum(v) / len(v) for k, v in sorted(per_step.items())},
            "step_total_ms": {k: sum(v) for k, v in sorted(per_step.items())},
            "dossier_ms": sum(durations) / len(durations) if durations else 0.0,
            "decisions": kinds,
            "fields_amended": amended,
            "approval_rate": by_state.get(COMPLETED, 0) / decided if decided else 0.0,
            "rejection_rate": by_state.get(REJECTED, 0) / decided if decided else 0.0,
        }

    # -- executors (worker liveness) -----------------------------------------------------------

    def heartbeat(self, executor_id: str, host: str, pid: int) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            n = conn.execute(
                executors.update()
                .where(executors.c.executor_id == executor_id)
                .values(heartbeat=now)
            ).rowcount
            if not n:
                conn.execute(
                    executors.insert().values(
                        executor_id=executor_id, host=host, pid=pid, heartbeat=now
                    )
                )

    def mark_stopped(self, executor_id: str) -> None:
        """A worker leaving: its pending workflows are for the others to take over now."""
        with self.engine.begin() as conn:
            conn.execute(
                executors.update()
                .where(executors.c.executor_id == executor_id)
                .values(heartbeat=0.0)
            )

    def claim_dead_executors(self, me: str, timeout: float) -> list[str]:
        """Executors silent for ``timeout`` seconds; each is claimed (deleted) by one survivor."""
        limit = time.time() - timeout
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(executors.c.executor_id).where(
                    executors.c.heartbeat < limit, executors.c.executor_id != me
                )
            ).all()
            claimed = []
            for r in rows:
                n = conn.execute(
                    executors.delete().where(
                        executors.c.executor_id == r.executor_id, executors.c.heartbeat < limit
                    )
                ).rowcount
                if n:
                    claimed.append(r.executor_id)
        return claimed

    def live_executors(self, timeout: float) -> int:
        """Workers that heartbeated in the last ``timeout`` seconds."""
        limit = time.time() - timeout
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(executors.c.heartbeat >= limit)
                ).scalar()
                or 0
            )
