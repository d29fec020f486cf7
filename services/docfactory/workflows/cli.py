"""The ``docfactory dossier`` subcommand: run a flow on files, list dossiers, show a run, decide.

On the embedded default (no ``--address``) the command starts the server in-process and a
workflow worker in a thread of this process (DBOS on the data folder's SQLite), so a run
waiting for sign-off is picked up again by the next ``docfactory dossier decide``. Against a
remote server, runs execute on its workflow workers (``docfactory dossier worker``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from docfactory.core.config import Settings

_CLASS = {"public": 1, "internal": 2, "confidential": 3, "restricted": 4}
_KINDS = {"approve": 1, "amend": 2, "reject": 3}


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "dossier",
        help="dossier workflows: run a flow on files, list, show, decide (sign-off)",
        description="Business processes over several documents: classify, extract typed fields "
        "with evidence, check rules, draft a cited note, and sign off.",
    )
    dsub = d.add_subparsers(dest="dossier_command", required=True)
    r = dsub.add_parser("run", help="create a dossier from files and run a flow on it")
    r.add_argument("flow", help="flow name or name@version (e.g. financement)")
    r.add_argument("files", nargs="+")
    r.add_argument("--use-case", default="")
    r.add_argument("--name", default="", help="display name of the dossier")
    r.add_argument("--classification", choices=list(_CLASS), default="internal")
    r.add_argument("--json", action="store_true", help="one JSON document")
    r.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    ls = dsub.add_parser("list", help="dossiers of the tenant, newest first")
    ls.add_argument("--state", default="", help="latest run state (e.g. AWAITING_SIGNOFF)")
    ls.add_argument("--flow", default="")
    ls.add_argument("--pending", action="store_true", help="runs awaiting your decision")
    ls.add_argument("--json", action="store_true")
    s = dsub.add_parser("show", help="a run (runs/ID) or a dossier (dossiers/ID)")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    de = dsub.add_parser("decide", help="approve, amend or reject a run awaiting sign-off")
    de.add_argument("name", help="runs/ID")
    de.add_argument("decision", choices=list(_KINDS))
    de.add_argument("--comment", default="")
    de.add_argument(
        "--set", action="append", default=[], metavar="TYPE.FIELD=VALUE", help="amend: repeatable"
    )
    de.add_argument("--json", action="store_true")
    de.add_argument("--timeout", type=float, default=120.0)
    dsub.add_parser("worker", help="run a workflow worker (durable runs; DBOS executor)")


@contextlib.contextmanager
def _embedded_worker(settings: Settings, address: str | None) -> Iterator[None]:
    """A workflow worker in a thread of this process, for the embedded default."""
    if address:
        yield
        return
    from docfactory.workflows.engine import WorkerOptions, run_worker

    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_worker(
                settings,
                stop,
                WorkerOptions.from_settings(settings, executor_timeout_seconds=5.0),
                ready=ready,
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, name="docfactory-workflow-worker", daemon=True)
    thread.start()
    ready.wait(120)
    if errors:
        raise errors[0]
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _field_dict(f: Any) -> dict[str, Any]:
    ev = None
    if f.HasField("evidence"):
        e = f.evidence
        ev = {
            "document_id": e.document_id,
            "page": e.page,
            "start": e.start,
            "end": e.end,
            "quote": e.quote,
        }
    return {
        "value": f.value or None,
        "status": f.status,
        "confidence": round(f.confidence, 3),
        "kind": f.kind,
        "evidence": ev,
        **({"amended_by": f.amended_by} if f.amended_by else {}),
    }


def run_dict(run: Any) -> dict[str, Any]:
    from docfactory.workflows.v1 import workflows_service_pb2 as pb

    res = run.result
    out: dict[str, Any] = {
        "run": run.name,
        "dossier": run.dossier,
        "flow": run.flow,
        "state": pb.RunState.Name(run.state).removeprefix("RUN_STATE_"),
        "missing_documents": list(run.missing_documents),
        **(
            {"notice": {"reason": run.notice.reason, "message": run.notice.message}}
            if run.notice.reason
            else {}
        ),
        "documents": [
            {
                "document_id": d.document_id,
                "filename": d.filename,
                "type": d.type or None,
                "type_confidence": round(d.type_confidence, 3),
                "fields": {f.name: _field_dict(f) for f in d.fields},
            }
            for d in res.documents
        ],
        "checks": [
            {
                "rule": c.rule,
                "label": c.label,
                "outcome": pb.CheckOutcome.Name(c.outcome).removeprefix("CHECK_OUTCOME_"),
                "fields": list(c.fields),
                "detail": c.detail,
                "severity": c.severity,
            }
            for c in res.checks
        ],
        "note": res.note,
        "released": res.released,
        "approvals": run.approvals,
        "approvals_required": run.approvals_required,
        "decisions": [
            {
                "kind": pb.DecisionKind.Name(x.kind).removeprefix("DECISION_KIND_"),
                "reviewer": x.reviewer,
                "comment": x.comment,
                "amendments": dict(x.amendments),
            }
            for x in res.decisions
        ],
        "timings_ms": {t.step: round(t.duration_ms, 1) for t in run.timings},
    }
    if run.error_reason:
        out["error"] = {"reason": run.error_reason, "message": run.error_message}
    return out


def print_run(data: dict[str, Any]) -> None:
    print(f"{data['run']}  {data['flow']}  état : {data['state']}")
    if data.get("error"):
        print(f"  {data['error']['reason']}: {data['error']['message']}")
    for d in data["documents"]:
        print(f"\n{d['filename']} -> {d['type'] or '(type non reconnu)'} ({d['type_confidence']})")
        for name, f in d["fields"].items():
            if f["value"] is None:
                print(f"  {name}: — ({f['status']})")
                continue
            ev = f.get("evidence")
            where = ""
            if ev:
                page = f"p. {ev['page']}, " if ev["page"] else ""
                where = f"  [{page}{ev['start']}-{ev['end']} « {ev['quote']} »]"
            tag = f" (corrigé par {f['amended_by']})" if f.get("amended_by") else ""
            print(f"  {name}: {f['value']}{tag}{where}")
    if data["checks"]:
        print("\nContrôles :")
        for c in data["checks"]:
            detail = f" — {c['detail']}" if c["detail"] and c["outcome"] != "PASSED" else ""
            print(f"  [{c['outcome']}] {c['label'] or c['rule']}{detail}")
    if data["note"]:
        print("\n" + data["note"])
    if data["state"] in ("AWAITING_SIGNOFF", "ESCALATED"):
        print(
            f"En attente de validation ({data['approvals']}/{data['approvals_required']}) : "
            f"docfactory dossier decide {data['run']} approve|reject|amend"
        )


async def _wait(stub: Any, name: str, md: Any, seconds: float, poll: float = 3.0) -> Any:
    """Follow WatchRun until the run ends or waits for a decision; return the run. Says
    plainly (and stops) when the server reports that no worker is there to take the run, and
    names the run when the time is up instead of a bare DEADLINE_EXCEEDED."""
    import grpc

    from docfactory.workflows.v1 import workflows_service_pb2 as pb

    async def follow() -> None:
        async for _ in stub.WatchRun(pb.WatchRunRequest(name=name), metadata=md, timeout=seconds):
            pass

    async def no_worker() -> Any:
        while True:
            await asyncio.sleep(poll)
            run = (await stub.GetRun(pb.GetRunRequest(name=name), metadata=md)).run
            if run.state == pb.RUN_STATE_QUEUED and run.notice.reason:
                return run

    watch = asyncio.ensure_future(follow())
    guard = asyncio.ensure_future(no_worker())
    try:
        done, _ = await asyncio.wait({watch, guard}, return_when=asyncio.FIRST_COMPLETED)
        if guard in done:
            stuck = guard.result()
            raise SystemExit(
                f"docfactory: {name} is still QUEUED: {stuck.notice.message} "
                f"({stuck.notice.reason})"
            )
        try:
            watch.result()
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            run = (await stub.GetRun(pb.GetRunRequest(name=name), metadata=md)).run
            state = pb.RunState.Name(run.state).removeprefix("RUN_STATE_")
            raise SystemExit(
                f"docfactory: {name} is still {state} after {seconds:.0f} s (--timeout); it "
                f"goes on in the background: `docfactory dossier show {name}`"
            ) from None
    finally:
        for task in (watch, guard):
            task.cancel()
        await asyncio.gather(watch, guard, return_exceptions=True)
    return (await stub.GetRun(pb.GetRunRequest(name=name), metadata=md)).run


async def cmd_dossier(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.workflows.engine import exit_now

    if ns.dossier_command == "worker":
        import signal

        from docfactory.workflows.engine import run_worker

        # The worker runs in a thread (it cannot install signal handlers there): SIGTERM and
        # SIGINT reach the event loop, which asks the worker to drain.
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.to_thread(run_worker, settings, stop)
        exit_now(0)
    from docfactory.cli import Session
    from docfactory.workflows.v1 import workflows_service_pb2 as pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as pb_grpc

    async with Session(settings, ns.address, ns.api_key) as session:
        stub = pb_grpc.WorkflowServiceStub(session.channel)
        md = session.metadata
        needs_worker = ns.dossier_command in ("run", "decide")
        with _embedded_worker(settings, ns.address) if needs_worker else contextlib.nullcontext():
            if ns.dossier_command == "run":
                rc = await _run(ns, stub, md)
            elif ns.dossier_command == "decide":
                rc = await _decide(ns, stub, md)
            elif ns.dossier_command == "show":
                return await _show(ns, stub, md)
            else:
                return await _list(ns, stub, md, pb)
    if needs_worker and not ns.address:
        exit_now(rc)  # the embedded worker may hold a run waiting for sign-off (see exit_now)
    return rc


def _files(paths: Sequence[str]) -> list[Path]:
    out = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"docfactory: no such file: {raw}")
    return out


async def _run(ns: argparse.Namespace, stub: Any, md: Any) -> int:
    from docfactory.workflows.v1 import workflows_service_pb2 as pb

    files = _files(ns.files)
    dossier = (
        await stub.CreateDossier(
            pb.CreateDossierRequest(
                display_name=ns.name or files[0].stem,
                use_case=ns.use_case,
                files=[
                    pb.DossierFile(filename=p.name, content=await asyncio.to_thread(p.read_bytes))
                    for p in files
                ],
                classification=_CLASS[ns.classification],
            ),
            metadata=md,
            timeout=ns.timeout,
        )
    ).dossier
    run = (
        await stub.StartRun(pb.StartRunRequest(dossier=dossier.name, flow=ns.flow), metadata=md)
    ).run
    run = await _wait(stub, run.name, md, ns.timeout)
    data = run_dict(run)
    if ns.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print_run(data)
    return 0 if data["state"] not in ("FAILED",) else 1


async def _decide(ns: argparse.Namespace, stub: Any, md: Any) -> int:
    from docfactory.workflows.v1 import workflows_service_pb2 as pb

    amendments = {}
    for item in ns.set:
        ref, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"docfactory: --set expects TYPE.FIELD=VALUE, got {item!r}")
        amendments[ref.strip()] = value
    name = ns.name if ns.name.startswith("runs/") else f"runs/{ns.name}"
    resp = await stub.SubmitDecision(
        pb.SubmitDecisionRequest(
            name=name,
            kind=_KINDS[ns.decision],  # type: ignore[arg-type]
            comment=ns.comment,
            amendments=amendments,
        ),
        metadata=md,
    )
    # Let the run apply the decision: released, rejected, or re-checked after an amendment.
    drafts = sum(1 for t in resp.run.timings if t.step.startswith("draft:"))
    run = resp.run
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ns.timeout
    while loop.time() < deadline:
        run = (await stub.GetRun(pb.GetRunRequest(name=name), metadata=md)).run
        waiting = run.state in (pb.RUN_STATE_AWAITING_SIGNOFF, pb.RUN_STATE_ESCALATED)
        if not waiting:
            break
        if ns.decision == "amend":
            redrafted = [
                t for t in run.timings if t.step.startswith("draft:") and t.duration_ms > 0
            ]
            if len(redrafted) > drafts:
                break
        elif ns.decision == "approve" and run.approvals < run.approvals_required:
            break  # another reviewer's approval is needed (four-eyes)
        await asyncio.sleep(0.3)
    data = run_dict(run)
    if ns.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print_run(data)
    return 0


async def _show(ns: argparse.Namespace, stub: Any, md: Any) -> int:
    from docfactory.workflows.v1 import workflows_service_pb2 as pb

    if ns.name.startswith("dossiers/"):
        d = (await stub.GetDossier(pb.GetDossierRequest(name=ns.name), metadata=md)).dossier
        data = {
            "dossier": d.name,
            "display_name": d.display_name,
            "use_case": d.use_case,
            "documents": [
                {"document_id": x.document_id, "filename": x.filename, "pages": x.page_count}
                for x in d.documents
            ],
            "latest_flow": d.latest_flow,
            "latest_state": pb.RunState.Name(d.latest_run_state).removeprefix("RUN_STATE_"),
        }
        print(json.dumps(data, ensure_ascii=False, indent=None if ns.json else 2))
        return 0
    name = ns.name if ns.name.startswith("runs/") else f"runs/{ns.name}"
    run = (await stub.GetRun(pb.GetRunRequest(name=name), metadata=md)).run
    data = run_dict(run)
    if ns.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print_run(data)
    return 0


async def _list(ns: argparse.Namespace, stub: Any, md: Any, pb: Any) -> int:
    rows: list[dict[str, Any]] = []
    if ns.pending:
        token = ""
        while True:
            resp = await stub.ListPendingDecisions(
                pb.ListPendingDecisionsRequest(page_token=token), metadata=md
            )
            rows += [
                {
                    "run": r.name,
                    "dossier": r.dossier,
                    "flow": r.flow,
                    "state": pb.RunState.Name(r.state).removeprefix("RUN_STATE_"),
                    "approvals": f"{r.approvals}/{r.approvals_required}",
                }
                for r in resp.runs
            ]
            token = resp.next_page_token
            if not token:
                break
    else:
        state = pb.RunState.Value(f"RUN_STATE_{ns.state.upper()}") if ns.state else 0
        token = ""
        while True:
            resp = await stub.ListDossiers(
                pb.ListDossiersRequest(state=state, flow=ns.flow, page_token=token), metadata=md
            )
            rows += [
                {
                    "dossier": d.name,
                    "display_name": d.display_name,
                    "documents": len(d.documents),
                    "flow": d.latest_flow,
                    "state": pb.RunState.Name(d.latest_run_state).removeprefix("RUN_STATE_"),
                }
                for d in resp.dossiers
            ]
            token = resp.next_page_token
            if not token:
                break
    if ns.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        for row in rows:
            print("  ".join(str(v) for v in row.values()))
        if not rows:
            print("(aucun)")
    return 0
