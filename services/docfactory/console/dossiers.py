"""Dossier pages: list with states and filters, one dossier with its documents and runs, a run
with its steps, fields (with the evidence of each), checks, note and decisions; start a run; sign
off (approve / amend fields / reject) through WorkflowService.SubmitDecision."""

from __future__ import annotations

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


def run_state(state: int) -> str:
    if not state:
        return ""
    return wf_pb.RunState.Name(state).removeprefix("RUN_STATE_")  # type: ignore[arg-type]


def kind_name(kind: int) -> str:
    return wf_pb.DecisionKind.Name(kind).removeprefix("DECISION_KIND_")  # type: ignore[arg-type]


def check_outcome(outcome: int) -> str:
    return wf_pb.CheckOutcome.Name(outcome).removeprefix("CHECK_OUTCOME_")  # type: ignore[arg-type]


def _helpers() -> dict[str, Any]:
    return {"run_state": run_state, "kind_name": kind_name, "check_outcome": check_outcome}


def build(console: Console) -> list[Route]:
    from docfactory.console.routes import _valid_id

    wf = console.backend.workflows

    async def dossiers(request: Request) -> Response:
        session = console.require(request, "dossiers")
        q = request.query_params
        state_name = q.get("state", "")
        state = 0
        if state_name:
            try:
                state = wf_pb.RunState.Value("RUN_STATE_" + state_name)
            except ValueError:
                state = -1
        flow = q.get("flow", "").strip()
        error = ""
        listing: Any = None
        if state < 0:
            error = f"INVALID_STATE: {state_name!r}"
        else:
            listing = await wf.list_dossiers(
                session.api_key, state=state, flow=flow, page_token=q.get("page_token", "")
            )
        pending = await wf.pending(session.api_key) if session.may("dossiers.decide") else []
        states = [run_state(v) for v in wf_pb.RunState.values() if v]
        return console.render(
            request,
            "dossiers.html",
            {
                "dossiers": list(listing.dossiers) if listing else [],
                "next_token": listing.next_page_token if listing else "",
                "states": states,
                "state": state_name,
                "flow": flow,
                "pending": pending,
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
            {"dossier": got, "pending": pending, "error": "", **_helpers()},
            session=session,
        )

    async def start_run(request: Request) -> Response:
        session = console.require(request, "dossiers.run")
        dossier_id = _valid_id(request.path_params["dossier_id"])
        form = await console.form(request, session)
        flow = form.get("flow", "").strip()
        got = await wf.get_dossier(session.api_key, f"dossiers/{dossier_id}")
        problem = "" if flow else "FLOW_REQUIRED"
        if not problem:
            try:
                run = await wf.start_run(session.api_key, got.name, flow)
            except ServiceError as exc:
                if exc.code not in ("INVALID_ARGUMENT", "PERMISSION_DENIED", "FAILED_PRECONDITION"):
                    raise
                problem = f"{exc.reason}: {exc.message}"
        if problem:
            return console.render(
                request,
                "dossier.html",
                {"dossier": got, "pending": [], "error": problem, **_helpers()},
                status_code=400,
                session=session,
            )
        t = i18n.translator(console.lang(request))
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
        return console.render(
            request,
            template,
            {
                "run": run,
                "dossier": dossier_obj,
                "live": run.state in ACTIVE,
                "waiting": run.state in WAITING,
                "first_approval": first_approval,
                "filenames": {d.document_id: d.filename for d in run.result.documents},
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
                    error=f"{exc.reason}: {exc.message}",
                    status=status,
                    form=form,
                )
            raise
        session.flash(
            "ok", t("amended_ok") if choice == "amend" else t("decided_ok", state=choice.upper())
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
