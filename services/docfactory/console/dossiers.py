"""Dossier pages: list with states and filters, one dossier with its documents and runs, a run
with its steps, fields (with the evidence of each), checks, note and decisions; start a run; sign
off (approve / amend fields / reject) through WorkflowService.SubmitDecision."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from docfactory.console import i18n
from docfactory.console.backend import ServiceError
from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb

if TYPE_CHECKING:
    from docfactory.console.app import Console

KINDS = {
    "approve": wf_pb.DECISION_KIND_APPROVE,
    "amend": wf_pb.DECISION_KIND_AMEND,
    "reject": wf_pb.DECISION_KIND_REJECT,
}
ACTIVE = {wf_pb.RUN_STATE_QUEUED, wf_pb.RUN_STATE_RUNNING}
WAITING = {wf_pb.RUN_STATE_AWAITING_SIGNOFF, wf_pb.RUN_STATE_ESCALATED}
AMEND_PREFIX = "amend:"
#: The flows a FLOW_NOT_FOUND message lists ("... not found (known: a, b)").
_KNOWN_FLOWS = re.compile(r"\(known: ([^)]*)\)")


def run_state(state: int) -> str:
    if not state:
        return ""
    return wf_pb.RunState.Name(state).removeprefix("RUN_STATE_")  # type: ignore[arg-type]


def kind_name(kind: int) -> str:
    return wf_pb.DecisionKind.Name(kind).removeprefix("DECISION_KIND_")  # type: ignore[arg-type]


def check_outcome(outcome: int) -> str:
    return wf_pb.CheckOutcome.Name(outcome).removeprefix("CHECK_OUTCOME_")  # type: ignore[arg-type]


#: A run's state as the dossier list shows it (one dossier state per run state).
DOSSIER_STATES: dict[int, str] = {
    wf_pb.RUN_STATE_COMPLETED: "signed",
    wf_pb.RUN_STATE_REJECTED: "rejected",
    wf_pb.RUN_STATE_AWAITING_SIGNOFF: "awaiting",
    wf_pb.RUN_STATE_ESCALATED: "escalated",
    wf_pb.RUN_STATE_INCOMPLETE: "incomplete",
    wf_pb.RUN_STATE_RUNNING: "running",
    wf_pb.RUN_STATE_QUEUED: "queued",
    wf_pb.RUN_STATE_FAILED: "failed",
    wf_pb.RUN_STATE_CANCELLED: "cancelled",
}
STATE_FILTER = {name: state for state, name in DOSSIER_STATES.items()}
#: Outcomes that say nothing about the dossier once an earlier run was decided or is waiting:
#: a signed dossier stays signed when a later run stops on a missing document.
SUPERSEDED = {"incomplete", "failed", "cancelled"}


def meaningful_state(states_newest_first: Sequence[int]) -> str:
    """The dossier's latest *meaningful* state from its runs' states, newest first: the newest
    run that was decided, waits for a decision or is under way; a run that stopped (incomplete,
    failed, cancelled) counts only when no run before it got further. "new": never run."""
    names = [DOSSIER_STATES[s] for s in states_newest_first if s in DOSSIER_STATES]
    if not names:
        return "new"
    return next((n for n in names if n not in SUPERSEDED), names[0])


def dossier_state(dossier: Any) -> str:
    """The list's state of a Dossier message. The API gives the latest run's state only
    (``latest_run_state``): until it gives the dossier's runs, a signed dossier whose newest
    run stopped shows that run's state."""
    runs = getattr(dossier, "runs", None)  # not in the API yet (see meaningful_state)
    if runs:
        ordered = sorted(runs, key=lambda r: r.create_time.ToNanoseconds(), reverse=True)
        return meaningful_state([r.state for r in ordered])
    return meaningful_state([dossier.latest_run_state])


def step_key(step: str, doc_order: Sequence[str]) -> tuple[int, int, int]:
    """Execution order of a run's steps: classify, extract per document (dossier order), then
    per round N: check:N, (retrieve once), draft:N; signoff, release."""
    name, _, arg = step.partition(":")
    n = int(arg) if arg.isdigit() else 0
    if name == "classify":
        return (0, 0, 0)
    if name == "extract":
        return (1, doc_order.index(arg) if arg in doc_order else len(doc_order), 0)
    if name == "check":
        return (2, n, 0)
    if name == "retrieve":
        return (2, 0, 1)
    if name == "draft":
        return (2, n, 2)
    return {"signoff": (3, 0, 0), "release": (4, 0, 0)}.get(name, (5, 0, 0))


def step_label(step: str, filenames: dict[str, str], label: Any) -> str:
    """A step's human label: "Extraction — kbis.pdf" for extract:<document id>, "Note
    (version 2)" for draft:1..."""
    name, _, arg = step.partition(":")
    if name == "extract":
        return str(label("step", "extract")).format(name=filenames.get(arg) or arg[:8])
    if name == "check" and arg.isdigit() and int(arg) > 0:
        return str(label("step", "check_round")).format(n=int(arg) + 1)
    if name == "draft":
        return str(label("step", "draft")).format(n=(int(arg) if arg.isdigit() else 0) + 1)
    return str(label("step", name))


def _helpers() -> dict[str, Any]:
    return {
        "run_state": run_state,
        "kind_name": kind_name,
        "check_outcome": check_outcome,
        "dossier_state": dossier_state,
    }


async def queued_notices(wf: Any, key: str, dossiers: Sequence[Any]) -> dict[str, Any]:
    """dossier name -> RunNotice of its latest run, for the QUEUED dossiers of a page whose
    latest run the API gives (``Dossier.latest_run``: "runs/{run_id}")."""
    wanted = {
        d.name: run
        for d in dossiers
        if d.latest_run_state == wf_pb.RUN_STATE_QUEUED and (run := d.latest_run)
    }

    async def one(run: str) -> Any:
        try:
            return (await wf.get_run(key, run)).notice
        except ServiceError:
            return None

    got = await asyncio.gather(*(one(r) for r in wanted.values()))
    return {name: n for name, n in zip(wanted, got, strict=True) if n is not None and n.reason}


def build(console: Console) -> list[Route]:
    from docfactory.console.routes import _valid_id

    wf = console.backend.workflows

    async def dossiers(request: Request) -> Response:
        session = console.require(request, "dossiers")
        lang = console.lang(request)
        q = request.query_params
        state_name = q.get("state", "").strip()
        # a dossier state ("signed") or, as before, a run state name ("COMPLETED")
        state = STATE_FILTER.get(state_name, 0)
        if state_name and not state:
            legacy = wf_pb.RunState.DESCRIPTOR.values_by_name.get("RUN_STATE_" + state_name)
            state = legacy.number if legacy is not None and legacy.number else -1
            if state > 0:
                state_name = DOSSIER_STATES[state]
        flow = q.get("flow", "").strip()
        error = ""
        listing: Any = None
        if state < 0:
            error = i18n.reason_text(lang, "INVALID_STATE", value=state_name)
        else:
            listing = await wf.list_dossiers(
                session.api_key, state=state, flow=flow, page_token=q.get("page_token", "")
            )
        rows = list(listing.dossiers) if listing else []
        pending = await wf.pending(session.api_key) if session.may("dossiers.decide") else []
        notices = await queued_notices(wf, session.api_key, rows)
        flows = sorted({d.latest_flow.split("@")[0] for d in rows if d.latest_flow})
        return console.render(
            request,
            "dossiers.html",
            {
                "dossiers": rows,
                "next_token": listing.next_page_token if listing else "",
                "states": list(DOSSIER_STATES.values()),
                "state": state_name if state >= 0 else "",
                "flow": flow,
                "flows": flows,
                "pending": pending,
                "notices": notices,
                "error": error,
                **_helpers(),
            },
            status_code=400 if error else 200,
            session=session,
        )

    async def dossier(request: Request) -> Response:
        session = console.require(request, "dossiers")
        dossier_id = _valid_id(request.path_params["dossier_id"])
        got = await wf.get_dossier(session.api_key, f"dossiers/{dossier_id}")
        pending = []
        if session.may("dossiers.decide"):
            pending = [r for r in await wf.pending(session.api_key) if r.dossier == got.name]
        return console.render(
            request,
            "dossier.html",
            {"dossier": got, "pending": pending, "error": "", "flow_value": "", **_helpers()},
            session=session,
        )

    async def start_run(request: Request) -> Response:
        session = console.require(request, "dossiers.run")
        dossier_id = _valid_id(request.path_params["dossier_id"])
        form = await console.form(request, session)
        lang = console.lang(request)
        flow = form.get("flow", "").strip()
        got = await wf.get_dossier(session.api_key, f"dossiers/{dossier_id}")
        problem = "" if flow else i18n.reason_text(lang, "FLOW_REQUIRED")
        if not problem:
            try:
                run = await wf.start_run(session.api_key, got.name, flow)
            except ServiceError as exc:
                # a typo in the flow is the form's error, not a 404 page (the dossier exists)
                typo = exc.code == "NOT_FOUND" and exc.reason == "FLOW_NOT_FOUND"
                if not typo and exc.code not in (
                    "INVALID_ARGUMENT",
                    "PERMISSION_DENIED",
                    "FAILED_PRECONDITION",
                ):
                    raise
                problem = i18n.reason_text(lang, exc.reason, exc.message, flow=flow)
                known = _KNOWN_FLOWS.search(exc.message) if typo else None
                if known and known.group(1).strip() not in ("", "none"):
                    t = i18n.translator(lang)
                    problem += " " + t("flows_known", flows=known.group(1).strip())
        if problem:
            return console.render(
                request,
                "dossier.html",
                {
                    "dossier": got,
                    "pending": [],
                    "error": problem,
                    "flow_value": flow,
                    **_helpers(),
                },
                status_code=400,
                session=session,
            )
        t = i18n.translator(lang)
        session.flash("ok", t("run_started", run=run.run_id))
        return RedirectResponse(f"/runs/{run.run_id}", status_code=303)

    async def _run_page(
        request: Request,
        session: Any,
        run_id: str,
        *,
        error: str = "",
        status: int = 200,
        form: dict[str, str] | None = None,
        template: str = "run.html",
    ) -> Response:
        run = await wf.get_run(session.api_key, f"runs/{run_id}")
        dossier_obj = None
        try:
            dossier_obj = await wf.get_dossier(session.api_key, run.dossier)
        except ServiceError as exc:
            if exc.code != "NOT_FOUND":
                raise
        first_approval = next(
            (d for d in run.result.decisions if d.kind == wf_pb.DECISION_KIND_APPROVE), None
        )
        # file names from the result (reviewers) or the dossier (anyone who may see it)
        filenames = {d.document_id: d.filename for d in run.result.documents}
        doc_order = [d.document_id for d in run.result.documents]
        if dossier_obj is not None:
            for d in dossier_obj.documents:
                filenames.setdefault(d.document_id, d.filename)
            doc_order = [d.document_id for d in dossier_obj.documents] or doc_order
        label = i18n.labeler(console.lang(request))
        steps = [
            {
                "step": s.step,
                "label": step_label(s.step, filenames, label),
                "duration_ms": s.duration_ms,
                "attempts": s.attempts,
            }
            for s in sorted(run.timings, key=lambda s: step_key(s.step, doc_order))
        ]
        return console.render(
            request,
            template,
            {
                "run": run,
                "dossier": dossier_obj,
                "live": run.state in ACTIVE,
                "waiting": run.state in WAITING,
                "first_approval": first_approval,
                "filenames": filenames,
                "steps": steps,
                "current_step": step_label(run.step, filenames, label) if run.step else "",
                "error": error,
                "form": form or {},
                **_helpers(),
            },
            status_code=status,
            session=session,
        )

    async def run_page(request: Request) -> Response:
        session = console.require(request, "dossiers")
        run_id = _valid_id(request.path_params["run_id"])
        return await _run_page(request, session, run_id)

    async def run_live(request: Request) -> Response:
        session = console.require(request, "dossiers")
        run_id = _valid_id(request.path_params["run_id"])
        return await _run_page(request, session, run_id, template="_run_state.html")

    async def decide(request: Request) -> Response:
        session = console.require(request, "dossiers.decide")
        run_id = _valid_id(request.path_params["run_id"])
        form = await console.form(request, session)
        t = i18n.translator(console.lang(request))
        choice = form.get("decision", "")
        comment = form.get("comment", "").strip()
        amendments = {
            k.removeprefix(AMEND_PREFIX): v.strip()
            for k, v in form.items()
            if k.startswith(AMEND_PREFIX) and v.strip()
        }
        problem = ""
        if choice not in KINDS:
            problem = t("bad_decision")
        elif choice == "amend" and not amendments:
            problem = t("amend_needs_text")
        elif choice != "amend" and amendments:
            problem = t("text_only_for_amend")
        if problem:
            return await _run_page(request, session, run_id, error=problem, status=400, form=form)
        try:
            await wf.decide(session.api_key, f"runs/{run_id}", KINDS[choice], comment, amendments)
        except ServiceError as exc:
            if exc.code in ("FAILED_PRECONDITION", "PERMISSION_DENIED", "INVALID_ARGUMENT"):
                status = {"FAILED_PRECONDITION": 409, "PERMISSION_DENIED": 403}.get(exc.code, 400)
                return await _run_page(
                    request,
                    session,
                    run_id,
                    error=i18n.reason_text(console.lang(request), exc.reason, exc.message),
                    status=status,
                    form=form,
                )
            raise
        session.flash(
            "ok",
            t("amended_ok")
            if choice == "amend"
            else t(
                "decided_ok", state=i18n.labeler(console.lang(request))("decision_kind", choice)
            ),
        )
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    return [
        Route("/dossiers", dossiers),
        Route("/dossiers/{dossier_id}", dossier),
        Route("/dossiers/{dossier_id}/runs", start_run, methods=["POST"]),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/live", run_live),
        Route("/runs/{run_id}/decide", decide, methods=["POST"]),
    ]
