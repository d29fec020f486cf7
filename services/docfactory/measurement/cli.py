"""The ``docfactory report`` subcommand: reads the metadata database directly (no server)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from docfactory.core.config import Settings


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "report",
        help="usage, satisfaction, time saved and quality report (HTML + JSON)",
        description="Reads the audit log and the feedback of the metadata database "
        "(DOCFACTORY_DATABASE_URL) and writes a self-contained HTML report and/or its JSON.",
    )
    r.add_argument("--from", dest="from_date", default="", help="first day YYYY-MM-DD (UTC)")
    r.add_argument("--to", dest="to_date", default="", help="last day YYYY-MM-DD (default today)")
    r.add_argument("--tenant", help="one subsidiary (tenant) only")
    r.add_argument("--use-case", help="one use case only")
    r.add_argument("--out", help="HTML report path (default report.html unless --json only)")
    r.add_argument("--json", dest="json_out", help="JSON report path")
    r.add_argument(
        "--eval", help="docfactory eval JSON results, or a folder (its newest results file)"
    )


def worker_key_ids(settings: Settings, policy: Any = None) -> frozenset[str]:
    """Key ids with the ``worker`` role (the policy's keys, else the keys file's): their calls
    (a dossier's rule retrieval through Search, acting for the tenant) are not user actions.
    ``policy``: the policy store of a governance gate (the server's, so a reload is seen);
    needed when a policy file is configured (None: no worker key known)."""
    from docfactory.core.auth import WORKER_ROLE

    if settings.policy_file:
        if policy is None:
            return frozenset()
        keys = policy.current().api_keys.values()
        return frozenset(k.id for k in keys if WORKER_ROLE in k.roles)
    import yaml

    from docfactory.core.auth import parse_keys

    path = settings.resolved_keys_file
    if not path.exists():
        return frozenset()
    entries = parse_keys(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    return frozenset(e.key_id for e in entries if WORKER_ROLE in e.roles)


def _run(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.core.db import make_engine
    from docfactory.governance.audit import AuditLog
    from docfactory.measurement.report import build_report, latest_eval, load_eval, write_report
    from docfactory.measurement.service import MeasurementService
    from docfactory.measurement.usage import Period

    period = Period.parse(ns.from_date, ns.to_date)
    engine = make_engine(settings.resolved_database_url)
    try:
        policy = None
        if settings.policy_file:
            from docfactory.governance.gate import GovernanceGate

            policy = GovernanceGate.build(engine, settings.policy_file).policy
        service = MeasurementService(
            engine, AuditLog(engine), internal_keys=lambda: worker_key_ids(settings, policy)
        )
        data = service.load(ns.tenant, period, ns.use_case)
        from docfactory.workflows.repo import WorkflowRepository

        # Time per step (the workflow side's own figures), then the dossier figures of the
        # usage page (time to decision without queue time, approval rate with INCOMPLETE).
        dossiers = WorkflowRepository(engine).stats(
            ns.tenant, period.start_time.timestamp(), period.end_time.timestamp()
        )
        usage = service.dossier_usage(data, ns.tenant, ns.use_case).as_dict()
        dossiers.update(usage)
        ended = usage["signed"] + usage["rejected"] + usage["incomplete"]
        dossiers["rejection_rate"] = usage["rejected"] / ended if ended else None
        dossiers["dossier_ms"] = (
            usage["median_decision_seconds"] * 1000
            if usage["median_decision_seconds"] is not None
            else 0.0
        )
    finally:
        engine.dispose()
    quality = None
    if ns.eval:
        found = latest_eval(Path(ns.eval))
        if found is None:
            print(f"docfactory: no eval results in {ns.eval}", file=sys.stderr)
            return 2
        quality = load_eval(found)
    report = build_report(
        data, tenant=ns.tenant, use_case=ns.use_case, quality=quality, dossiers=dossiers
    )
    html_path = Path(ns.out) if ns.out else (None if ns.json_out else Path("report.html"))
    json_path = Path(ns.json_out) if ns.json_out else None
    write_report(report, html_path=html_path, json_path=json_path)
    o = report["overall"]
    print(
        f"report {period.start} .. {period.end}: {o['active_users']} active users, "
        f"{o['questions']} questions, {o['feedback']} feedback, "
        f"{o['time_saved_minutes']:.0f} min saved, {dossiers['runs']} dossier runs"
        + (f" -> {html_path}" if html_path else "")
        + (f" -> {json_path}" if json_path else "")
    )
    return 0


async def cmd_report(ns: argparse.Namespace, settings: Settings) -> int:
    return await asyncio.to_thread(_run, ns, settings)
