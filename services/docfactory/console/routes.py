"""Pages and actions of the console. Each handler checks the person's role first (server side),
then the form's CSRF token, then calls the services' gRPC APIs with the person's key."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from docfactory.console import i18n
from docfactory.console.auth import COOKIE
from docfactory.console.backend import ServiceError
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.jobs.v1 import jobs_service_pb2 as jobs_pb

if TYPE_CHECKING:
    from docfactory.console.app import Console

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DECISIONS = {
    "approve": gov_pb.REVIEW_DECISION_APPROVE,
    "amend": gov_pb.REVIEW_DECISION_AMEND,
    "reject": gov_pb.REVIEW_DECISION_REJECT,
}
CLASSIFICATIONS = {0: "", 1: "PUBLIC", 2: "INTERNAL", 3: "CONFIDENTIAL", 4: "RESTRICTED"}
MAX_TEXT = 20_000
MAX_QUESTION = 4000
#: Where the streamed answer text goes in ask.html (split there, never shown).
STREAM_MARKER = "<!--docfactory-answer-stream-->"


def _valid_id(value: str) -> str:
    """Ids go into resource names: anything else is a 404, without calling a service."""
    from starlette.exceptions import HTTPException

    if not _ID.match(value):
        raise HTTPException(404)
    return value


def _job_state(state: int) -> str:
    return jobs_pb.JobState.Name(state).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def _doc_state(state: int) -> str:
    return ing_pb.DocumentState.Name(state).removeprefix("DOCUMENT_STATE_")  # type: ignore[arg-type]


def build(console: Console) -> list[Route]:
    backend = console.backend

    # -- health, home, sign-in ---------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def home(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return RedirectResponse("/signin", status_code=303)
        return console.render(request, "home.html", session=session)

    async def signout(request: Request) -> Response:
        from docfactory.console.app import CsrfRefused, SignInRequired

        session = console.session(request)
        if session is None:
            raise SignInRequired()
        raw = await request.form()
        if not session.check_csrf(str(raw.get("csrf_token") or "")):
            raise CsrfRefused()
        console.sessions.end(session.session_id)
        response = RedirectResponse("/signin?out=1", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- reviewer inbox ------------------------------------------------------------------------

    async def inbox(request: Request) -> Response:
        session = console.require(request, "inbox")
        notice = ""
        reviews: list[Any] = []
        next_token = ""
        try:
            resp = await backend.list_reviews(
                session.api_key, page_token=request.query_params.get("page_token", "")
            )
            reviews, next_token = list(resp.reviews), resp.next_page_token
        except ServiceError as exc:
            if exc.reason != "NO_POLICY":
                raise
            notice = i18n.translator(console.lang(request))("no_policy")
        runs: list[Any] = []
        if console.config.dossiers:
            try:
                runs = await backend.workflows.pending(session.api_key)
            except ServiceError as exc:
                if exc.code not in ("UNIMPLEMENTED", "FAILED_PRECONDITION"):
                    raise
        return console.render(
            request,
            "inbox.html",
            {"reviews": reviews, "next_token": next_token, "notice": notice, "runs": runs},
            session=session,
        )

    async def _review_page(
        request: Request, session: Any, review_id: str, *, error: str = "", status: int = 200,
        form: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        review = await backend.get_review(session.api_key, review_id)
        return console.render(
            request,
            "review.html",
            {"review": review, "error": error, "form": form or {}},
            status_code=status,
            session=session,
        )

    async def review(request: Request) -> Response:
        session = console.require(request, "inbox")
        return await _review_page(request, session, _valid_id(request.path_params["review_id"]))

    async def claim(request: Request) -> Response:
        session = console.require(request, "inbox")
        review_id = _valid_id(request.path_params["review_id"])
        await console.form(request, session)
        t = i18n.translator(console.lang(request))
        try:
            await backend.claim_review(session.api_key, review_id)
        except ServiceError as exc:
            if exc.code in ("FAILED_PRECONDITION", "PERMISSION_DENIED"):
                status = 409 if exc.code == "FAILED_PRECONDITION" else 403
                why = i18n.reason_text(console.lang(request), exc.reason, exc.message)
                return await _review_page(
                    request, session, review_id, error=why,
                    status=status,
                )  # fmt: skip
            raise
        session.flash("ok", t("claimed_ok"))
        return RedirectResponse(f"/inbox/{review_id}", status_code=303)

    async def decide(request: Request) -> Response:
        session = console.require(request, "inbox")
        review_id = _valid_id(request.path_params["review_id"])
        form = await console.form(request, session)
        t = i18n.translator(console.lang(request))
        choice = form.get("decision", "")
        amended = form.get("amended_text", "").strip()
        comment = form.get("comment", "").strip()
        problem = ""
        if choice not in DECISIONS:
            problem = t("bad_decision")
        elif choice == "amend" and not amended:
            problem = t("amend_needs_text")
        elif choice != "amend" and amended:
            problem = t("text_only_for_amend")
        elif len(amended) > MAX_TEXT or len(comment) > MAX_TEXT:
            problem = f"{MAX_TEXT} characters at most"
        if problem:
            return await _review_page(
                request, session, review_id, error=problem, status=400, form=form
            )
        try:
            decided = await backend.decide_review(
                session.api_key, review_id, DECISIONS[choice], amended_text=amended,
                comment=comment,
            )  # fmt: skip
        except ServiceError as exc:
            if exc.code in ("FAILED_PRECONDITION", "PERMISSION_DENIED", "INVALID_ARGUMENT"):
                status = {"FAILED_PRECONDITION": 409, "PERMISSION_DENIED": 403}.get(exc.code, 400)
                why = i18n.reason_text(console.lang(request), exc.reason, exc.message)
                return await _review_page(
                    request, session, review_id, error=why,
                    status=status, form=form,
                )  # fmt: skip
            raise
        label = i18n.labeler(console.lang(request))
        session.flash("ok", t("decided_ok", state=label("review_state", decided.state)))
        return RedirectResponse("/inbox", status_code=303)

    # -- documents ---------------------------------------------------------------------------

    async def documents(request: Request) -> Response:
        session = console.require(request, "documents")
        q = request.query_params
        query = q.get("q", "").strip()
        collection = q.get("collection", "").strip()
        use_case = q.get("use_case", "").strip()
        use_cases: list[str] = []
        if session.caller.policy_configured:
            policy = await backend.policy(session.api_key)
            use_cases = [u.use_case_id for u in policy.use_cases]
        results = None
        error = ""
        if "q" in q:
            if not query:
                error = i18n.translator(console.lang(request))("query_required")
            else:
                try:
                    results = await backend.search(
                        session.api_key, query, use_case=use_case,
                        collections=[collection] if collection else [],
                    )  # fmt: skip
                except ServiceError as exc:
                    if exc.code not in ("INVALID_ARGUMENT", "PERMISSION_DENIED"):
                        raise
                    error = i18n.reason_text(console.lang(request), exc.reason, exc.message)
        listing = await backend.list_documents(
            session.api_key, collection=collection, page_token=q.get("page_token", "")
        )
        return console.render(
            request,
            "documents.html",
            {
                "query": query,
                "collection": collection,
                "use_case": use_case,
                "use_cases": use_cases,
                "results": results,
                "error": error,
                "documents": list(listing.documents),
                "next_token": listing.next_page_token,
                "doc_state": _doc_state,
                "classes": CLASSIFICATIONS,
            },
            status_code=400 if error else 200,
            session=session,
        )

    async def document(request: Request) -> Response:
        session = console.require(request, "documents")
        doc_id = _valid_id(request.path_params["document_id"])
        doc = await backend.get_document(session.api_key, f"documents/{doc_id}")
        return console.render(
            request,
            "document.html",
            {"doc": doc, "doc_state": _doc_state, "classes": CLASSIFICATIONS, "error": ""},
            session=session,
        )

    async def delete_document(request: Request) -> Response:
        session = console.require(request, "documents.delete")
        doc_id = _valid_id(request.path_params["document_id"])
        form = await console.form(request, session)
        t = i18n.translator(console.lang(request))
        if form.get("confirm") != "yes":
            doc = await backend.get_document(session.api_key, f"documents/{doc_id}")
            return console.render(
                request,
                "document.html",
                {
                    "doc": doc,
                    "doc_state": _doc_state,
                    "classes": CLASSIFICATIONS,
                    "error": t("delete_needs_confirm"),
                },
                status_code=400,
                session=session,
            )
        chunks = await backend.delete_document(session.api_key, f"documents/{doc_id}")
        session.flash("ok", t("deleted_ok", chunks=chunks))
        return RedirectResponse("/documents", status_code=303)

    # -- jobs ------------------------------------------------------------------------------------

    async def jobs(request: Request) -> Response:
        session = console.require(request, "jobs")
        resp = await backend.list_jobs(
            session.api_key, page_token=request.query_params.get("page_token", "")
        )
        return console.render(
            request,
            "jobs.html",
            {"jobs": list(resp.jobs), "next_token": resp.next_page_token, "state": _job_state},
            session=session,
        )

    def _terminal(job: Any) -> bool:
        return job.state in (jobs_pb.JOB_STATE_SUCCEEDED, jobs_pb.JOB_STATE_FAILED)

    async def job(request: Request) -> Response:
        session = console.require(request, "jobs")
        job_id = _valid_id(request.path_params["job_id"])
        got = await backend.get_job(session.api_key, f"jobs/{job_id}")
        failures = await backend.job_failures(session.api_key, f"jobs/{job_id}")
        return console.render(
            request,
            "job.html",
            {"job": got, "failures": failures, "state": _job_state, "terminal": _terminal(got)},
            session=session,
        )

    async def job_progress(request: Request) -> Response:
        """The live part of a job page (htmx polls it until the job ends)."""
        session = console.require(request, "jobs")
        job_id = _valid_id(request.path_params["job_id"])
        got = await backend.get_job(session.api_key, f"jobs/{job_id}")
        failures = await backend.job_failures(session.api_key, f"jobs/{job_id}")
        return console.render(
            request,
            "_job_progress.html",
            {"job": got, "failures": failures, "state": _job_state, "terminal": _terminal(got)},
            session=session,
        )

    # -- ask (streamed answer) and feedback -------------------------------------------------------

    def _signed_in(request: Request) -> Any:
        """Any signed-in person may ask: AnsweringService decides (tenant, use case, quota)."""
        from docfactory.console.app import SignInRequired

        session = console.session(request)
        if session is None:
            raise SignInRequired()
        return session

    async def _ask_page(
        request: Request, session: Any, *, question: str = "", use_case: str = "",
        collection: str = "", error: str = "", status: int = 200,
    ) -> Response:  # fmt: skip
        use_cases = await backend.use_cases(session.api_key, session.caller)
        return console.render(
            request,
            "ask.html",
            {
                "question": question,
                "use_case": use_case,
                "use_cases": use_cases,
                "collection": collection,
                "error": error,
                "streaming": False,
                "max_question": MAX_QUESTION,
            },
            status_code=status,
            session=session,
        )

    async def ask(request: Request) -> Response:
        session = _signed_in(request)
        return await _ask_page(request, session)

    async def ask_submit(request: Request) -> Response:
        """The answer streamed into the page as it is generated (chunked HTML, no script):
        the page head, then each text delta, then citations, held notice and the feedback
        form. The first message is awaited before the response starts, so a refusal (use case
        not allowed, quota) gets the form back with its reason and status."""
        session = _signed_in(request)
        form = await console.form(request, session)
        lang = console.lang(request)
        t = i18n.translator(lang)
        question = form.get("question", "").strip()
        use_case = form.get("use_case", "").strip()
        collection = form.get("collection", "").strip()
        kept = {"question": question, "use_case": use_case, "collection": collection}
        if not question:
            return await _ask_page(request, session, **kept, error=t("query_required"), status=400)
        if len(question) > MAX_QUESTION:
            return await _ask_page(
                request, session, **kept, error=t("question_too_long", n=MAX_QUESTION),
                status=400,
            )  # fmt: skip
        stream = backend.answer(
            session.api_key, question, use_case=use_case,
            collections=[collection] if collection else [],
        )  # fmt: skip
        try:
            first: Any = await anext(stream)
        except StopAsyncIteration:
            first = None
        except ServiceError as exc:
            codes = {"INVALID_ARGUMENT": 400, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429}
            if exc.code not in codes:
                raise
            why = i18n.reason_text(lang, exc.reason, exc.message)
            return await _ask_page(request, session, **kept, error=why, status=codes[exc.code])
        use_cases = await backend.use_cases(session.api_key, session.caller)
        page = console.render(
            request,
            "ask.html",
            {**kept, "use_cases": use_cases, "error": "", "streaming": True,
             "stream_marker": STREAM_MARKER, "max_question": MAX_QUESTION},
            session=session,
        )  # fmt: skip
        head, tail = bytes(page.body).decode("utf-8").split(STREAM_MARKER, 1)

        async def body() -> AsyncIterator[bytes]:
            yield head.encode()
            citations: list[Any] = []
            summary: Any = None
            failed = ""
            message = first
            try:
                while message is not None:
                    kind = message.WhichOneof("content")
                    if kind == "delta":
                        yield html.escape(message.delta.text).encode()
                    elif kind == "citations":
                        citations.extend(message.citations.citations)
                    elif kind == "summary":
                        summary = message.summary
                    message = await anext(stream, None)
            except ServiceError as exc:
                failed = i18n.reason_text(lang, exc.reason, exc.message)
            result = console.render(
                request,
                "_ask_result.html",
                {"citations": citations, "summary": summary, "failed": failed},
                session=session,
            )
            yield b"</div>" + bytes(result.body) + tail.removeprefix("</div>").encode()

        response = StreamingResponse(
            body(),
            media_type="text/html; charset=utf-8",
            headers={"X-Accel-Buffering": "no"},
        )
        for name, value in page.raw_headers:
            if name == b"set-cookie":
                response.raw_headers.append((name, value))
        return response

    async def feedback(request: Request) -> Response:
        """Feedback on an answer (answer_id) or a signed dossier run (run): thumbs, minutes
        saved, comment -> MeasurementService.SubmitFeedback with the person's key. htmx gets
        the thanks in place of the form; a plain post comes back to ``next``."""
        from docfactory.console.auth import safe_next

        session = _signed_in(request)
        form = await console.form(request, session)
        lang = console.lang(request)
        t = i18n.translator(lang)
        htmx = request.headers.get("hx-request") == "true"
        nxt = safe_next(form.get("next"))
        verdict = {"up": True, "down": False}.get(form.get("verdict", ""))
        comment = form.get("comment", "").strip()
        answer_id_raw = form.get("answer_id", "").strip()
        run = form.get("run", "").strip().removeprefix("runs/")
        problem = ""
        minutes = 0.0
        try:
            minutes = float(form.get("minutes", "").strip().replace(",", ".") or 0)
            if not 0 <= minutes <= 24 * 60:
                raise ValueError
        except ValueError:
            problem = t("feedback_bad_minutes")
        answer_id = int(answer_id_raw) if answer_id_raw.isdigit() else 0
        if run and not _ID.match(run):
            run = ""
        if not problem and not (answer_id or run):
            problem = t("feedback_bad_target")
        if not problem and verdict is None and not minutes and not comment:
            problem = t("feedback_empty")
        if not problem and len(comment) > 4000:
            problem = t("question_too_long", n=4000)
        status = 400 if problem else 200
        feedback_id = ""
        if not problem:
            try:
                done = await backend.submit_feedback(
                    session.api_key, answer_id=answer_id, run=f"runs/{run}" if run else "",
                    useful=verdict, minutes=minutes, comment=comment,
                )  # fmt: skip
                feedback_id = done.feedback_id
            except ServiceError as exc:
                if exc.code == "ALREADY_EXISTS":
                    problem, status = t("feedback_already"), 409
                elif exc.code in ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION",
                                  "PERMISSION_DENIED"):  # fmt: skip
                    why = i18n.reason_text(lang, exc.reason, exc.message)
                    problem = t("feedback_failed", message=why)
                    status = {"NOT_FOUND": 404, "FAILED_PRECONDITION": 409,
                              "PERMISSION_DENIED": 403}.get(exc.code, 400)  # fmt: skip
                else:
                    raise
        if htmx:
            # htmx swaps only 2xx answers: the refusal is shown in place, with its status kept
            # in a header for clients that read it.
            page = console.render(
                request,
                "_feedback_done.html",
                {"feedback_error": problem, "feedback_id": feedback_id},
                session=session,
            )
            page.headers["X-Feedback-Status"] = str(status)
            return page
        session.flash("error" if problem else "ok", problem or t("feedback_thanks"))
        return RedirectResponse(nxt, status_code=303)

    # -- usage -----------------------------------------------------------------------------------

    async def usage(request: Request) -> Response:
        session = console.require(request, "usage")
        q = request.query_params
        t = i18n.translator(console.lang(request))
        from_date, to_date = q.get("from", "").strip(), q.get("to", "").strip()
        use_case = q.get("use_case", "").strip()
        for value in (from_date, to_date):
            if value and not _is_date(value):
                return console.render(
                    request,
                    "usage.html",
                    {"error": t("bad_date"), "records": [], "dossiers": None,
                     "from_date": from_date,
                     "to_date": to_date, "use_case": use_case, "charts": {}},
                    status_code=400,
                    session=session,
                )  # fmt: skip
        resp = await backend.usage(
            session.api_key, use_case=use_case, from_date=from_date, to_date=to_date
        )
        charts = {f"{r.tenant}/{r.use_case}": bar_chart(r.daily) for r in resp.records}
        return console.render(
            request,
            "usage.html",
            {
                "dossiers": resp.dossiers if resp.HasField("dossiers") else None,
                "records": list(resp.records),
                "from_date": resp.from_date,
                "to_date": resp.to_date,
                "use_case": use_case,
                "charts": charts,
                "error": "",
            },
            session=session,
        )

    # -- audit -------------------------------------------------------------------------------

    async def audit(request: Request) -> Response:
        session = console.require(request, "audit")
        report = await backend.verify_audit(session.api_key)
        return console.render(request, "audit.html", {"report": report}, session=session)

    async def audit_export(request: Request) -> Response:
        """JSONL download; the first batch is fetched before the response starts, so a refusal
        still gets its error page."""
        session = console.require(request, "audit")
        lines = backend.export_audit(session.api_key)
        try:
            first = await anext(lines)
        except StopAsyncIteration:
            first = ""

        async def body() -> AsyncIterator[bytes]:
            if first:
                yield first.encode()
            async for line in lines:
                yield line.encode()

        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"audit-{session.caller.tenant}-{stamp}.jsonl"
        return StreamingResponse(
            body(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    routes = [
        Route("/healthz", healthz),
        Route("/", home),
        # sign-in (CSRF token, Origin check, throttle, audit): Console.signin_* in app.py
        Route("/signin", console.signin_page, methods=["GET"]),
        Route("/signin", console.signin_submit, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/inbox", inbox),
        Route("/inbox/{review_id}", review),
        Route("/inbox/{review_id}/claim", claim, methods=["POST"]),
        Route("/inbox/{review_id}/decide", decide, methods=["POST"]),
        Route("/documents", documents),
        Route("/documents/{document_id}", document),
        Route("/documents/{document_id}/delete", delete_document, methods=["POST"]),
        Route("/jobs", jobs),
        Route("/jobs/{job_id}", job),
        Route("/jobs/{job_id}/progress", job_progress),
        Route("/ask", ask, methods=["GET"]),
        Route("/ask", ask_submit, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/usage", usage),
        Route("/audit", audit),
        Route("/audit/export.jsonl", audit_export),
    ]
    if console.config.dossiers:
        from docfactory.console import dossiers as dossier_pages

        routes += dossier_pages.build(console)
    return routes


def _is_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def bar_chart(daily: Any, width: int = 640, height: int = 160) -> dict[str, Any]:
    """Inline-SVG geometry of questions and searches per day (no JavaScript, no library)."""
    days = list(daily)
    peak = max([max(d.questions, d.searches) for d in days] + [1])
    slot = width / max(len(days), 1)
    bar = max(slot / 2 - 1, 1)
    bars = []
    for i, d in enumerate(days):
        x = i * slot
        for j, (kind, value) in enumerate((("questions", d.questions), ("searches", d.searches))):
            h = (height - 20) * value / peak
            bars.append(
                {
                    "x": round(x + j * bar, 1),
                    "y": round(height - 20 - h, 1),
                    "w": round(bar, 1),
                    "h": round(h, 1),
                    "kind": kind,
                    "label": f"{d.date}: {value} {kind}",
                }
            )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "peak": peak,
        "first": days[0].date if days else "",
        "last": days[-1].date if days else "",
        "query": urlencode({}),
    }
