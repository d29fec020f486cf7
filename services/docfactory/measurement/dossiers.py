"""Dossier runs in the usage figures: runs by state, time to decision, decisions, corrections.

Measurement reads the runs through a small contract (:class:`DossierRuns`): the facts of each
run created in a period. The default implementation (:class:`SqlDossierRuns`) reads the
workflow tables of the shared metadata database read-only with plain SQL (measurement imports
no internals of ``workflows``); a composition root may inject another.

Definitions (the usage page and the report say the same):

- runs: runs created in the period; by state: their current state.
- time to decision: from the run's *start* (the moment a worker took it: its first RUNNING
  event, not its creation, so queue time is left out) to its release (COMPLETED) or rejection
  (REJECTED); median over the decided runs with both times.
- approval rate ("taux d'approbation"): COMPLETED / (COMPLETED + REJECTED + INCOMPLETE): a run
  stopped for missing documents did not get approved. No denominator: None ("n/d").
- approvals / rejections: reviewers' decisions (APPROVE and AMEND count as approvals).
- fields corrected: per field name, how many AMEND decisions changed it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from docfactory.measurement.usage import percentile

log = logging.getLogger("docfactory.measurement")

COMPLETED = "COMPLETED"
REJECTED = "REJECTED"
INCOMPLETE = "INCOMPLETE"
RUNNING = "RUNNING"
APPROVE, AMEND, REJECT = "APPROVE", "AMEND", "REJECT"


@dataclass(frozen=True)
class Decision:
    kind: str  # APPROVE, AMEND, REJECT
    fields: tuple[str, ...] = ()  # amended field names (AMEND)


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    tenant: str
    use_case: str
    state: str
    created_at: float  # epoch seconds
    started_at: float | None  # first RUNNING event (a worker took the run)
    finished_at: float | None
    decisions: tuple[Decision, ...] = ()


class DossierRuns(Protocol):
    """The contract measurement needs from the workflow side."""

    def runs(
        self, *, start: dt.datetime, end: dt.datetime, tenant: str | None, use_case: str | None
    ) -> list[RunFacts]:
        """Runs created in ``[start, end)``."""
        ...

    def run(self, tenant: str, run_id: str) -> RunFacts | None:
        """One run of ``tenant`` (None: no such run there)."""
        ...


_RUN_COLUMNS = "run_id, tenant, use_case, state, created_at, finished_at"


class SqlDossierRuns:
    """:class:`DossierRuns` over the workflow tables (``workflow_runs``, ``workflow_events``,
    ``workflow_decisions``), read-only. A database without them has no runs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def runs(
        self, *, start: dt.datetime, end: dt.datetime, tenant: str | None, use_case: str | None
    ) -> list[RunFacts]:
        where = ["created_at >= :start", "created_at < :end"]
        params: dict[str, Any] = {"start": start.timestamp(), "end": end.timestamp()}
        if tenant is not None:
            where.append("tenant = :tenant")
            params["tenant"] = tenant
        if use_case is not None:
            where.append("use_case = :use_case")
            params["use_case"] = use_case
        query = f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE {' AND '.join(where)}"
        return self._facts(query, params)

    def run(self, tenant: str, run_id: str) -> RunFacts | None:
        query = f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE tenant = :tenant AND run_id = :rid"
        found = self._facts(query, {"tenant": tenant, "rid": run_id})
        return found[0] if found else None

    def _facts(self, query: str, params: dict[str, Any]) -> list[RunFacts]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(text(query + " ORDER BY created_at, run_id"), params).all()
                ids = [r.run_id for r in rows]
                starts: dict[str, float] = {}
                decisions: dict[str, list[Decision]] = {}
                for chunk in _chunks(ids, 500):
                    names = {f"r{i}": rid for i, rid in enumerate(chunk)}
                    marks = ", ".join(f":{n}" for n in names)
                    for r in conn.execute(
                        text(
                            "SELECT run_id, MIN(at) AS started FROM workflow_events "
                            f"WHERE state = :running AND run_id IN ({marks}) GROUP BY run_id"
                        ),
                        {**names, "running": RUNNING},
                    ):
                        starts[r.run_id] = float(r.started)
                    for r in conn.execute(
                        text(
                            "SELECT run_id, kind, amendments_json FROM workflow_decisions "
                            f"WHERE run_id IN ({marks}) ORDER BY created_at, decision_id"
                        ),
                        names,
                    ):
                        amended = json.loads(r.amendments_json or "{}") if r.kind == AMEND else {}
                        decisions.setdefault(r.run_id, []).append(
                            Decision(str(r.kind), tuple(sorted(amended)))
                        )
        except SQLAlchemyError as exc:  # no workflow tables (a database of another role)
            log.debug("no dossier runs readable: %s", exc)
            return []
        return [
            RunFacts(
                run_id=r.run_id,
                tenant=r.tenant,
                use_case=r.use_case or "",
                state=r.state,
                created_at=float(r.created_at),
                started_at=starts.get(r.run_id),
                finished_at=float(r.finished_at) if r.finished_at is not None else None,
                decisions=tuple(decisions.get(r.run_id, ())),
            )
            for r in rows
        ]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class DossierUsage:
    runs: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    signed: int = 0
    rejected: int = 0
    incomplete: int = 0
    approval_rate: float | None = None
    median_decision_seconds: float | None = None
    decided_timed: int = 0
    approvals: int = 0
    rejections: int = 0
    fields_corrected: dict[str, int] = field(default_factory=dict)  # most corrected first
    feedback: int = 0
    useful: int = 0
    verdicts: int = 0
    useful_rate: float | None = None
    time_saved_minutes: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dossier_usage(runs: Iterable[RunFacts], feedback: Iterable[Any] = ()) -> DossierUsage:
    """The dossier figures of ``runs`` (and the feedback given on signed runs)."""
    out = DossierUsage()
    states: Counter[str] = Counter()
    corrected: Counter[str] = Counter()
    durations: list[float] = []
    for run in runs:
        out.runs += 1
        states[run.state] += 1
        start, end = run.started_at, run.finished_at
        if run.state in (COMPLETED, REJECTED) and start is not None and end is not None:
            durations.append(max(0.0, end - start))
        for d in run.decisions:
            if d.kind in (APPROVE, AMEND):
                out.approvals += 1
            elif d.kind == REJECT:
                out.rejections += 1
            corrected.update(d.fields)
    out.by_state = dict(sorted(states.items()))
    out.signed = states[COMPLETED]
    out.rejected = states[REJECTED]
    out.incomplete = states[INCOMPLETE]
    ended = out.signed + out.rejected + out.incomplete
    out.approval_rate = out.signed / ended if ended else None
    out.decided_timed = len(durations)
    out.median_decision_seconds = percentile(durations, 50)
    out.fields_corrected = dict(sorted(corrected.items(), key=lambda kv: (-kv[1], kv[0])))
    for fb in feedback:
        out.feedback += 1
        out.time_saved_minutes += fb.time_saved_minutes
        if fb.useful is not None:
            out.verdicts += 1
            out.useful += int(fb.useful)
    out.useful_rate = out.useful / out.verdicts if out.verdicts else None
    return out
