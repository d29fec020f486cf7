"""Dossier pages: list with states and filters, one dossier with its documents and runs, a run
with its steps, fields (with the evidence of each), checks, note and decisions; create a dossier
(files uploaded with a progress bar, ``static/upload.js``) and start its run; sign off (approve /
amend fields then approve / reject) through WorkflowService.SubmitDecision, waiting briefly for
the run to apply the decision so that the page shown next has the fresh state."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from docfactory.console import i18n
from docfactory.console.backend import ServiceError
from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc

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
#: Files of one dossier (the service's own limit, WorkflowService MAX_FILES).
MAX_FILES = 50
#: Room left in a CreateDossier message for its other fields and the protobuf framing.
UPLOAD_MARGIN = 256 * 1024
#: Header set by static/upload.js: answer in JSON (redirect or error), not a page.
UPLOAD_HEADER = "x-docfactory-upload"
#: Seconds a decision waits for the run to apply it (release, re-draft after an amendment).
DECIDE_WAIT_S = 20.0
AMEND_WAIT_S = 90.0
#: Fields the run summary shows first: the amount at stake and the party (first found wins).
AMOUNT_FIELDS = ("montant_demande", "montant", "amount", "montant_total", "total")
PARTY_FIELDS = ("raison_sociale", "denomination", "emprunteur", "borrower", "titulaire")
CLASSIFICATIONS = ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED")


def upload_limit(max_message_bytes: int) -> int:
    """The most bytes of files one creation may send: the whole CreateDossier is one gRPC
    message, bounded by the console's (and the server's) ``server.max_message_bytes``; each file
    is bounded again by the server's ``parsing.max_file_bytes`` (FILE_TOO_LARGE)."""
    return max(1024 * 1024, max_message_bytes - UPLOAD_MARGIN)


def human_bytes(n: int, lang: str) -> str:
    """1 048 576 -> "1 Mo" (fr) / "1 MB" (en)."""
    units = ("o", "Ko", "Mo", "Go") if lang == "fr" else ("B", "KB", "MB", "GB")
    value = float(n)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            text = f"{value:.0f}" if value >= 10 or unit == units[0] else f"{value:.1f}"
            if lang == "fr":
                text = text.replace(".", ",")
            return f"{text} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


def format_amount(value: str, lang: str) -> str:
    """ "180000.00" -> "180 000,00 €" (fr) / "€180,000.00" (en); any other text as it is."""
    try:
        number = float(value.replace(" ", "").replace("\u00a0", ""))
    except ValueError:
        return value
    if lang == "fr":
        return f"{number:,.2f}".replace(",", "\u202f").replace(".", ",") + "\u00a0€"
    return f"€{number:,.2f}"


def key_fields(documents: Sequence[Any]) -> dict[str, Any]:
    """The amount and the party of a run's result (None when the flow has no such field)."""
    found: dict[str, Any] = {"amount": None, "party": None}
    for slot, names in (("amount", AMOUNT_FIELDS), ("party", PARTY_FIELDS)):
        for name in names:
            hit = next(
                ((d, f) for d in documents for f in d.fields if f.name == name and f.value), None
            )
            if hit is not None:
                found[slot] = {"doc": hit[0], "field": hit[1]}
                break
    if found["amount"] is None:
        hit = next(
            ((d, f) for d in documents for f in d.fields if f.kind == "amount_eur" and f.value),
            None,
        )
        if hit is not None:
            found["amount"] = {"doc": hit[0], "field": hit[1]}
    return found


def check_rank(check: Any) -> int:
    """Checks in the order a reviewer reads them: blocking failures, not evaluated, warnings
    that failed, then what passed."""
    if check.outcome == wf_pb.CHECK_OUTCOME_FAILED:
        return 0 if check.severity == "blocking" else 2
    if check.outcome == wf_pb.CHECK_OUTCOME_NOT_EVALUATED:
        return 1
    return 3


def note_body(note: str, has_citations: bool) -> str:
    """The note without its closing "## Sources" list when the citations are shown beside it
    (the sources appear once)."""
    if not has_citations:
        return note
    head, sep, _ = note.partition("\n## Sources")
    return head.rstrip() + "\n" if sep else note


def drafts_done(run: Any) -> int:
    """Drafts the run has finished (``draft:N`` steps with a duration)."""
    return sum(1 for t in run.timings if t.step.startswith("draft:") and t.duration_ms > 0)


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
            {
                "dossier": got,
                "pending": pending,
                "error": "",
                "flow_value": "",
                "may_start": _may_start(session, got),
                **_helpers(),
            },
            session=session,
        )

    def _may_start(session: Any, dossier_obj: Any) -> bool:
        """Operators start runs; so does the person who submitted the dossier (the API checks
        the use case and its flows either way)."""
        return session.may("dossiers.run") or (
            bool(dossier_obj.submitted_by) and dossier_obj.submitted_by == session.caller.key_id
        )

    async def start_run(request: Request) -> Response:
        from docfactory.console.app import Forbidden

        session = console.require(request, "dossiers")
        dossier_id = _valid_id(request.path_params["dossier_id"])
        form = await console.form(request, session)
        lang = console.lang(request)
        flow = form.get("flow", "").strip()
        got = await wf.get_dossier(session.api_key, f"dossiers/{dossier_id}")
        if not _may_start(session, got):
            raise Forbidden("dossiers.run")
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
                    "may_start": True,
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
        lang = console.lang(request)
        label = i18n.labeler(lang)
        steps = [
            {
                "step": s.step,
                "label": step_label(s.step, filenames, label),
                "duration_ms": s.duration_ms,
                "attempts": s.attempts,
            }
            for s in sorted(run.timings, key=lambda s: step_key(s.step, doc_order))
        ]
        response = console.render(
            request,
            template,
            {
                "run": run,
                "dossier": dossier_obj,
                "live": run.state in ACTIVE,
                "waiting": run.state in WAITING,
                "signed": run.state == wf_pb.RUN_STATE_COMPLETED and run.result.released,
                "first_approval": first_approval,
                "filenames": filenames,
                "steps": steps,
                "current_step": step_label(run.step, filenames, label) if run.step else "",
                "error": error,
                "form": form or {},
                **_run_context(run, dossier_obj, session, lang),
                **_helpers(),
            },
            status_code=status,
            session=session,
        )
        if template == "_run_state.html" and run.state not in ACTIVE:
            # the run stopped working: the whole page (fields, checks, decision form) is due
            response.headers["HX-Refresh"] = "true"
        return response

    def _run_context(run: Any, dossier_obj: Any, session: Any, lang: str) -> dict[str, Any]:
        result = run.result if run.HasField("result") else None
        documents = list(result.documents) if result is not None else []
        checks = sorted(result.checks, key=check_rank) if result is not None else []
        failed = wf_pb.CHECK_OUTCOME_FAILED
        keys = key_fields(documents)
        amount = keys["amount"]
        # one amendment input per document type (a field is amended as "type.field")
        seen: set[str] = set()
        amendable = []
        for d in documents:
            amendable.append(bool(d.type) and d.type not in seen)
            seen.add(d.type)
        submitter = dossier_obj.submitted_by if dossier_obj is not None else ""
        return {
            "checks": checks,
            "blocking_failed": [
                c for c in checks if c.severity == "blocking" and c.outcome == failed
            ],
            "not_evaluated": [c for c in checks if c.outcome == wf_pb.CHECK_OUTCOME_NOT_EVALUATED],
            "warnings_failed": [
                c for c in checks if c.severity != "blocking" and c.outcome == failed
            ],
            "amount": amount,
            "amount_text": format_amount(amount["field"].value, lang) if amount else "",
            "party": keys["party"],
            "documents": list(zip(documents, amendable, strict=True)),
            "note": note_body(result.note, bool(result.citations)) if result is not None else "",
            "is_submitter": bool(submitter) and submitter == session.caller.key_id,
            "may_decide": run.state in WAITING
            and session.may("dossiers.decide")
            and result is not None,
        }

    async def run_page(request: Request) -> Response:
        session = console.require(request, "dossiers")
        run_id = _valid_id(request.path_params["run_id"])
        return await _run_page(request, session, run_id)

    async def run_live(request: Request) -> Response:
        session = console.require(request, "dossiers")
        run_id = _valid_id(request.path_params["run_id"])
        return await _run_page(request, session, run_id, template="_run_state.html")

    async def _settle(key: str, name: str, kind: str, drafts: int, wait_s: float) -> Any:
        """The run once it has applied a decision (as ``docfactory dossier decide`` waits):
        released or rejected, re-drafted after an amendment, or still waiting for another
        approval; at most ``wait_s`` seconds (then the run as it is)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            run = await wf.get_run(key, name)
            if run.state not in WAITING or loop.time() >= deadline:
                return run
            if kind == "amend" and drafts_done(run) > drafts:
                return run
            if kind == "approve" and run.approvals < run.approvals_required:
                return run  # another reviewer's approval is needed (four-eyes)
            await asyncio.sleep(0.3)

    def _outcome(
        run: Any, t: Callable[..., str], label: Callable[[str, object], str], kind: str
    ) -> str:
        if run.state == wf_pb.RUN_STATE_COMPLETED:
            return t("decided_signed") if kind == "approve" else t("amended_signed")
        if run.state == wf_pb.RUN_STATE_REJECTED:
            return t("decided_ok", state=label("decision_kind", "reject"))
        if run.state in WAITING and run.approvals < run.approvals_required:
            key = "decided_needs_more" if kind == "approve" else "amended_needs_more"
            return t(key, n=run.approvals, m=run.approvals_required)
        return t("decided_ok", state=label("decision_kind", kind)) + " " + t("decision_applying")

    async def decide(request: Request) -> Response:
        session = console.require(request, "dossiers.decide")
        run_id = _valid_id(request.path_params["run_id"])
        form = await console.form(request, session)
        lang = console.lang(request)
        t = i18n.translator(lang)
        label = i18n.labeler(lang)
        name = f"runs/{run_id}"
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
            problem = t("amend_needs_values")
        elif choice != "amend" and amendments:
            problem = t("values_only_for_amend")
        if problem:
            return await _run_page(request, session, run_id, error=problem, status=400, form=form)

        async def refused(exc: ServiceError) -> Response:
            if exc.code not in ("FAILED_PRECONDITION", "PERMISSION_DENIED", "INVALID_ARGUMENT"):
                raise exc
            status = {"FAILED_PRECONDITION": 409, "PERMISSION_DENIED": 403}.get(exc.code, 400)
            return await _run_page(
                request,
                session,
                run_id,
                error=i18n.reason_text(lang, exc.reason, exc.message),
                status=status,
                form=form,
            )

        try:
            resp = await wf.decide(session.api_key, name, KINDS[choice], comment, amendments)
        except ServiceError as exc:
            return await refused(exc)
        if choice != "amend":
            run = await _settle(session.api_key, name, choice, 0, DECIDE_WAIT_S)
            session.flash("ok", _outcome(run, t, label, choice))
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        # "Amend then release": the amendment, the run re-checked and re-drafted, then the
        # approval of the corrected version (four-eyes: another reviewer may still be needed).
        drafts = sum(1 for s in resp.run.timings if s.step.startswith("draft:"))
        run = await _settle(session.api_key, name, "amend", drafts, AMEND_WAIT_S)
        if run.state not in WAITING or drafts_done(run) <= drafts:
            session.flash("ok", t("amended_ok") + " " + t("amended_redrafting"))
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        try:
            await wf.decide(session.api_key, name, KINDS["approve"], comment, {})
        except ServiceError as exc:
            if exc.code not in ("FAILED_PRECONDITION", "PERMISSION_DENIED", "INVALID_ARGUMENT"):
                raise
            why = i18n.reason_text(lang, exc.reason, exc.message)
            session.flash("ok", t("amended_ok") + " " + t("amended_not_approved", why=why))
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        run = await _settle(session.api_key, name, "approve", 0, DECIDE_WAIT_S)
        session.flash("ok", _outcome(run, t, label, "amend"))
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    # -- a new dossier ---------------------------------------------------------------------------

    async def _use_cases(session: Any) -> list[Any] | None:
        """The use cases of the person's tenant (GovernanceService.GetPolicy); None without a
        policy or when the service does not say (the form then asks for the use case as text)."""
        try:
            policy = await console.backend.policy(session.api_key)
        except ServiceError as exc:
            if exc.code == "UNAUTHENTICATED":
                raise
            return None
        return list(policy.use_cases) or None

    async def _new_page(
        request: Request,
        session: Any,
        *,
        error: str = "",
        values: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        lang = console.lang(request)
        use_cases = await _use_cases(session)
        flows: list[str] = []
        try:
            listing = await wf.list_dossiers(session.api_key)
            flows = sorted({d.latest_flow.split("@")[0] for d in listing.dossiers if d.latest_flow})
        except ServiceError as exc:
            if exc.code == "UNAUTHENTICATED":
                raise
        limit = upload_limit(console.config.max_message_bytes)
        return console.render(
            request,
            "dossier_new.html",
            {
                "use_cases": use_cases,
                "flows": flows,
                "classifications": CLASSIFICATIONS,
                "values": values or {},
                "error": error,
                "max_bytes": limit,
                "max_text": human_bytes(limit, lang),
                "max_files": MAX_FILES,
            },
            status_code=status,
            session=session,
        )

    async def new_dossier(request: Request) -> Response:
        session = console.require(request, "dossiers.create")
        return await _new_page(request, session)

    async def create_dossier(request: Request) -> Response:
        """``POST /dossiers/new``: CreateDossier with the uploaded files, then StartRun; the run
        page next (a JSON ``{"redirect": ...}`` or ``{"error": ...}`` for upload.js)."""
        from docfactory.console.app import BadForm, CsrfRefused

        session = console.require(request, "dossiers.create")
        lang = console.lang(request)
        t = i18n.translator(lang)
        as_json = request.headers.get(UPLOAD_HEADER) == "1"
        limit = upload_limit(console.config.max_message_bytes)
        values: dict[str, str] = {}

        async def fail(message: str, status: int) -> Response:
            if as_json:
                return JSONResponse({"error": message}, status_code=status)
            return await _new_page(request, session, error=message, values=values, status=status)

        too_large = t("upload_too_large", limit=human_bytes(limit, lang))
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + UPLOAD_MARGIN:
            return await fail(too_large, 413)
        try:
            raw = await request.form(max_files=MAX_FILES + 1, max_fields=50)
        except Exception as exc:
            if "files" in str(exc).lower():
                return await fail(t("too_many_files", n=MAX_FILES), 400)
            raise BadForm(f"malformed form: {type(exc).__name__}") from None
        try:
            token = raw.get("csrf_token")
            if not session.check_csrf(token if isinstance(token, str) else None):
                raise CsrfRefused()
            values = {
                k: v.strip()
                for k in ("display_name", "use_case", "flow", "classification")
                if isinstance(v := raw.get(k, ""), str)
            }
            uploads = [f for f in raw.getlist("files") if isinstance(f, UploadFile) and f.filename]
            files: list[wf_pb.DossierFile] = []
            total = 0
            for upload in uploads:
                content = await upload.read()
                total += len(content)
                if total > limit:
                    return await fail(too_large, 413)
                files.append(wf_pb.DossierFile(filename=upload.filename or "", content=content))
        finally:
            await raw.close()
        flow = values.get("flow", "")
        if not files:
            return await fail(i18n.reason_text(lang, "DOSSIER_EMPTY"), 400)
        if len(files) > MAX_FILES:
            return await fail(t("too_many_files", n=MAX_FILES), 400)
        if not flow:
            return await fail(i18n.reason_text(lang, "FLOW_REQUIRED"), 400)
        classification = values.get("classification", "")
        rank = CLASSIFICATIONS.index(classification) + 1 if classification in CLASSIFICATIONS else 0
        stub = wf_grpc.WorkflowServiceStub(console.backend.channel)
        try:
            created = await console.backend.call(
                stub.CreateDossier,
                wf_pb.CreateDossierRequest(
                    display_name=values.get("display_name", ""),
                    use_case=values.get("use_case", ""),
                    files=files,
                    classification=rank,
                ),
                session.api_key,
                deadline_s=600,
            )
        except ServiceError as exc:
            if exc.code == "UNAUTHENTICATED":
                raise
            if exc.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                message = t("unavailable", address=console.backend.address)
            else:
                message = i18n.reason_text(lang, exc.reason, exc.message, flow=flow)
            status = {"PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429}.get(exc.code, 400)
            if exc.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"):
                status = 503 if exc.code != "INTERNAL" else 502
            return await fail(message, status)
        dossier_obj = created.dossier
        try:
            run = await wf.start_run(session.api_key, dossier_obj.name, flow)
        except ServiceError as exc:
            if exc.code == "UNAUTHENTICATED":
                raise
            # the dossier exists: its page says why the run did not start, with the start form
            problem = i18n.reason_text(lang, exc.reason, exc.message, flow=flow)
            known = _KNOWN_FLOWS.search(exc.message) if exc.reason == "FLOW_NOT_FOUND" else None
            if known and known.group(1).strip() not in ("", "none"):
                problem += " " + t("flows_known", flows=known.group(1).strip())
            session.flash("error", t("created_not_started", problem=problem))
            target = f"/dossiers/{dossier_obj.dossier_id}"
        else:
            session.flash("ok", t("created_started", n=len(files)))
            target = f"/runs/{run.run_id}"
        if as_json:
            return JSONResponse({"redirect": target})
        return RedirectResponse(target, status_code=303)

    return [
        Route("/dossiers", dossiers),
        Route("/dossiers/new", new_dossier, methods=["GET"]),
        Route("/dossiers/new", create_dossier, methods=["POST"]),
        Route("/dossiers/{dossier_id}", dossier),
        Route("/dossiers/{dossier_id}/runs", start_run, methods=["POST"]),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/live", run_live),
        Route("/runs/{run_id}/decide", decide, methods=["POST"]),
    ]
