"""Operator and service commands: documents, worker, serve, console, audit, db, and the
commands of other packages (eval-pii, report, eval, eval-flow, dossier)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from docfactory.cli.session import Session
from docfactory.core.config import Settings


async def cmd_documents(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
    from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc

    async with Session(
        settings, ns.address, ns.api_key, ("ingestion",), daemon=ns.daemon
    ) as session:
        stub = pb_grpc.IngestionServiceStub(session.channel)
        if ns.action == "delete":
            for name in ns.names:
                r = await stub.DeleteDocument(
                    pb.DeleteDocumentRequest(name=name), metadata=session.metadata, timeout=60
                )
                print(json.dumps({"deleted": name, "chunks": r.deleted_chunks}))
            return 0
        token = ""
        while True:
            resp = await stub.ListDocuments(
                pb.ListDocumentsRequest(
                    page_size=200, page_token=token, collection=ns.collection or ""
                ),
                metadata=session.metadata,
                timeout=60,
            )
            for d in resp.documents:
                state = pb.DocumentState.Name(d.state).removeprefix("DOCUMENT_STATE_")
                if ns.json:
                    print(
                        json.dumps(
                            {
                                "name": d.name,
                                "filename": d.filename,
                                "collection": d.collection,
                                "state": state,
                                "version": d.version,
                                "chunks": d.chunk_count,
                                "error_reason": d.error_reason,
                            },
                            ensure_ascii=False,
                        )
                    )
                else:
                    print(
                        f"{d.name}  {state:<10} v{d.version} {d.chunk_count:>4} chunks  "
                        f"{d.collection}/{d.filename}"
                    )
            token = resp.next_page_token
            if not token:
                break
    return 0


def cmd_worker(ns: argparse.Namespace, settings: Settings) -> int:
    """Runs in the main thread (the worker handles SIGTERM itself); N processes if asked."""
    import multiprocessing

    from docfactory.jobs.runtime import run_worker

    count = ns.processes if ns.processes is not None else settings.jobs.workers
    if count <= 1:
        run_worker(settings)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(settings,)) for _ in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


async def cmd_serve(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.app import SERVICES, exit_without_abandoned_work, serve_forever

    services = [s.strip() for s in ns.services.split(",")] if ns.services else list(SERVICES)
    if ns.console_port is not None:
        from docfactory.console.app import serve_beside

        await serve_beside(
            serve_forever(settings, services),
            settings,
            host=ns.console_host,
            port=ns.console_port,
            audit_sink=signin_audit_sink,
        )
    else:
        await serve_forever(settings, services)
    # Inside the event loop, before asyncio.run joins the threads of abandoned calls.
    exit_without_abandoned_work()
    return 0


def signin_audit_sink(database_url: str) -> Any:
    """The console's failed sign-ins and lockouts, appended to the audit chain of
    ``database_url`` (tenant ``-``): the composition root gives it to the console, which
    itself reaches no database."""
    from docfactory.console.auth import SIGNIN_AUDIT_TENANT
    from docfactory.core.db import make_engine
    from docfactory.governance.audit import AuditLog

    audit = AuditLog(make_engine(database_url), create_tables=False)

    def sink(action: str, outcome: str, details: dict[str, Any]) -> None:
        audit.append(
            tenant=SIGNIN_AUDIT_TENANT,
            key_id="",
            use_case="",
            action=action,
            outcome=outcome,
            details=details,
        )

    return sink


async def cmd_console(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.console.app import run_console

    await run_console(
        settings,
        address=ns.address,
        host=ns.host,
        port=ns.port,
        auth_header=ns.auth_header,
        certfile=ns.tls_cert,
        keyfile=ns.tls_key,
        insecure=bool(ns.insecure),
        audit_sink=signin_audit_sink,
    )
    return 0


async def cmd_eval_pii(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.pii.cli import cmd_eval_pii as run_eval_pii

    return await run_eval_pii(ns, settings)


async def cmd_audit(ns: argparse.Namespace, settings: Settings) -> int:
    """Operator command: reads the metadata database directly (no server needed)."""
    from docfactory.core.db import make_engine
    from docfactory.governance.audit import AuditLog

    log = AuditLog(make_engine(settings.resolved_database_url))
    if ns.action == "export":
        if ns.out == "-":
            n = await asyncio.to_thread(log.export_jsonl, sys.stdout, tenant=ns.tenant)
        else:
            n = await asyncio.to_thread(log.export_jsonl, Path(ns.out), tenant=ns.tenant)
        print(f"exported {n} audit records", file=sys.stderr)
        return 0
    report = await asyncio.to_thread(log.verify)
    if ns.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "chains": len(log.chains()),
                    "problems": [
                        {"seq": p.seq, "kind": p.kind, "chain": p.chain} for p in report.problems
                    ],
                }
            )
        )
    else:
        state = "intact" if report.ok else "TAMPERED"
        chains = len(log.chains())
        print(f"audit chains {state}: {report.checked} records in {chains} chain(s) checked")
        for p in report.problems:
            print(f"  seq {p.seq}: {p.kind}" + (f" (chain {p.chain!r})" if p.chain else ""))
        for note in report.notes:
            print(f"  note: {note}")
    return 0 if report.ok else 1


async def cmd_db(ns: argparse.Namespace, settings: Settings) -> int:
    """Operator command: migrate (``upgrade``) or show (``current``) the database schema."""
    from docfactory.core import migrate

    url = settings.resolved_database_url
    if ns.action == "upgrade":
        revision: str | None = await asyncio.to_thread(migrate.upgrade, url)
    else:
        revision = await asyncio.to_thread(migrate.current_revision, url)
    head = migrate.head_revision()
    print(f"{revision} (head)" if revision == head else f"{revision or 'none'} (head is {head})")
    return 0


async def cmd_report(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.measurement.cli import cmd_report as run_report

    return await run_report(ns, settings)


async def cmd_eval(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.evaluation.cli import cmd_eval as run_eval

    return await run_eval(ns, settings)


async def cmd_eval_flow(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.workflows.evalset.cli import cmd_eval_flow as run_eval_flow

    return await run_eval_flow(ns, settings)


async def cmd_dossier(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.workflows.cli import cmd_dossier as run_dossier

    return await run_dossier(ns, settings)
